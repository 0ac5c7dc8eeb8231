"""Training datasets: the folder format read by ``sbm-train`` and the SBM training sets.

Folder format (also written by the virtual head and the training-capture service)::

    DATASET_DIR/
      targets.csv    header ``file,azimuth_deg[,elevation_deg]`` (degrees) or ``file,u_px,v_px``
                     (pixels); one row per single-source recording; ``file`` relative to the folder
      camera.json    optional: camera intrinsics (width, height, K or fx/fy/cx/cy, frame_id)
      *.wav          stereo WAV, channel 0 = left ear, 1 = right ear, any sample rate (resampled),
                     PCM16/24/32 or float; about 1 s of white noise from one position each

Training sets (method.md section 2):

* one source: ``y_n`` = temporal mean of the feature frames of recording n (eq. 8), ``x_n`` its
  target;
* two sources: random pairs (i != j) of recordings are summed with a random level difference
  drawn from N(0, level_std_db) dB, and ``y`` is the temporal mean feature vector of the mixture.
  The pair's targets are put in **canonical order** (ascending first coordinate, then second) so
  the regression target is a function of the mixture, not of an arbitrary labelling. Because the
  STFT is linear, a mixture's spectrogram is the sum of the two recordings' spectrograms (same
  frames), so the spectrograms are computed once per recording and mixed in the STFT domain.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from typing import List, Optional, Sequence

import numpy as np

from .audio_io import read_wav, write_wav
from .features import FeatureConfig, features_from_spectra, stft
from .fileio import atomic_write

DEGREE_COLUMNS = (["azimuth_deg"], ["azimuth_deg", "elevation_deg"])
PIXEL_COLUMNS = (["u_px"], ["u_px", "v_px"])
TARGETS_FILE = "targets.csv"
CAMERA_FILE = "camera.json"


class DatasetError(Exception):
    """The dataset folder is malformed; the message names the file and the problem."""


@dataclass
class Dataset:
    root: str
    files: List[str]           # absolute paths
    targets: np.ndarray        # (N, L)
    target_names: List[str]
    units: str                 # "degrees" or "pixels"
    camera: Optional[dict] = None

    def __len__(self) -> int:
        return len(self.files)


def units_of(columns: Sequence[str]) -> str:
    cols = list(columns)
    if cols in [list(c) for c in DEGREE_COLUMNS]:
        return "degrees"
    if cols in [list(c) for c in PIXEL_COLUMNS]:
        return "pixels"
    raise DatasetError(f"target columns {cols} are not one of "
                       f"{[list(c) for c in DEGREE_COLUMNS + PIXEL_COLUMNS]}")


def read_dataset(root: str) -> Dataset:
    """Read and validate a dataset folder."""
    root = os.path.abspath(os.fspath(root))
    csv_path = os.path.join(root, TARGETS_FILE)
    if not os.path.isdir(root):
        raise DatasetError(f"dataset folder {root!r} does not exist")
    if not os.path.exists(csv_path):
        raise DatasetError(f"{csv_path!r} is missing (expected header "
                           f"'file,azimuth_deg,elevation_deg' or 'file,u_px,v_px')")
    with open(csv_path, newline="") as fh:
        rows = [r for r in csv.reader(fh) if r and not r[0].startswith("#")]
    if not rows:
        raise DatasetError(f"{csv_path!r} is empty")
    header = [h.strip() for h in rows[0]]
    if header[0] != "file":
        raise DatasetError(f"{csv_path!r}: first column must be 'file', got {header[0]!r}")
    names = header[1:]
    units = units_of(names)
    files, targets = [], []
    for lineno, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise DatasetError(f"{csv_path}:{lineno}: expected {len(header)} columns, got "
                               f"{len(row)}")
        path = os.path.join(root, row[0].strip())
        if not os.path.exists(path):
            raise DatasetError(f"{csv_path}:{lineno}: audio file {row[0]!r} does not exist")
        try:
            vals = [float(v) for v in row[1:]]
        except ValueError:
            raise DatasetError(f"{csv_path}:{lineno}: non-numeric target {row[1:]}") from None
        if not all(np.isfinite(vals)):
            raise DatasetError(f"{csv_path}:{lineno}: non-finite target {row[1:]}")
        files.append(path)
        targets.append(vals)
    if not files:
        raise DatasetError(f"{csv_path!r} lists no recordings")
    camera = None
    cam_path = os.path.join(root, CAMERA_FILE)
    if os.path.exists(cam_path):
        try:
            with open(cam_path) as fh:
                camera = json.load(fh)
        except (OSError, json.JSONDecodeError) as exc:
            raise DatasetError(f"{cam_path!r} is not valid JSON: {exc}") from None
    return Dataset(root=root, files=files, targets=np.array(targets, dtype=np.float64),
                   target_names=names, units=units, camera=camera)


def load_recordings(ds: Dataset, sample_rate: int) -> List[np.ndarray]:
    """Read every recording as float64 (n, 2) at ``sample_rate`` (resampling if needed)."""
    out = []
    for path in ds.files:
        try:
            x, _ = read_wav(path, target_rate=sample_rate)
        except (ValueError, OSError) as exc:
            raise DatasetError(f"cannot read {path!r}: {exc}") from None
        out.append(x)
    return out


def single_source_set(recordings: Sequence[np.ndarray], targets: np.ndarray,
                      cfg: FeatureConfig):
    """(X (N, L), Y (N, D)): each recording's temporal-mean feature vector (eq. 8)."""
    Y = np.stack([features_from_spectra(stft(x, cfg), cfg)[0].mean(axis=0)
                  for x in recordings])
    return np.asarray(targets, dtype=np.float64).reshape(len(recordings), -1), Y


