"""Command-line tools: ``sbm-train`` and ``sbm-localize``.

``sbm-train DATASET_DIR -o MODEL.npz`` fits a one- or two-source SBM model from a dataset folder
(format in :mod:`sbm_ros.dataset`). ``sbm-localize MODEL AUDIO.wav`` slides the model over a
stereo recording and prints one JSON object per window.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np


def _train_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sbm-train", description="Fit a Supervised Binaural Mapping model (GLLiM) from a "
        "dataset folder of single-source white-noise recordings.")
    p.add_argument("dataset", help="dataset folder (targets.csv + stereo WAVs)")
    p.add_argument("-o", "--output", required=True, help="model file to write (.npz)")
    p.add_argument("--sources", type=int, choices=(1, 2), default=1,
                   help="number of simultaneous sources the model localises (default 1)")
    p.add_argument("-K", "--components", type=int, default=None,
                   help="number of affine components (default 32 for 1 source, 100 for 2)")
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
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    return p


def train_main(argv=None) -> int:
    args = _train_parser().parse_args(argv)
    from .dataset import (DatasetError, load_recordings, read_dataset, single_source_set,
                          two_source_set)
    from .features import FeatureConfig
    from .gllim import GLLiM
    from .model import SBMModel

    def say(msg):
        if not args.quiet:
            print(f"[sbm-train] {msg}", file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    try:
        ds = read_dataset(args.dataset)
        cfg = FeatureConfig(sample_rate=args.sample_rate, feature_type=args.features)
        say(f"{len(ds)} recordings, targets {ds.target_names} ({ds.units})")
        recs = load_recordings(ds, cfg.sample_rate)
    except (DatasetError, ValueError) as exc:
        print(f"sbm-train: error: {exc}", file=sys.stderr)
        return 2
    targets = ds.targets
    names = ds.target_names
    if args.azimuth_only:
        targets, names = targets[:, :1], names[:1]
    if args.sources == 1:
        X, Y = single_source_set(recs, targets, cfg)
        K = args.components or 32
    else:
        say(f"synthesising {args.pairs} two-source mixtures")
        X, Y = two_source_set(recs, targets, cfg, n_pairs=args.pairs, seed=args.seed,
                              level_std_db=args.level_std_db)
        K = args.components or 100
    say(f"features ready: N={X.shape[0]}, L={X.shape[1]}, D={Y.shape[1]} "
        f"({time.perf_counter() - t0:.1f} s); fitting K={K}")
    if K > X.shape[0]:
        print(f"sbm-train: error: K={K} exceeds the number of training vectors {X.shape[0]}",
              file=sys.stderr)
        return 2
    gllim = GLLiM(n_components=K, max_iter=args.max_iter, tol=args.tol,
                  random_state=args.seed, verbose=not args.quiet).fit(X, Y)
    model = SBMModel.from_gllim(gllim, cfg, n_sources=args.sources,
                                dims_per_source=len(names), target_space=ds.units,
                                camera=ds.camera, n_train=X.shape[0],
                                info={"dataset": ds.root, "pairs_level_std_db":
                                      args.level_std_db if args.sources == 2 else None})
    model.save(args.output)
    say(f"wrote {args.output}: K={gllim.n_components_} (asked {K}), {gllim.n_iter_} EM "
        f"iterations, log-likelihood {gllim.lower_bound_:.3f}, fit {gllim.fit_time_:.1f} s, "
        f"total {time.perf_counter() - t0:.1f} s")
    return 0


def _localize_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sbm-localize", description="Localise the sound sources of a stereo recording with "
        "an SBM model; prints one JSON object per analysis window.")
    p.add_argument("model", help="model file written by sbm-train")
    p.add_argument("audio", help="stereo WAV (left ear, right ear); resampled to the model rate")
    p.add_argument("--window", type=float, default=None,
                   help="window length in s (default 0.72 for 1 source, 1.2 for 2)")
    p.add_argument("--hop", type=float, default=0.1, help="hop between windows in s (0.1)")
    p.add_argument("--sources", type=int, choices=(1, 2), default=None,
                   help="expected number of sources; must match the model")
    p.add_argument("--min-active", type=float, default=0.02,
                   help="minimum active fraction of a window for an estimate (0.02)")
    p.add_argument("--margin-db", type=float, default=6.0,
                   help="activity-mask margin above the noise floor in dB (6)")
    return p


def localize_main(argv=None) -> int:
    args = _localize_parser().parse_args(argv)
    from .audio_io import read_wav
    from .localizer import localize_signal
    from .model import ModelError, SBMModel

    try:
        model = SBMModel.load(args.model)
    except ModelError as exc:
        print(f"sbm-localize: error: {exc}", file=sys.stderr)
        return 2
    if args.sources is not None and args.sources != model.n_sources:
        print(f"sbm-localize: error: --sources {args.sources} but the model localises "
              f"{model.n_sources} source(s); train another with sbm-train --sources "
              f"{args.sources}", file=sys.stderr)
        return 2
    try:
        x, _ = read_wav(args.audio, target_rate=model.feature_config.sample_rate)
    except (ValueError, OSError) as exc:
        print(f"sbm-localize: error: cannot read {args.audio!r}: {exc}", file=sys.stderr)
        return 2
    names = model.target_names
    out = sys.stdout
    for t, est in localize_signal(model, x, window_s=args.window, hop_s=args.hop,
                                  min_active_fraction=args.min_active,
                                  mask_margin_db=args.margin_db):
        rec = {"time": round(t, 4), "units": model.target_space}
        if est is None:
            rec.update(estimates=[], active_fraction=None)
        else:
            rec.update(estimates=[s.to_dict(names) for s in est.sources],
                       active_fraction=round(est.active_fraction, 4))
        out.write(json.dumps(rec) + "\n")
    out.flush()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(train_main())
