"""Fit an SBM model from a dataset folder: the code behind ``sbm-train`` and the ``~/train``
service of ``av_fusion``.

``train_model(dataset_dir, out_path, ...)`` reads the folder (format in
:mod:`sbm_ros.core.dataset`), builds the one- or two-source training set, fits GLLiM and writes
the model atomically.
Every failure raises :class:`TrainingError` (dataset problems included) with a message that
names the problem. The command line around it is
``sbm-train`` (:mod:`sbm_ros.apps.cli`), which ``av_fusion`` runs as a separate process
(``python -m sbm_ros.apps.cli``) so training never blocks its executor.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Optional

DEFAULT_COMPONENTS = {1: 32, 2: 100}


class TrainingError(Exception):
    """Training cannot run; the message names the problem."""


@dataclass
class TrainResult:
    path: str
    n_recordings: int
    n_train: int
    n_components: int          # kept by GLLiM
    n_components_asked: int
    n_iter: int
    log_likelihood: float
    fit_time_s: float
    total_time_s: float
    target_space: str
    target_names: list

    def summary(self) -> str:
        return (f"wrote {self.path}: K={self.n_components} (asked {self.n_components_asked}), "
                f"{self.n_iter} EM iterations, log-likelihood {self.log_likelihood:.3f}, fit "
                f"{self.fit_time_s:.1f} s, total {self.total_time_s:.1f} s")


def auto_components(n_train: int, n_sources: int = 1, per_component: int = 5) -> int:
    """A K the data can support: the default (32 / 100) capped at ``n_train // per_component``."""
    return max(1, min(DEFAULT_COMPONENTS[n_sources], n_train // per_component))


def _phat_line(recordings, targets, cfg, say) -> Optional[dict]:
    """The GCC-PHAT baseline's delay-to-target line fitted on the same recordings (stored in
    the model so ``sbm-localize --method phat`` compares the two on equal terms), or None
    when it cannot be fitted (e.g. all recordings at one azimuth)."""
    from .phat import PhatHistogram
    try:
        return PhatHistogram(sample_rate=cfg.sample_rate, n_fft=cfg.n_fft,
                             hop=cfg.hop).fit(recordings, targets).to_dict()
    except ValueError as exc:
        say(f"no PHAT baseline line in the model: {exc}")
        return None


def train_model(dataset_dir: str, out_path: str, n_sources: int = 1,
                n_components: Optional[int] = None, features: str = "ilpd",
                pairs: int = 20000, level_std_db: float = 0.5, azimuth_only: bool = False,
                sample_rate: int = 16000, max_iter: int = 100, tol: float = 1e-6,
                seed: int = 0, auto_k: bool = False, verbose: bool = False,
                log: Optional[Callable[[str], None]] = None) -> TrainResult:
    """Fit and save a model; returns a :class:`TrainResult`.

    ``n_components`` None: 32 (one source) / 100 (two sources), or with ``auto_k`` the
    :func:`auto_components` cap for small datasets (e.g. a few dozen captured samples).
    """
    from .dataset import (DatasetError, frame_variance, load_recordings,
                          mixture_frame_variance, read_dataset, single_source_set,
                          two_source_set)
    from .features import FeatureConfig
    from .gllim import GLLiM
    from .model import SBMModel

    say = log or (lambda msg: None)
    if n_sources not in (1, 2):
        raise TrainingError(f"n_sources must be 1 or 2, got {n_sources}")
    t0 = time.perf_counter()
    try:
        ds = read_dataset(dataset_dir)
        cfg = FeatureConfig(sample_rate=sample_rate, feature_type=features)
        say(f"{len(ds)} recordings, targets {ds.target_names} ({ds.units})")
        recs = load_recordings(ds, cfg.sample_rate)
    except (DatasetError, ValueError) as exc:
        raise TrainingError(str(exc)) from None
    targets, names = ds.targets, ds.target_names
    if azimuth_only:
        targets, names = targets[:, :1], names[:1]
    try:
        if n_sources == 1:
            X, Y = single_source_set(recs, targets, cfg)
            frame_var = frame_variance(recs, cfg)
        else:
            say(f"synthesising {pairs} two-source mixtures")
            X, Y = two_source_set(recs, targets, cfg, n_pairs=pairs, seed=seed,
                                  level_std_db=level_std_db)
            frame_var = mixture_frame_variance(recs, cfg, seed=seed)
    except (DatasetError, ValueError) as exc:
        raise TrainingError(str(exc)) from None
    if n_components is None or n_components <= 0:
        K = (auto_components(X.shape[0], n_sources) if auto_k
             else DEFAULT_COMPONENTS[n_sources])
    else:
        K = int(n_components)
    say(f"features ready: N={X.shape[0]}, L={X.shape[1]}, D={Y.shape[1]} "
        f"({time.perf_counter() - t0:.1f} s); fitting K={K}")
    if K > X.shape[0]:
        raise TrainingError(f"K={K} exceeds the number of training vectors {X.shape[0]}")
    gllim = GLLiM(n_components=K, max_iter=max_iter, tol=tol, random_state=seed,
                  verbose=verbose).fit(X, Y)
    model = SBMModel.from_gllim(gllim, cfg, n_sources=n_sources, dims_per_source=len(names),
                                target_space=ds.units, camera=ds.camera, n_train=X.shape[0],
                                frame_var=frame_var,
                                info={"dataset": ds.root, "pairs_level_std_db":
                                      level_std_db if n_sources == 2 else None,
                                      "phat": _phat_line(recs, ds.targets[:, 0], cfg, say)})
    model.save(out_path)
    res = TrainResult(path=str(out_path), n_recordings=len(ds), n_train=int(X.shape[0]),
                      n_components=int(gllim.n_components_), n_components_asked=K,
                      n_iter=int(gllim.n_iter_), log_likelihood=float(gllim.lower_bound_),
                      fit_time_s=float(gllim.fit_time_), total_time_s=time.perf_counter() - t0,
                      target_space=ds.units, target_names=list(names))
    say(res.summary())
    return res
