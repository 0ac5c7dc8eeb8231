"""Binaural rendering with the virtual head: BRIR convolution + microphone self-noise.

``VirtualHead.render`` convolves a mono signal with the room's binaural impulse response for
the source direction (``scipy.signal.fftconvolve``) and adds microphone self-noise.

Microphone self-noise: white Gaussian noise, independent in each ear, at ``snr_db`` relative
to the power of the noise-free rendered signal (the clean binaural mixture, direct sound plus
reverberation, mean power over both ears and over the output length). ``snr_db=None``
disables it. Noise is drawn from the head's own generator (seeded by ``seed``), so a sequence of
render calls is deterministic; pass ``noise_seed`` to make a single call independent of the
call order.

Moving sources (``VirtualHead.render_moving``): the mono signal is cut into overlapping blocks
by periodic Hann windows of ``2 * hop`` samples at a ``hop`` spacing (they sum to exactly 1 at
every sample), each windowed block is convolved with the BRIR of the source direction at the
block's centre time and the results are overlap-added. The BRIR therefore changes smoothly
(crossfaded over ``2 * hop``), with no discontinuity at block boundaries, the reverberation of
earlier positions rings on as in a real room, and a constant trajectory gives exactly the
static rendering (linearity; the windows sum to one).
"""

from __future__ import annotations

import numpy as np
from scipy.fft import irfft, next_fast_len, rfft
from scipy.signal import fftconvolve

from .hrtf import HRIRSet, load_kemar
from .room import Room

__all__ = ["VirtualHead", "add_self_noise"]


def add_self_noise(x: np.ndarray, snr_db: float | None, rng: np.random.Generator,
                   reference_power: float | None = None) -> np.ndarray:
    """Add independent white Gaussian noise per ear at ``snr_db`` re ``reference_power``.

    ``reference_power`` defaults to the mean power of ``x`` over samples and ears.
    """
    x = np.asarray(x, dtype=float)
    if snr_db is None:
        return x.copy()
    p = float(np.mean(x ** 2)) if reference_power is None else float(reference_power)
    if p <= 0:
        return x.copy()
    sigma = np.sqrt(p * 10.0 ** (-float(snr_db) / 10.0))
    return x + sigma * rng.standard_normal(x.shape)


