"""Table II: two simultaneous sources, SBM-2 (ILPD, ILD, IPD) and PHAT-histogram.

The two-source training set is synthesised from the one-source training recordings in the STFT
domain (:func:`synth_pairs`); the test mixtures are WN+WN, WN+S and S+S sums of one-second test
recordings (:func:`make_mixtures`), localised by every method (:class:`_MixtureTest`).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from sbm_ros.apps.bench.common import (FEATURES, OUTLIER_DEG, RATE, BenchConfig, Scene, _cfg,
                                       _err_summary, _log, _match2, _post_mean, _slice,
                                       _stats_from_signal, _train_gllim)
from sbm_ros.core.dataset import canonical_pair
from sbm_ros.core.features import features_from_spectra, stft
from sbm_ros.core.posterior import PosteriorEngine, SufficientStats


def _spectra64(recs, T=None):
    cfg = _cfg("ilpd")
    specs = [stft(x, cfg) for x in recs]
    T = T or min(s.shape[0] for s in specs)
    return np.stack([s[:T] for s in specs]).astype(np.complex64)


def synth_pairs(S64: np.ndarray, targets: np.ndarray, n_pairs: int, seed: int,
                level_std_db: float = 0.5, batch: int = 32):
    """Two-source training set from single-source spectrograms (complex64 (n, T, F, 2)).

    Returns (X (n_pairs, 4) canonical, Y (n_pairs, 3F) ILPD mean vectors).
    """
    cfg = _cfg("ilpd")
    n = S64.shape[0]
    rng = np.random.default_rng([seed, 2])
    i = rng.integers(0, n, n_pairs)
    j = (i + rng.integers(1, n, n_pairs)) % n
    gain_db = rng.normal(0.0, level_std_db, n_pairs)
    g1 = (10 ** (gain_db / 40.0)).astype(np.float32)
    g2 = (10 ** (-gain_db / 40.0)).astype(np.float32)
    Y = np.empty((n_pairs, cfg.dim))
    T = S64.shape[1]

    def work(start):
        sl = slice(start, min(start + batch, n_pairs))
        mix = g1[sl, None, None, None] * S64[i[sl]] + g2[sl, None, None, None] * S64[j[sl]]
        B = mix.shape[0]
        f, _ = features_from_spectra(mix.reshape(B * T, *mix.shape[2:]), cfg)
        Y[sl] = f.reshape(B, T, -1).mean(axis=1)

    with ThreadPoolExecutor(max_workers=2) as ex:
        list(ex.map(work, range(0, n_pairs, batch)))
    X = np.stack([canonical_pair(targets[a], targets[b]) for a, b in zip(i, j)])
    return X, Y


def make_mixtures(scene: Scene, n_mix: int, seed: int):
    """Test pairs per type: list of (kind_i, idx_i, kind_j, idx_j, g1, g2)."""
    pos = scene.test_pos
    n = len(pos)
    rng = np.random.default_rng([seed, 3])
    out = {}
    for t, kinds in (("WN+WN", ("wn", "wn")), ("WN+S", ("wn", "s")), ("S+S", ("s", "s"))):
        lst = []
        while len(lst) < n_mix:
            a, b = rng.integers(0, n, 2)
            d = np.abs(pos[a] - pos[b])
            if a == b or d[0] > 20 or d[1] > 20 or np.hypot(*d) < 1.5:
                continue
            gd = rng.normal(0.0, 0.5)
            lst.append((kinds[0], int(a), kinds[1], int(b), 10 ** (gd / 40), 10 ** (-gd / 40)))
        out[t] = lst
    return out


def _train_sbm2(scene: Scene, bc: BenchConfig, out: dict):
    """The synthesised two-source training pairs and SBM-2 models, one per feature type.

    Returns (X2, Y2 (ILPD), {feature type: GLLiM}).
    """
    _log("two-source: spectrograms of the training recordings (complex64)")
    c0, w0 = time.process_time(), time.perf_counter()
    S64 = _spectra64(scene.train)
    X2, Y2 = synth_pairs(S64, scene.train_pos, bc.n_pairs, bc.seed)
    synth_cpu, synth_wall = time.process_time() - c0, time.perf_counter() - w0
    out["synth"] = dict(cpu_s=synth_cpu, wall_s=synth_wall, n=bc.n_pairs,
                        mem_mb=S64.nbytes / 2 ** 20)
    del S64
    _log(f"two-source: {bc.n_pairs} pairs synthesised in {synth_wall:.1f} s")
    models = {}
    for ft in FEATURES:
        g, cpu_t, wall_t = _train_gllim(X2, _slice(ft, Y2), bc.k2, bc, two_source=True)
        models[ft] = g
        out.setdefault("train2", {})[ft] = dict(cpu_s=cpu_t, wall_s=wall_t,
                                                K=int(g.n_components_), n_iter=int(g.n_iter_))
        _log(f"two-source: trained SBM-2 {ft} (K={g.n_components_}) in {wall_t:.1f} s")
    return X2, Y2, models


def _train_extra(X2, Y2, bc: BenchConfig, out: dict):
    """Beyond the protocol: the same pairs with ``bc.k2_extra`` components (ILPD); its engine,
    or None when ``k2_extra`` is not set."""
    if not bc.k2_extra:
        return None
    gx, cpu_t, wall_t = _train_gllim(X2, Y2, bc.k2_extra, bc, two_source=True)
    extra = PosteriorEngine(gx, n_bins=_cfg("ilpd").n_freq)
    out["train2_extra"] = dict(K0=int(bc.k2_extra), K=int(gx.n_components_), cpu_s=cpu_t,
                               wall_s=wall_t, n_iter=int(gx.n_iter_))
    _log(f"two-source: trained SBM-2 ILPD with K={bc.k2_extra} in {wall_t:.1f} s")
    return extra


class _MixtureTest:
    """Localises the two-source test mixtures of one room with every method.

    ``spec``/``nfs``: test spectrograms (1 s, complex64) and noise PSDs of the white-noise
    ("wn") and speech ("s") recordings, speech scaled by the scene's segment gain. Collected on
    the way: ``wns`` WN+S diagnostics (separation, speech-dominated fraction, S GTEA, WN GTEA),
    ``ss`` S+S (statistics, truth) pairs, ``nomask`` S+S SBM-2 ILPD GTEAs without the mask.
    """

    def __init__(self, scene: Scene, engines: dict, extra, ph, margin: float):
        cfg = self.cfg = _cfg("ilpd")
        self.scene, self.engines, self.extra, self.ph, self.margin = (scene, engines, extra, ph,
                                                                      margin)
        T1 = (RATE - cfg.n_fft) // cfg.hop + 1
        gs = scene.speech_seg_gain
        self.spec = {"wn": _spectra64([x[:RATE] for x in scene.wn], T1),
                     "s": _spectra64([x[:RATE] * g for x, g in zip(scene.speech, gs)], T1)}
        self.nfs = {"wn": np.array(scene.wn_nf),
                    "s": np.array(scene.speech_nf) * gs[:, None] ** 2}
        self.wns, self.ss, self.nomask = [], [], []

    def localise(self, t: str, mixture: tuple, errs: dict) -> None:
        """Appends one :func:`_match2` result per method to ``errs`` for one mixture of type t."""
        ka, a, kb, b, g1, g2 = mixture
        spec, nfs = self.spec, self.nfs
        mix = (g1 * spec[ka][a] + g2 * spec[kb][b]).astype(np.complex128)
        eps = (g1 ** 2 * nfs[ka][a] + g2 ** 2 * nfs[kb][b]) * self.margin
        Y, P = features_from_spectra(mix, self.cfg)
        st = SufficientStats.from_frames(Y, P >= eps)
        true = np.stack([self.scene.test_pos[a], self.scene.test_pos[b]])
        for ft in FEATURES:
            sub = SufficientStats(n=st.n, s=_slice(ft, st.s), q=_slice(ft, st.q))
            m = _post_mean(self.engines[ft], sub).reshape(2, 2)
            errs[ft].append(_match2(m, true))
        if self.extra is not None:
            errs["extra"].append(_match2(_post_mean(self.extra, st).reshape(2, 2), true))
        if t == "WN+S":
            p_wn = np.sum(np.abs(g1 * spec[ka][a]) ** 2, axis=-1)
            p_s = np.sum(np.abs(g2 * spec[kb][b]) ** 2, axis=-1)
            e = errs["ilpd"][-1][2]
            self.wns.append((float(np.hypot(*(true[0] - true[1]))), float(np.mean(p_s > p_wn)),
                             float(e[1]), float(e[0])))
        if t == "S+S":
            self.ss.append((st, true))
            st0 = SufficientStats.from_frames(Y, np.ones_like(P, dtype=bool))
            m0 = _post_mean(self.engines["ilpd"], st0).reshape(2, 2)
            self.nomask.append(_match2(m0, true)[2])
        errs["phat"].append(self._phat(mix, true))

    def _phat(self, mix, true):
        d, act = self.ph.frame_delays_from_spectra(mix)
        dl = self.ph.delays_from_frames(d[act], 2)
        if dl.size == 0:
            az = np.array([np.nan, np.nan])
        else:
            az = self.ph.delay_to_target(dl)
        e = np.stack([az, np.zeros(2)], axis=1)
        return _match2(e, true, azimuth_only=True)


def _columns(t: str, errs: dict, res: dict) -> None:
    """Table II cells of mixture type t (WN+S gives two columns) from the matched errors."""
    for mth, lst_e in errs.items():
        daz = np.array([e[0] for e in lst_e])
        delv = np.array([e[1] for e in lst_e])
        gt = np.array([e[2] for e in lst_e])
        if t == "WN+S":
            cols = {"WN+S (WN)": [0], "WN+S (S)": [1]}
        else:
            cols = {t: [0, 1]}
        for col, idx in cols.items():
            az_c, el_c, g_c = daz[:, idx].ravel(), delv[:, idx].ravel(), gt[:, idx].ravel()
            inl = g_c <= OUTLIER_DEG
            res[mth][col] = dict(
                az=_err_summary(az_c[inl]) if inl.any() else (np.nan, np.nan),
                el=(_err_summary(el_c[inl]) if inl.any() else (np.nan, np.nan))
                if mth != "phat" else (None, None),
                out=float(100 * np.mean(~inl)), mean_gtea_all=float(np.mean(g_c)))


def _cpu_per_mixture(test: _MixtureTest, ss_mixes: list, out: dict) -> None:
    """CPU time per 1 s mixture, end to end from the time-domain mixture (ILPD, K2; PHAT)."""
    scene, margin, nfs = test.scene, test.margin, test.nfs
    gs = scene.speech_seg_gain
    sub = ss_mixes[: min(50, len(ss_mixes))]
    sigs = [(g1 * gs[a] * scene.speech[a][:RATE] + g2 * gs[b] * scene.speech[b][:RATE],
             (g1 ** 2 * nfs["s"][a] + g2 ** 2 * nfs["s"][b]) * margin)
            for _, a, _, b, g1, g2 in sub]
    c0 = time.process_time()
    for x, eps in sigs:
        _post_mean(test.engines["ilpd"], _stats_from_signal(x, test.cfg, eps))
    out["sbm2_cpu_per_mixture"] = (time.process_time() - c0) / len(sigs)
    c0 = time.process_time()
    for x, _ in sigs:
        test.ph.predict(x, 2)
    out["phat2_cpu_per_mixture"] = (time.process_time() - c0) / len(sigs)


def table2(scene: Scene, bc: BenchConfig, out: dict):
    """SBM-2 and PHAT on the two-source mixtures of one room; needs Table I's PHAT-histogram
    model of the same room in ``out`` (``out["phat_models"]``)."""
    X2, Y2, models = _train_sbm2(scene, bc, out)
    extra = _train_extra(X2, Y2, bc, out)
    engines = {ft: PosteriorEngine(models[ft], n_bins=_cfg("ilpd").n_freq) for ft in FEATURES}
    test = _MixtureTest(scene, engines, extra, out["phat_models"][scene.name],
                        10 ** (bc.mask_margin_db / 10))
    mixes = make_mixtures(scene, bc.n_mix, bc.seed)
    methods = FEATURES + ("phat",) + (() if extra is None else ("extra",))
    res = {m: {} for m in methods}
    for t, lst in mixes.items():
        errs = {m: [] for m in methods}
        for mixture in lst:
            test.localise(t, mixture, errs)
        _columns(t, errs, res)
        if t == "S+S":
            gm = np.mean([e[2] for e in errs["ilpd"]])
            out["mask_effect2"] = (float(gm), float(np.mean(test.nomask)))
    out["table2"] = res
    out["wn_s_diag"] = np.array(test.wns).reshape(-1, 4)
    _cpu_per_mixture(test, mixes["S+S"], out)
    out["models2"] = models
    out["pairs"] = (X2, Y2)
    out["ss_stats"] = test.ss
    return res
