"""The SBM model file: fitted GLLiM parameters plus everything needed to use them.

One ``.npz`` archive (no pickles) holding the arrays ``pi, c, Gamma, A, b, sigma2`` (plus the
optional ``frame_var``: the within-recording variance of single feature frames, used by the
automatic source count) and a JSON
``metadata`` string: format name and version, feature settings (type, sample rate, STFT size and
hop), number of sources M, target dimensions per source, target space (``degrees`` or
``pixels``), target names, camera intrinsics when the targets are pixels, training-set size,
K asked for and kept, final log-likelihood, fit time, training options, package version and
creation time. ``save`` is atomic (temporary file in the same folder, ``fsync``, ``os.replace``),
so a crash never leaves a half-written model under the final name.

Every load failure raises :class:`ModelError` with a message that names the problem: missing
file, truncated or non-archive file, another format or version, missing or mis-shaped arrays,
non-finite values, or feature settings that do not match the audio.
"""

from __future__ import annotations

import datetime as _dt
import io
import json
import os
import zipfile
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from sbm_ros import __version__
from .features import FeatureConfig
from .fileio import atomic_write
from .gllim import GLLiM, GLLiMParams

FORMAT_NAME = "sbm_ros.model"
FORMAT_VERSION = 1
_ARRAYS = ("pi", "c", "Gamma", "A", "b", "sigma2")
TARGET_NAMES = {
    ("degrees", 1): ["azimuth_deg"],
    ("degrees", 2): ["azimuth_deg", "elevation_deg"],
    ("pixels", 2): ["u_px", "v_px"],
    ("pixels", 1): ["u_px"],
}


class ModelError(Exception):
    """A model file cannot be used; the message names the problem."""


