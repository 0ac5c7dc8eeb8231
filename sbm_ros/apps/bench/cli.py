"""``sbm-bench``: the project's benchmark on the virtual binaural head (pure, no ROS).

The command line (the first line above is its ``--help`` description): :func:`build_parser`
and :func:`main`, the console-script entry point ``sbm_ros.apps.bench:main``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from sbm_ros.apps.bench.common import BenchConfig, _log
from sbm_ros.apps.bench.driver import run


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sbm-bench", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="reduced sizes (< 3 min on 2 cores); a smoke test of the benchmark")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out-dir", default=None,
                   help="where benchmark.md and the PNGs go (default: docs for the full run; "
                        "out/bench-quick with --quick, out/bench-<section> with --only, so "
                        "only a full run replaces the committed report)")
    p.add_argument("--only", choices=SECTIONS, default=None,
                   help="run one part: 'virtual' (the virtual-head protocols), 'realdata' "
                        "(the measured heads and rooms) or 'voices' (speech activity and voice "
                        "tracking on the voice scenes)")
    p.add_argument("--data-dir", default=None,
                   help="folder of the real measured data (surrey_brirs/, speech/; see "
                        "../shared/data/README.md). Default: ../shared/data next to the "
                        "checkout if it exists, else $SBM_DATA_DIR; without one the real-data "
                        "section is skipped and the report says where to download the data")
    p.add_argument("--mask-margin-db", type=float, default=6.0,
                   help="activity-mask threshold above the measured noise PSD (dB)")
    p.add_argument("--sigma-floor", type=float, default=None,
                   help="GLLiM sigma2 floor relative to its median (default: GLLiM's)")
    p.add_argument("--gamma-reg", type=float, default=None,
                   help="GLLiM Gamma eigenvalue floor (default: GLLiM's)")
    p.add_argument("--max-iter", type=int, default=None, help="GLLiM EM iterations cap")
    p.add_argument("--snr-db", type=float, default=30.0, help="microphone self-noise SNR")
    p.add_argument("--drr-db", default="4",
                   help="direct-to-reverberant ratio of the reverberant room for a frontal "
                        "source, dB (virtual head default 4), or 'sabine' for the statistical "
                        "diffuse-field value (about -5.9 dB at 2 m)")
    p.add_argument("--no-xllim", action="store_true", help="skip the xllim comparison")
    p.add_argument("--fan-snr-db", default=None, type=_snr_list,
                   help="comma-separated fan SNRs (dB) of the ambient-noise section, 'none' for "
                        "the fan-free row, '' to skip the section (default: none,30,25,20,18,"
                        "15,10; quick: none,15)")
    return p


SECTIONS = ("virtual", "realdata", "voices")


def default_out_dir(quick: bool, only: Optional[str] = None) -> str:
    """``docs`` (the committed report) for the full run only; scratch folders otherwise."""
    if quick:
        return "out/bench-quick" + (f"-{only}" if only else "")
    if only:
        return f"out/bench-{only}"
    return "docs"


def _snr_list(text: str) -> tuple:
    out = []
    for item in str(text).split(","):
        item = item.strip().lower()
        if not item:
            continue
        if item in ("none", "off", "inf"):
            out.append(None)
            continue
        try:
            out.append(float(item))
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number or 'none': {item!r}") from None
    return tuple(out)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs the benchmark with the command-line arguments ``argv``; prints the report."""
    args = build_parser().parse_args(argv)
    argv_list = list(sys.argv[1:] if argv is None else argv)
    out_dir = args.out_dir or default_out_dir(args.quick, args.only)
    bc = BenchConfig.make(args.quick, seed=args.seed, out_dir=out_dir,
                          mask_margin_db=args.mask_margin_db, sigma_floor=args.sigma_floor,
                          gamma_reg=args.gamma_reg, max_iter=args.max_iter, snr_db=args.snr_db,
                          drr_db=None if str(args.drr_db).lower(
                          ) == "sabine" else float(args.drr_db),
                          xllim=not args.no_xllim, fan_snr_sweep=args.fan_snr_db,
                          virtual=args.only in (None, "virtual"),
                          realdata=args.only in (None, "realdata"), data_dir=args.data_dir,
                          voices=args.only in (None, "voices"),
                          command=" ".join(["sbm-bench"] + argv_list))
    out = run(bc)
    print(out["report"])
    _log(f"wrote {out['report_path']} and {len(out['plots'])} plots in "
         f"{out['runtime_s'] / 60:.1f} min")
    return 0
