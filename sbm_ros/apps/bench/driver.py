"""The benchmark's driver: every protocol in turn (the virtual-head ones, then the real-data
section), then the plots and ``benchmark.md``."""

from __future__ import annotations

import os
import time

from sbm_ros.apps.bench.ambient import ambient_sweep
from sbm_ros.apps.bench.common import RATE, BenchConfig, Scene, _log, _speech_sources
from sbm_ros.apps.bench.paper import _shortfalls, _summary
from sbm_ros.apps.bench.plots import make_plots
from sbm_ros.apps.bench.provenance import _git, _machine
from sbm_ros.apps.bench.realdata import run_realdata
from sbm_ros.apps.bench.realsweep import run_realsweep
from sbm_ros.apps.bench.report import render_report
from sbm_ros.apps.bench.sliding import sliding_scenes
from sbm_ros.apps.bench.speed import speed
from sbm_ros.apps.bench.sweeps import sweeps
from sbm_ros.apps.bench.table1 import table1
from sbm_ros.apps.bench.table2 import table2
from sbm_ros.apps.bench.voices import voices_section
from sbm_ros.apps.bench.xllim_compare import run_xllim
from sbm_ros.core.fileio import atomic_write


def _heads(bc: BenchConfig, hrirs) -> dict:
    """The virtual heads of the two rooms, sharing one HRIR set."""
    from sbm_ros.sim import Room, VirtualHead

    return {"reverberant": VirtualHead(room=Room(drr_db=bc.drr_db), snr_db=bc.snr_db,
                                       hrirs=hrirs, seed=bc.seed),
            "anechoic": VirtualHead(room=Room.anechoic(), snr_db=bc.snr_db, hrirs=hrirs,
                                    seed=bc.seed)}


def _experiments(bc: BenchConfig, camera, out: dict) -> None:
    """Every protocol in turn (each needs the results of those before it in ``out``)."""
    from sbm_ros.sim import grid_positions, load_kemar

    hrirs = load_kemar(RATE)
    n_test = len(grid_positions(*bc.test_grid, camera))
    _log("synthesising speech (espeak-ng)")
    sp_src, sp_meta = _speech_sources(n_test, bc.seed)
    out["speech_meta"] = sp_meta
    heads = _heads(bc, hrirs)
    for room in ("reverberant", "anechoic"):
        _log(f"rendering the {room} room")
        sc = Scene(heads[room], camera, bc, sp_src, room)
        out["scenes"][room] = sc
        _log(f"Table I, {room}")
        table1(sc, bc, bc.k1, out, keep_models=True)
    rev = out["scenes"]["reverberant"]
    _log("Table II")
    table2(rev, bc, out)
    _log("sweeps")
    sweeps(rev, bc, out)
    ambient_sweep(heads["reverberant"], camera, bc, sp_src, out)
    m1, m2 = sliding_scenes(heads["reverberant"], camera, bc, out)
    speed(heads["reverberant"], bc, out, m1, m2)
    if bc.xllim:
        _log("xllim")
        out["xllim"] = run_xllim(rev, bc, bc.k1, n_check=bc.xllim_check)
    out["shortfalls"] = _shortfalls(out)
    out["summary"] = _summary(out)


def run(bc: BenchConfig) -> dict:
    """The whole benchmark: writes ``<out_dir>/benchmark.md`` and the plots; returns ``out``."""
    from sbm_ros.sim import VirtualCamera

    t_start = time.perf_counter()
    # the checkout's state before this run writes its own report and plots
    out_git = _git()
    os.makedirs(bc.out_dir, exist_ok=True)
    machine = _machine()
    camera = VirtualCamera.narrow()
    out: dict = {"scenes": {}, "git": out_git}
    if bc.virtual:
        _experiments(bc, camera, out)
    if bc.realdata:
        _log("real measured data")
        run_realdata(bc, out, then=run_realsweep)
    if bc.voices:
        _log("voices")
        voices_section(bc, out)
    plots = make_plots(out, bc, camera)
    runtime = time.perf_counter() - t_start
    out["runtime_s"] = runtime
    md = render_report(out, bc, machine, runtime, plots)
    if "voices" in out:
        md = md.rstrip("\n") + "\n" + out["voices"]["markdown"]
    path = os.path.join(bc.out_dir, "benchmark.md")
    with atomic_write(path, "w", perms=0o644) as fh:
        fh.write(md)
    out["report"] = md
    out["report_path"] = path
    out["plots"] = plots
    return out
