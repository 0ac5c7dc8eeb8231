"""Speed: per-estimate latency against the naive formulation and the K D L^2 FLOP bound, the
machine's GEMM throughput, feature extraction, and the CPU and training times measured elsewhere.
"""

from __future__ import annotations

import time

import numpy as np

from sbm_ros.apps.bench.common import FEATURES, RATE, BenchConfig, _cfg, _log
from sbm_ros.core.features import binaural_features


def gemm_gflops(n=2048, reps=3) -> float:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n))
    b = rng.standard_normal((n, n))
    a @ b
    best = np.inf
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n ** 3 / best / 1e9


def feature_speed(head, reps=3) -> dict:
    from sbm_ros.sim import white_noise
    x = head.render(white_noise(10.0, RATE, seed=1), 0.0, 0.0, noise_seed=1)
    out = {}
    for ft in FEATURES:
        cfg = _cfg(ft)
        best = np.inf
        for _ in range(reps):
            t0 = time.perf_counter()
            binaural_features(x, cfg)
            best = min(best, time.perf_counter() - t0)
        out[ft] = best / 10.0
    return out


def _latency(name: str, s: dict, m, window_ms: int) -> dict:
    """One latency row from a :func:`~.sliding.run_sliding` result ``s`` of model ``m``."""
    K, D, L_ = m.params.A.shape
    lt = s["latency"]
    nv = s["naive"]
    return dict(name=name, window_ms=window_ms, D=D, K=K, L=L_,
                median=float(np.median(lt)), p95=float(np.percentile(lt, 95)),
                push_median=float(np.median(s["push_latency"])),
                naive=float(np.median([v["t_naive"] for v in nv])) if nv else np.nan,
                naive_active=int(np.median([v["n_active"] for v in nv])) if nv else 0,
                naive_diff=float(max(v["diff"] for v in nv)) if nv else np.nan,
                flops=int(K * D * L_ ** 2))


def speed(head, bc: BenchConfig, out: dict, m1, m2) -> dict:
    """``out["speed"]``, after the sliding-window scenes (models m1, m2) and the sweeps."""
    _log("speed")
    sl = out["sliding"]
    lat = [_latency("SBM-1 (K=%d, L=2)" % bc.k1, sl["one"], m1, 720),
           _latency("SBM-2 (K=%d, L=4)" % bc.k2, sl["two"], m2, 1200)]
    sw = out["sweeps"]
    k20 = [r["time"] for r in sw["k2"] if r["K"] == 20]
    out["speed"] = dict(
        gflops=gemm_gflops(), latency=lat, features=feature_speed(head),
        sbm1_cpu=out["table1"]["reverberant"]["ilpd"]["cpu_per_s"],
        sbm2_cpu=out["sbm2_cpu_per_mixture"], sbm2_cpu_k20=k20[0] if k20 else None,
        train1=out["table1"]["reverberant"]["ilpd"]["train_wall_s"],
        train2=out["train2"]["ilpd"]["wall_s"])
    return out["speed"]
