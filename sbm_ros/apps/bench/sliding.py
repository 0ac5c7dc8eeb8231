"""Sliding window: talkers counting and moving, localised online by :class:`SBMLocalizer`.

One talker counting 1..n (720 ms window, SBM-1 ILPD) and two talkers counting at once in two
languages (1200 ms window, SBM-2 ILPD); estimates every 40 ms, summarised per utterance. Also
times each estimate and, on a few full windows, the naive per-entry posterior.
"""

from __future__ import annotations

import time

import numpy as np

from sbm_ros.apps.bench.common import RATE, BenchConfig, _cfg, _log, _match2
from sbm_ros.core.features import expand_mask, stft
from sbm_ros.core.localizer import SBMLocalizer
from sbm_ros.core.model import SBMModel
from sbm_ros.core.posterior import posterior_direct


def _random_positions(rng, camera, n, pair=False, margin=0.06):
    """Random directions uniform in pixels inside the central part of the image."""
    out = []
    while len(out) < n:
        u = rng.uniform(margin, 1 - margin, 2 if pair else 1) * camera.width
        v = rng.uniform(margin, 1 - margin, 2 if pair else 1) * camera.height
        az, el = camera.pixel_to_direction(u, v)
        p = np.stack([az, el], axis=1)
        if pair:
            d = np.abs(p[0] - p[1])
            if np.hypot(*d) < 5.0 or d[0] > 20 or d[1] > 20:
                continue
        out.append(p)
    return out


def counting_scene(head, camera, bc: BenchConfig, speakers, seed_tag: int, pause=(0.8, 1.1)):
    """One or two talkers counting 1..n_count, moving between numbers.

    Returns (x (n, 2), noise floor (F,), utterances list of dict(start, end, pos (M, 2))).
    """
    from sbm_ros.sim import count_utterances, speech

    rng = np.random.default_rng([bc.seed, seed_tag])
    M = len(speakers)
    words = [count_utterances(lang, 20, as_digits=(lang == "am")) for lang, _ in speakers]
    positions = _random_positions(rng, camera, bc.n_count, pair=(M == 2))
    lead = int(1.0 * RATE)
    t = lead
    parts, utts = [], []
    for k in range(bc.n_count):
        starts, ends = [], []
        for m, (lang, voice) in enumerate(speakers):
            s = speech(words[m][k], voice=voice, rate=RATE)
            st = t + int(rng.uniform(0, 0.12) * RATE)
            y = head.render_clean(s, *positions[k][m], keep_tail=True)
            parts.append((st, y, s.size))
            starts.append(st)
            ends.append(st + s.size)
        utts.append(dict(start=min(starts) / RATE, end=max(ends) / RATE,
                         pos=positions[k].reshape(M, 2)))
        t = max(ends) + int(rng.uniform(*pause) * RATE)
    n = t + int(0.5 * RATE)
    clean = np.zeros((n, 2))
    active = np.zeros(n, dtype=bool)
    for st, y, ns in parts:
        m = min(y.shape[0], n - st)
        clean[st:st + m] += y[:m]
        active[st:st + ns] = True
    p = float(np.mean(clean[active] ** 2))
    sigma = np.sqrt(p * 10 ** (-bc.snr_db / 10))
    x = clean + sigma * np.random.default_rng([bc.seed, seed_tag, 1]).standard_normal(clean.shape)
    # noise floor measured on the 1 s noise-only lead-in
    nf = np.mean(np.abs(stft(x[:lead], _cfg("ilpd"))) ** 2, axis=0).sum(axis=1)
    return x, nf, utts