@dataclass
class SBMModel:
    """Fitted GLLiM parameters with their feature settings and target description."""

    params: GLLiMParams
    feature_config: FeatureConfig
    n_sources: int = 1
    dims_per_source: int = 2
    target_space: str = "degrees"
    camera: Optional[dict] = None
    n_train: int = 0
    info: dict = field(default_factory=dict)
    frame_var: Optional[np.ndarray] = None   # (D,) within-recording variance of feature frames

    def __post_init__(self):
        if self.n_sources not in (1, 2):
            raise ValueError(f"n_sources must be 1 or 2, got {self.n_sources}")
        if (self.target_space, self.dims_per_source) not in TARGET_NAMES:
            raise ValueError(f"unsupported target space {self.target_space!r} with "
                             f"{self.dims_per_source} dimension(s) per source")
        L = self.n_sources * self.dims_per_source
        if self.params.dim_x != L:
            raise ValueError(f"model targets have dimension {self.params.dim_x}, expected "
                             f"{L} = {self.n_sources} source(s) x {self.dims_per_source}")
        if self.params.dim_y != self.feature_config.dim:
            raise ValueError(f"model features have dimension {self.params.dim_y}, but the "
                             f"feature settings give D={self.feature_config.dim}")
        if self.frame_var is not None:
            fv = np.asarray(self.frame_var, dtype=np.float64)
            if fv.shape != (self.params.dim_y,) or not np.all(np.isfinite(fv)) or np.any(fv < 0):
                raise ValueError(f"frame_var must be {self.params.dim_y} finite non-negative "
                                 f"values, got shape {fv.shape}")
            self.frame_var = fv

    @property
    def frame_corr(self) -> float:
        """Frames per independent observation (STFT overlap and room), see ``localizer``."""
        return float(self.info.get("frame_corr", 1.0))

    @property
    def cov_scale(self) -> float:
        """Factor on the posterior covariance that matches cross-validated errors."""
        return float(self.info.get("cov_scale", 1.0))

    @property
    def cov_floor(self) -> Optional[np.ndarray]:
        """Variance added to each target dimension's reported variance (one-source models
        calibrated on a field spanning one dimension: :func:`.calibration.window_floor`), or
        None."""
        f = self.info.get("cov_floor") if isinstance(self.info, dict) else None
        return None if f is None else np.asarray(f, dtype=np.float64)

    @property
    def hierarchical(self) -> bool:
        """True when the file carries the frame-noise model of the hierarchical posterior."""
        return self.frame_var is not None and "frame_corr" in self.info

    @property
    def target_names(self) -> list:
        return list(TARGET_NAMES[(self.target_space, self.dims_per_source)])

    @property
    def n_components(self) -> int:
        return self.params.n_components

    @classmethod
    def from_gllim(cls, gllim: GLLiM, feature_config: FeatureConfig, **kwargs) -> "SBMModel":
        info = dict(kwargs.pop("info", {}) or {})
        info.setdefault("n_components_requested", int(gllim.n_components))
        info.setdefault("n_components", int(gllim.n_components_))
        info.setdefault("log_likelihood", float(getattr(gllim, "lower_bound_", float("nan"))))
        info.setdefault("n_iter", int(getattr(gllim, "n_iter_", 0)))
        info.setdefault("converged", bool(getattr(gllim, "converged_", False)))
        info.setdefault("fit_time_s", float(getattr(gllim, "fit_time_", float("nan"))))
        info.setdefault("gllim_options", {
            k: getattr(gllim, k) for k in ("max_iter", "tol", "gamma_reg", "sigma_floor",
                                           "min_component_mass", "random_state")})
        return cls(params=gllim.params_, feature_config=feature_config, info=info, **kwargs)

    def to_gllim(self) -> GLLiM:
        return GLLiM.from_params(self.params)

    # ------------------------------------------------------------------ file I/O
    def metadata(self) -> dict:
        return {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "package_version": __version__,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "features": self.feature_config.to_dict(),
            "n_sources": self.n_sources,
            "dims_per_source": self.dims_per_source,
            "target_space": self.target_space,
            "target_names": self.target_names,
            "camera": self.camera,
            "n_train": int(self.n_train),
            "K": self.n_components,
            "D": self.params.dim_y,
            "L": self.params.dim_x,
            "info": self.info,
        }

    def save(self, path: str) -> str:
        """Write the model atomically; returns the path."""
        path = os.fspath(path)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        buf = io.BytesIO()
        arrays = {name: np.asarray(getattr(self.params, name), dtype=np.float64)
                  for name in _ARRAYS}
        if self.frame_var is not None:
            arrays["frame_var"] = np.asarray(self.frame_var, dtype=np.float64)
        np.savez(buf, metadata=np.array(json.dumps(self.metadata())), **arrays)
        with atomic_write(path) as fh:
            fh.write(buf.getvalue())
        return path

    @classmethod
    def load(cls, path: str) -> "SBMModel":
        """Load and validate a model file; raises :class:`ModelError` naming the problem."""
        path = os.fspath(path)
        if not os.path.exists(path):
            raise ModelError(f"model file {path!r} does not exist")
        if os.path.isdir(path):
            raise ModelError(f"model path {path!r} is a directory, not a model file")
        try:
            with np.load(path, allow_pickle=False) as z:
                files = set(z.files)
                if "metadata" not in files:
                    raise ModelError(f"{path!r} is an npz archive but not an sbm_ros model "
                                     f"(no 'metadata' entry)")
                meta = json.loads(str(z["metadata"]))
                missing = [a for a in _ARRAYS if a not in files]
                arrays = {a: np.array(z[a], dtype=np.float64) for a in _ARRAYS if a in files}
                frame_var = (np.array(z["frame_var"], dtype=np.float64)
                             if "frame_var" in files else None)
        except ModelError:
            raise
        except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError,
                json.JSONDecodeError) as exc:
            size = os.path.getsize(path)
            raise ModelError(f"model file {path!r} ({size} bytes) is truncated or corrupt, or "
                             f"not an npz archive: {type(exc).__name__}: {exc}") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
            raise ModelError(f"{path!r} is not an sbm_ros model (format "
                             f"{meta.get('format') if isinstance(meta, dict) else None!r})")
        version = meta.get("format_version")
        if version != FORMAT_VERSION:
            raise ModelError(f"model file {path!r} has format version {version!r}; this "
                             f"sbm_ros {__version__} reads version {FORMAT_VERSION}: retrain "
                             f"with sbm-train or use a matching sbm_ros release")
        if missing:
            raise ModelError(f"model file {path!r} lacks the array(s) {', '.join(missing)}")
        try:
            fc = FeatureConfig.from_dict(meta["features"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"model file {path!r} has invalid feature settings: {exc}") from None
        params = GLLiMParams(**arrays)
        try:
            params.validate()
        except ValueError as exc:
            raise ModelError(f"model file {path!r} is inconsistent: {exc}") from None
        try:
            return cls(params=params, feature_config=fc,
                       n_sources=int(meta.get("n_sources", 1)),
                       dims_per_source=int(meta.get("dims_per_source", 2)),
                       target_space=str(meta.get("target_space", "degrees")),
                       camera=meta.get("camera"), n_train=int(meta.get("n_train", 0)),
                       frame_var=frame_var,
                       info=dict(meta.get("info", {}), created=meta.get("created"),
                                 package_version=meta.get("package_version")))
        except ValueError as exc:
            raise ModelError(f"model file {path!r} is inconsistent: {exc}") from None

    def check_audio(self, sample_rate: int, channels: int = 2) -> None:
        """Raise ModelError if audio of this rate / channel count cannot feed this model."""
        if channels != 2:
            raise ModelError(f"the model needs 2-channel (binaural) audio, got {channels} "
                             f"channel(s)")
        if int(sample_rate) != self.feature_config.sample_rate:
            raise ModelError(f"audio sample rate {sample_rate} Hz does not match the model's "
                             f"{self.feature_config.sample_rate} Hz (resample the audio or "
                             f"retrain the model at this rate)")
