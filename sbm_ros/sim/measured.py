"""Measured binaural responses (SOFA files): a real head in a real room, as a renderer.

:class:`MeasuredHead` holds the impulse responses of one SOFA file (``Data.IR``, read with
``h5py``), resampled to the package rate, and renders a mono source at one of the measured
directions: no interpolation, so only the measured directions exist. Directions follow the
package's convention (REP 103): azimuth positive to the LEFT, in ``(-180, 180]``, elevation
positive up, degrees. Rendered signals are ``(n, 2)`` with column 0 = LEFT ear.

Sets read here
--------------
* **Surrey** (IoSR-Surrey/RealRoomBRIRs on GitHub, MIT; :meth:`MeasuredHead.surrey`): Cortex
  Mk.2 head and torso simulator, loudspeaker 1.5 m away, azimuth -90..+90 deg in 5 deg steps at
  elevation 0, 16 kHz. ``UniS_Room_A_BRIR_16k.sofa`` (Room A, T60 about 0.32 s) and
  ``UniS_Anechoic_BRIR_16k.sofa``, in ``<data_dir>/surrey_brirs/``.

  **Ear choice: receiver 1 is the LEFT ear, receiver 0 the RIGHT ear.** The file's metadata
  disagree: ``ReceiverPosition`` puts receiver 0 at y = +0.09 m (left), but for the directions
  labelled with positive (SOFA counter-clockwise, i.e. left) azimuths receiver 1 is the louder
  and earlier one (checked on both rooms: label +60 deg, receiver 1 is 9.5 dB (Room A) / 13 dB
  (anechoic) louder and 8-9 samples earlier; label +90 deg, 9-10 dB and 13-14 samples; the
  labels -60 and -90 deg mirror this). We keep the azimuth labels (SOFA's counter-clockwise
  azimuth is REP 103's) and swap the receivers. The other reading (receivers as labelled,
  azimuths negated) is the mirror image; the simulator is nearly symmetric, so error
  statistics do not depend on the choice, only which side is called left.
* **SONICOM** human heads (two subjects shipped in the PyPI wheel ``spatialaudiometrics``,
  CC BY-SA 3.0; :meth:`MeasuredHead.sonicom`): anechoic HRIRs, 48 kHz, 793 directions on a
  5 deg azimuth x 10 deg elevation grid (plus -45 deg and rows above 30 deg). Standard SOFA:
  receiver 0 = LEFT (checked: at +60 deg receiver 0 is 15.5 dB louder and 22 samples earlier,
  mirrored at -60 deg), azimuth counter-clockwise. The package is located without importing
  it (it pulls in pandas and seaborn).

Resampling: ``scipy.signal.resample_poly`` along the time axis, scaled by ``rate / file_rate``
so the filters keep their frequency response (as :mod:`.hrtf` does for KEMAR).
"""

from __future__ import annotations

import glob
import importlib.util
import os
from math import gcd
from typing import List, Optional, Sequence

import numpy as np
from scipy.signal import fftconvolve, resample_poly

from .render import add_self_noise

__all__ = ["MeasuredHead", "SURREY_FILES", "sonicom_files", "surrey_file"]

SURREY_FILES = {"A": "UniS_Room_A_BRIR_16k.sofa", "anechoic": "UniS_Anechoic_BRIR_16k.sofa"}


def _wrap180(a) -> np.ndarray:
    a = (np.asarray(a, dtype=np.float64) + 180.0) % 360.0 - 180.0
    return np.where(a <= -180.0 + 1e-9, 180.0, a)


def surrey_file(data_dir: str, room: str) -> str:
    """Path of a Surrey SOFA file under ``data_dir`` (``room``: ``"A"`` or ``"anechoic"``)."""
    if room not in SURREY_FILES:
        raise ValueError(f"room must be one of {sorted(SURREY_FILES)}, got {room!r}")
    return os.path.join(data_dir, "surrey_brirs", SURREY_FILES[room])


def sonicom_files() -> List[str]:
    """The SOFA files of the ``spatialaudiometrics`` wheel (sorted), or [] when not installed."""
    try:
        spec = importlib.util.find_spec("spatialaudiometrics")
    except (ImportError, ValueError):
        return []
    if spec is None or not spec.submodule_search_locations:
        return []
    out = []
    for root in spec.submodule_search_locations:
        out += glob.glob(os.path.join(root, "**", "*.sofa"), recursive=True)
    return sorted(out)


