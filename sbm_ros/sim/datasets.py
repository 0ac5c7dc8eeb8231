"""Dataset folders rendered with the virtual head (format of docs/architecture.md).

```
DATASET_DIR/
  targets.csv   # file,azimuth_deg,elevation_deg   or   file,u_px,v_px
  camera.json   # when a camera is given
  *.wav         # stereo PCM16, channel 0 = LEFT ear
```

Grids: ``grid_positions(n_az, n_el, camera)`` places ``n_el`` rows x ``n_az`` columns at the
centres of equal cells tiling the image (uniform in PIXELS), shrunk by ``margin`` (fraction of
the width/height on each side, default 2 %). Rows run top to bottom, columns left to right.
With cell centres, the paper-like 9 x 12 test grid falls exactly midway between points of the
18 x 24 training grid (every test point lies on a training cell corner), so test positions are
never training positions.
"""

from __future__ import annotations

import csv
import json
import os
import pathlib
import shutil
import tempfile
import warnings

import numpy as np
import soundfile as sf

from .camera import VirtualCamera
from .sources import VOICES, count_utterances, speech, white_noise

__all__ = ["grid_pixels", "grid_positions", "write_dataset", "make_training_set",
           "make_speech_test_set", "read_targets"]


def grid_pixels(n_az: int, n_el: int, camera: VirtualCamera, margin: float = 0.02) -> np.ndarray:
    """``(n_el * n_az, 2)`` pixel positions (u, v) of the grid, row-major from the top-left."""
    if n_az < 1 or n_el < 1:
        raise ValueError("grid needs at least one row and one column")
    if not 0.0 <= margin < 0.5:
        raise ValueError("margin must be in [0, 0.5)")
    u0, u1 = margin * camera.width, (1.0 - margin) * camera.width
    v0, v1 = margin * camera.height, (1.0 - margin) * camera.height
    us = u0 + (np.arange(n_az) + 0.5) * (u1 - u0) / n_az
    vs = v0 + (np.arange(n_el) + 0.5) * (v1 - v0) / n_el
    vv, uu = np.meshgrid(vs, us, indexing="ij")
    return np.stack([uu.ravel(), vv.ravel()], axis=1)


def grid_positions(n_az: int, n_el: int, camera: VirtualCamera,
                   margin: float = 0.02) -> np.ndarray:
    """``(n_el * n_az, 2)`` directions (azimuth, elevation) in degrees of the pixel grid."""
    px = grid_pixels(n_az, n_el, camera, margin)
    az, el = camera.pixel_to_direction(px[:, 0], px[:, 1])
    return np.stack([az, el], axis=1)


