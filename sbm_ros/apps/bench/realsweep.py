"""Calibration by sweep on measured responses: accuracy against positions per minute.

The sweep of ``sbm_calibrator`` (issue "calibrate a new head in three minutes") on the real
heads of :mod:`.realdata` instead of the virtual one. Measured responses exist only at the
measured directions, so the loudspeaker *steps* through them: it stays ``dwell`` seconds at each
direction of the field (Surrey Room A: azimuth -30..+30 deg, 5 deg apart; SONICOM subject 1:
the 13 x 7 grid, rows in serpentine order), then moves to the next in ``MOVE_S`` seconds. White
noise plays all along; the audio of each direction is that direction's response (the room's
tail of the previous direction carries over, as it would), with self-noise at ``--snr-db``. The
marker track is the loudspeaker's true direction at ``MARKER_RATE`` Hz with ``JITTER_DEG`` of
detector jitter, moving linearly during the moves.

The recording goes through the package's own path, as on the robot:
:func:`sbm_ros.core.sweep.segment_recording` (tolerance ``TOLERANCE_DEG``, segments of 0.4-1 s)
-> :class:`sbm_ros.core.sweep_writer.SampleWriter` (an ``sbm-train`` folder) ->
:func:`sbm_ros.core.training.train_model` (defaults: K from the data). The model is tested on
the same speech and test directions as the real-data section's *trained* case of that head,
next to the model trained there from one 1 s white-noise recording per direction (the grid
calibration), so the two differ only in how the calibration was recorded. Positions per minute
= directions / sweep duration.
"""

from __future__ import annotations

import os
import shutil
import time
from typing import Dict, List

import numpy as np

from sbm_ros.apps.bench.common import BenchConfig, _log

#: Seconds the loudspeaker stays at each direction: (full run, quick run) per head (the
#: SONICOM grid has 91 directions: 2 s each is already a 3.5 minute sweep).
DWELLS = {"A": {False: (0.7, 1.2, 2.0, 4.0), True: (1.2,)},
          "S1": {False: (1.2, 2.0), True: ()}}
#: Seconds a move to the next direction takes.
MOVE_S = 0.3
MARKER_RATE = 10.0
JITTER_DEG = 0.1
TOLERANCE_DEG = 1.0


def sweep_plan(dirs, dwell_s: float, move_s: float = MOVE_S):
    """[(t_start, t_end, index into dirs)] of the stays; the moves are the gaps between."""
    out, t = [], 0.0
    for k in range(len(dirs)):
        out.append((t, t + dwell_s, k))
        t += dwell_s + move_s
    return out