def canonical_pair(x1: np.ndarray, x2: np.ndarray) -> np.ndarray:
    """Concatenate two per-source targets in canonical order (by first, then second coord)."""
    a, b = np.asarray(x1, float), np.asarray(x2, float)
    return np.concatenate([a, b]) if tuple(a) <= tuple(b) else np.concatenate([b, a])


def canonical_order(X: np.ndarray, dims_per_source: int) -> np.ndarray:
    """Reorder rows of (N, 2*l) two-source targets canonically."""
    X = np.asarray(X, float)
    return np.stack([canonical_pair(r[:dims_per_source], r[dims_per_source:]) for r in X])


def two_source_set(recordings: Sequence[np.ndarray], targets: np.ndarray, cfg: FeatureConfig,
                   n_pairs: int = 20000, seed: int = 0, level_std_db: float = 0.5,
                   batch: int = 32, max_frames: Optional[int] = None):
    """Synthesise a two-source training set from single-source recordings.

    Returns (X (n_pairs, 2 l) canonically ordered, Y (n_pairs, D)). ``max_frames`` optionally
    limits the frames per recording used (memory / speed), taking them from the start.
    """
    targets = np.asarray(targets, dtype=np.float64).reshape(len(recordings), -1)
    n = len(recordings)
    if n < 2:
        raise DatasetError("a two-source training set needs at least 2 recordings")
    specs = [stft(x, cfg) for x in recordings]
    T = min(s.shape[0] for s in specs)
    if max_frames:
        T = min(T, int(max_frames))
    if T < 1:
        raise DatasetError(f"recordings are shorter than one STFT frame ({cfg.n_fft} samples)")
    S = np.stack([s[:T] for s in specs]).astype(np.complex64)           # (n, T, F, 2)
    rng = np.random.default_rng(seed)
    i = rng.integers(0, n, n_pairs)
    j = (i + rng.integers(1, n, n_pairs)) % n                           # j != i
    gain_db = rng.normal(0.0, level_std_db, n_pairs)
    g1 = 10 ** (gain_db / 40.0)                                          # split the difference
    g2 = 10 ** (-gain_db / 40.0)
    Y = np.empty((n_pairs, cfg.dim))
    g1 = g1.astype(np.float32)
    g2 = g2.astype(np.float32)
    for start in range(0, n_pairs, batch):
        sl = slice(start, min(start + batch, n_pairs))
        mix = (g1[sl, None, None, None] * S[i[sl]] + g2[sl, None, None, None] * S[j[sl]])
        Y[sl] = _mean_features(mix, cfg)
    X = np.stack([canonical_pair(targets[a], targets[b]) for a, b in zip(i, j)])
    return X, Y


