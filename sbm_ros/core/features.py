"""Binaural features (ILD / IPD / ILPD spectrograms), activity masks and noise-floor tracking.

Implements paper §II-B and §VI (Deleforge et al. 2015) as fixed in ``method.md`` §1.
Pure numpy; no ROS and no optional dependency is imported here.

Numerical choices (all of them, in one place)
---------------------------------------------
* **Window**: periodic Hann of length ``n_fft``, ``w[n] = 0.5 - 0.5 cos(2 pi n / n_fft)``,
  ``n = 0..n_fft-1`` (the DFT-even form used for spectral analysis). No normalisation:
  ILD/IPD are scale invariant, and powers are only compared with a noise floor computed
  with the very same analysis.
* **Framing**: no padding at either end. Frame ``t`` covers samples ``[t*hop, t*hop+n_fft)``;
  a signal of ``n`` samples has ``T = (n - n_fft) // hop + 1`` frames (0 if ``n < n_fft``).
  Trailing samples that do not fill a frame are ignored by the batch functions and kept for
  the next call by :class:`StreamingFeatureExtractor`.
* **Bins**: ``rfft`` bins ``1..n_fft//2`` (DC dropped, Nyquist kept), ``F = n_fft // 2``.
* **ILD**: ``20 log10 |R/L| = 10 log10(P_R / P_L)`` computed from the powers
  ``P = |.|^2`` with a floor ``f = ILD_REL_FLOOR * (P_L + P_R) + ILD_ABS_FLOOR`` added to both
  powers (``ILD_REL_FLOOR = 1e-10``, i.e. -100 dB relative to the bin's own power;
  ``ILD_ABS_FLOOR`` = smallest normal float64). The result is then clipped to
  ``+-ILD_CLIP_DB = +-60 dB``. A bin where both ears are exactly zero gets ILD = 0.
* **IPD**: the unit phasor of ``R * conj(L)`` (same phase as ``R/L``) stored as ``(cos, sin)``.
  Where ``|R conj(L)|`` is zero or not a normal float (both or one ear silent, underflow) the
  phasor is defined as ``(1, 0)`` (zero phase difference).
* **Feature layout** (per frame): ``ilpd`` = ``[ILD (F) | cos (F) | sin (F)]`` (D = 3F),
  ``ild`` = ``[ILD]`` (D = F), ``ipd`` = ``[cos | sin]`` (D = 2F).
* **Power** returned alongside the features: ``|L|^2 + |R|^2`` per frame and bin (with the
  unnormalised Hann window above).
* **Activity mask**: ``power >= eps_f``; the ILD, cos and sin entries of a bin share its mask.
* **Input checks**: audio must be a real ``(n, 2)`` array of finite values (``ValueError``
  otherwise). Full scale is 1.0; any finite input up to ~1e150 in magnitude gives finite output.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional, Tuple

import numpy as np

__all__ = [
    "FeatureConfig",
    "FEATURE_TYPES",
    "ILD_CLIP_DB",
    "hann_window",
    "n_frames",
    "stft",
    "features_from_spectra",
    "binaural_features",
    "expand_mask",
    "activity_mask",
    "NoiseFloorTracker",
    "StreamingFeatureExtractor",
    "mean_feature_vector",
]

FEATURE_TYPES = ("ild", "ipd", "ilpd")
#: Blocks per bin for each feature type.
_BLOCKS = {"ild": 1, "ipd": 2, "ilpd": 3}

#: ILD is clipped to +-ILD_CLIP_DB decibels.
ILD_CLIP_DB = 60.0
#: Relative power floor added to both ears before the ILD ratio (-100 dB of the bin power).
ILD_REL_FLOOR = 1e-10
#: Absolute power floor (smallest normal double) so that 0/0 gives ILD = 0.
ILD_ABS_FLOOR = float(np.finfo(np.float64).tiny)

#: Frames processed per block by the batch functions (bounds temporary memory to ~50 MB).
_BLOCK_FRAMES = 2048


@dataclass(frozen=True)
class FeatureConfig:
    """STFT and feature settings.

    Parameters
    ----------
    sample_rate : int
        Audio sample rate in Hz (paper: 16000).
    n_fft : int
        Hann window length = FFT length, in samples; must be even and >= 4 (paper: 1024,
        64 ms at 16 kHz).
    hop : int
        Frame advance in samples, ``1 <= hop <= n_fft`` (paper: 128, 8 ms -> 125 frames/s).
    feature_type : str
        ``"ild"`` (D = F), ``"ipd"`` (D = 2F) or ``"ilpd"`` (D = 3F).

    Raises
    ------
    ValueError
        On any invalid value (the message names the field).
    """

    sample_rate: int = 16000
    n_fft: int = 1024
    hop: int = 128
    feature_type: str = "ilpd"

    def __post_init__(self) -> None:
        for name in ("sample_rate", "n_fft", "hop"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise ValueError(f"FeatureConfig.{name} must be an integer, got {v!r}")
            object.__setattr__(self, name, int(v))
        if self.sample_rate <= 0:
            raise ValueError(f"FeatureConfig.sample_rate must be > 0, got {self.sample_rate}")
        if self.n_fft < 4 or self.n_fft % 2:
            raise ValueError(f"FeatureConfig.n_fft must be even and >= 4, got {self.n_fft}")
        if not 1 <= self.hop <= self.n_fft:
            raise ValueError(
                f"FeatureConfig.hop must satisfy 1 <= hop <= n_fft ({self.n_fft}), got {self.hop}"
            )
        if self.feature_type not in FEATURE_TYPES:
            raise ValueError(
                f"FeatureConfig.feature_type must be one of {FEATURE_TYPES}, "
                f"got {self.feature_type!r}"
            )

    @property
    def n_freq(self) -> int:
        """Number of kept frequency bins F = n_fft // 2 (bins 1..n_fft//2, DC dropped)."""
        return self.n_fft // 2

    @property
    def n_blocks(self) -> int:
        """Feature blocks per bin: 1 (ild), 2 (ipd) or 3 (ilpd)."""
        return _BLOCKS[self.feature_type]

    @property
    def dim(self) -> int:
        """Feature dimension D (F, 2F or 3F)."""
        return self.n_blocks * self.n_freq

    @property
    def frame_rate(self) -> float:
        """Frames per second, ``sample_rate / hop``."""
        return self.sample_rate / self.hop

    @property
    def frequencies(self) -> np.ndarray:
        """Centre frequency (Hz) of each kept bin, shape (F,)."""
        return np.arange(1, self.n_freq + 1) * (self.sample_rate / self.n_fft)

    def to_dict(self) -> dict:
        """Plain-``dict`` form (JSON friendly)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "FeatureConfig":
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``."""
        known = {"sample_rate", "n_fft", "hop", "feature_type"}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"FeatureConfig.from_dict: unknown keys {sorted(unknown)}")
        kw = {}
        for k, v in d.items():
            if isinstance(v, np.ndarray):
                v = v.item()
            if k == "feature_type":
                kw[k] = str(v)
            else:
                if isinstance(v, float) and v.is_integer():
                    v = int(v)
                kw[k] = v
        return cls(**kw)