def render_sweep(head, dirs, dwell_s: float, rate: int, snr_db: float, seed: int,
                 move_s: float = MOVE_S):
    """(audio (n, 2), markers [(t, (az, el))], duration s) of a stepped sweep over ``dirs``
    ((az, el) pairs measured by ``head``). During a move the first half still sounds from the
    old direction and the second half from the new one."""
    from sbm_ros.sim import white_noise

    plan = sweep_plan(dirs, dwell_s, move_s)
    dur = plan[-1][1]
    n = int(round(dur * rate))
    src = white_noise(dur + 0.1, rate, seed=[seed, 40])
    out = np.zeros((n + head.irs.shape[1], 2))
    for t0, t1, k in plan:
        a = int(round(max(0.0, t0 - move_s / 2) * rate))
        b = min(n, int(round((t1 + move_s / 2) * rate)))
        y = head.render_clean(src[a:b], head.index(*dirs[k]))
        out[a:a + y.shape[0]] += y
    out = out[:n]
    rms = float(np.sqrt(np.mean(out ** 2)))
    noise = np.random.default_rng([seed, 41]).standard_normal(out.shape)
    out = out + noise * rms * 10 ** (-snr_db / 20.0)
    out *= 0.5 / max(float(np.max(np.abs(out))), 1e-12)
    rng = np.random.default_rng([seed, 42])
    markers = []
    times = np.arange(0.0, dur, 1.0 / MARKER_RATE)
    for t in times:
        k = min(int(t // (dwell_s + move_s)), len(dirs) - 1)
        t0 = plan[k][0]
        if t <= t0 + dwell_s or k + 1 >= len(dirs):
            p = np.asarray(dirs[k], float)
        else:                                   # moving to the next direction
            s = (t - t0 - dwell_s) / move_s
            p = (1 - s) * np.asarray(dirs[k], float) + s * np.asarray(dirs[k + 1], float)
        markers.append((float(t), tuple(p + rng.normal(0.0, JITTER_DEG, 2))))
    return out, markers, dur


def _serpentine(dirs):
    """Rows of equal elevation, every other one reversed (how a person sweeps a grid)."""
    els = sorted({el for _, el in dirs})
    out = []
    for r, el in enumerate(els):
        row = sorted(d for d in dirs if d[1] == el)
        out += row[::-1] if r % 2 else row
    return out


def run_sweep_case(world, case, number: int, speech, hop_s: float, dwell_s: float) -> Dict:
    """One head and dwell: sweep -> segments -> dataset -> model -> speech test. ``world``,
    ``case`` and ``speech`` as in :mod:`.realdata` (``case``: the head's trained case)."""
    from sbm_ros.apps.bench import realdata as rd
    from sbm_ros.core.model import SBMModel
    from sbm_ros.core.phat import PhatHistogram
    from sbm_ros.core.sweep import SweepParams, segment_recording
    from sbm_ros.core.sweep_writer import SampleWriter
    from sbm_ros.core.training import train_model

    bc: BenchConfig = world.bc
    head = world.head(case.train)
    dirs = _serpentine(list(case.train_dirs))
    audio, markers, dur = render_sweep(head, dirs, dwell_s, rd.RATE, bc.snr_db,
                                       seed=bc.seed + 100 * number)
    params = SweepParams(tolerance=TOLERANCE_DEG, tolerance_unit="px")
    samples, seg = segment_recording(markers, audio, rd.RATE, 0.0, params)
    names = ["azimuth_deg", "elevation_deg"][:case.dims]
    folder = os.path.join(world.tmp, f"sweep{number:02d}")
    shutil.rmtree(folder, ignore_errors=True)
    writer = SampleWriter(folder, target_names=names)
    for s in samples:
        writer.append(s.audio, s.rate, list(s.pixel)[:case.dims])
    row = dict(head=case.train, label=case.label.replace(", trained", ""), dims=case.dims,
               dwell_s=dwell_s, directions=len(dirs), sweep_s=round(dur, 1),
               positions_per_min=round(len(dirs) / dur * 60.0, 1), samples=len(samples),
               rejected=dict(seg.rejected))
    if len(samples) < 5:
        row["skipped"] = f"only {len(samples)} samples"
        return row
    path = os.path.join(world.tmp, f"model_sweep{number:02d}.npz")
    t0 = time.perf_counter()
    res = train_model(folder, path, n_sources=1, seed=bc.seed, azimuth_only=case.dims == 1)
    row.update(K=res.n_components, train_s=round(time.perf_counter() - t0, 1),
               cv_error=res.cv_error)
    recs = [s.audio for s in samples]
    ph = PhatHistogram(sample_rate=rd.RATE).fit(recs, np.array([s.pixel[0] for s in samples]))
    tr = rd._Trained(SBMModel.load(path), ph, res.n_components, res.n_recordings, 0.0)
    grid = world.trained(case)
    for label, model in (("sweep", tr), ("grid", grid)):
        acc = rd._Acc()
        for j, d in enumerate(case.test_dirs):
            true = rd._truth(case, d)
            for kind, utts in speech.items():
                for u, x0 in enumerate(utts):
                    x = head.render(x0, head.index(*d), bc.snr_db,
                                    noise_seed=[bc.seed, 30, number, j, u, len(kind)])
                    rd._evaluate_file(acc, case, model, x, true, hop_s)
        row[label] = dict(az=rd._ms(acc.sbm_az), el=rd._ms(acc.sbm_el) if case.dims == 2
                          else None, files=acc.files, n_train=model.n_train)
    return row


def run_realsweep(world, cases, speech, hop_s: float) -> List[Dict]:
    """Rows of the sweep subsection for the heads of ``cases`` (their *trained* cases)."""
    bc = world.bc
    keys = ("A-trained",) if bc.quick else ("A-trained", "S1-trained")
    heads = [c for c in cases if c.key in keys]
    rows = []
    for c in heads:
        for dwell in DWELLS[c.train][bc.quick]:
            t0 = time.perf_counter()
            r = run_sweep_case(world, c, 50 + len(rows), speech, hop_s, dwell)
            rows.append(r)
            if "sweep" in r:
                _log(f"real data sweep: {r['label']} dwell {dwell:g} s "
                     f"({r['positions_per_min']:g} positions/min, {r['samples']} samples): "
                     f"az {r['sweep']['az'][0]:.2f} vs grid {r['grid']['az'][0]:.2f} "
                     f"({time.perf_counter() - t0:.1f} s)")
    return rows
