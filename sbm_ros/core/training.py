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

import numpy as np

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
    cv_error: Optional[dict] = None   # name -> mean abs cross-validated error (calibrated)
    mix_error: Optional[dict] = None  # two sources: name -> mean abs error on fresh mixtures

    def summary(self) -> str:
        return (f"wrote {self.path}: K={self.n_components} (asked {self.n_components_asked}), "
                f"{self.n_iter} EM iterations, log-likelihood {self.log_likelihood:.3f}, fit "
                f"{self.fit_time_s:.1f} s, total {self.total_time_s:.1f} s"
                + ("" if not self.cv_error else "; cross-validated error " + ", ".join(
                    f"{n} {v:.2f}" for n, v in self.cv_error.items()))
                + ("" if not self.mix_error else "; error on fresh mixtures " + ", ".join(
                    f"{n} {v:.2f}" for n, v in self.mix_error.items())))


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


def _field(targets: np.ndarray) -> dict:
    """The recorded field per target dimension: bounding box and margin (one grid step, at
    least a tenth of the span: positions from a pixel grid have irregular degree steps)."""
    from .calibration import grid_steps
    T = np.asarray(targets, float)
    margin = np.maximum(grid_steps(T), 0.1 * np.ptp(T, axis=0))
    return {"lo": [float(v) for v in T.min(axis=0)], "hi": [float(v) for v in T.max(axis=0)],
            "margin": [float(v) for v in margin]}


def _distinct_pairs(targets: np.ndarray) -> int:
    n = len(np.unique(np.round(np.asarray(targets, float), 6), axis=0))
    return n * (n - 1) // 2


