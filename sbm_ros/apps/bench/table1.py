"""Table I: one source, SBM-1 (ILPD, ILD, IPD features) and the PHAT-histogram baseline.

Training: white noise at the training grid; test: one espeak-ng counting utterance at each test
position; one room per call (reverberant and anechoic in the benchmark).
"""

from __future__ import annotations

import time

import numpy as np

from sbm_ros.apps.bench.common import (FEATURES, RATE, BenchConfig, Scene, _cfg, _err_summary,
                                       _mean_vectors, _post_mean, _stats_from_signal,
                                       _train_gllim)
from sbm_ros.core.phat import PhatHistogram
from sbm_ros.core.posterior import PosteriorEngine


def table1(scene: Scene, bc: BenchConfig, K: int, out: dict, keep_models=False,
           features=FEATURES):
    """SBM-1 (the given feature types) and PHAT on one room's speech test set."""
    truth = scene.test_pos
    audio_s = sum(x.shape[0] for x in scene.speech) / RATE
    rows = {}
    models = {}
    for ft in features:
        cfg = _cfg(ft)
        X, Y = scene.train_pos, _mean_vectors(scene.train, cfg)
        g, cpu_train, wall_train = _train_gllim(X, Y, K, bc)
        eng = PosteriorEngine(g, n_bins=cfg.n_freq)
        margin = 10 ** (bc.mask_margin_db / 10)
        est = np.empty((len(scene.speech), 2))
        c0 = time.process_time()
        for i, (x, nf) in enumerate(zip(scene.speech, scene.speech_nf)):
            est[i] = _post_mean(eng, _stats_from_signal(x, cfg, nf * margin))
        cpu = time.process_time() - c0
        daz = np.abs(est[:, 0] - truth[:, 0])
        delv = np.abs(est[:, 1] - truth[:, 1])
        gtea = np.hypot(daz, delv)
        rows[ft] = dict(az=_err_summary(daz), el=_err_summary(delv),
                        over5=float(np.mean(gtea > 5) * 100), cpu_per_s=cpu / audio_s,
                        max_gtea=float(np.max(gtea)), K=int(g.n_components_),
                        train_cpu_s=cpu_train, train_wall_s=wall_train, n_iter=int(g.n_iter_))
        models[ft] = g
        if ft == "ilpd":
            out.setdefault("estimates", {})[scene.name] = est
            # activity-mask effect: the same ILPD model on the unmasked spectrograms
            est_nm = np.empty_like(est)
            for i, x in enumerate(scene.speech):
                est_nm[i] = _post_mean(eng, _stats_from_signal(x, cfg, 0.0))
            g_nm = np.hypot(est_nm[:, 0] - truth[:, 0], est_nm[:, 1] - truth[:, 1])
            out.setdefault("mask_effect1", {})[scene.name] = (float(np.mean(gtea)),
                                                              float(np.mean(g_nm)))
    # PHAT-histogram
    ph = PhatHistogram(sample_rate=RATE)
    c0 = time.process_time()
    ph.fit(scene.train, scene.train_pos[:, 0])
    ph_train = time.process_time() - c0
    az = np.empty(len(scene.speech))
    c0 = time.process_time()
    for i, x in enumerate(scene.speech):
        p = ph.predict(x, 1)
        az[i] = p[0] if p.size else np.nan
    cpu = time.process_time() - c0
    daz = np.abs(az - truth[:, 0])
    rows["phat"] = dict(az=_err_summary(daz), el=(None, None), over5=float(np.mean(daz > 5) * 100),
                        cpu_per_s=cpu / audio_s, max_gtea=float(np.max(daz)), train_cpu_s=ph_train)
    out.setdefault("phat_az", {})[scene.name] = az
    out.setdefault("table1", {})[scene.name] = rows
    out.setdefault("phat_models", {})[scene.name] = ph
    if keep_models:
        out.setdefault("models1", {})[scene.name] = models
    return rows