# --------------------------------------------------------------------------- STFT

_WINDOW_CACHE: dict = {}


def hann_window(n_fft: int) -> np.ndarray:
    """Periodic Hann window ``0.5 - 0.5 cos(2 pi n / n_fft)``, ``n = 0..n_fft-1`` (read-only,
    cached)."""
    w = _WINDOW_CACHE.get(n_fft)
    if w is None:
        w = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_fft) / n_fft)
        w.setflags(write=False)
        _WINDOW_CACHE[n_fft] = w
    return w


def n_frames(n_samples: int, cfg: FeatureConfig) -> int:
    """Number of full frames in ``n_samples`` samples: ``(n - n_fft) // hop + 1`` or 0."""
    if n_samples < cfg.n_fft:
        return 0
    return (n_samples - cfg.n_fft) // cfg.hop + 1


def _check_audio(x, name: str = "x") -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[1] != 2:
        raise ValueError(
            f"{name} must have shape (n_samples, 2) [column 0 = left, 1 = right], got {x.shape}"
        )
    if np.iscomplexobj(x):
        raise ValueError(f"{name} must be real-valued audio")
    x = np.asarray(x, dtype=np.float64)
    if not np.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite samples")
    return x


def _stft_nocheck(x: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """STFT of a checked float64 (n, 2) array -> (T, F, 2) complex128."""
    T = n_frames(x.shape[0], cfg)
    F = cfg.n_freq
    if T == 0:
        return np.zeros((0, F, 2), dtype=np.complex128)
    # (2, n) contiguous so that each frame of each channel is a contiguous row -> fast rfft
    xc = np.ascontiguousarray(x[: (T - 1) * cfg.hop + cfg.n_fft].T)
    s = xc.strides
    frames = np.lib.stride_tricks.as_strided(
        xc, shape=(T, 2, cfg.n_fft), strides=(cfg.hop * s[1], s[0], s[1]), writeable=False
    )
    spec = np.fft.rfft(frames * hann_window(cfg.n_fft), axis=-1)  # (T, 2, n_fft//2 + 1)
    return np.ascontiguousarray(spec[:, :, 1:].transpose(0, 2, 1))


def stft(x, cfg: Optional[FeatureConfig] = None) -> np.ndarray:
    """Short-time Fourier transform of a binaural signal.

    Parameters
    ----------
    x : array_like, shape (n_samples, 2)
        Column 0 = left ear, column 1 = right ear. Must be finite.
    cfg : FeatureConfig, optional
        Defaults to ``FeatureConfig()``.

    Returns
    -------
    spec : ndarray, shape (T, F, 2), complex128
        ``spec[t, f-1, c] = sum_n w[n] x[t*hop + n, c] exp(-2j pi f n / n_fft)`` for
        ``f = 1..n_fft//2``; periodic Hann ``w``; no padding; ``T = (n - n_fft)//hop + 1``.
    """
    cfg = cfg or FeatureConfig()
    return _stft_nocheck(_check_audio(x), cfg)


# --------------------------------------------------------------------------- features


def _ild_ipd(spec: np.ndarray):
    """ILD (dB), cos IPD, sin IPD and power from a (T, F, 2) spectrum."""
    return _ild_ipd_lr(spec[..., 0], spec[..., 1])


def _ild_ipd_lr(L: np.ndarray, R: np.ndarray, ild=None, cos=None, sin=None, power=None,
                need=(1, 1)):
    """ILD (dB), cos IPD, sin IPD and power from the left and right spectra (T, F).

    ``ild``, ``cos``, ``sin``, ``power`` are optional float64 (T, F) outputs (e.g. blocks of
    the feature matrix); ``need`` = (ILD wanted, IPD wanted): a block not wanted is returned
    as None. The element-wise operations are exactly those of the reference definition
    (module docstring), so the values are bit-identical whatever the memory layout.
    """
    pL = L.real * L.real
    pL += L.imag * L.imag
    pR = R.real * R.real
    pR += R.imag * R.imag
    power = np.add(pL, pR, out=power)
    if need[0]:
        floor = ILD_REL_FLOOR * power
        floor += ILD_ABS_FLOOR
        num = np.add(pR, floor, out=pR)               # pR, pL are not needed any more
        den = np.add(pL, floor, out=pL)
        ild = np.divide(num, den, out=ild)
        np.log10(ild, out=ild)
        ild *= 10.0
        np.clip(ild, -ILD_CLIP_DB, ILD_CLIP_DB, out=ild)
    else:
        ild = None
    if need[1]:
        z = R * np.conj(L)
        mag = np.abs(z)
        ok = mag >= ILD_ABS_FLOOR  # also False for NaN
        bad = ~ok
        if bad.any():
            mag[bad] = 1.0
            cos = np.divide(z.real, mag, out=cos)
            sin = np.divide(z.imag, mag, out=sin)
            cos[bad] = 1.0
            sin[bad] = 0.0
        else:
            cos = np.divide(z.real, mag, out=cos)
            sin = np.divide(z.imag, mag, out=sin)
    else:
        cos = sin = None
    return ild, cos, sin, power


def features_from_spectra(spec,
                          cfg: Optional[FeatureConfig] = None) -> Tuple[np.ndarray, np.ndarray]:
    """Binaural feature frames from a binaural spectrum.

    Parameters
    ----------
    spec : ndarray, shape (T, F, 2), complex
        Output of :func:`stft` (left = ``[..., 0]``, right = ``[..., 1]``).
    cfg : FeatureConfig, optional
        Selects the feature type; ``F`` must equal ``cfg.n_freq``.

    Returns
    -------
    Y : ndarray, shape (T, D), float64
        ``[ILD | cos IPD | sin IPD]`` (ilpd), ``[ILD]`` (ild) or ``[cos | sin]`` (ipd); ILD in dB
        clipped to +-60 dB, IPD as the unit phasor of ``R conj(L)``; see module docstring for
        the floors. Always finite for finite input.
    power : ndarray, shape (T, F), float64
        ``|L|^2 + |R|^2``.

    Raises
    ------
    ValueError
        Wrong shape, or non-finite spectrum values.
    """
    cfg = cfg or FeatureConfig()
    spec = np.asarray(spec)
    if spec.ndim != 3 or spec.shape[2] != 2 or spec.shape[1] != cfg.n_freq:
        raise ValueError(f"spec must have shape (T, {cfg.n_freq}, 2), got {spec.shape}")
    if not np.isfinite(spec).all():
        raise ValueError("spec contains NaN or infinite values")
    spec = spec.astype(np.complex128, copy=False)
    ild, cos, sin, power = _ild_ipd(spec)
    if cfg.feature_type == "ilpd":
        Y = np.concatenate([ild, cos, sin], axis=1)
    elif cfg.feature_type == "ild":
        Y = ild
    else:
        Y = np.concatenate([cos, sin], axis=1)
    return np.ascontiguousarray(Y, dtype=np.float64), power


def _features_block(x: np.ndarray, cfg: FeatureConfig, Y: np.ndarray, P: np.ndarray) -> None:
    """Features of all frames of a checked float64 (n, 2) array into Y (T, D) and P (T, F).

    Fused :func:`stft` + :func:`features_from_spectra` without the intermediate (T, F, 2)
    copy: the left and right spectra stay in the rfft's (T, 2, n_fft//2 + 1) layout and each
    feature block is written in place. Same values as the two public functions.
    """
    T = Y.shape[0]
    F = cfg.n_freq
    xc = np.ascontiguousarray(x[: (T - 1) * cfg.hop + cfg.n_fft].T)
    st = xc.strides
    frames = np.lib.stride_tricks.as_strided(
        xc, shape=(T, 2, cfg.n_fft), strides=(cfg.hop * st[1], st[0], st[1]), writeable=False)
    spec = np.fft.rfft(frames * hann_window(cfg.n_fft), axis=-1)  # (T, 2, n_fft//2 + 1)
    L = spec[:, 0, 1:]
    R = spec[:, 1, 1:]
    ft = cfg.feature_type
    if ft == "ilpd":
        out = dict(ild=Y[:, :F], cos=Y[:, F:2 * F], sin=Y[:, 2 * F:], need=(1, 1))
    elif ft == "ild":
        out = dict(ild=Y, need=(1, 0))
    else:
        out = dict(cos=Y[:, :F], sin=Y[:, F:], need=(0, 1))
    _ild_ipd_lr(L, R, power=P, **out)
    if not np.isfinite(P).all() and not np.isfinite(spec).all():
        raise ValueError("spec contains NaN or infinite values")   # as features_from_spectra


def _features_nocheck(x: np.ndarray, cfg: FeatureConfig) -> Tuple[np.ndarray, np.ndarray]:
    T = n_frames(x.shape[0], cfg)
    F, D = cfg.n_freq, cfg.dim
    Y = np.empty((T, D))
    P = np.empty((T, F))
    for t0 in range(0, T, _BLOCK_FRAMES):
        t1 = min(T, t0 + _BLOCK_FRAMES)
        seg = x[t0 * cfg.hop: (t1 - 1) * cfg.hop + cfg.n_fft]
        _features_block(seg, cfg, Y[t0:t1], P[t0:t1])
    return Y, P


def binaural_features(x, cfg: Optional[FeatureConfig] = None) -> Tuple[np.ndarray, np.ndarray]:
    """Feature frames of a binaural signal: :func:`stft` followed by :func:`features_from_spectra`.

    Parameters
    ----------
    x : array_like, shape (n_samples, 2)
        Left / right audio, full scale 1.0.
    cfg : FeatureConfig, optional

    Returns
    -------
    Y : ndarray (T, D) float64
    power : ndarray (T, F) float64

    Raises
    ------
    ValueError
        If ``x`` is not ``(n, 2)`` or contains NaN / inf.

    Notes
    -----
    Long signals are processed in blocks of 2048 frames to bound temporary memory; the
    result is identical to processing all frames at once.
    """
    cfg = cfg or FeatureConfig()
    return _features_nocheck(_check_audio(x), cfg)


# --------------------------------------------------------------------------- masks


def expand_mask(chi, cfg: Optional[FeatureConfig] = None) -> np.ndarray:
    """Expand a per-bin mask (T, F) to the feature layout (T, D): ILD/cos/sin share a bin's
    mask."""
    cfg = cfg or FeatureConfig()
    chi = np.asarray(chi, dtype=bool)
    if chi.shape[-1] != cfg.n_freq:
        raise ValueError(f"mask last dimension must be F = {cfg.n_freq}, got {chi.shape}")
    reps = [1] * (chi.ndim - 1) + [cfg.n_blocks]
    return np.tile(chi, reps)


def activity_mask(power, eps) -> np.ndarray:
    """Activity mask ``chi_ft = power_ft >= eps_f``.

    Parameters
    ----------
    power : array_like (T, F)
        ``|L|^2 + |R|^2`` from :func:`features_from_spectra`.
    eps : array_like (F,) or scalar
        Per-bin threshold (e.g. :meth:`NoiseFloorTracker.threshold`).
    """
    power = np.asarray(power, dtype=np.float64)
    eps = np.asarray(eps, dtype=np.float64)
    if eps.ndim > 1 or (eps.ndim == 1 and eps.shape[0] != power.shape[-1]):
        raise ValueError(f"eps must be a scalar or shape ({power.shape[-1]},), got {eps.shape}")
    return power >= eps


# --------------------------------------------------------------------------- noise floor


class NoiseFloorTracker:
    """Running per-bin noise-floor estimate (minimum-statistics style) for the activity mask.

    Per frequency bin::

        noise_floor = max(percentile_p(power frames of the last window_s seconds) * bias, min_eps)
        threshold   = noise_floor * 10**(margin_db / 10)

    ``bias`` converts the low percentile into an estimate of the **mean** noise power (the
    paper's time-averaged noise PSD), as minimum-statistics trackers do: for independent
    Gaussian noise at the two ears, ``|L|^2 + |R|^2`` per bin is Gamma(shape 2) distributed,
    so ``bias = 2 / gammaincinv(2, p/100)`` (3.76 = 5.75 dB for p = 10). With the default 6 dB
    margin, stationary Gaussian noise is then marked active in ~0.3 % of the entries
    (fully coherent noise, i.e. Gamma(1), in ~20 %: raise ``margin_db`` for such rooms).
    ``bias_correction=False`` uses the raw percentile (bias = 1).

    Parameters
    ----------
    n_freq : int
        Number of bins F.
    frame_rate : float
        Frames per second of the power frames passed to :meth:`update` (e.g. 125).
    window_s : float
        Length of the history (seconds). The ring buffer holds
        ``ceil(window_s * frame_rate / decimate)`` frames.
    percentile : float
        Low percentile in (0, 100) taken per bin over the history (10 = 10th percentile;
        "lower" interpolation, i.e. an actually observed value).
    margin_db : float
        Factor above the noise floor, in dB of power (6 dB = x3.98).
    decimate : int
        Keep only every ``decimate``-th frame in the history (1 = all frames). Frames are
        counted globally, so the selection does not depend on how updates are chunked.
    min_time_s : float
        :meth:`threshold` returns ``None`` until this much audio (in frames seen) has been
        observed (default 0.25 s).
    refresh_s : float
        The percentile is recomputed lazily, at most once per ``refresh_s`` seconds of new
        frames (default 0.1 s), and cached in between; this keeps the cost at a few ms per
        second of audio. The first call after ``min_time_s`` always recomputes, and while the
        history is still filling (its first ``window_s`` seconds, or after :meth:`reset`) it
        is recomputed at least every ``fill_refresh_s`` seconds (default 0.1 s), so that a
        slow ``refresh_s`` does not hold a floor taken from a short history.
    bias_correction : bool
        Apply the Gamma(2) percentile-to-mean correction described above (default True).
    min_eps : float
        Absolute lower bound of the noise floor (default 1e-12, far below the quantisation
        noise of 16-bit audio with the unnormalised 1024-point Hann STFT, ~3e-8), so that
        digital silence (all zeros) is never marked active.
    """

    def __init__(
        self,
        n_freq: int,
        frame_rate: float,
        window_s: float = 3.0,
        percentile: float = 10,
        margin_db: float = 6.0,
        decimate: int = 1,
        min_time_s: float = 0.25,
        refresh_s: float = 0.1,
        bias_correction: bool = True,
        min_eps: float = 1e-12,
        fill_refresh_s: float = 0.1,
    ) -> None:
        if int(n_freq) <= 0:
            raise ValueError(f"n_freq must be > 0, got {n_freq}")
        if not frame_rate > 0:
            raise ValueError(f"frame_rate must be > 0, got {frame_rate}")
        if not window_s > 0:
            raise ValueError(f"window_s must be > 0, got {window_s}")
        if not 0 < percentile < 100:
            raise ValueError(f"percentile must be in (0, 100), got {percentile}")
        if not np.isfinite(margin_db):
            raise ValueError(f"margin_db must be finite, got {margin_db}")
        if int(decimate) < 1:
            raise ValueError(f"decimate must be >= 1, got {decimate}")
        if min_eps < 0 or min_time_s < 0 or refresh_s < 0 or fill_refresh_s < 0:
            raise ValueError("min_eps, min_time_s, refresh_s and fill_refresh_s must be >= 0")
        self.n_freq = int(n_freq)
        self.frame_rate = float(frame_rate)
        self.window_s = float(window_s)
        self.percentile = float(percentile)
        self.margin_db = float(margin_db)
        self.decimate = int(decimate)
        self.min_eps = float(min_eps)
        if bias_correction:
            from scipy.special import gammaincinv  # scipy is a core dependency

            self.bias = float(2.0 / gammaincinv(2.0, self.percentile / 100.0))
        else:
            self.bias = 1.0
        self.capacity = max(1, int(np.ceil(window_s * frame_rate / self.decimate)))
        self.min_frames = int(np.ceil(min_time_s * frame_rate))
        self.refresh_frames = max(1, int(round(refresh_s * frame_rate)))
        self.fill_refresh_frames = min(self.refresh_frames,
                                       max(1, int(round(fill_refresh_s * frame_rate))))
        # (F, capacity): each bin's history is one contiguous row, so the per-bin percentile
        # (np.partition along the last axis) runs on contiguous memory.
        self._buf = np.zeros((self.n_freq, self.capacity))
        self.reset()

    def reset(self) -> None:
        """Forget all history."""
        self._pos = 0  # next write slot
        self._count = 0  # valid slots
        self.frames_seen = 0
        self._cached = None
        self._cached_at = -1

    def update(self, power_frames) -> None:
        """Add power frames, shape (T, F) (or (F,) for one frame). Non-finite frames are
        skipped."""
        p = np.asarray(power_frames, dtype=np.float64)
        if p.ndim == 1:
            p = p[None, :]
        if p.ndim != 2 or p.shape[1] != self.n_freq:
            raise ValueError(f"power_frames must have shape (T, {self.n_freq}), got {p.shape}")
        T = p.shape[0]
        if T == 0:
            return
        idx = np.arange(self.frames_seen, self.frames_seen + T)
        keep = (idx % self.decimate) == 0
        self.frames_seen += T
        p = p[keep]
        p = p[np.isfinite(p).all(axis=1)]
        if p.shape[0] > self.capacity:
            p = p[-self.capacity:]
        n = p.shape[0]
        if n == 0:
            return
        end = self._pos + n
        if end <= self.capacity:
            self._buf[:, self._pos: end] = p.T
        else:
            k = self.capacity - self._pos
            self._buf[:, self._pos:] = p[:k].T
            self._buf[:, : n - k] = p[k:].T
        self._pos = end % self.capacity
        self._count = min(self.capacity, self._count + n)

    @property
    def ready(self) -> bool:
        """True once at least ``min_time_s`` of frames has been seen."""
        return self.frames_seen >= max(1, self.min_frames) and self._count > 0

    def noise_floor(self) -> Optional[np.ndarray]:
        """Per-bin noise power estimate (bias-corrected percentile, no margin), or ``None``."""
        if not self.ready:
            return None
        every = (self.refresh_frames if self._count >= self.capacity
                 else self.fill_refresh_frames)
        if self._cached is None or self.frames_seen - self._cached_at >= every:
            h = self._buf[:, : self._count]
            k = int(np.floor(self.percentile / 100.0 * (self._count - 1)))
            # np.partition on the contiguous rows: the same order statistic as a full sort,
            # 2.3x faster than np.sort with numpy 2.x on (512, 250) rows.
            floor = np.partition(h, k, axis=1)[:, k]
            self._cached = np.maximum(floor * self.bias, self.min_eps)
            self._cached_at = self.frames_seen
        return self._cached.copy()

    def threshold(self) -> Optional[np.ndarray]:
        """``eps_f`` (F,) = noise floor x 10**(margin_db/10), or ``None`` before enough data."""
        nf = self.noise_floor()
        if nf is None:
            return None
        return nf * 10.0 ** (self.margin_db / 10.0)


# --------------------------------------------------------------------------- streaming


class StreamingFeatureExtractor:
    """Chunk-wise feature extraction that reproduces the batch result exactly.

    ``push`` accepts any number of samples (including 0 and 1); it returns the feature frames
    completed by those samples and keeps the unused tail for the next call. The concatenation
    of all outputs equals ``binaural_features(concatenated input)`` (same frames, same order;
    values equal to floating-point round-off of the batched FFT).

    Parameters
    ----------
    cfg : FeatureConfig, optional

    Attributes
    ----------
    samples_consumed : int
        Total samples accepted by :meth:`push` since construction / :meth:`reset`
        (including those still pending in the internal buffer).
    frames_emitted : int
        Total frames returned since reset. Frame ``i`` starts at sample ``i * hop``.
    """

    def __init__(self, cfg: Optional[FeatureConfig] = None) -> None:
        self.cfg = cfg or FeatureConfig()
        self.reset()

    def reset(self) -> None:
        """Drop pending samples and restart sample/frame counting at 0."""
        self._pending = np.zeros((0, 2))
        self.samples_consumed = 0
        self.frames_emitted = 0

    @property
    def pending_samples(self) -> int:
        """Samples buffered but not yet fully consumed by an emitted frame."""
        return self._pending.shape[0]

    def push(self, samples) -> Tuple[np.ndarray, np.ndarray]:
        """Add ``samples`` (n, 2) and return ``(Y (t, D), power (t, F))`` for the completed frames.

        Raises
        ------
        ValueError
            Wrong shape or non-finite samples (the extractor state is left unchanged).
        """
        cfg = self.cfg
        x = _check_audio(samples, "samples")
        self.samples_consumed += x.shape[0]
        buf = np.concatenate([self._pending, x], axis=0) if self._pending.shape[0] else x
        T = n_frames(buf.shape[0], cfg)
        if T == 0:
            self._pending = buf.copy() if buf is x else buf
            return np.zeros((0, cfg.dim)), np.zeros((0, cfg.n_freq))
        Y, P = _features_nocheck(buf, cfg)
        self._pending = buf[T * cfg.hop:].copy()
        self.frames_emitted += T
        return Y, P


# --------------------------------------------------------------------------- eq. 8


def mean_feature_vector(x, cfg: Optional[FeatureConfig] = None, mask_eps=None) -> np.ndarray:
    """Temporal mean of the feature frames of a recording (paper eq. 8).

    Parameters
    ----------
    x : array_like (n, 2)
        Binaural recording (at least ``n_fft`` samples).
    cfg : FeatureConfig, optional
    mask_eps : None, scalar or array_like (F,)
        If given, each dimension is averaged over its active entries only
        (``power >= mask_eps``); a dimension with no active entry falls back to its unmasked
        mean.

    Returns
    -------
    y : ndarray (D,) float64
        Note the IPD part is the plain mean of cos / sin, not renormalised to unit length.

    Raises
    ------
    ValueError
        Non-finite or mis-shaped input, or fewer than ``n_fft`` samples.
    """
    cfg = cfg or FeatureConfig()
    Y, P = binaural_features(x, cfg)
    if Y.shape[0] == 0:
        raise ValueError(
            f"signal too short for one frame: {np.asarray(x).shape[0]} samples "
            f"< n_fft = {cfg.n_fft}"
        )
    mean = Y.mean(axis=0)
    if mask_eps is None:
        return mean
    chi = expand_mask(activity_mask(P, mask_eps), cfg)
    cnt = chi.sum(axis=0)
    s = np.where(chi, Y, 0.0).sum(axis=0)
    return np.where(cnt > 0, s / np.maximum(cnt, 1), mean)
