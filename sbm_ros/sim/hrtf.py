"""Measured head-related impulse responses (MIT KEMAR) with smooth direction interpolation.

Source data
-----------
The MIT KEMAR set (Gardner & Martin 1994, "normal pinna", 710 directions, 512 taps at 44.1 kHz)
as shipped inside the ``slab`` package (``slab.HRTF.kemar()``). ``slab`` is imported lazily, only
when the converted cache does not exist yet.

Conventions of the slab copy (checked on the data, see ``_load_kemar_raw``):

* ``hrtf.sources.vertical_polar[:, 0]`` is the azimuth in degrees in ``[0, 360)``,
  counter-clockwise seen from above, i.e. 90 deg = LEFT (the left ear is 11.8 dB louder and
  0.86 ms earlier at azimuth 90). Cartesian ``y`` is positive for azimuth 90, so it is REP 103
  (x forward, y left, z up). Our convention (azimuth positive LEFT, in ``(-180, 180]``) is
  obtained by wrapping:
  ``az = ((az_slab + 180) % 360) - 180`` (and -180 mapped to +180).
* ``vertical_polar[:, 1]`` is the elevation in degrees, positive UP, from -40 to +90 (14 rings).
* ``hrtf.data[i].data`` is an ``(512, 2)`` FIR, channel 0 = LEFT ear, channel 1 = RIGHT ear
  (the MIT "normal pinna" set is left/right mirror symmetric: the ILD at azimuth 0 is exactly 0).

Conversion
----------
Resampled to the target rate (default 16 kHz) with ``scipy.signal.resample_poly`` and scaled by
``rate / 44100`` so that the filters keep their frequency response (FIR taps are a sampled
impulse response times the sampling period). Zero-padded to an odd length ``N_TAPS`` (255 at
16 kHz); the odd length makes the frequency-domain fractional delay exactly invertible (no
Nyquist bin). The converted set is cached in ``$SBM_CACHE_DIR/kemar_16k.npz`` (default
``~/.cache/sbm_ros``).

Interpolation (``HRIRSet.interpolate``)
---------------------------------------
1. Each ear's onset delay (in samples, sub-sample precision) is estimated once per measured
   HRIR: the HRIR is low-passed at 3 kHz (raised-cosine taper, zero phase), upsampled x16 by
   FFT zero padding, and the first crossing of 20 % of its absolute peak is located with linear
   interpolation between the upsampled samples. The low-pass makes the estimate smooth across
   directions (measured: median |second difference| along the horizontal ring 0.02 sample).
2. Each measured HRIR is onset-aligned: circularly shifted (frequency-domain phase ramp) so that
   every ear's onset sits at ``PRE_DELAY`` samples.
3. For a requested direction, barycentric weights are computed on the spherical triangulation of
   the measured directions (``scipy.spatial.ConvexHull`` of the unit vectors; the ray towards the
   requested direction crosses exactly one facet, its barycentric coordinates normalised to sum
   1). Weights are continuous in the direction, equal to (1, 0, 0) at a measured direction, and
   wrap around azimuth +-180 naturally.
4. The aligned HRIRs and the per-ear onset delays are blended with the same weights, and the
   blended per-ear delay is re-applied as a fractional delay (phase ramp). A measured direction
   is therefore reproduced to float precision, and ITD/ILD vary continuously between measured
   directions.

Elevations below -40 deg (the lowest KEMAR ring) are clamped to -40 deg.
"""

from __future__ import annotations

import os
import pathlib
import time
from math import gcd

import numpy as np
from scipy.signal import resample_poly
from scipy.spatial import ConvexHull

from sbm_ros.core.fileio import atomic_write

KEMAR_RATE = 44100
DEFAULT_RATE = 16000
PRE_DELAY = 8.0          # samples at which aligned onsets sit
ONSET_CUTOFF_HZ = 3000.0  # low-pass used for the onset estimate
ONSET_FRACTION = 0.2      # threshold, fraction of the absolute peak
ONSET_UPSAMPLE = 16
MIN_ELEVATION = -40.0
CACHE_VERSION = 1

__all__ = [
    "HRIRSet",
    "load_kemar",
    "cache_dir",
    "fractional_shift",
    "estimate_onsets",
    "direction_to_vector",
    "vector_to_direction",
]


