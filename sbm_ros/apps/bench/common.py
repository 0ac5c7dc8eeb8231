"""Shared set-up of the benchmark: configuration, the rendered test scenes and helpers.

:class:`BenchConfig` (sizes and settings, full or quick mode), :class:`Scene` (one room's
training white noise, test speech and test white noise on the virtual head), the espeak-ng
speech sources, and the estimation and formatting helpers every protocol uses.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Dict, Optional

import numpy as np

from sbm_ros.core.features import (FeatureConfig, binaural_features, features_from_spectra,
                                   stft)
from sbm_ros.core.gllim import TWO_SOURCE_TOL_GAIN, GLLiM
from sbm_ros.core.posterior import PosteriorEngine, SufficientStats

RATE = 16000
FEATURES = ("ilpd", "ild", "ipd")
COLUMNS = ("WN+WN", "WN+S (WN)", "WN+S (S)", "S+S")
OUTLIER_DEG = 15.0


# --------------------------------------------------------------------------- configuration
@dataclass
class BenchConfig:
    """Sizes and settings of one run (the paper's sizes; :meth:`make` gives quick mode's)."""

    quick: bool = False
    seed: int = 0
    out_dir: str = "docs"
    mask_margin_db: float = 6.0
    sigma_floor: Optional[float] = None
    gamma_reg: Optional[float] = None
    max_iter: Optional[int] = None
    snr_db: float = 30.0
    drr_db: Optional[float] = 4.0
    xllim: bool = True
    virtual: bool = True               # the virtual-head sections
    realdata: bool = True              # the real-data section (:mod:`.realdata`)
    voices: bool = True                # speech activity and voice tracking (:mod:`.voices`)
    data_dir: Optional[str] = None     # its data folder (None: found as realdata explains)
    train_grid: tuple = (24, 18)
    test_grid: tuple = (12, 9)
    k1: int = 32
    k2: int = 100
    n_pairs: int = 20000
    n_mix: int = 1000
    k1_sweep: tuple = (2, 4, 8, 16, 32, 48, 64)
    n1_sweep: tuple = (50, 100, 200, 300, 432)
    k2_sweep: tuple = (10, 20, 50, 100)
    n2_sweep: tuple = (2000, 5000, 10000, 20000)
    n_count: int = 20
    k2_extra: Optional[int] = 200
    fan_snr_sweep: tuple = (None, 30.0, 25.0, 20.0, 18.0, 15.0, 10.0)
    fan_az_deg: float = -60.0
    fan_el_deg: float = -30.0
    naive_reps: int = 3
    xllim_iter: int = 100
    xllim_check: int = 2
    command: str = ""

    @classmethod
    def make(cls, quick: bool, **kw) -> "BenchConfig":
        if quick:
            base = dict(quick=True, train_grid=(16, 12), test_grid=(8, 6), k1=16, k2=10,
                        n_pairs=1500, n_mix=50, k1_sweep=(4, 16), n1_sweep=(48, 192),
                        k2_sweep=(5, 10), n2_sweep=(750, 1500), n_count=4,
                        fan_snr_sweep=(None, 15.0), k2_extra=20,
                        naive_reps=1, xllim_iter=20, xllim_check=1)
        else:
            base = {}
        base.update({k: v for k, v in kw.items() if v is not None or k == "drr_db"})
        return cls(**base)

    def gllim_kwargs(self) -> dict:
        kw = {}
        if self.sigma_floor is not None:
            kw["sigma_floor"] = self.sigma_floor
        if self.gamma_reg is not None:
            kw["gamma_reg"] = self.gamma_reg
        if self.max_iter is not None:
            kw["max_iter"] = self.max_iter
        return kw


def _log(msg: str) -> None:
    print(f"[sbm-bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _cfg(ft: str) -> FeatureConfig:
    return FeatureConfig(sample_rate=RATE, feature_type=ft)


def _slice(ft: str, v: np.ndarray, F: int = 512) -> np.ndarray:
    """The ILD / IPD blocks of ILPD vectors (last axis)."""
    if ft == "ilpd":
        return v
    if ft == "ild":
        return v[..., :F]
    return v[..., F:]


# --------------------------------------------------------------------------- virtual head data
class Scene:
    """Rendered recordings of one room: training white noise, test speech and test white noise.

    Each recording ``x`` comes with ``nf`` (F,), the time-averaged power spectrum of its
    microphone self-noise (see the package docstring).
    """

    def __init__(self, head, camera, bc: BenchConfig, speech_sources, room_name: str,
                 fan=None, fan_snr_db: Optional[float] = None):
        from sbm_ros.sim import grid_positions, white_noise

        self.name = room_name
        self.head = head
        self.fan = fan if fan_snr_db is not None else None
        self.fan_snr_db = fan_snr_db if fan is not None else None
        seed = bc.seed
        self.train_pos = grid_positions(*bc.train_grid, camera)
        self.test_pos = grid_positions(*bc.test_grid, camera)
        self.unit_nf = _unit_noise_psd(seed)
        self.train, self.train_nf = [], []
        for i, (az, el) in enumerate(self.train_pos):
            s = white_noise(1.0, RATE, seed=[seed, i])
            x, nf = self.render(s, az, el, [seed, i, 1], bc.snr_db)
            self.train.append(x)
            self.train_nf.append(nf)
        self.speech, self.speech_nf = [], []
        # Table II cuts 1 s segments: this gain brings each speech segment's source to the
        # white noise's level (RMS 0.1), so the mixtures' level ratio is the drawn 0 +- 0.5 dB
        self.speech_seg_gain = np.array([0.1 / max(float(np.sqrt(np.mean(s[:RATE] ** 2))), 1e-12)
                                         for s in speech_sources])
        for i, ((az, el), s) in enumerate(zip(self.test_pos, speech_sources)):
            x, nf = self.render(s, az, el, [seed, i, 2], bc.snr_db)
            self.speech.append(x)
            self.speech_nf.append(nf)
        self.wn, self.wn_nf = [], []
        for i, (az, el) in enumerate(self.test_pos):
            s = white_noise(1.0, RATE, seed=[seed, 100000 + i])
            x, nf = self.render(s, az, el, [seed, i, 3], bc.snr_db)
            self.wn.append(x)
            self.wn_nf.append(nf)

    def render(self, s, az, el, noise_seed, snr_db):
        y = self.head.render_clean(s, az, el)
        p = float(np.mean(y ** 2))
        sigma2 = p * 10.0 ** (-snr_db / 10.0)
        rng = np.random.default_rng(noise_seed)
        x = y + np.sqrt(sigma2) * rng.standard_normal(y.shape)
        nf = sigma2 * self.unit_nf
        if self.fan is not None:
            # ambient fan noise at fan_snr_db re the recording's own clean power
            g2 = p * 10.0 ** (-self.fan_snr_db / 10.0)
            x = x + np.sqrt(g2) * self.fan.segment(y.shape[0], rng)
            nf = nf + g2 * self.fan.psd(_cfg("ilpd"))
        return x, nf


_UNIT_NF: Dict[int, np.ndarray] = {}


def _unit_noise_psd(seed: int) -> np.ndarray:
    """Time-averaged |L|^2+|R|^2 per bin of 4 s of unit-variance self-noise (measured)."""
    if seed not in _UNIT_NF:
        n = np.random.default_rng([seed, 424242]).standard_normal((4 * RATE, 2))
        _UNIT_NF[seed] = np.mean(np.abs(stft(n, _cfg("ilpd"))) ** 2, axis=0).sum(axis=1)
    return _UNIT_NF[seed]


def _speech_sources(n: int, seed: int, langs=("en", "fr", "el", "am")):
    """One 1-5 s espeak-ng counting utterance per test position (as make_speech_test_set)."""
    from sbm_ros.sim import VOICES, count_utterances, speech

    rng = np.random.default_rng([int(seed), 7919])
    out, meta = [], []
    for i in range(n):
        lang = langs[i % len(langs)]
        voices = VOICES.get(lang, [lang])
        for _ in range(20):
            voice = voices[int(rng.integers(len(voices)))]
            k = int(rng.integers(2, 7))
            first = int(rng.integers(1, 21 - k + 1))
            words = count_utterances(lang, 20, as_digits=(lang == "am"))[first - 1:first - 1 + k]
            text = ", ".join(words)
            s = speech(text, voice=voice, rate=RATE)
            if 1.0 <= s.size / RATE <= 5.0:
                break
        out.append(s)
        meta.append({"text": text, "voice": voice, "duration_s": s.size / RATE})
    return out, meta


# --------------------------------------------------------------------------- estimation helpers
def _train_gllim(X, Y, K, bc: BenchConfig, seed_offset=0, two_source=False):
    """A GLLiM fit and its (CPU s, wall s); ``two_source``: the stopping rule of two-source
    training (``tol_gain``, as :func:`sbm_ros.core.training.train_model`)."""
    kw = bc.gllim_kwargs()
    if two_source:
        kw.setdefault("tol_gain", TWO_SOURCE_TOL_GAIN)
    g = GLLiM(n_components=int(K), random_state=bc.seed + seed_offset, **kw)
    c0, w0 = time.process_time(), time.perf_counter()
    g.fit(X, Y)
    return g, time.process_time() - c0, time.perf_counter() - w0


def _mean_vectors(recs, cfg):
    return np.stack([features_from_spectra(stft(x, cfg), cfg)[0].mean(axis=0) for x in recs])


def _stats_from_signal(x, cfg, eps):
    Y, P = binaural_features(x, cfg)
    chi = P >= eps
    return SufficientStats.from_frames(Y, chi)


def _post_mean(engine: PosteriorEngine, st: SufficientStats) -> np.ndarray:
    if st.n_active == 0:
        return np.full(engine.L, np.nan)
    return engine.posterior(st).mean()


def _err_summary(err: np.ndarray) -> tuple:
    err = np.asarray(err, float)
    return float(np.mean(err)), float(np.std(err))


def _fmt(avg, std=None, nd=2) -> str:
    if avg is None or (isinstance(avg, float) and not np.isfinite(avg)):
        return "–"
    if std is None:
        return f"{avg:.{nd}f}"
    return f"{avg:.{nd}f} ± {std:.{nd}f}"


def _match2(est: np.ndarray, true: np.ndarray, azimuth_only=False):
    """Best assignment of two estimates to two true sources. est/true: (2, 2) rows (az, el).

    Returns (az_err (2,), el_err (2,), gtea (2,)) in the order of ``true``.
    """
    best = None
    for perm in ((0, 1), (1, 0)):
        e = est[list(perm)]
        daz = np.abs(e[:, 0] - true[:, 0])
        delv = np.zeros(2) if azimuth_only else np.abs(e[:, 1] - true[:, 1])
        g = np.hypot(daz, delv)
        if best is None or g.sum() < best[2].sum():
            best = (daz, delv, g)
    return best
