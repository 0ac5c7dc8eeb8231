"""Ambient noise for the virtual head: a computer fan at a fixed place in the room.

The paper's recordings had "low background noise (< 28 dBA) due to a computer fan" in every
training and test recording. Microphone self-noise (independent white noise per ear, see
:mod:`.render`) does not model it: a fan is a *directional*, stationary source, so its sound
reaches the two ears with a consistent interaural delay, through the same room as the talkers.

Model (:class:`FanNoise`):

* **Source signal** -- stationary Gaussian noise with a pink spectrum (power ~ 1/f, -3 dB per
  octave) above ``corner_hz`` (flat below it), plus the blade-passing tone
  ``rpm / 60 * blades`` Hz and its first ``harmonics - 1`` harmonics (amplitude 1/h, each
  carrying ``tone_db`` dB relative to the broadband part for h = 1). Defaults: 7 blades at
  1800 rpm (210 Hz), corner 50 Hz, tones at -10 dB.
* **Propagation** -- the source signal is convolved with the room's binaural impulse response
  for the fan's direction (``az_deg``, ``el_deg``; default 60 deg to the right, 30 deg down:
  a desktop computer on the floor in front-right of the head, 2 m away), so the fan gets the
  same direct path, reflections and diffuse tail as every other source in that room.
* **Level** -- :meth:`FanNoise.segment` returns a segment with unit mean power (over samples
  and both ears); the caller scales it to the wanted SNR. A long rendering (``duration_s``,
  default 30 s) is made once per head; segments start at random offsets (drawn from the given
  generator), so the noise of two recordings is different but has the same statistics.
* **Noise PSD** -- :meth:`FanNoise.psd` is the time-averaged ``|L|^2 + |R|^2`` per STFT bin of a
  unit-power segment that is not used for any recording (the last ``psd_s`` seconds of the
  rendering), as a node measures its noise floor on a noise-only lead-in.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import fftconvolve

__all__ = ["FanNoise"]


class FanNoise:
    """A computer fan at a fixed direction in the virtual head's room (see module docstring).

    Parameters
    ----------
    head : :class:`~sbm_ros.sim.VirtualHead` whose room and HRIRs render the fan.
    az_deg, el_deg : direction of the fan (REP 103: azimuth LEFT+, elevation UP+).
    rpm, blades, harmonics, tone_db : blade-passing tone (frequency ``rpm / 60 * blades``).
    corner_hz : below this frequency the broadband part is flat, above it pink.
    duration_s : length of the rendering that segments are cut from.
    psd_s : length of the reserved noise-only part used by :meth:`psd`.
    seed : seed of the source signal.
    """

    def __init__(self, head, az_deg: float = -60.0, el_deg: float = -30.0, rpm: float = 1800.0,
                 blades: int = 7, harmonics: int = 3, tone_db: float = -10.0,
                 corner_hz: float = 50.0, duration_s: float = 30.0, psd_s: float = 4.0,
                 seed: int = 0):
        if duration_s <= psd_s + 1.0:
            raise ValueError("duration_s must exceed psd_s by more than 1 s")
        self.az_deg, self.el_deg = float(az_deg), float(el_deg)
        self.rpm, self.blades = float(rpm), int(blades)
        self.harmonics, self.tone_db = int(harmonics), float(tone_db)
        self.corner_hz = float(corner_hz)
        self.rate = int(head.sample_rate)
        self.seed = int(seed)
        src = self.source_signal(int(round(duration_s * self.rate)))
        ir = head.binaural_ir(self.az_deg, self.el_deg)
        y = np.stack([fftconvolve(src, ir[:, c])[:src.size] for c in (0, 1)], axis=1)
        # drop the build-up of the reverberation at the start
        y = y[ir.shape[0]:]
        y /= np.sqrt(np.mean(y ** 2))
        n_psd = int(round(psd_s * self.rate))
        self._usable = y[:-n_psd]
        self._reserved = y[-n_psd:]
        self._psd_cache = {}

    @property
    def blade_pass_hz(self) -> float:
        return self.rpm / 60.0 * self.blades

    def __repr__(self) -> str:
        return (f"FanNoise(az_deg={self.az_deg:g}, el_deg={self.el_deg:g}, "
                f"blade_pass_hz={self.blade_pass_hz:g})")

    def describe(self) -> str:
        return (f"a computer fan at azimuth {self.az_deg:g}°, elevation {self.el_deg:g}° "
                f"(pink noise above {self.corner_hz:g} Hz plus a {self.blade_pass_hz:g} Hz "
                f"blade-passing tone and {self.harmonics - 1} harmonics), rendered through the "
                f"same room")

    def source_signal(self, n: int) -> np.ndarray:
        """The fan's mono source signal, ``(n,)``, unit power."""
        rng = np.random.default_rng([self.seed, 8231])
        spec = np.fft.rfft(rng.standard_normal(n))
        f = np.fft.rfftfreq(n, 1.0 / self.rate)
        spec *= 1.0 / np.sqrt(np.maximum(f, self.corner_hz) / self.corner_hz)
        x = np.fft.irfft(spec, n)
        x /= np.std(x)
        t = np.arange(n) / self.rate
        tone_amp = np.sqrt(2.0 * 10.0 ** (self.tone_db / 10.0))
        for h in range(1, self.harmonics + 1):
            f_h = h * self.blade_pass_hz
            if f_h >= self.rate / 2:
                break
            x += tone_amp / h * np.sin(2 * np.pi * f_h * t + rng.uniform(0, 2 * np.pi))
        return x / np.std(x)

    def segment(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """A unit-power binaural segment ``(n, 2)`` starting at a random offset."""
        n = int(n)
        m = self._usable.shape[0]
        if n <= 0:
            return np.zeros((0, 2))
        if n >= m:
            reps = int(np.ceil(n / m))
            return np.concatenate([self._usable] * reps)[:n].copy()
        off = int(rng.integers(0, m - n + 1))
        return self._usable[off:off + n].copy()

    def psd(self, cfg) -> np.ndarray:
        """Time-averaged |L|^2 + |R|^2 per bin (F,) of unit-power fan noise (STFT of ``cfg``)."""
        from sbm_ros.core.features import stft

        key = (cfg.n_fft, cfg.hop, cfg.sample_rate)
        if key not in self._psd_cache:
            S = stft(self._reserved, cfg)
            self._psd_cache[key] = np.mean(np.abs(S) ** 2, axis=0).sum(axis=1)
        return self._psd_cache[key]