def train_model(dataset_dir: str, out_path: str, n_sources: int = 1,
                n_components: Optional[int] = None, features: str = "ilpd",
                pairs: int = 20000, level_std_db: float = 0.5, azimuth_only: bool = False,
                sample_rate: int = 16000, max_iter: int = 100, tol: float = 1e-6,
                seed: int = 0, auto_k: bool = False, verbose: bool = False,
                log: Optional[Callable[[str], None]] = None, calibrate: bool = True,
                subdiv: Optional[int] = None) -> TrainResult:
    """Fit and save a model; returns a :class:`TrainResult`.

    One source (``calibrate``, the default): :func:`.calibration.fit_one_source` checks the
    positions, densifies them (``subdiv`` subdivisions per edge, automatic by default), and
    without ``n_components`` chooses K by cross-validation over positions; the model stores
    the cross-validated error (``info["cv_error"]``), the hierarchical noise model
    (``frame_corr``) and the covariance factor ``cov_scale``. ``calibrate=False`` is the
    plain paper protocol (K = 32 without ``n_components``; Theorem 1 with GLLiM's sigma2).
    ``auto_k`` (``--auto-components``) is kept for compatibility: for one source the default
    already chooses K from the data; for two sources (and uncalibrated one-source training)
    it caps K with :func:`auto_components`.

    Two sources: K = 100 by default, capped at half the number of distinct position pairs
    (with a message); an explicit K above the number of distinct pairs is refused. EM takes
    ``GLLiM(tol_gain=TWO_SOURCE_TOL_GAIN)`` (0.01; see :mod:`.gllim`). With
    ``calibrate`` the model stores ``cov_scale`` measured on fresh mixtures of the recordings
    (:func:`.calibration.two_source_check`) and, as ``info["mix_error"]``, the mean absolute
    error on those mixtures per target dimension (not cross-validated: recorded positions).
    Every model stores the recorded field (``info["field"]``: bounding box and margin per
    target dimension) so the localiser can mark estimates outside it.
    """
    from .calibration import CalibrationError, check_positions, fit_one_source, \
        frame_correlation, spanned_dims, two_source_check, window_floor
    from .dataset import (DatasetError, frame_variance, load_recordings,
                          mixture_frame_variance, read_dataset, single_source_set,
                          two_source_set)
    from .features import FeatureConfig
    from .gllim import TWO_SOURCE_TOL_GAIN, GLLiM
    from .model import SBMModel

    say = log or (lambda msg: None)
    if n_sources not in (1, 2):
        raise TrainingError(f"n_sources must be 1 or 2, got {n_sources}")
    if n_components is not None and n_components <= 0:
        n_components = None
    t0 = time.perf_counter()
    try:
        ds = read_dataset(dataset_dir)
        cfg = FeatureConfig(sample_rate=sample_rate, feature_type=features)
        say(f"{len(ds)} recordings, targets {ds.target_names} ({ds.units})")
    except (DatasetError, ValueError) as exc:
        raise TrainingError(str(exc)) from None
    targets, names = ds.targets, ds.target_names
    if azimuth_only:
        targets, names = targets[:, :1], names[:1]
    try:
        # refuse unusable position sets before the (slow) feature extraction
        warnings = check_positions(targets, names)
        if n_sources == 2 or not calibrate:          # fit_one_source says them otherwise
            for w in warnings:
                say("warning: " + w)
    except CalibrationError as exc:
        raise TrainingError(str(exc)) from None
    try:
        recs = load_recordings(ds, cfg.sample_rate)
    except (DatasetError, ValueError) as exc:
        raise TrainingError(str(exc)) from None
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
    extra = {}
    say(f"features ready: N={X.shape[0]}, L={X.shape[1]}, D={Y.shape[1]} "
        f"({time.perf_counter() - t0:.1f} s)")
    if n_sources == 1 and calibrate:
        fc = frame_correlation(recs, cfg, frame_var)
        say(f"{'fitting K=' + str(n_components) if n_components else 'choosing K'} by "
            f"cross-validation over positions (frame correlation {fc:.1f} frames)")
        try:
            cr = fit_one_source(X, Y, cfg, names, frame_var, fc, n_components=n_components,
                                subdiv=subdiv, max_iter=max_iter, tol=tol, seed=seed,
                                log=lambda m: say("  " + m))
        except CalibrationError as exc:
            raise TrainingError(str(exc)) from None
        gllim, K, X = cr.gllim, cr.n_components, cr.X
        cv_txt = ", ".join(f"{n} {v:.2f}" for n, v in zip(names, cr.cv_error))
        m = cr.pieces_per_gap or 1
        how = {"cv": "chosen by cross-validation", "given": "given",
               "gaps": f"{'' if m == 1 else f'{m} x '}(positions - 1), {m} per gap between "
                       f"recorded positions: the rule for one-dimensional fields"}[cr.k_rule]
        say(f"K={K} ({how}); "
            f"cross-validated error at unrecorded positions (mean absolute, {ds.units}): "
            f"{cv_txt}")
        extra = {"frame_corr": float(fc), "cov_scale": float(cr.cov_scale),
                 "cov_scale_q95": float(cr.cov_scale_q95), "subdiv": int(cr.subdiv),
                 "cv_error": dict(zip(names, cr.cv_error)), "k_rule": cr.k_rule,
                 "cv_table": {str(k): v for k, v in cr.cv_table.items()},
                 "cv_heldout_positions": cr.n_heldout, "n_positions": cr.n_positions,
                 "pieces_per_gap": cr.pieces_per_gap}
    else:
        if n_components is None:
            K = (auto_components(X.shape[0], n_sources) if auto_k
                 else DEFAULT_COMPONENTS[n_sources])
            if n_sources == 2 and K > max(1, _distinct_pairs(targets) // 2):
                K = max(1, _distinct_pairs(targets) // 2)
                say(f"only {_distinct_pairs(targets)} distinct position pairs: K capped at "
                    f"{K} (record more positions for a finer two-source model)")
        else:
            K = int(n_components)
        if n_sources == 2 and K > _distinct_pairs(targets):
            raise TrainingError(
                f"K={K} exceeds the {_distinct_pairs(targets)} distinct position pairs of "
                f"{len(ds)} recordings: use -K {max(1, _distinct_pairs(targets) // 2)} or "
                f"less, or record more positions")
        if K > X.shape[0]:
            raise TrainingError(f"K={K} exceeds the number of training vectors {X.shape[0]}: "
                                f"use -K {max(1, X.shape[0] // 5)} or less, or record more")
        say(f"fitting K={K}")
        gllim = GLLiM(n_components=K, max_iter=max_iter, tol=tol, random_state=seed,
                      verbose=verbose,
                      tol_gain=TWO_SOURCE_TOL_GAIN if n_sources == 2 else None).fit(X, Y)
        if n_sources == 2 and calibrate:
            chk = two_source_check(gllim, recs, targets, cfg, seed=seed + 1,
                                   level_std_db=level_std_db)
            mix = dict(zip(names, chk.mix_error))
            say(f"covariance factor {chk.cov_scale:.1f}, mean absolute error "
                f"{', '.join(f'{n} {v:.2f}' for n, v in mix.items())} ({ds.units}; measured on "
                f"{chk.n_mix} fresh two-source mixtures of the recorded positions, not "
                f"cross-validated)")
            extra = {"cov_scale": chk.cov_scale, "cov_scale_q95": chk.cov_scale_q95,
                     "mix_error": mix}
    model = SBMModel.from_gllim(gllim, cfg, n_sources=n_sources, dims_per_source=len(names),
                                target_space=ds.units, camera=ds.camera, n_train=X.shape[0],
                                frame_var=frame_var,
                                info={"dataset": ds.root, "pairs_level_std_db":
                                      level_std_db if n_sources == 2 else None,
                                      "phat": _phat_line(recs, ds.targets[:, 0], cfg, say),
                                      "field": _field(targets), **extra})
    if n_sources == 1 and calibrate and spanned_dims(targets) == 1:
        # the fields of the components-per-gap rule (see calibration.window_floor)
        floor = window_floor(model, recs, targets)
        model.info["cov_floor"] = floor
        say("window error of the training recordings (RMS, added to the reported variance): "
            + ", ".join(f"{n} {np.sqrt(v):.3f}" for n, v in zip(names, floor)))
    model.save(out_path)
    res = TrainResult(path=str(out_path), n_recordings=len(ds), n_train=int(X.shape[0]),
                      n_components=int(gllim.n_components_), n_components_asked=K,
                      n_iter=int(gllim.n_iter_), log_likelihood=float(gllim.lower_bound_),
                      fit_time_s=float(gllim.fit_time_), total_time_s=time.perf_counter() - t0,
                      target_space=ds.units, target_names=list(names),
                      cv_error=extra.get("cv_error"), mix_error=extra.get("mix_error"))
    say(res.summary())
    return res