def run_sliding(model: SBMModel, x, nf, utts, window_s, bc: BenchConfig, hop_s=0.04,
                naive_windows=0):
    """Feeds ``x`` to an :class:`SBMLocalizer` in ``hop_s`` blocks, estimating after each; per
    utterance, the median of the estimates whose window centre lies inside it. BLAS runs on
    one thread, as in the sbm_localizer node (``blas_threads`` 1): the latencies are then those
    of the node and do not stall when another process holds a core."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        return _run_sliding(model, x, nf, utts, window_s, bc, hop_s, naive_windows)


def _run_sliding(model: SBMModel, x, nf, utts, window_s, bc: BenchConfig, hop_s,
                 naive_windows):
    loc = SBMLocalizer(model, window_s=window_s, noise_floor=nf, mask_margin_db=bc.mask_margin_db)
    hop = int(round(hop_s * RATE))
    M = model.n_sources
    lps = model.dims_per_source
    times, ests, lat, push_lat = [], [], [], []
    naive = []
    pos = 0
    cfg = model.feature_config
    while pos + hop <= x.shape[0]:
        t0 = time.perf_counter()
        loc.push_audio(x[pos:pos + hop])
        t1 = time.perf_counter()
        pos += hop
        est = loc.estimate()
        t2 = time.perf_counter()
        if est is None:
            continue
        push_lat.append(t1 - t0)
        lat.append(t2 - t1)
        w = loc.window
        start = (loc.frames_pushed - w.n_frames) * cfg.hop
        centre = 0.5 * (start + loc.end_sample) / RATE
        times.append(centre)
        ests.append(np.concatenate([s.position for s in est.sources]).reshape(M, lps))
        if len(naive) < naive_windows and w.full and len(times) % 7 == 0:
            order = (np.arange(w.length) + w._pos) % w.length
            Yw = w._ym[order]
            chi = expand_mask(w._chi[order], cfg)
            c0 = time.perf_counter()
            pd = posterior_direct(model.params, Yw, chi)
            tn = time.perf_counter() - c0
            c0 = time.perf_counter()
            pf = loc.engine.posterior(w.stats)
            tf = time.perf_counter() - c0
            naive.append(dict(t_naive=tn, t_fast=tf, n_active=int(chi.sum()),
                              diff=float(np.max(np.abs(pd.mean() - pf.mean())))))
    times = np.array(times)
    ests = np.array(ests)
    rows = []
    for k, u in enumerate(utts):
        sel = (times >= u["start"]) & (times <= u["end"])
        if not sel.any():
            rows.append(dict(k=k + 1, n=0, est=None, true=u["pos"], az=np.nan, el=np.nan))
            continue
        med = np.median(ests[sel], axis=0)          # (M, lps)
        if M == 1:
            daz = np.abs(med[0, 0] - u["pos"][0, 0])
            delv = np.abs(med[0, 1] - u["pos"][0, 1])
            rows.append(dict(k=k + 1, n=int(sel.sum()), est=med, true=u["pos"],
                             az=np.array([daz]), el=np.array([delv])))
        else:
            daz, delv, _ = _match2(med, u["pos"])
            rows.append(dict(k=k + 1, n=int(sel.sum()), est=med, true=u["pos"], az=daz, el=delv))
    return dict(rows=rows, latency=np.array(lat), push_latency=np.array(push_lat),
                naive=naive, n_estimates=len(times), audio_s=x.shape[0] / RATE)


def sliding_scenes(head, camera, bc: BenchConfig, out: dict):
    """Both scenes on ``head`` with the reverberant room's SBM-1 and SBM-2 ILPD models.

    Needs :func:`~.table1.table1` (``keep_models``) and :func:`~.table2.table2` results in
    ``out``; stores ``out["sliding"]`` and returns the two models (m1, m2).
    """
    _log("sliding window scenes")
    cfg = _cfg("ilpd")
    rev = out["scenes"]["reverberant"]
    m1 = SBMModel.from_gllim(out["models1"]["reverberant"]["ilpd"], cfg, n_sources=1,
                             dims_per_source=2, n_train=len(rev.train_pos))
    m2 = SBMModel.from_gllim(out["models2"]["ilpd"], cfg, n_sources=2, dims_per_source=2,
                             n_train=bc.n_pairs)
    x1, nf1, u1 = counting_scene(head, camera, bc, [("en", "en")], 11)
    x2, nf2, u2 = counting_scene(head, camera, bc, [("en", "en"), ("fr", "fr")],
                                 12, pause=(1.0, 1.3))
    s1 = run_sliding(m1, x1, nf1, u1, 0.72, bc, naive_windows=bc.naive_reps)
    s2 = run_sliding(m2, x2, nf2, u2, 1.2, bc, naive_windows=bc.naive_reps)
    out["sliding"] = {"one": s1, "two": s2}
    return m1, m2