def cache_dir() -> pathlib.Path:
    """Cache directory: ``$SBM_CACHE_DIR`` or ``~/.cache/sbm_ros`` (created on demand)."""
    env = os.environ.get("SBM_CACHE_DIR")
    path = pathlib.Path(env).expanduser() if env else pathlib.Path.home() / ".cache" / "sbm_ros"
    path.mkdir(parents=True, exist_ok=True)
    return path


def direction_to_vector(az_deg, el_deg) -> np.ndarray:
    """(az, el) degrees (az LEFT+, el UP+) -> unit vector(s) (x forward, y left, z up)."""
    az = np.radians(np.asarray(az_deg, dtype=float))
    el = np.radians(np.asarray(el_deg, dtype=float))
    return np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], axis=-1)


def vector_to_direction(v) -> tuple:
    """Vector(s) (x fwd, y left, z up) -> (az_deg, el_deg)."""
    v = np.asarray(v, dtype=float)
    az = np.degrees(np.arctan2(v[..., 1], v[..., 0]))
    el = np.degrees(np.arctan2(v[..., 2], np.hypot(v[..., 0], v[..., 1])))
    return az, el


def fractional_shift(h: np.ndarray, delay, axis: int = 0) -> np.ndarray:
    """Circularly delay ``h`` by ``delay`` samples (any real number) along ``axis``.

    Implemented as a linear phase ramp on the real FFT. For an odd length the operation is
    exactly invertible (``fractional_shift(fractional_shift(h, d), -d) == h`` to float
    precision) because there is no Nyquist bin. ``delay`` may be an array broadcasting against
    the shape of ``h`` with ``axis`` removed (e.g. ``(2,)`` for an ``(n, 2)`` array and
    ``axis=0``; ``(M, 2)`` for an ``(M, n, 2)`` array and ``axis=1``).
    """
    h = np.asarray(h, dtype=float)
    n = h.shape[axis]
    hm = np.moveaxis(h, axis, -1)
    spec = np.fft.rfft(hm, axis=-1)
    k = np.arange(spec.shape[-1])
    d = np.asarray(delay, dtype=float)[..., None]
    spec = spec * np.exp(-2j * np.pi * k * d / n)
    if n % 2 == 0:
        # keep the Nyquist bin real (not exactly invertible for even lengths)
        spec[..., -1] = spec[..., -1].real
    out = np.fft.irfft(spec, n=n, axis=-1)
    return np.moveaxis(out, -1, axis)


def estimate_onsets(h: np.ndarray, rate: float, cutoff_hz: float = ONSET_CUTOFF_HZ,
                    fraction: float = ONSET_FRACTION,
                    upsample: int = ONSET_UPSAMPLE) -> np.ndarray:
    """Onset delay (in samples, sub-sample precision) of each impulse response.

    ``h``: array ``(..., n_taps)``; returns ``(...)``. Low-pass (raised-cosine taper up to
    ``cutoff_hz``, zero phase), upsample by FFT zero padding, first crossing of ``fraction`` of
    the absolute peak, linear interpolation between upsampled samples.
    """
    h = np.asarray(h, dtype=float)
    n = h.shape[-1]
    spec = np.fft.rfft(h, axis=-1)
    f = np.fft.rfftfreq(n, 1.0 / rate)
    x = np.clip(f / cutoff_hz, 0.0, 1.0)
    spec = spec * (0.5 + 0.5 * np.cos(np.pi * x))
    hu = np.abs(np.fft.irfft(spec, n=n * upsample, axis=-1))
    flat = hu.reshape(-1, hu.shape[-1])
    thr = fraction * flat.max(axis=1)
    above = flat >= thr[:, None]
    idx = np.argmax(above, axis=1)
    out = np.empty(flat.shape[0])
    for r, i in enumerate(idx):
        if i == 0:
            out[r] = 0.0
            continue
        a0, a1 = flat[r, i - 1], flat[r, i]
        frac = (thr[r] - a0) / (a1 - a0) if a1 > a0 else 0.0
        out[r] = (i - 1 + frac) / upsample
    return out.reshape(h.shape[:-1])