def _mean_features(mix: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """Temporal-mean features of a batch of spectrograms (B, T, F, 2), complex64 arithmetic.

    Same definitions and floors as :func:`sbm_ros.core.features.features_from_spectra` (which the
    tests compare against); single precision is ample for a mean over >= 100 frames.
    """
    from .features import ILD_CLIP_DB, ILD_REL_FLOOR
    tiny = np.finfo(np.float32).tiny
    L, R = mix[..., 0], mix[..., 1]
    pL = L.real * L.real + L.imag * L.imag
    pR = R.real * R.real + R.imag * R.imag
    out = []
    if cfg.feature_type in ("ilpd", "ild"):
        floor = np.float32(ILD_REL_FLOOR) * (pL + pR) + tiny
        ild = np.float32(10.0) * np.log10((pR + floor) / (pL + floor))
        np.clip(ild, -ILD_CLIP_DB, ILD_CLIP_DB, out=ild)
        out.append(ild.mean(axis=1, dtype=np.float64))
    if cfg.feature_type in ("ilpd", "ipd"):
        z = R * np.conj(L)
        mag = np.sqrt(pL * pR)
        ok = mag >= tiny
        safe = np.where(ok, mag, np.float32(1.0))
        out.append(np.where(ok, z.real / safe, np.float32(1.0)).mean(axis=1, dtype=np.float64))
        out.append(np.where(ok, z.imag / safe, np.float32(0.0)).mean(axis=1, dtype=np.float64))
    return np.concatenate(out, axis=1)


def append_sample(root: str, x: np.ndarray, sample_rate: int, target: Sequence[float],
                  target_names: Sequence[str], camera: Optional[dict] = None,
                  prefix: str = "capture") -> str:
    """Append one recording and its target to a dataset folder, atomically.

    The WAV is written under a temporary name and renamed, then ``targets.csv`` is rewritten
    to a temporary file (old rows + the new one) and renamed over the old one, so a crash at
    any point leaves the folder consistent: at worst an orphan WAV that no row lists.
    Returns the new file's name.
    """
    root = os.fspath(root)
    os.makedirs(root, exist_ok=True)
    csv_path = os.path.join(root, TARGETS_FILE)
    names = list(target_names)
    units_of(names)
    rows = []
    if os.path.exists(csv_path):
        with open(csv_path, newline="") as fh:
            rows = [r for r in csv.reader(fh) if r]
        if rows and [h.strip() for h in rows[0][1:]] != names:
            raise DatasetError(f"{csv_path!r} has columns {rows[0][1:]}, cannot append "
                               f"{names}")
    if not rows:
        rows = [["file"] + names]
    existing = {r[0] for r in rows[1:]}
    k = len(rows) - 1
    while True:
        name = f"{prefix}_{k:05d}.wav"
        if name not in existing and not os.path.exists(os.path.join(root, name)):
            break
        k += 1
    write_wav(os.path.join(root, name), x, sample_rate)
    rows.append([name] + [f"{float(v):.6f}" for v in target])
    with atomic_write(csv_path, "w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    if camera is not None:
        with atomic_write(os.path.join(root, CAMERA_FILE), "w") as fh:
            json.dump(camera, fh, indent=1)
    return name


def frame_variance(recordings: Sequence[np.ndarray], cfg: FeatureConfig,
                   max_recordings: int = 200) -> np.ndarray:
    """Mean within-recording variance (D,) of single feature frames.

    The GLLiM noise ``sigma2`` is fitted on temporal-mean vectors, so it does not describe
    how much one STFT frame scatters around its mean; this does. The automatic 1-vs-2 source
    decision evaluates the evidence with ``sigma2 + frame_var`` (see ``localizer``).
    """
    step = max(1, len(recordings) // max_recordings)
    return np.mean([features_from_spectra(stft(x, cfg), cfg)[0].var(axis=0)
                    for x in recordings[::step]], axis=0)


def mixture_frame_variance(recordings: Sequence[np.ndarray], cfg: FeatureConfig,
                           n_mixtures: int = 200, seed: int = 0) -> np.ndarray:
    """:func:`frame_variance` of random two-source mixtures of the recordings."""
    rng = np.random.default_rng([seed, 17])
    n = len(recordings)
    out = []
    for _ in range(n_mixtures):
        i, j = rng.choice(n, 2, replace=False)
        m = min(len(recordings[i]), len(recordings[j]))
        out.append(features_from_spectra(stft(recordings[i][:m] + recordings[j][:m], cfg),
                                         cfg)[0].var(axis=0))
    return np.mean(out, axis=0)
