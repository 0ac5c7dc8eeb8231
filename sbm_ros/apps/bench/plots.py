"""The benchmark's PNG plots: error and time versus K, error versus N (paper Figs. 3 and 6),
error versus the fan's level, the test set's estimates in the virtual camera frame, and the
real-data section's errors and coverage per case.
"""

from __future__ import annotations

import os
from typing import List

import numpy as np

from sbm_ros.apps.bench.common import BenchConfig


def make_plots(out: dict, bc: BenchConfig, camera) -> List[str]:
    """Writes the plots the results ``out`` allow into ``bc.out_dir``; returns their paths."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []

    def save(fig, name):
        path = os.path.join(bc.out_dir, name)
        fig.tight_layout()
        fig.savefig(path, dpi=90, metadata={"Software": None})
        plt.close(fig)
        files.append(path)

    sw = out.get("sweeps")
    if sw:
        _plot_sweeps(save, out, sw, bc)
    amb = out.get("ambient")
    if amb and len(amb["rows"]) > 1:
        _plot_fan(save, amb["rows"])
    est = out.get("estimates", {}).get("reverberant")
    if est is not None:
        _plot_camera_frame(save, out, est, camera)
    rd = out.get("realdata")
    if rd and rd.get("rows"):
        _plot_realdata(save, rd["rows"])
    return files


def _plot_sweeps(save, out: dict, sw: dict, bc: BenchConfig) -> None:
    """Error and CPU time versus K; error versus N (one and two sources)."""
    import matplotlib.pyplot as plt

    fig, axs = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, title in ((axs[0], "k1", "one source (SBM-1 ILPD, N=%d)" % len(
            out["scenes"]["reverberant"].train_pos)),
            (axs[1], "k2", "two sources, S+S (SBM-2 ILPD, N=%d)" % bc.n_pairs)):
        Ks = [r["K"] for r in sw[key]]
        ax.plot(Ks, [r["err"] for r in sw[key]], "o-", color="C0")
        ax.set_xlabel("K (initial number of affine components)")
        ax.set_ylabel("mean GTEA (deg)", color="C0")
        ax.set_title(title, fontsize=9)
        ax2 = ax.twinx()
        ax2.plot(Ks, [r["time"] for r in sw[key]], "s--", color="C3")
        ax2.set_ylabel("CPU s per 1 s of audio", color="C3")
        ax.grid(alpha=0.3)
    save(fig, "bench_error_time_vs_K.png")
    fig, axs = plt.subplots(1, 2, figsize=(10, 4))
    axs[0].plot([r["N"] for r in sw["n1"]], [r["err"] for r in sw["n1"]], "o-")
    axs[0].set_title(f"one source (SBM-1 ILPD, K={bc.k1})", fontsize=9)
    axs[1].plot([r["N"] for r in sw["n2"]], [r["err"] for r in sw["n2"]], "o-")
    axs[1].set_title(f"two sources, S+S (SBM-2 ILPD, K={bc.k2})", fontsize=9)
    for ax in axs:
        ax.set_xlabel("N (training set size)")
        ax.set_ylabel("mean GTEA (deg)")
        ax.grid(alpha=0.3)
    save(fig, "bench_error_vs_N.png")


def _plot_fan(save, rows: list) -> None:
    """Mean absolute error versus the fan's SNR (SBM-1 ILPD and PHAT-histogram)."""
    import matplotlib.pyplot as plt

    lab = ["none" if r["snr"] is None else f"{r['snr']:g}" for r in rows]
    xs = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.semilogy(xs, [r["sbm"]["az"][0] for r in rows], "o-", label="SBM-1 ILPD azimuth")
    ax.semilogy(xs, [r["sbm"]["el"][0] for r in rows], "^-", label="SBM-1 ILPD elevation")
    ax.semilogy(xs, [r["phat"]["az"][0] for r in rows], "s--", label="PHAT-histogram azimuth")
    ax.set_xticks(xs)
    ax.set_xticklabels(lab)
    ax.set_xlabel("fan SNR (dB)")
    ax.set_ylabel("mean absolute error (deg)")
    ax.set_title("one source, reverberant room, computer fan in the room", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    save(fig, "bench_error_vs_fan.png")


def _plot_camera_frame(save, out: dict, est: np.ndarray, camera) -> None:
    """True test positions and SBM-1 ILPD estimates (reverberant room) in the camera frame."""
    import matplotlib.pyplot as plt

    sc = out["scenes"]["reverberant"]
    fig, ax = plt.subplots(figsize=(8, 6))
    ax.set_xlim(0, camera.width)
    ax.set_ylim(camera.height, 0)
    ax.set_facecolor("0.15")
    tu, tv = camera.direction_to_pixel(sc.test_pos[:, 0], sc.test_pos[:, 1])
    eu, ev = camera.direction_to_pixel(est[:, 0], est[:, 1])
    pu, _ = camera.direction_to_pixel(out["phat_az"]["reverberant"], 0.0 * tv)
    for a, b, c, d in zip(tu, tv, eu, ev):
        ax.plot([a, c], [b, d], color="0.7", lw=0.8)
    ax.plot(pu, tv, "|", color="C1", ms=10, label="PHAT-histogram (azimuth only)")
    ax.plot(tu, tv, "o", mfc="none", color="lime", ms=8, label="true source")
    ax.plot(eu, ev, "x", color="red", ms=7, label="SBM-1 ILPD estimate")
    ax.set_title(f"virtual narrow camera ({camera.width}x{camera.height}, "
                 f"{camera.hfov_deg:g}x{camera.vfov_deg:g} deg): speech test set, "
                 f"reverberant room", fontsize=9)
    ax.set_xlabel("u (px)")
    ax.set_ylabel("v (px)")
    ax.legend(loc="lower right", fontsize=8)
    save(fig, "bench_camera_frame.png")


def _plot_realdata(save, rows: list) -> None:
    """Real data: SBM and PHAT azimuth error per case and speech; SBM's 95 % coverage."""
    import matplotlib.pyplot as plt

    n = len(rows)
    ys = np.arange(n)[::-1]
    labels = [f"{r['label']} – {r['kind']}" for r in rows]

    def az(r, key):
        v = r[key]["az"]
        return (np.nan, 0.0) if v is None else v

    fig, axs = plt.subplots(1, 2, figsize=(12, 0.36 * n + 1.6), sharey=True,
                            gridspec_kw={"width_ratios": [2, 1]})
    sbm = np.array([az(r, "sbm") for r in rows])
    ph = np.array([az(r, "phat") for r in rows])
    el = np.array([r["sbm"]["el"] or (np.nan, 0.0) for r in rows])
    w = 0.27
    for dy, v, color, lab in ((w, sbm, "C0", "SBM azimuth"), (0.0, el, "C2", "SBM elevation"),
                              (-w, ph, "C1", "PHAT-histogram azimuth")):
        if np.isfinite(v[:, 0]).any():
            axs[0].barh(ys + dy, v[:, 0], w, xerr=[np.zeros(n), v[:, 1]], color=color,
                        label=lab, capsize=2, error_kw={"lw": 0.8})
    axs[0].set_xscale("log")
    axs[0].set_xlabel("absolute error (deg), mean + sd over files")
    axs[0].axvline(5.0, color="0.5", ls=":", lw=1)
    axs[0].set_yticks(ys)
    axs[0].set_yticklabels(labels, fontsize=7)
    axs[0].legend(fontsize=8, loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=3)
    axs[0].grid(alpha=0.3, axis="x", which="both")
    cov = np.array([r["sbm"]["coverage"] for r in rows])
    axs[1].barh(ys, cov, 0.6, color="C2")
    axs[1].axvline(95.0, color="k", ls="--", lw=1)
    for y, r in zip(ys, rows):
        rho = r["sbm"]["rho"]
        if np.isfinite(rho):
            axs[1].text(101, y, f"ρ {rho:+.2f}", va="center", fontsize=7)
    axs[1].set_xlim(0, 125)
    axs[1].set_xlabel("SBM: truth in its 95 % region (% of windows)")
    axs[1].grid(alpha=0.3, axis="x")
    axs[1].set_title("dashed: 95 %; ρ = Spearman(confidence, error), < 0 is good",
                     fontsize=7)
    save(fig, "bench_realdata.png")