class MeasuredHead:
    """The measured impulse responses of one SOFA file, ready to render at their directions.

    Parameters
    ----------
    irs : array (M, n, 2)
        Impulse responses, column 0 = LEFT ear, at ``rate``.
    azimuth, elevation : arrays (M,)
        Directions in degrees (azimuth positive left, elevation positive up).
    rate : int
    name : str
        A short label for reports.
    """

    def __init__(self, irs: np.ndarray, azimuth, elevation, rate: int, name: str = "measured"):
        irs = np.asarray(irs, dtype=np.float64)
        if irs.ndim != 3 or irs.shape[2] != 2:
            raise ValueError(f"irs must be (directions, samples, 2), got {irs.shape}")
        self.irs = irs
        self.azimuth = _wrap180(azimuth)
        self.elevation = np.asarray(elevation, dtype=np.float64)
        if self.azimuth.shape != (irs.shape[0],) or self.elevation.shape != (irs.shape[0],):
            raise ValueError("azimuth and elevation need one value per impulse response")
        self.rate = int(rate)
        self.name = str(name)

    def __repr__(self) -> str:
        return (f"MeasuredHead({self.name!r}, {len(self)} directions, "
                f"{self.irs.shape[1]} taps at {self.rate} Hz)")

    def __len__(self) -> int:
        return self.irs.shape[0]

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_sofa(cls, path: str, rate: int = 16000, left_receiver: int = 0,
                  name: Optional[str] = None) -> "MeasuredHead":
        """Read ``Data.IR`` (M, R, N), ``SourcePosition`` (spherical degrees) and the rate.

        ``left_receiver``: which of the two receivers is the left ear (the other is the right).
        """
        import h5py

        if left_receiver not in (0, 1):
            raise ValueError(f"left_receiver must be 0 or 1, got {left_receiver}")
        with h5py.File(path, "r") as f:
            ir = np.asarray(f["Data.IR"][:], dtype=np.float64)
            pos = np.asarray(f["SourcePosition"][:], dtype=np.float64)
            fs = int(round(float(np.asarray(f["Data.SamplingRate"][:]).ravel()[0])))
        if ir.ndim != 3 or ir.shape[1] < 2:
            raise ValueError(f"{path}: Data.IR has shape {ir.shape}, expected (M, 2, N)")
        irs = np.stack([ir[:, left_receiver, :], ir[:, 1 - left_receiver, :]], axis=2)
        if fs != int(rate):
            g = gcd(fs, int(rate))
            irs = resample_poly(irs, int(rate) // g, fs // g, axis=1) * (int(rate) / fs)
        return cls(irs, pos[:, 0], pos[:, 1], rate,
                   name or os.path.splitext(os.path.basename(path))[0])

    @classmethod
    def surrey(cls, data_dir: str, room: str = "A", rate: int = 16000) -> "MeasuredHead":
        """The Surrey HATS in ``room`` (``"A"`` or ``"anechoic"``); receiver 1 = left ear."""
        return cls.from_sofa(surrey_file(data_dir, room), rate=rate, left_receiver=1,
                             name=f"Surrey {room}")

    @classmethod
    def sonicom(cls, subject: int = 1, rate: int = 16000) -> "MeasuredHead":
        """SONICOM subject ``subject`` (1 or 2) of the ``spatialaudiometrics`` wheel."""
        files = sonicom_files()
        if not 1 <= subject <= len(files):
            raise FileNotFoundError(
                f"SONICOM subject {subject} not found ({len(files)} SOFA files in the "
                f"spatialaudiometrics package; pip install --no-deps spatialaudiometrics)")
        return cls.from_sofa(files[subject - 1], rate=rate, left_receiver=0,
                             name=f"SONICOM {subject}")

    # ------------------------------------------------------------------ directions
    def index(self, az_deg: float, el_deg: float = 0.0, tol: float = 0.5) -> int:
        """Index of the measured direction (az, el), within ``tol`` degrees; KeyError if none."""
        d = np.hypot(_wrap180(self.azimuth - az_deg), self.elevation - el_deg)
        i = int(np.argmin(d))
        if d[i] > tol:
            raise KeyError(f"{self.name}: no measured direction within {tol} deg of "
                           f"({az_deg}, {el_deg})")
        return i

    def grid(self, azimuths: Sequence[float], elevations: Sequence[float] = (0.0,)) -> np.ndarray:
        """Indices of every measured (az, el) of the product grid, elevation-major."""
        return np.array([self.index(a, e) for e in elevations for a in azimuths], dtype=int)

    def direction(self, i: int) -> np.ndarray:
        """(azimuth, elevation) of direction ``i`` in degrees."""
        return np.array([self.azimuth[i], self.elevation[i]])

    # ------------------------------------------------------------------ rendering
    def render_clean(self, signal, i: int) -> np.ndarray:
        """Mono ``signal`` convolved with the response of direction ``i``: (n + taps - 1, 2)."""
        s = np.asarray(signal, dtype=np.float64).ravel()
        return np.stack([fftconvolve(s, self.irs[i, :, c]) for c in range(2)], axis=1)

    def render(self, signal, i: int, snr_db: Optional[float] = None,
               noise_seed=None) -> np.ndarray:
        """:meth:`render_clean` plus independent white noise per ear at ``snr_db`` re the
        clean output's mean power (``None``: no noise)."""
        y = self.render_clean(signal, i)
        return add_self_noise(y, snr_db, np.random.default_rng(noise_seed))

    def render_mixture(self, sources, snr_db: Optional[float] = None,
                       noise_seed=None) -> np.ndarray:
        """Sum of ``(signal, i)`` sources (padded to the longest), then the noise of
        :meth:`render` re the mixture's power."""
        parts = [self.render_clean(s, i) for s, i in sources]
        n = max(p.shape[0] for p in parts)
        y = np.zeros((n, 2))
        for p in parts:
            y[:p.shape[0]] += p
        return add_self_noise(y, snr_db, np.random.default_rng(noise_seed))
