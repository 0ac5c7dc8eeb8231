"""GCC-PHAT histogram baseline (method.md §5; paper refs [13], [35]).

Per frame, the generalised cross-correlation with phase transform (GCC-PHAT) between the
left and right ear is evaluated over the physically possible delays; the per-frame peak
delays of the energetic frames are pooled into a histogram over the segment; the ``M``
highest histogram peaks (with neighbour suppression) give ``M`` delays, and a 1-D linear fit
learnt on the single-source white-noise training set maps delay -> azimuth (or horizontal
pixel). Azimuth (one coordinate) only.

Conventions and numerical choices
---------------------------------
* **Delay sign**: ``delay > 0`` means the RIGHT channel lags the LEFT one,
  ``right(t) = left(t - delay)``, i.e. the sound reaches the left ear first: a source on the
  left (positive REP 103 azimuth) has a positive delay. Delays are in **seconds**.
* **Framing**: the STFT of :mod:`sbm_ros.core.features` (periodic Hann, no padding, bins
  ``1..n_fft/2``, DC dropped); by default ``n_fft = 1024``, ``hop = 128`` at 16 kHz, so a
  localiser can reuse the feature STFT via :meth:`PhatHistogram.frame_delays_from_spectra`.
* **PHAT weighting**: ``G_f = R_f conj(L_f) / |R_f conj(L_f)|`` (bins whose cross-power
  magnitude is below ``1e-30`` get weight 0); optional band limits ``fmin``/``fmax``.
* **Correlation** ``r(tau) = sum_f Re(G_f exp(+2j pi f_Hz tau))`` evaluated on a uniform lag
  grid of step ``1 / (sample_rate * upsample)`` covering ``|tau| <= max_delay`` (a direct
  real matrix product, equivalent to an ``upsample``-times zero-padded inverse FFT but only
  at the needed lags). The grid peak is refined by parabolic interpolation through the
  peak and its two neighbours and clipped to ``[-max_delay, max_delay]``.
* **Frame selection**: frame energy ``E_t = sum_f (|L|^2 + |R|^2)``; a frame votes iff
  ``E_t >= max(min_energy, max_t E_t * 10**(-energy_db/10))`` (default: within 30 dB of the
  loudest frame of the segment), or, if given, ``E_t >= energy_threshold``.
* **Histogram**: one vote per selected frame, bins of width ``bin_width`` (default = lag grid
  step) over ``[-max_delay, max_delay]``, smoothed with a Gaussian of ``smooth_bins`` bins
  (std). Peaks are picked greedily: take the maximum, then zero the smoothed histogram within
  ``+-min_separation`` seconds of it; repeat ``M`` times. Each peak delay is refined as the
  mean of the raw frame delays lying within ``+-min_separation/2`` of the peak bin centre.
  If fewer than ``M`` peaks carry votes, the strongest delay is repeated (two sources at the
  same delay are indistinguishable for this baseline).
* **Mapping**: ``target = slope * delay + intercept``, ordinary least squares
  (:meth:`PhatHistogram.fit`).
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import numpy as np

from .features import FeatureConfig, _check_audio, _stft_nocheck

__all__ = ["PhatHistogram", "gcc_phat_delay"]


class PhatHistogram:
    """GCC-PHAT histogram localiser (azimuth only).

    Parameters
    ----------
    sample_rate : int
        Audio rate in Hz.
    n_fft, hop : int
        STFT framing (see :class:`~sbm_ros.core.features.FeatureConfig`).
    max_delay : float
        Largest physically possible interaural delay in seconds (default 0.9 ms; a human-size
        head is ~0.65-0.8 ms).
    upsample : int
        Lag-grid refinement factor (grid step = 1 / (sample_rate * upsample)).
    energy_db : float
        Frames more than this many dB below the loudest frame of the segment do not vote.
    min_energy : float
        Absolute lower bound on the frame energy threshold.
    min_separation : float
        Neighbour-suppression half-width in seconds for multi-peak picking (default 60 us).
    smooth_bins : float
        Std (in histogram bins) of the Gaussian smoothing of the histogram; 0 disables.
    bin_width : float, optional
        Histogram bin width in seconds (default: the lag-grid step).
    fmin, fmax : float
        Frequency band (Hz) used by GCC-PHAT (default: all kept bins).
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        n_fft: int = 1024,
        hop: int = 128,
        max_delay: float = 0.9e-3,
        upsample: int = 4,
        energy_db: float = 30.0,
        min_energy: float = 1e-10,
        min_separation: float = 60e-6,
        smooth_bins: float = 1.0,
        bin_width: Optional[float] = None,
        fmin: float = 0.0,
        fmax: Optional[float] = None,
    ) -> None:
        self.cfg = FeatureConfig(sample_rate=sample_rate, n_fft=n_fft, hop=hop, feature_type="ipd")
        if not max_delay > 0:
            raise ValueError(f"max_delay must be > 0 s, got {max_delay}")
        if int(upsample) < 1:
            raise ValueError(f"upsample must be >= 1, got {upsample}")
        if energy_db < 0 or min_energy < 0 or min_separation < 0 or smooth_bins < 0:
            raise ValueError("energy_db, min_energy, min_separation, smooth_bins must be >= 0")
        self.sample_rate = int(sample_rate)
        self.max_delay = float(max_delay)
        self.upsample = int(upsample)
        self.energy_db = float(energy_db)
        self.min_energy = float(min_energy)
        self.min_separation = float(min_separation)
        self.smooth_bins = float(smooth_bins)
        step = 1.0 / (self.sample_rate * self.upsample)
        self.lag_step = step
        n_half = int(np.floor(self.max_delay / step + 1e-9))
        self.lags = np.arange(-n_half, n_half + 1) * step
        self.bin_width = float(bin_width) if bin_width is not None else step
        if not self.bin_width > 0:
            raise ValueError("bin_width must be > 0")
        freqs = self.cfg.frequencies
        fmax = freqs[-1] if fmax is None else float(fmax)
        band = (freqs >= fmin) & (freqs <= fmax)
        if not band.any():
            raise ValueError(f"no frequency bin in [{fmin}, {fmax}] Hz")
        self._band = band
        self.fmin, self.fmax = float(fmin), float(fmax)
        ph = 2.0 * np.pi * np.outer(freqs[band], self.lags)  # (Fb, n_lags)
        # r(tau) = sum_f Re(G_f) cos(w tau) - Im(G_f) sin(w tau)
        self._basis = np.concatenate([np.cos(ph), -np.sin(ph)], axis=0)
        self.slope_: Optional[float] = None
        self.intercept_: Optional[float] = None

    # ------------------------------------------------------------------ per frame
    def frame_delays_from_spectra(
        self, spec: np.ndarray, energy_threshold: Optional[float] = None
    ) -> Tuple[np.ndarray, np.ndarray]:
        """Per-frame GCC-PHAT peak delays from a (T, F, 2) STFT.

        Returns
        -------
        delays : ndarray (T,)
            Peak delay of each frame in seconds (NaN for frames with no usable bin).
        active : ndarray (T,) bool
            Frames that pass the energy gate (see module docstring).
        """
        spec = np.asarray(spec)
        T = spec.shape[0]
        if T == 0:
            return np.zeros(0), np.zeros(0, dtype=bool)
        L = spec[:, self._band, 0]
        R = spec[:, self._band, 1]
        energy = (np.abs(spec) ** 2).sum(axis=(1, 2))
        if energy_threshold is None:
            thr = max(self.min_energy, energy.max() * 10.0 ** (-self.energy_db / 10.0))
        else:
            thr = float(energy_threshold)
        active = energy >= thr
        g = R * np.conj(L)
        mag = np.abs(g)
        ok = mag > 1e-30
        g = np.where(ok, g / np.where(ok, mag, 1.0), 0.0)
        corr = np.concatenate([g.real, g.imag], axis=1) @ self._basis  # (T, n_lags)
        n = corr.shape[1]
        k = np.argmax(corr, axis=1)
        km = np.clip(k, 1, n - 2)
        rows = np.arange(T)
        y0 = corr[rows, km - 1]
        y1 = corr[rows, km]
        y2 = corr[rows, km + 1]
        den = y0 - 2.0 * y1 + y2
        frac = np.where(den < 0, 0.5 * (y0 - y2) / np.where(den < 0, den, -1.0), 0.0)
        frac = np.clip(frac, -0.5, 0.5)
        interior = (k >= 1) & (k <= n - 2)
        pos = np.where(interior, k + frac, k).astype(np.float64)
        delays = self.lags[0] + pos * self.lag_step
        delays = np.clip(delays, -self.max_delay, self.max_delay)
        delays[~ok.any(axis=1)] = np.nan
        active &= np.isfinite(delays)
        return delays, active

    def frame_delays(self, x, energy_threshold: Optional[float] = None):
        """Per-frame delays and energy gate of a binaural signal (n, 2); see
        :meth:`frame_delays_from_spectra`."""
        return self.frame_delays_from_spectra(_stft_nocheck(_check_audio(x), self.cfg),
                                              energy_threshold)

    # ------------------------------------------------------------------ histogram
    def histogram(self, delays: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Smoothed vote histogram of frame delays: ``(counts (B,), bin_centres (B,))``."""
        delays = np.asarray(delays, dtype=np.float64)
        delays = delays[np.isfinite(delays)]
        nb = max(1, int(np.ceil(2 * self.max_delay / self.bin_width)))
        edges = np.linspace(-self.max_delay, self.max_delay, nb + 1)
        counts, _ = np.histogram(delays, bins=edges)
        counts = counts.astype(np.float64)
        if self.smooth_bins > 0 and nb > 1:
            r = int(np.ceil(3 * self.smooth_bins))
            kern = np.exp(-0.5 * (np.arange(-r, r + 1) / self.smooth_bins) ** 2)
            counts = np.convolve(counts, kern / kern.sum(), mode="same")
        return counts, 0.5 * (edges[:-1] + edges[1:])

    def delays_from_frames(self, delays: np.ndarray, n_sources: int = 1) -> np.ndarray:
        """Pick ``n_sources`` delays (seconds, strongest first) from per-frame delays.

        Returns an empty array if no frame delay is finite.
        """
        if int(n_sources) < 1:
            raise ValueError(f"n_sources must be >= 1, got {n_sources}")
        d = np.asarray(delays, dtype=np.float64)
        d = d[np.isfinite(d)]
        if d.size == 0:
            return np.zeros(0)
        h, centres = self.histogram(d)
        h = h.copy()
        out = []
        for _ in range(int(n_sources)):
            i = int(np.argmax(h))
            if h[i] <= 0:
                break
            c = centres[i]
            near = np.abs(d - c) <= max(self.min_separation / 2, self.bin_width)
            out.append(float(d[near].mean()) if near.any() else float(c))
            h[np.abs(centres - c) <= self.min_separation] = 0.0
        while len(out) < int(n_sources):
            out.append(out[0])
        return np.asarray(out)

    def estimate_delays(self, x, n_sources: int = 1,
                        energy_threshold: Optional[float] = None) -> np.ndarray:
        """Delays (seconds) of the ``n_sources`` highest histogram peaks, strongest first.

        Empty array if no frame passes the energy gate (silence / too short).
        """
        d, active = self.frame_delays(x, energy_threshold)
        return self.delays_from_frames(d[active], n_sources)

    # ------------------------------------------------------------------ mapping
    def fit(self, signals_or_delays: Union[Sequence, np.ndarray], targets) -> "PhatHistogram":
        """Learn ``target = slope * delay + intercept`` by least squares.

        Parameters
        ----------
        signals_or_delays : list of (n, 2) arrays, or 1-D array of delays in seconds
            Single-source training recordings (white noise), or their precomputed delays.
        targets : array_like (N,)
            Azimuth in degrees (or horizontal pixel ``u``) of each training example.
        """
        t = np.asarray(targets, dtype=np.float64).reshape(-1)
        if isinstance(signals_or_delays, np.ndarray) and signals_or_delays.ndim == 1:
            d = signals_or_delays.astype(np.float64)
        else:
            d = []
            for i, s in enumerate(signals_or_delays):
                e = self.estimate_delays(s, 1)
                if e.size == 0:
                    raise ValueError(f"training signal {i} has no frame above the energy gate")
                d.append(e[0])
            d = np.asarray(d)
        if d.shape[0] != t.shape[0]:
            raise ValueError(f"{d.shape[0]} delays/signals but {t.shape[0]} targets")
        ok = np.isfinite(d) & np.isfinite(t)
        if ok.sum() < 2 or np.ptp(d[ok]) <= 0:
            raise ValueError("need at least two training examples with distinct delays")
        slope, intercept = np.polyfit(d[ok], t[ok], 1)
        self.slope_, self.intercept_ = float(slope), float(intercept)
        self.train_delays_ = d
        return self

    def delay_to_target(self, delays) -> np.ndarray:
        """Map delays (s) to targets with the fitted line."""
        if self.slope_ is None:
            raise RuntimeError("PhatHistogram is not fitted; call fit() first")
        return self.slope_ * np.asarray(delays, dtype=np.float64) + self.intercept_

    def predict(self, x, n_sources: int = 1,
                energy_threshold: Optional[float] = None) -> np.ndarray:
        """Azimuths (or ``u`` pixels) of ``n_sources`` sources, sorted ascending, shape (M,).

        Returns an empty array when no frame passes the energy gate.
        """
        return np.sort(self.delay_to_target(self.estimate_delays(x, n_sources, energy_threshold)))

    def to_dict(self) -> dict:
        """Parameters and fitted line as a plain dict (for saving with a model)."""
        return {
            "sample_rate": self.sample_rate, "n_fft": self.cfg.n_fft, "hop": self.cfg.hop,
            "max_delay": self.max_delay, "upsample": self.upsample, "energy_db": self.energy_db,
            "min_energy": self.min_energy, "min_separation": self.min_separation,
            "smooth_bins": self.smooth_bins, "bin_width": self.bin_width,
            "fmin": self.fmin, "fmax": self.fmax,
            "slope": self.slope_, "intercept": self.intercept_,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "PhatHistogram":
        """The inverse of :meth:`to_dict` (a fitted line when the dict has one)."""
        keys = ("sample_rate", "n_fft", "hop", "max_delay", "upsample", "energy_db",
                "min_energy", "min_separation", "smooth_bins", "bin_width", "fmin", "fmax")
        obj = cls(**{k: d[k] for k in keys if k in d})
        if d.get("slope") is not None:
            obj.slope_, obj.intercept_ = float(d["slope"]), float(d["intercept"])
        return obj


def gcc_phat_delay(x, sample_rate: int = 16000, max_delay: float = 0.9e-3, **kw) -> float:
    """Convenience: the single dominant delay (s) of a binaural signal, NaN if silent."""
    d = PhatHistogram(sample_rate=sample_rate, max_delay=max_delay, **kw).estimate_delays(x, 1)
    return float(d[0]) if d.size else float("nan")
