"""Command-line tools: ``sbm-train`` and ``sbm-localize``.

``sbm-train DATASET_DIR -o MODEL.npz`` fits a one- or two-source SBM model from a dataset folder
(format in :mod:`sbm_ros.core.dataset`). For one source it calibrates safely from few positions
(:mod:`sbm_ros.core.calibration`): refuses too few or degenerate position sets saying what to
record, chooses K by cross-validation over positions unless ``-K`` is given, and prints and stores
in the model the cross-validated error at unrecorded positions.
``sbm-localize MODEL AUDIO.wav`` slides the model over a stereo recording and prints one JSON
object per window; each estimate carries ``in_field`` and ``outside_by`` (estimates outside the
recorded field are clipped to it and flagged, see :mod:`sbm_ros.core.localizer`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def _train_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sbm-train", description="Fit a Supervised Binaural Mapping model (GLLiM) from a "
        "dataset folder of single-source white-noise recordings.")
    p.add_argument("dataset", help="dataset folder (targets.csv + stereo WAVs)")
    p.add_argument("-o", "--output", required=True, help="model file to write (.npz)")
    p.add_argument("--sources", type=int, choices=(1, 2), default=1,
                   help="number of simultaneous sources the model localises (default 1)")
    p.add_argument("-K", "--components", type=int, default=None,
                   help="number of affine components (default: one source, chosen by "
                   "cross-validation over positions; two sources, 100, capped at half the "
                   "distinct position pairs)")
    p.add_argument("--features", choices=("ilpd", "ild", "ipd"), default="ilpd",
                   help="binaural features (default ilpd)")
    p.add_argument("--pairs", type=int, default=20000,
                   help="two-source training pairs to synthesise (default 20000)")
    p.add_argument("--level-std-db", type=float, default=0.5,
                   help="std of the level difference of synthesised pairs, dB (default 0.5)")
    p.add_argument("--azimuth-only", action="store_true",
                   help="use only the first target column (L = 1 per source)")
    p.add_argument("--sample-rate", type=int, default=16000,
                   help="feature sample rate; recordings are resampled (default 16000)")
    p.add_argument("--max-iter", type=int, default=100, help="EM iterations at most")
    p.add_argument("--tol", type=float, default=1e-6, help="relative log-likelihood tolerance")
    p.add_argument("--seed", type=int, default=0, help="random seed (initialisation, pairs)")
    p.add_argument("--auto-components", action="store_true",
                   help="kept for compatibility: one source already chooses K from the data "
                   "by default; for two sources (or with --no-calibration) it caps K at N/5")
    p.add_argument("--subdiv", type=int, default=None,
                   help="one source: interpolated training vectors per gap between recorded "
                   "positions (default: automatic, about 1500 vectors, at most 8)")
    p.add_argument("--no-calibration", action="store_true",
                   help="one source: the plain paper protocol (no densification, no "
                   "cross-validation, Theorem 1 with GLLiM's noise; K=32 without -K)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    return p


def train_main(argv=None) -> int:
    args = _train_parser().parse_args(argv)
    from sbm_ros.core.training import TrainingError, train_model

    def say(msg):
        if not args.quiet:
            print(f"[sbm-train] {msg}", file=sys.stderr, flush=True)

    try:
        train_model(args.dataset, args.output, n_sources=args.sources,
                    n_components=args.components, features=args.features, pairs=args.pairs,
                    level_std_db=args.level_std_db, azimuth_only=args.azimuth_only,
                    sample_rate=args.sample_rate, max_iter=args.max_iter, tol=args.tol,
                    seed=args.seed, auto_k=args.auto_components, verbose=not args.quiet,
                    log=say, calibrate=not args.no_calibration, subdiv=args.subdiv)
    except TrainingError as exc:
        print(f"sbm-train: error: {exc}", file=sys.stderr)
        return 2
    return 0


def _localize_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sbm-localize", description="Localise the sound sources of a stereo recording with "
        "an SBM model; prints one JSON object per analysis window (or one for the whole "
        "recording with --whole).",
        epilog="Exit status: 0 when at least one window gave an estimate, 1 when none did "
        "(silence, or too few active time-frequency points), 2 on a usage, model or audio "
        "error (including a recording shorter than the window).")
    p.add_argument("model", help="model file written by sbm-train")
    p.add_argument("audio", help="stereo WAV (left ear, right ear); resampled to the model rate")
    p.add_argument("--window", type=float, default=None,
                   help="window length in s (default 0.72 for 1 source, 1.2 for 2)")
    p.add_argument("--hop", type=float, default=0.1, help="hop between windows in s (0.1)")
    p.add_argument("--whole", action="store_true",
                   help="one estimate over the whole recording (as the paper's tables do)")
    p.add_argument("--method", choices=("sbm", "phat"), default="sbm",
                   help="sbm (default), or the GCC-PHAT histogram baseline with the delay line "
                   "sbm-train fitted on the same recordings (azimuth or u only)")
    p.add_argument("--sources", type=int, choices=(1, 2), default=None,
                   help="expected number of sources; must match the model")
    p.add_argument("--min-active", type=float, default=0.02,
                   help="minimum active fraction of a window for an estimate (0.02)")
    p.add_argument("--margin-db", type=float, default=6.0,
                   help="activity-mask margin above the noise floor in dB (6)")
    return p


def _error(msg: str) -> int:
    print(f"sbm-localize: error: {msg}", file=sys.stderr)
    return 2


def _phat_windows(model, x, window_s, hop_s, n_sources):
    """(time_s, list of per-source dicts or None) per window, for the PHAT baseline."""
    from sbm_ros.core.phat import PhatHistogram
    phat = PhatHistogram.from_dict(model.info["phat"])
    rate = model.feature_config.sample_rate
    win = int(round(window_s * rate))
    hop = max(1, int(round(hop_s * rate)))
    name = model.target_names[0]
    for end in range(win, x.shape[0] + 1, hop):
        pos = phat.predict(x[end - win:end], n_sources=n_sources)
        yield end / rate, ([{"position": {name: float(v)}, "covariance": None,
                             "confidence": None} for v in pos] if pos.size else None)


def _sbm_windows(model, x, window_s, hop_s, args):
    from sbm_ros.core.localizer import localize_signal
    names = model.target_names
    for t, est in localize_signal(model, x, window_s=window_s, hop_s=hop_s,
                                  min_active_fraction=args.min_active,
                                  mask_margin_db=args.margin_db):
        yield t, (None if est is None else
                  ([s.to_dict(names) for s in est.sources], round(est.active_fraction, 4)))


def localize_main(argv=None) -> int:
    args = _localize_parser().parse_args(argv)
    from sbm_ros.core.audio_io import read_wav
    from sbm_ros.core.model import ModelError, SBMModel

    try:
        model = SBMModel.load(args.model)
    except ModelError as exc:
        return _error(str(exc))
    if args.sources is not None and args.sources != model.n_sources:
        return _error(f"--sources {args.sources} but the model localises {model.n_sources} "
                      f"source(s); train another with sbm-train --sources {args.sources}")
    if args.method == "phat" and not model.info.get("phat"):
        return _error(f"{args.model!r} holds no PHAT delay line (models written before "
                      "sbm_ros stored one, or trained on a single azimuth): retrain it with "
                      "sbm-train to compare with PHAT")
    rate = model.feature_config.sample_rate
    try:
        x, _ = read_wav(args.audio, target_rate=rate)
    except (ValueError, OSError) as exc:
        return _error(f"cannot read {args.audio!r}: {exc}")
    duration = x.shape[0] / rate
    window = args.window if args.window is not None else (0.72 if model.n_sources == 1 else 1.2)
    hop = args.hop
    if args.whole:
        window = hop = duration
    elif not window > 0 or not hop > 0:
        return _error(f"--window and --hop must be > 0 s (got {window}, {hop})")
    elif int(round(window * rate)) > x.shape[0]:
        return _error(f"{args.audio!r} lasts {duration:.2f} s, shorter than the {window:g} s "
                      f"window: use --window {max(duration, 0.01):.2f} or less, or --whole")
    if args.method == "phat":
        rows = ((t, None if e is None else (e, None))
                for t, e in _phat_windows(model, x, window, hop, model.n_sources))
    else:
        rows = _sbm_windows(model, x, window, hop, args)
    found = 0
    try:
        for t, res in rows:
            rec = {"time": round(t, 4), "units": model.target_space, "method": args.method}
            ests, frac = res if res is not None else ([], None)
            rec.update(estimates=ests, active_fraction=frac)
            found += bool(ests)
            sys.stdout.write(json.dumps(rec) + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        # the reader (e.g. `| head`) has gone: stop quietly, without a traceback at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    if not found:
        print(f"sbm-localize: no window of {args.audio!r} gave an estimate (silence, or fewer "
              f"than --min-active {args.min_active:g} of the time-frequency points above the "
              f"noise floor + --margin-db {args.margin_db:g} dB)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    # ``python -m sbm_ros.apps.cli ARGS`` is ``sbm-train ARGS`` (how av_fusion's ~/train runs it)
    sys.exit(train_main())