class VirtualHead:
    """KEMAR head in a room, rendering mono sources to binaural (n, 2) float64 audio.

    Parameters
    ----------
    room : :class:`Room` (default: ``Room()``, reverberant, T60 0.3 s at 2 m);
        ``Room.anechoic()`` for a free field.
    snr_db : microphone self-noise SNR (dB), None for no noise.
    sample_rate : audio rate; the KEMAR set is converted to it.
    seed : seed of the self-noise generator.
    hrirs : an :class:`HRIRSet` (default: MIT KEMAR at ``sample_rate``).
    """

    def __init__(self, room: Room | None = None, snr_db: float | None = 30.0,
                 sample_rate: int = 16000, seed: int = 0, hrirs: HRIRSet | None = None):
        self.room = Room() if room is None else room
        self.snr_db = None if snr_db is None else float(snr_db)
        self.sample_rate = int(sample_rate)
        self.hrirs = load_kemar(self.sample_rate) if hrirs is None else hrirs
        if self.hrirs.sample_rate != self.sample_rate:
            raise ValueError("HRIR set sample rate differs from sample_rate")
        self.seed = int(seed)
        self._rng = np.random.default_rng(self.seed)

    def __repr__(self) -> str:
        return (f"VirtualHead(room={self.room!r}, snr_db={self.snr_db}, "
                f"sample_rate={self.sample_rate}, seed={self.seed})")

    def reset_noise(self, seed: int | None = None) -> None:
        """Restart the self-noise generator (at ``seed`` or the constructor's seed)."""
        self._rng = np.random.default_rng(self.seed if seed is None else int(seed))

    def binaural_ir(self, az_deg: float, el_deg: float) -> np.ndarray:
        """The room's BRIR ``(n, 2)`` for a source at (az, el) degrees (az LEFT+, el UP+)."""
        return self.room.binaural_ir(az_deg, el_deg, self.hrirs)

    # ------------------------------------------------------------------ rendering
    def render_clean(self, signal, az_deg: float, el_deg: float, keep_tail: bool = False,
                     gain_db: float = 0.0) -> np.ndarray:
        """Noise-free binaural rendering of a mono ``signal`` (n,) -> (n, 2) (or n + tail)."""
        s = np.asarray(signal, dtype=float)
        if s.ndim != 1:
            raise ValueError("signal must be mono, shape (n,)")
        ir = self.binaural_ir(az_deg, el_deg)
        g = 10.0 ** (float(gain_db) / 20.0)
        y = np.stack([fftconvolve(s, ir[:, 0]), fftconvolve(s, ir[:, 1])], axis=1) * g
        if not keep_tail:
            y = y[:s.size]
        return y

    def _noise(self, y: np.ndarray, noise_seed, snr_db) -> np.ndarray:
        snr = self.snr_db if snr_db == "default" else snr_db
        rng = self._rng if noise_seed is None else np.random.default_rng(noise_seed)
        return add_self_noise(y, snr, rng)

    def render(self, signal, az_deg: float, el_deg: float, keep_tail: bool = False,
               noise_seed: int | None = None, snr_db="default") -> np.ndarray:
        """Render one source: ``(n,)`` mono -> ``(n, 2)`` binaural with self-noise.

        ``keep_tail=True`` returns the full convolution (n + len(BRIR) - 1 samples).
        """
        return self._noise(self.render_clean(signal, az_deg, el_deg, keep_tail), noise_seed,
                           snr_db)

    def render_mixture(self, sources, keep_tail: bool = False, noise_seed: int | None = None,
                       snr_db="default") -> np.ndarray:
        """Render simultaneous sources ``[(signal, az, el, gain_db), ...]`` (gain optional).

        Signals may differ in length; the output has the length of the longest (plus the BRIR
        tail if ``keep_tail``). The self-noise SNR refers to the clean mixture's power.
        """
        parts = []
        for item in sources:
            if len(item) == 3:
                sig, az, el = item
                gain = 0.0
            else:
                sig, az, el, gain = item
            parts.append(self.render_clean(sig, az, el, keep_tail=True, gain_db=gain))
        if not parts:
            raise ValueError("no sources")
        n_sig = max(np.asarray(item[0]).size for item in sources)
        n = max(p.shape[0] for p in parts)
        y = np.zeros((n, 2))
        for p in parts:
            y[:p.shape[0]] += p
        if not keep_tail:
            y = y[:n_sig]
        return self._noise(y, noise_seed, snr_db)

    # ------------------------------------------------------------------ moving source
    def render_moving_clean(self, signal, direction_at, hop: int = 640, keep_tail: bool = False,
                            gain_db: float = 0.0) -> np.ndarray:
        """Noise-free rendering of a mono ``signal`` from a moving source (module docstring).

        ``direction_at(t)``: time in seconds from the signal's first sample -> (az, el) degrees;
        it may take an array of times and return two arrays. ``hop``: BRIR update interval in
        samples (default 640 = 40 ms at 16 kHz; the crossfade lasts ``2 * hop``).
        """
        s = np.asarray(signal, dtype=float)
        if s.ndim != 1:
            raise ValueError("signal must be mono, shape (n,)")
        hop = int(hop)
        if hop < 1:
            raise ValueError(f"hop must be >= 1, got {hop}")
        n = s.size
        n_blocks = -(-n // hop) + 1                          # windows overlapping [0, n)
        times = np.arange(n_blocks) * hop / self.sample_rate
        az, el = _directions(direction_at, times)
        win = 0.5 - 0.5 * np.cos(np.pi * np.arange(2 * hop) / hop)    # periodic Hann, 2 hop
        ir0 = self.binaural_ir(az[0], el[0])
        L = ir0.shape[0]
        nfft = next_fast_len(2 * hop + L - 1)
        out = np.zeros((n + 2 * hop + L, 2))
        g = 10.0 ** (float(gain_db) / 20.0)
        cache_key, H = None, None
        for k in range(n_blocks):
            a, b = k * hop - hop, k * hop + hop              # window support [a, b)
            lo, hi = max(a, 0), min(b, n)
            if hi <= lo:
                continue
            key = (float(az[k]), float(el[k]))
            if key != cache_key:
                H = rfft(self.binaural_ir(*key), nfft, axis=0)
                cache_key = key
            blk = np.zeros(2 * hop)
            blk[lo - a:hi - a] = s[lo:hi] * win[lo - a:hi - a]
            y = irfft(rfft(blk, nfft)[:, None] * H, nfft, axis=0)[:2 * hop + L - 1]
            # y[0] sits at sample a; drop what falls before the signal start
            i0 = max(0, -a)
            out[a + i0:a + y.shape[0]] += y[i0:]
        out *= g
        return out[:n + L - 1] if keep_tail else out[:n]

    def render_moving(self, signal, direction_at, hop: int = 640, keep_tail: bool = False,
                      noise_seed: int | None = None, snr_db="default") -> np.ndarray:
        """:meth:`render_moving_clean` plus self-noise (as :meth:`render`)."""
        return self._noise(self.render_moving_clean(signal, direction_at, hop, keep_tail),
                           noise_seed, snr_db)


def _directions(direction_at, times: np.ndarray):
    """(az (n,), el (n,)) of a trajectory callable at ``times`` (vectorised or not)."""
    try:
        az, el = direction_at(times)
        az = np.broadcast_to(np.asarray(az, float), times.shape)
        el = np.broadcast_to(np.asarray(el, float), times.shape)
    except (TypeError, ValueError):
        pairs = [direction_at(float(t)) for t in times]
        az = np.array([p[0] for p in pairs], float)
        el = np.array([p[1] for p in pairs], float)
    return az, el
