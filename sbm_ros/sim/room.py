"""Room model for the virtual head: binaural room impulse responses (BRIRs).

Model (``Room.binaural_ir``), all at the HRIR sample rate:

1. **Direct path** -- the interpolated KEMAR HRIR for the source direction, gain ``1 / r``
   (``r`` = source distance in metres, so 0.5 at the default 2 m), at time 0 (the HRIR's own
   onset delay, about 0.5-1.5 ms, is kept; the common propagation delay ``r / c`` is dropped).
2. **Early reflections** -- the 6 first-order image sources of a shoebox room (floor, ceiling and
   four walls). The head is at ``head_pos`` facing +x, y to its LEFT, z up (room axes aligned
   with the head). Each image is rendered with the interpolated HRIR of *its own* direction of
   arrival (KEMAR covers the full azimuth circle, so reflections from behind get measured
   rear HRIRs; arrival elevations below -40 deg, e.g. the floor reflection, are clamped to
   -40 deg), gain ``beta / r_image``, delayed by ``(r_image - r) / c`` with the fractional part
   applied as a phase ramp. ``beta = sqrt(1 - alpha)`` with the Sabine absorption coefficient
   ``alpha = 0.161 V / (S T60)`` (uniform over all surfaces, frequency independent).
3. **Late diffuse tail** -- exponentially decaying Gaussian noise, amplitude
   ``10 ** (-3 t / T60)`` (60 dB energy decay in T60; ``t`` from the direct arrival), starting
   ``tail_start_s`` (20 ms) after the direct sound with a ``tail_fade_s`` (10 ms) raised-cosine
   fade-in, lasting until the -60 dB point. The two ears are partially coherent: with two
   independent noises n1, n2, ``L = a n1 + b n2``, ``R = a n1 - b n2`` per frequency, with
   ``a**2 - b**2 = gamma(f)``, ``a**2 + b**2 = 1`` and the diffuse-field coherence model
   ``gamma(f) = sinc(2 f d / c)`` (``d = coherence_distance`` = 0.28 m: coherence 1 at DC, first
   zero at 613 Hz, |gamma| < 0.1 above 2 kHz). Both ears are coloured with the KEMAR
   diffuse-field magnitude response (RMS over all 710 directions).
   **Spatial coherence between source positions** (``tail_model="coherent"``, the default): in
   a real room the late reverberation of two nearby source positions is strongly correlated at
   low frequencies and independent at high ones; for a diffuse field the correlation between
   positions a distance ``d`` apart is ``sin(k d) / (k d)``. The tail is therefore built as a
   sum of ``tail_components`` (64) stationary coloured-noise plane waves with fixed random
   isotropic directions ``u_j`` (seeded by the room's ``seed``): the source at position ``p``
   (distance x unit vector of (az, el)) excites component j with the delay ``-u_j . p / c``, so
   ``E_j cos(k u_j . (p1 - p2)) = sinc(k |p1 - p2|)`` is the position coherence, and the
   decay envelope is applied after the sum. At the paper's grid spacing (1.2 deg = 4 cm at
   2 m) neighbouring tails are 0.9-correlated at 1 kHz and essentially independent above
   4 kHz. ``tail_model="independent"`` draws an independent tail per direction (harsher than a
   real room); ``"shared"`` uses one tail for every direction (kinder than a real room).

Level of the reverberation: ``drr_db`` is the direct-to-reverberant energy ratio (summed over
both ears) for a *frontal* source at the room's distance: reverberant = early reflections +
tail. The tail level is set once per HRIR set from that frontal calibration and then used for
every direction (a room's diffuse field does not depend on the source direction; the DRR of a
lateral source therefore differs a little). If the physical first-order reflections alone
would exceed half of the reverberant energy budget, they are scaled down to exactly half.
With the defaults (6 x 5 x 3.2 m room, T60 0.3 s, 2 m, DRR +4 dB) the
physical reflections of a frontal source carry -2 dB re the direct sound, so they are scaled by
0.56 and reflections and tail each carry half of the reverberant energy (each 7 dB below the
direct sound); measured T20 of the resulting BRIRs: 0.31-0.34 s.
``drr_db=None`` instead uses the statistical (Sabine diffuse-field) value
``10 log10(A / (16 pi r^2))`` with ``A = 0.161 V / T60`` -- about
-5.9 dB for the default room at 2 m -- and unscaled reflections. The default +4 dB follows the
project's benchmark brief (a realistic DRR for a talker at 2 m facing the head).

Not modelled: frequency-dependent absorption (T60 is the same at all frequencies), higher-order
discrete reflections (their energy is in the diffuse tail), air absorption, source directivity.

``Room.anechoic()`` gives the direct path only.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from .hrtf import HRIRSet, direction_to_vector, vector_to_direction

SPEED_OF_SOUND = 343.0

__all__ = ["Room", "schroeder_decay", "estimate_t60", "SPEED_OF_SOUND"]


class Room:
    """Shoebox room + late tail model (see the module docstring).

    Parameters
    ----------
    t60 : reverberation time in seconds (0 or ``anechoic=True`` for a free field).
    distance : source distance from the head centre, metres.
    dims : room size (Lx, Ly, Lz) in metres.
    head_pos : head centre in room coordinates (head faces +x, y is its left, z up).
    drr_db : direct-to-reverberant ratio for a frontal source (None: Sabine estimate).
    tail_start_s, tail_fade_s : start (after the direct sound) and fade-in of the diffuse tail.
    coherence_distance : effective ear distance for the interaural coherence model, metres.
    seed : seed of the diffuse tail noise.
    tail_model : "coherent" (default), "independent" or "shared" (see the module docstring).
    tail_components : number of plane-wave components of the coherent tail.
    tail_per_direction : legacy switch: True means ``tail_model="independent"``, False
        ``"shared"``; None (default) leaves ``tail_model`` in force.
    cache_size : number of BRIRs kept in the per-direction LRU cache.
    """

    def __init__(self, t60: float = 0.3, distance: float = 2.0, dims=(6.0, 5.0, 3.2),
                 head_pos=(2.0, 2.5, 1.5), drr_db: float | None = 4.0,
                 tail_start_s: float = 0.020, tail_fade_s: float = 0.010,
                 coherence_distance: float = 0.28, seed: int = 0, anechoic: bool = False,
                 cache_size: int = 512, tail_per_direction: bool | None = None,
                 tail_model: str = "coherent", tail_components: int = 64):
        self.t60 = float(t60)
        self.distance = float(distance)
        self.dims = tuple(float(d) for d in dims)
        self.head_pos = np.asarray(head_pos, dtype=float)
        self.drr_db = None if drr_db is None else float(drr_db)
        self.tail_start_s = float(tail_start_s)
        self.tail_fade_s = float(tail_fade_s)
        self.coherence_distance = float(coherence_distance)
        self.seed = int(seed)
        self.is_anechoic = bool(anechoic) or self.t60 <= 0.0
        self.cache_size = int(cache_size)
        if tail_per_direction is not None:
            tail_model = "independent" if tail_per_direction else "shared"
        if tail_model not in ("coherent", "independent", "shared"):
            raise ValueError(f"tail_model must be 'coherent', 'independent' or 'shared', "
                             f"got {tail_model!r}")
        self.tail_model = tail_model
        self.tail_per_direction = tail_model == "independent"
        self.tail_components = int(tail_components)
        self._coherent_basis = {}
        if self.distance <= 0:
            raise ValueError("distance must be positive")
        if len(self.dims) != 3 or min(self.dims) <= 0:
            raise ValueError("dims must be three positive lengths")
        if np.any(self.head_pos <= 0) or np.any(self.head_pos >= np.asarray(self.dims)):
            raise ValueError("head_pos must be inside the room")
        self._cache: OrderedDict = OrderedDict()
        self._calib = {}

    # ------------------------------------------------------------------ constructors
    @classmethod
    def anechoic(cls, distance: float = 2.0, **kw) -> "Room":  # noqa: D401 - spec name
        """Free field: direct path only (``Room.anechoic()``)."""
        return cls(t60=0.0, distance=distance, anechoic=True, **kw)

    def __repr__(self) -> str:
        if self.is_anechoic:
            return f"Room(anechoic, distance={self.distance} m)"
        return (f"Room(t60={self.t60} s, distance={self.distance} m, dims={self.dims}, "
                f"drr_db={self.drr_db}, seed={self.seed})")

    def describe(self) -> dict:
        """Parameters as a plain dict (for reports)."""
        d = {"anechoic": self.is_anechoic, "distance_m": self.distance}
        if not self.is_anechoic:
            d.update(t60_s=self.t60, dims_m=list(self.dims), head_pos_m=self.head_pos.tolist(),
                     drr_db=self.drr_db, sabine_drr_db=self.sabine_drr_db(),
                     absorption=self.absorption, reflection_coefficient=self.beta,
                     tail_start_s=self.tail_start_s, coherence_distance_m=self.coherence_distance,
                     seed=self.seed, tail_model=self.tail_model,
                     model="direct HRIR/r + 6 first-order image sources (Sabine beta) + "
                           "exponential partially-coherent diffuse tail")
        return d

    # ------------------------------------------------------------------ room acoustics
    @property
    def volume(self) -> float:
        lx, ly, lz = self.dims
        return lx * ly * lz

    @property
    def surface(self) -> float:
        lx, ly, lz = self.dims
        return 2.0 * (lx * ly + lx * lz + ly * lz)

    @property
    def absorption(self) -> float:
        """Sabine mean absorption coefficient alpha = 0.161 V / (S T60), clipped to [0, 1]."""
        if self.is_anechoic:
            return 1.0
        return float(min(1.0, 0.161 * self.volume / (self.surface * self.t60)))

    @property
    def beta(self) -> float:
        """Pressure reflection coefficient sqrt(1 - alpha)."""
        return float(np.sqrt(max(0.0, 1.0 - self.absorption)))

    def sabine_drr_db(self) -> float:
        """Statistical DRR at the room's distance: 10 log10(A / (16 pi r^2)), A = 0.161 V / T60."""
        if self.is_anechoic:
            return float("inf")
        area = 0.161 * self.volume / self.t60
        return float(10.0 * np.log10(area / (16.0 * np.pi * self.distance ** 2)))

    def source_position(self, az_deg: float, el_deg: float) -> np.ndarray:
        """Source position in room coordinates (clamped 0.1 m inside the walls)."""
        p = self.head_pos + self.distance * direction_to_vector(az_deg, el_deg)
        return np.clip(p, 0.1, np.asarray(self.dims) - 0.1)

    def image_sources(self, az_deg: float, el_deg: float):
        """First-order image sources: list of (position (3,), surface name)."""
        s = self.source_position(az_deg, el_deg)
        lx, ly, lz = self.dims
        out = []
        for axis, (lo_name, hi_name), length in ((0, ("back wall", "front wall"), lx),
                                                 (1, ("right wall", "left wall"), ly),
                                                 (2, ("floor", "ceiling"), lz)):
            lo = s.copy()
            lo[axis] = -s[axis]
            hi = s.copy()
            hi[axis] = 2.0 * length - s[axis]
            out.append((lo, lo_name))
            out.append((hi, hi_name))
        return out

    # ------------------------------------------------------------------ BRIR synthesis
    def _ir_length(self, hrirs: HRIRSet) -> int:
        if self.is_anechoic:
            return hrirs.n_taps
        fs = hrirs.sample_rate
        return int(np.ceil((self.tail_start_s + self.t60) * fs)) + hrirs.n_taps

    def _early(self, az_deg, el_deg, hrirs: HRIRSet, n: int) -> np.ndarray:
        fs = hrirs.sample_rate
        out = np.zeros((n, 2))
        for pos, _name in self.image_sources(az_deg, el_deg):
            rel = pos - self.head_pos
            r_img = float(np.linalg.norm(rel))
            a, e = vector_to_direction(rel)
            delay = (r_img - self.distance) / SPEED_OF_SOUND * fs
            n0 = int(np.floor(delay))
            frac = delay - n0
            h = hrirs.interpolate(float(a), float(e), extra_delay=frac) * (self.beta / r_img)
            m = min(h.shape[0], n - n0)
            if m > 0 and n0 >= 0:
                out[n0:n0 + m] += h[:m]
        return out

    def _ear_spectra(self, hrirs: HRIRSet, n: int, rng: np.random.Generator):
        """Spectra (2, bins) of one stationary, interaurally partially coherent noise pair."""
        fs = hrirs.sample_rate
        spec = np.fft.rfft(rng.standard_normal((2, n)), axis=1)
        f = np.fft.rfftfreq(n, 1.0 / fs)
        gamma = np.sinc(2.0 * f * self.coherence_distance / SPEED_OF_SOUND)
        a = np.sqrt((1.0 + gamma) / 2.0)
        b = np.sqrt((1.0 - gamma) / 2.0)
        mag = hrirs.diffuse_field_magnitude(n)            # (bins, 2)
        return np.stack([(a * spec[0] + b * spec[1]) * mag[:, 0],
                         (a * spec[0] - b * spec[1]) * mag[:, 1]])

    def _coherent_spectra(self, az_deg, el_deg, hrirs: HRIRSet, n: int):
        """Tail spectra (2, bins) of the position-coherent plane-wave tail model."""
        key = (id(hrirs), n)
        if key not in self._coherent_basis:
            rng = np.random.default_rng(np.random.SeedSequence([self.seed & 0xFFFFFFFF, 7]))
            J = self.tail_components
            u = rng.standard_normal((J, 3))
            u /= np.linalg.norm(u, axis=1, keepdims=True)
            comps = np.stack([self._ear_spectra(hrirs, n, rng) for _ in range(J)])
            self._coherent_basis[key] = (u, comps / np.sqrt(J))
        u, comps = self._coherent_basis[key]
        p = self.distance * direction_to_vector(float(az_deg), float(el_deg))
        delays = -(u @ p) / SPEED_OF_SOUND                 # (J,) seconds
        f = np.fft.rfftfreq(n, 1.0 / hrirs.sample_rate)
        phase = np.exp(-2j * np.pi * np.outer(delays, f))  # (J, bins)
        return np.einsum("jb,jeb->eb", phase, comps)

    def _tail_shape(self, hrirs: HRIRSet, n: int, rng: np.random.Generator = None,
                    spectra=None) -> np.ndarray:
        """Unit-energy diffuse tail (n, 2) (before level scaling)."""
        fs = hrirs.sample_rate
        # direct arrival time reference: frontal onset (mean of both ears)
        _, d0 = hrirs.interpolate_parts(0.0, 0.0)
        t_dir = float(np.mean(d0))
        if spectra is None:
            spectra = self._ear_spectra(hrirs, n, rng)
        tail = np.stack([np.fft.irfft(spectra[0], n=n), np.fft.irfft(spectra[1], n=n)], axis=1)
        t = np.arange(n) - t_dir
        start = self.tail_start_s * fs
        fade = max(1.0, self.tail_fade_s * fs)
        env = 10.0 ** (-3.0 * t / (self.t60 * fs))
        ramp = np.clip((t - start) / fade, 0.0, 1.0)
        env *= 0.5 - 0.5 * np.cos(np.pi * ramp)
        env[t < start] = 0.0
        tail *= env[:, None]
        energy = float(np.sum(tail ** 2))
        return tail / np.sqrt(energy) if energy > 0 else tail

    def _calibration(self, hrirs: HRIRSet):
        """(early_scale, tail_energy) for this HRIR set, from a frontal source."""
        key = (id(hrirs), hrirs.name)
        if key not in self._calib:
            n = self._ir_length(hrirs)
            direct = hrirs.interpolate(0.0, 0.0) / self.distance
            e_dir = float(np.sum(direct ** 2))
            early = self._early(0.0, 0.0, hrirs, n)
            e_early = float(np.sum(early ** 2))
            if self.drr_db is None:
                budget = e_dir * 10.0 ** (-self.sabine_drr_db() / 10.0)
                scale = 1.0
                if e_early > budget:        # keep at least some tail
                    scale = float(np.sqrt(0.5 * budget / e_early))
            else:
                budget = e_dir * 10.0 ** (-self.drr_db / 10.0)
                scale = 1.0
                if e_early > 0.5 * budget:
                    scale = float(np.sqrt(0.5 * budget / e_early))
            e_tail = max(0.0, budget - scale ** 2 * e_early)
            self._calib[key] = (scale, e_tail)
        return self._calib[key]

    def components(self, az_deg: float, el_deg: float, hrirs: HRIRSet) -> dict:
        """The BRIR split into ``direct``, ``early`` and ``tail`` arrays of equal shape (n, 2)."""
        n = self._ir_length(hrirs)
        direct = np.zeros((n, 2))
        h = hrirs.interpolate(az_deg, el_deg) / self.distance
        direct[:h.shape[0]] = h
        if self.is_anechoic:
            zero = np.zeros_like(direct)
            return {"direct": direct, "early": zero, "tail": zero.copy()}
        scale, e_tail = self._calibration(hrirs)
        early = self._early(az_deg, el_deg, hrirs, n) * scale
        if self.tail_model == "coherent":
            spectra = self._coherent_spectra(az_deg, el_deg, hrirs, n)
            tail = self._tail_shape(hrirs, n, spectra=spectra) * np.sqrt(e_tail)
        else:
            if self.tail_model == "independent":
                ss = np.random.SeedSequence([self.seed & 0xFFFFFFFF,
                                             int(round((float(az_deg) % 360.0) * 1e6)),
                                             int(round((float(el_deg) + 360.0) * 1e6))])
            else:
                ss = np.random.SeedSequence([self.seed & 0xFFFFFFFF])
            tail = self._tail_shape(hrirs, n, np.random.default_rng(ss)) * np.sqrt(e_tail)
        return {"direct": direct, "early": early, "tail": tail}

    def binaural_ir(self, az_deg: float, el_deg: float, hrirs: HRIRSet) -> np.ndarray:
        """Binaural room impulse response ``(n, 2)`` (column 0 = LEFT) for a source at (az, el)."""
        key = (id(hrirs), round(float(az_deg), 9), round(float(el_deg), 9))
        ir = self._cache.get(key)
        if ir is not None:
            self._cache.move_to_end(key)
            return ir
        c = self.components(az_deg, el_deg, hrirs)
        ir = c["direct"] + c["early"] + c["tail"]
        ir.setflags(write=False)
        self._cache[key] = ir
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return ir

    def drr(self, az_deg: float, el_deg: float, hrirs: HRIRSet) -> float:
        """Direct-to-reverberant energy ratio (dB, both ears) of the BRIR for this direction."""
        c = self.components(az_deg, el_deg, hrirs)
        rev = float(np.sum(c["early"] ** 2) + np.sum(c["tail"] ** 2))
        if rev == 0:
            return float("inf")
        return float(10.0 * np.log10(np.sum(c["direct"] ** 2) / rev))


# ---------------------------------------------------------------------- measurements
def schroeder_decay(ir: np.ndarray) -> np.ndarray:
    """Energy decay curve in dB (Schroeder backward integration), channels summed."""
    ir = np.asarray(ir, dtype=float)
    e = ir ** 2 if ir.ndim == 1 else np.sum(ir ** 2, axis=1)
    edc = np.cumsum(e[::-1])[::-1]
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(edc / edc[0])


def estimate_t60(ir: np.ndarray, sample_rate: int, fit_db=(-5.0, -25.0)) -> float:
    """T60 from a least-squares line fit of the Schroeder curve between ``fit_db``
    (T20 default)."""
    edc = schroeder_decay(ir)
    hi, lo = fit_db
    idx = np.where((edc <= hi) & (edc >= lo))[0]
    if idx.size < 2:
        raise ValueError("decay range not covered by the impulse response")
    t = idx / float(sample_rate)
    slope, _ = np.polyfit(t, edc[idx], 1)
    return float(-60.0 / slope)
