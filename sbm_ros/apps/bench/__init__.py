"""``sbm-bench``: the project's benchmark on the virtual binaural head (pure, no ROS).

Reproduces the experiments of Deleforge et al. 2015, §VI (protocol: ``/work/shared/design/
benchmark.md``) on the virtual head of :mod:`sbm_ros.sim` and writes
``<out-dir>/benchmark.md`` plus PNG plots; the tables are also printed. Everything is
deterministic from ``--seed`` except the measured times.

Sections
--------
1. Table I: one source (training: white noise at the 24 x 18 pixel grid; test: one espeak-ng
   counting utterance of 1-5 s at each of the 12 x 9 midway positions); SBM-1 with ILPD, ILD and
   IPD features and the PHAT-histogram baseline, reverberant and anechoic room.
2. Table II: two sources (N = 20,000 white-noise pairs synthesised from the training recordings,
   K = 100; 1,000 one-second test mixtures per type WN+WN, WN+S, S+S of the test recordings,
   level ratio N(0, 0.5) dB, sources 1.5-20 deg apart in azimuth and elevation).
3. Sliding window: one talker counting 1..20 and moving between numbers (720 ms window); two
   talkers counting at once in two languages (1200 ms window), via :class:`SBMLocalizer`.
4. Plots: error / time versus K and error versus N (paper Figs. 3 and 6), camera frame.
5. Speed: per-estimate latency of the sliding-window localiser vs the naive per-entry
   formulation and the K D L^2 FLOP bound; feature extraction; training times.
6. A second GLLiM implementation (PyPI ``xllim``, C++) on the one-source training set.

Measurement choices
-------------------
* **Errors**: absolute azimuth and elevation errors in degrees; the "GTEA" (ground-truth-to-
  estimate angle) of a source is ``hypot(d_az, d_el)`` (azimuth error only for PHAT).
  Table I "> 5 deg" counts GTEA > 5 deg. Table II: estimates are matched to the true sources by
  the better of the two assignments (smallest summed GTEA); a source whose GTEA exceeds 15 deg
  is an outlier, excluded from avg +- std and reported as a percentage.
* **Activity mask** of offline test signals: per-bin noise floor = time-averaged power
  spectrum of a 4 s noise-only segment of the virtual head's microphone self-noise (white,
  independent per ear, scaled to the recording's self-noise level, i.e. exactly the noise the
  head adds), times ``--mask-margin-db``. Mixtures use the sum of the two scaled floors. In the
  sliding-window scenes the floor is measured on the scene's own 1 s noise-only lead-in.
* **CPU time**: ``time.process_time`` around all the work of one method (feature extraction
  or STFT + features, mask, statistics, posterior), divided by the seconds of audio. It sums
  over threads (BLAS may use both cores). Latencies are wall-clock (``perf_counter``).
* **Two-source data**: spectrograms of the 1 s training recordings are stored once in
  complex64 (the STFT is linear, so a mixture's spectrogram is the gain-weighted sum) and the
  ILPD mean vectors of the pairs are computed in batches on two threads; the ILD and IPD
  models use the ILD and IPD blocks of the same vectors (identical to computing them apart).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Optional, Sequence

from sbm_ros.core.fileio import atomic_write

from sbm_ros.apps.bench.common import (  # noqa: F401 (names of the former bench.py)
    COLUMNS, FEATURES, OUTLIER_DEG, RATE, BenchConfig, Scene, _cfg, _err_summary, _fmt, _log,
    _match2, _mean_vectors, _post_mean, _slice, _speech_sources, _stats_from_signal,
    _train_gllim, _unit_noise_psd)
from sbm_ros.apps.bench.paper import (  # noqa: F401
    PAPER_T1, PAPER_T2, PAPER_TIMES, _shortfalls, _summary)
from sbm_ros.apps.bench.table1 import table1
from sbm_ros.apps.bench.table2 import make_mixtures, synth_pairs, table2  # noqa: F401
from sbm_ros.apps.bench.sweeps import sweeps
from sbm_ros.apps.bench.ambient import ambient_sweep
from sbm_ros.apps.bench.sliding import counting_scene, run_sliding, sliding_scenes  # noqa: F401
from sbm_ros.apps.bench.speed import feature_speed, gemm_gflops, speed  # noqa: F401
from sbm_ros.apps.bench.xllim_compare import run_xllim
from sbm_ros.apps.bench.plots import make_plots
from sbm_ros.apps.bench.provenance import _git, _machine
from sbm_ros.apps.bench.report import DEVIATIONS, render_report  # noqa: F401


def _heads(bc: BenchConfig, hrirs) -> dict:
    """The virtual heads of the two rooms, sharing one HRIR set."""
    from sbm_ros.sim import Room, VirtualHead

    return {"reverberant": VirtualHead(room=Room(drr_db=bc.drr_db), snr_db=bc.snr_db,
                                       hrirs=hrirs, seed=bc.seed),
            "anechoic": VirtualHead(room=Room.anechoic(), snr_db=bc.snr_db, hrirs=hrirs,
                                    seed=bc.seed)}


def _experiments(bc: BenchConfig, camera, out: dict) -> None:
    """Every protocol in turn (each needs the results of those before it in ``out``)."""
    from sbm_ros.sim import grid_positions, load_kemar

    hrirs = load_kemar(RATE)
    n_test = len(grid_positions(*bc.test_grid, camera))
    _log("synthesising speech (espeak-ng)")
    sp_src, sp_meta = _speech_sources(n_test, bc.seed)
    out["speech_meta"] = sp_meta
    heads = _heads(bc, hrirs)
    for room in ("reverberant", "anechoic"):
        _log(f"rendering the {room} room")
        sc = Scene(heads[room], camera, bc, sp_src, room)
        out["scenes"][room] = sc
        _log(f"Table I, {room}")
        table1(sc, bc, bc.k1, out, keep_models=True)
    rev = out["scenes"]["reverberant"]
    _log("Table II")
    table2(rev, bc, out)
    _log("sweeps")
    sweeps(rev, bc, out)
    ambient_sweep(heads["reverberant"], camera, bc, sp_src, out)
    m1, m2 = sliding_scenes(heads["reverberant"], camera, bc, out)
    speed(heads["reverberant"], bc, out, m1, m2)
    if bc.xllim:
        _log("xllim")
        out["xllim"] = run_xllim(rev, bc, bc.k1, n_check=bc.xllim_check)
    out["shortfalls"] = _shortfalls(out)
    out["summary"] = _summary(out)


def run(bc: BenchConfig) -> dict:
    """The whole benchmark: writes ``<out_dir>/benchmark.md`` and the plots; returns ``out``."""
    from sbm_ros.sim import VirtualCamera

    t_start = time.perf_counter()
    # the checkout's state before this run writes its own report and plots
    out_git = _git()
    os.makedirs(bc.out_dir, exist_ok=True)
    machine = _machine()
    camera = VirtualCamera.narrow()
    out: dict = {"scenes": {}, "git": out_git}
    _experiments(bc, camera, out)
    plots = make_plots(out, bc, camera)
    runtime = time.perf_counter() - t_start
    out["runtime_s"] = runtime
    md = render_report(out, bc, machine, runtime, plots)
    path = os.path.join(bc.out_dir, "benchmark.md")
    with atomic_write(path, "w", perms=0o644) as fh:
        fh.write(md)
    out["report"] = md
    out["report_path"] = path
    out["plots"] = plots
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sbm-bench", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="reduced sizes (< 3 min on 2 cores); a smoke test of the benchmark")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out-dir", default="docs", help="where benchmark.md and the PNGs go")
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
    args = build_parser().parse_args(argv)
    argv_list = list(sys.argv[1:] if argv is None else argv)
    bc = BenchConfig.make(args.quick, seed=args.seed, out_dir=args.out_dir,
                          mask_margin_db=args.mask_margin_db, sigma_floor=args.sigma_floor,
                          gamma_reg=args.gamma_reg, max_iter=args.max_iter, snr_db=args.snr_db,
                          drr_db=None if str(args.drr_db).lower(
                          ) == "sabine" else float(args.drr_db),
                          xllim=not args.no_xllim, fan_snr_sweep=args.fan_snr_db,
                          command=" ".join(["sbm-bench"] + argv_list))
    out = run(bc)
    print(out["report"])
    _log(f"wrote {out['report_path']} and {len(out['plots'])} plots in "
         f"{out['runtime_s'] / 60:.1f} min")
    return 0
