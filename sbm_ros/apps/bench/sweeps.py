"""Error and time versus the number of components K and the training-set size N.

The data of the paper's Figs. 3 (one source) and 6 (two sources): SBM-1 ILPD on the first second
of the speech test set, SBM-2 ILPD on Table II's S+S mixtures (reusing its pairs and models).
"""

from __future__ import annotations

import time

import numpy as np

from sbm_ros.apps.bench.common import (OUTLIER_DEG, RATE, BenchConfig, Scene, _cfg, _log,
                                       _match2, _mean_vectors, _post_mean, _stats_from_signal,
                                       _train_gllim)
from sbm_ros.core.posterior import PosteriorEngine


def sweeps(scene: Scene, bc: BenchConfig, out: dict):
    """Error (and time) versus K and N, SBM-1 and SBM-2 ILPD (after :func:`table2`)."""
    cfg = _cfg("ilpd")
    margin = 10 ** (bc.mask_margin_db / 10)
    segs = [(x[:RATE], nf) for x, nf in zip(scene.speech, scene.speech_nf)]
    c0 = time.process_time()
    stats = [_stats_from_signal(x, cfg, nf * margin) for x, nf in segs]
    feat_cpu = (time.process_time() - c0) / len(segs)
    truth = scene.test_pos
    Y1 = _mean_vectors(scene.train, cfg)

    def err1(g):
        eng = PosteriorEngine(g, n_bins=cfg.n_freq)
        c0 = time.process_time()
        est = np.stack([_post_mean(eng, st) for st in stats])
        t = (time.process_time() - c0) / len(stats)
        return float(np.mean(np.hypot(*(est - truth).T))), t

    r = {"k1": [], "n1": [], "k2": [], "n2": []}
    for K in bc.k1_sweep:
        g, _, wall = _train_gllim(scene.train_pos, Y1, K, bc)
        e, t = err1(g)
        r["k1"].append(dict(K=K, K_final=int(g.n_components_), err=e, time=feat_cpu + t,
                            train_s=wall))
    rng = np.random.default_rng([bc.seed, 4])
    N0 = len(scene.train_pos)
    for N in bc.n1_sweep:
        idx = np.sort(rng.choice(N0, size=min(N, N0), replace=False))
        g, _, wall = _train_gllim(scene.train_pos[idx], Y1[idx], min(bc.k1, len(idx)), bc)
        e, _ = err1(g)
        r["n1"].append(dict(N=len(idx), err=e, K_final=int(g.n_components_), train_s=wall))
    _log("sweeps: one-source done")
    X2, Y2 = out["pairs"]
    ss = out["ss_stats"]
    # time per 1 s mixture = features (measured above on 1 s speech) + posterior

    def err2(g):
        eng = PosteriorEngine(g, n_bins=cfg.n_freq)
        c0 = time.process_time()
        errs = [_match2(_post_mean(eng, st).reshape(2, 2), true)[2] for st, true in ss]
        t = (time.process_time() - c0) / len(ss)
        return float(np.mean(errs)), float(np.mean(np.array(errs) > OUTLIER_DEG) * 100), t

    for K in bc.k2_sweep:
        if K == bc.k2:
            g = out["models2"]["ilpd"]
            wall = out["train2"]["ilpd"]["wall_s"]
        else:
            g, _, wall = _train_gllim(X2, Y2, K, bc, two_source=True)
        e, o, t = err2(g)
        r["k2"].append(dict(K=K, K_final=int(g.n_components_), err=e, out=o,
                            time=feat_cpu + t, train_s=wall))
        _log(f"sweeps: K2={K} err {e:.2f}")
    for N in bc.n2_sweep:
        if N >= len(X2):
            g = out["models2"]["ilpd"]
            wall = out["train2"]["ilpd"]["wall_s"]
            N = len(X2)
        else:
            g, _, wall = _train_gllim(X2[:N], Y2[:N], bc.k2, bc, two_source=True)
        e, o, _ = err2(g)
        r["n2"].append(dict(N=N, K_final=int(g.n_components_), err=e, out=o, train_s=wall))
        _log(f"sweeps: N2={N} err {e:.2f}")
    out["sweeps"] = r
    out["feat_cpu_1s"] = feat_cpu
    return r