def _to_pcm16(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    if x.ndim != 2 or x.shape[1] != 2:
        raise ValueError(f"recording {name}: expected shape (n, 2), got {x.shape}")
    lim = 32767.0 / 32768.0
    n_clip = int(np.sum(np.abs(x) > lim))
    if n_clip:
        warnings.warn(f"recording {name}: {n_clip} samples clipped to full scale",
                      RuntimeWarning, stacklevel=3)
    return np.clip(x, -1.0, lim)


def write_dataset(out_dir, recordings, targets, units: str = "degrees",
                  camera: VirtualCamera | None = None, sample_rate: int = 16000,
                  names=None, overwrite: bool = True,
                  metadata: dict | None = None) -> pathlib.Path:
    """Write a dataset folder atomically (built in a sibling temp dir, then renamed).

    ``recordings``: sequence of ``(n, 2)`` float arrays (full scale 1.0); ``targets``:
    ``(N, 2)`` (or ``(N, 1)`` azimuth only, degrees) in ``units`` = ``"degrees"`` or
    ``"pixels"``. ``camera`` (a :class:`VirtualCamera`) is written to ``camera.json``.
    ``metadata`` (JSON-serialisable) goes to ``virtual_head.json``. Returns the folder path.
    """
    out = pathlib.Path(out_dir).expanduser().resolve()
    targets = np.asarray(targets, dtype=float)
    if targets.ndim == 1:
        targets = targets[:, None]
    if len(recordings) != targets.shape[0]:
        raise ValueError("one target row per recording is required")
    if units == "degrees":
        if targets.shape[1] == 1:
            header = ["file", "azimuth_deg"]
        elif targets.shape[1] == 2:
            header = ["file", "azimuth_deg", "elevation_deg"]
        else:
            raise ValueError("degree targets must have 1 or 2 columns")
    elif units == "pixels":
        if targets.shape[1] != 2:
            raise ValueError("pixel targets must have 2 columns (u, v)")
        header = ["file", "u_px", "v_px"]
    else:
        raise ValueError("units must be 'degrees' or 'pixels'")
    if names is None:
        names = [f"rec_{i:05d}.wav" for i in range(len(recordings))]
    if len(set(names)) != len(names):
        raise ValueError("file names must be unique")
    if out.exists() and not overwrite:
        raise FileExistsError(str(out))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=str(out.parent)))
    try:
        for name, rec in zip(names, recordings):
            sf.write(str(tmp / name), _to_pcm16(rec, name), int(sample_rate), subtype="PCM_16")
        with open(tmp / "targets.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(header)
            for name, row in zip(names, targets):
                w.writerow([name] + [f"{v:.6f}" for v in row])
        if camera is not None:
            with open(tmp / "camera.json", "w") as fh:
                json.dump(camera.to_json_dict(), fh, indent=2)
        if metadata is not None:
            with open(tmp / "virtual_head.json", "w") as fh:
                json.dump(metadata, fh, indent=2, default=str)
        os.chmod(tmp, 0o755)
        if out.exists():
            old = pathlib.Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=str(out.parent)))
            os.rmdir(old)
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def read_targets(dataset_dir) -> tuple:
    """``(header, file names, targets (N, k))`` of a dataset folder's ``targets.csv``."""
    with open(pathlib.Path(dataset_dir) / "targets.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    header = rows[0]
    files = [r[0] for r in rows[1:]]
    vals = np.array([[float(v) for v in r[1:]] for r in rows[1:]])
    return header, files, vals


def _targets_for(positions: np.ndarray, units: str, camera: VirtualCamera | None):
    if units == "degrees":
        return positions
    if camera is None:
        raise ValueError("pixel targets need a camera")
    u, v = camera.direction_to_pixel(positions[:, 0], positions[:, 1])
    return np.stack([u, v], axis=1)


def _metadata(head, camera, kind, **kw) -> dict:
    return {"kind": kind, "head": repr(head), "room": head.room.describe(),
            "snr_db": head.snr_db, "sample_rate": head.sample_rate,
            "hrirs": repr(head.hrirs), "camera": None if camera is None else camera.name, **kw}


def make_training_set(out_dir, head, camera: VirtualCamera, n_az: int = 24, n_el: int = 18,
                      duration_s: float = 1.0, units: str = "degrees", seed: int = 0,
                      margin: float = 0.02) -> pathlib.Path:
    """Render ``duration_s`` of white noise at every grid position (paper: 18 rows x 24 cols).

    Each position gets its own noise source (seed ``[seed, i]``) and its own self-noise
    (seed ``[seed, i, 1]``). Returns the dataset folder.
    """
    pos = grid_positions(n_az, n_el, camera, margin)
    recs = []
    for i, (az, el) in enumerate(pos):
        s = white_noise(duration_s, head.sample_rate, seed=[int(seed), i])
        recs.append(head.render(s, az, el, noise_seed=[int(seed), i, 1]))
    meta = _metadata(head, camera, "training/white-noise", n_az=n_az, n_el=n_el,
                     duration_s=duration_s, seed=seed, margin=margin)
    return write_dataset(out_dir, recs, _targets_for(pos, units, camera), units=units,
                         camera=camera, sample_rate=head.sample_rate, metadata=meta)


def make_speech_test_set(out_dir, head, camera: VirtualCamera, n_az: int = 12, n_el: int = 9,
                         langs=("en", "fr", "el", "am"), units: str = "degrees", seed: int = 0,
                         margin: float = 0.02, min_words: int = 2, max_words: int = 6,
                         min_duration_s: float = 1.0, max_duration_s: float = 5.0
                         ) -> pathlib.Path:
    """Speech test set: one espeak-ng counting utterance (1-5 s) per grid position.

    Languages cycle over ``langs``; voice and counted range are drawn from ``seed`` (voices of
    :data:`VOICES`) until the utterance lasts ``min_duration_s``..``max_duration_s``. The default
    9 x 12 grid lies midway between the training grid points.
    """
    rng = np.random.default_rng([int(seed), 7919])
    pos = grid_positions(n_az, n_el, camera, margin)
    recs, utt = [], []
    for i, (az, el) in enumerate(pos):
        lang = langs[i % len(langs)]
        voices = VOICES.get(lang, [lang])
        for _attempt in range(20):          # redraw until the utterance lasts 1-5 s
            voice = voices[int(rng.integers(len(voices)))]
            k = int(rng.integers(min_words, max_words + 1))
            first = int(rng.integers(1, 21 - k + 1))
            words = count_utterances(lang, 20, as_digits=(lang == "am"))[first - 1:first - 1 + k]
            text = ", ".join(words)
            s = speech(text, voice=voice, rate=head.sample_rate)
            if min_duration_s <= s.size / head.sample_rate <= max_duration_s:
                break
        recs.append(head.render(s, az, el, noise_seed=[int(seed), i, 2]))
        utt.append({"text": text, "voice": voice, "duration_s": s.size / head.sample_rate})
    meta = _metadata(head, camera, "test/speech", n_az=n_az, n_el=n_el, seed=seed,
                     margin=margin, utterances=utt)
    return write_dataset(out_dir, recs, _targets_for(pos, units, camera), units=units,
                         camera=camera, sample_rate=head.sample_rate, metadata=meta)