class HRIRSet:
    """A set of measured HRIRs with smooth interpolation between directions.

    Parameters
    ----------
    az_deg, el_deg : (M,) measured directions, our convention (az positive LEFT, el positive UP).
    hrirs : (M, n_taps, 2) impulse responses, column 0 = LEFT ear.
    sample_rate : int
    onsets : (M, 2) per-ear onset delays in samples (estimated if None).
    aligned : (M, n_taps, 2) onset-aligned HRIRs (computed if None).
    """

    def __init__(self, az_deg, el_deg, hrirs, sample_rate: int, onsets=None, aligned=None,
                 pre_delay: float = PRE_DELAY, name: str = "hrirs"):
        self.az = np.asarray(az_deg, dtype=float).copy()
        self.el = np.asarray(el_deg, dtype=float).copy()
        self.hrirs = np.asarray(hrirs, dtype=float)
        if self.hrirs.ndim != 3 or self.hrirs.shape[2] != 2 or self.hrirs.shape[0] != self.az.size:
            raise ValueError("hrirs must have shape (M, n_taps, 2) matching the directions")
        self.sample_rate = int(sample_rate)
        self.pre_delay = float(pre_delay)
        self.name = name
        if onsets is None:
            onsets = estimate_onsets(np.moveaxis(self.hrirs, 1, 2), self.sample_rate)
        self.onsets = np.asarray(onsets, dtype=float)
        if aligned is None:
            aligned = fractional_shift(self.hrirs, self.pre_delay - self.onsets, axis=1)
        self.aligned = np.asarray(aligned, dtype=float)
        self.min_elevation = float(self.el.min())
        self._vectors = direction_to_vector(self.az, self.el)
        hull = ConvexHull(self._vectors)
        self._simplices = hull.simplices.copy()
        # For each facet, the inverse of the matrix whose columns are its three vertices:
        # barycentric coordinates of a ray direction v are inv @ v (up to a positive scale).
        mats = np.transpose(self._vectors[self._simplices], (0, 2, 1))  # (F, 3 xyz, 3 vertices)
        self._inv = np.linalg.inv(mats)
        self._diffuse_cache = {}

    # ------------------------------------------------------------------ basic properties
    @property
    def n_taps(self) -> int:
        return self.hrirs.shape[1]

    @property
    def n_directions(self) -> int:
        return self.az.size

    def __repr__(self) -> str:
        return (f"HRIRSet({self.name!r}, {self.n_directions} directions, {self.n_taps} taps, "
                f"{self.sample_rate} Hz)")

    # ------------------------------------------------------------------ interpolation
    def weights(self, az_deg: float, el_deg: float):
        """Barycentric interpolation weights: ``(indices (3,), weights (3,))``, weights sum
        to 1."""
        el = max(float(el_deg), self.min_elevation)
        v = direction_to_vector(float(az_deg), el)
        bary = self._inv @ v                       # (F, 3)
        score = bary.min(axis=1)
        f = int(np.argmax(score))
        w = bary[f].copy()
        w[w < 0] = 0.0
        w /= w.sum()
        w[w < 1e-12] = 0.0
        w /= w.sum()
        return self._simplices[f].copy(), w

    def interpolate_parts(self, az_deg: float, el_deg: float):
        """Blended onset-aligned HRIR ``(n_taps, 2)`` and per-ear onset delays ``(2,)``
        (samples)."""
        idx, w = self.weights(az_deg, el_deg)
        aligned = np.tensordot(w, self.aligned[idx], axes=(0, 0))
        delays = w @ self.onsets[idx]
        return aligned, delays

    def interpolate(self, az_deg: float, el_deg: float, extra_delay: float = 0.0) -> np.ndarray:
        """HRIR ``(n_taps, 2)`` (column 0 = LEFT) for any direction, smoothly interpolated.

        ``extra_delay`` (samples, small, e.g. the fractional part of a propagation delay) is
        added to both ears.
        """
        aligned, delays = self.interpolate_parts(az_deg, el_deg)
        return fractional_shift(aligned, delays - self.pre_delay + extra_delay, axis=0)

    def index_of(self, az_deg: float, el_deg: float, tol: float = 1e-6):
        """Index of a measured direction (within ``tol`` degrees), or None."""
        daz = (self.az - az_deg + 180.0) % 360.0 - 180.0
        d = np.hypot(daz * np.cos(np.radians(self.el)), self.el - el_deg)
        i = int(np.argmin(d))
        return i if d[i] <= tol else None

    def itd_seconds(self, az_deg: float, el_deg: float) -> float:
        """Interpolated onset ITD in seconds, positive when the LEFT ear leads."""
        _, delays = self.interpolate_parts(az_deg, el_deg)
        return float(delays[1] - delays[0]) / self.sample_rate

    def diffuse_field_magnitude(self, n_fft: int) -> np.ndarray:
        """RMS magnitude over all measured directions on an ``n_fft`` rfft grid, ``(bins, 2)``."""
        if n_fft not in self._diffuse_cache:
            spec = np.fft.rfft(self.hrirs, axis=1)
            # weight directions by solid angle only roughly: rings are denser near the pole, but
            # the 710 MIT directions are close to uniform; use a plain mean.
            power = np.mean(np.abs(spec) ** 2, axis=0)          # (n_taps//2+1, 2)
            f_src = np.fft.rfftfreq(self.n_taps, 1.0 / self.sample_rate)
            f_dst = np.fft.rfftfreq(n_fft, 1.0 / self.sample_rate)
            mag = np.stack([np.interp(f_dst, f_src, np.sqrt(power[:, c])) for c in range(2)],
                           axis=1)
            self._diffuse_cache[n_fft] = mag
        return self._diffuse_cache[n_fft]


# ---------------------------------------------------------------------- KEMAR loading
def _load_kemar_raw():
    """Return ``(az_ours, el, irs (M, 512, 2), rate)`` from slab's copy of MIT KEMAR."""
    try:
        import slab  # lazy: slab imports sounddevice/matplotlib
    except Exception as exc:  # pragma: no cover - depends on the environment
        raise RuntimeError(f"cannot import slab to read MIT KEMAR: {exc}") from exc
    hrtf = slab.HRTF.kemar()
    vp = np.asarray(hrtf.sources.vertical_polar, dtype=float)
    az_slab, el = vp[:, 0], vp[:, 1]
    az = (az_slab + 180.0) % 360.0 - 180.0
    az[np.isclose(az, -180.0)] = 180.0
    irs = np.stack([np.asarray(f.data, dtype=float) for f in hrtf.data])  # (M, taps, 2)
    rate = int(round(float(hrtf.samplerate)))
    return az, el, irs, rate


def _odd_length(n: int) -> int:
    n = int(np.ceil(n * 1.35))  # room for onset alignment shifts
    return n if n % 2 == 1 else n + 1


def _convert_kemar(rate: int):
    az, el, irs, src_rate = _load_kemar_raw()
    g = gcd(int(rate), int(src_rate))
    up, down = int(rate) // g, int(src_rate) // g
    res = resample_poly(irs, up, down, axis=1) * (rate / src_rate)
    n = _odd_length(res.shape[1])          # 186 taps at 16 kHz -> 255
    padded = np.zeros((res.shape[0], n, 2))
    padded[:, :res.shape[1], :] = res
    return az, el, padded


def load_kemar(sample_rate: int = DEFAULT_RATE, use_cache: bool = True) -> HRIRSet:
    """MIT KEMAR (normal pinna, 710 directions) at ``sample_rate``, as an :class:`HRIRSet`.

    The converted set (resampled HRIRs, onsets, aligned HRIRs) is cached in
    ``cache_dir() / f"kemar_{rate // 1000}k.npz"`` (e.g. ``kemar_16k.npz``).
    """
    sample_rate = int(sample_rate)
    tag = f"{sample_rate // 1000}k" if sample_rate % 1000 == 0 else f"{sample_rate}"
    path = cache_dir() / f"kemar_{tag}.npz"
    if use_cache and path.exists():
        try:
            with np.load(path) as z:
                if int(z["version"]) == CACHE_VERSION and int(z["sample_rate"]) == sample_rate:
                    return HRIRSet(z["az"], z["el"], z["hrirs"], sample_rate, onsets=z["onsets"],
                                   aligned=z["aligned"], pre_delay=float(z["pre_delay"]),
                                   name="MIT KEMAR normal pinna")
        except Exception:
            pass  # corrupt or old cache: rebuild
    az, el, hrirs = _convert_kemar(sample_rate)
    hs = HRIRSet(az, el, hrirs, sample_rate, name="MIT KEMAR normal pinna")
    if use_cache:
        with atomic_write(path, perms=0o644) as fh:
            np.savez(fh, version=CACHE_VERSION, sample_rate=sample_rate, az=hs.az, el=hs.el,
                     hrirs=hs.hrirs, onsets=hs.onsets, aligned=hs.aligned,
                     pre_delay=hs.pre_delay, created=time.time())
    return hs
