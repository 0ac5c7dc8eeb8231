"""Calibration sweep, offline end to end on the virtual head: sweep -> dataset -> model -> error.

``python -m sbm_ros.apps.calibrate [--sweep FILE] [--out DIR] [--flicker P]`` (and :func:`run`,
which ``tools/dev calibrate`` can call) does, with no ROS and faster than real time:

1. **render** the sweep (:mod:`sbm_ros.sim.sweep`, default ``config/sweep_scenario.yaml``):
   the binaural track of white noise from the moving loudspeaker, and the camera frames
   (``camera_rate``) with the loudspeaker and its ArUco marker drawn where it is;
2. **detect** the marker in every frame (:class:`sbm_ros.av.marker.MarkerDetector`, OpenCV's
   pixel centres shifted by +0.5 px to the camera's corner convention); ``--flicker P`` drops
   each detection with probability P (detector flicker);
3. **segment** (:func:`sbm_ros.core.sweep.segment_recording`: audio blocks and marker
   observations streamed in time order, as a node would) and **write** every accepted sample
   with :class:`sbm_ros.core.sweep_writer.SampleWriter` into ``OUT/dataset`` (``sbm-train``
   format, degree targets); coverage on a 12 x 9 grid of the image
   (:class:`~sbm_ros.core.sweep.CoverageGrid`);
4. **train** a one-source model on it (:func:`sbm_ros.core.training.train_model`, K = 32 as
   the demo's model) -> ``OUT/model_sweep.npz``;
5. **compare** (unless ``--no-compare``) with today's grid model trained the same way on the
   demo's 24 x 18 = 432-position grid of 1 s white noise (``OUT/model_grid.npz``), both
   evaluated on the same test set: speech (espeak-ng counting, 1-5 s) at the 12 x 9 test
   grid midway between the grid's positions, rendered with the same head (white noise of 1 s
   when espeak-ng is missing); the error of one recording is the angular distance between the
   estimate over the whole recording and the truth.

Writes ``OUT/calibrate.json`` (all figures) and prints a summary. Exit code 0 when it ran.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from typing import Callable, Dict, Optional

import numpy as np

TEST_GRID = (12, 9)


def say_default(msg: str) -> None:
    print(f"[calibrate] {msg}", flush=True)


class _Unprojector:
    """The virtual camera as the segmenter's ``camera`` (pixels -> degrees)."""

    def __init__(self, cam):
        self.cam = cam

    def unproject(self, uv):
        uv = np.asarray(uv, float)
        az, el = self.cam.pixel_to_direction(uv[..., 0], uv[..., 1])
        return np.stack([az, el], axis=-1)


def detect_markers(sc, flicker: float = 0.0, seed: int = 0):
    """[(t, (u, v) or None)] for every camera frame of the sweep (corner convention)."""
    from sbm_ros.av.marker import MarkerDetector
    from sbm_ros.sim.drawing import draw_room
    det = MarkerDetector(sc.marker_dictionary, sc.marker_id)
    bg = draw_room(sc.camera.width, sc.camera.height)
    rng = np.random.default_rng([seed, 5])
    out = []
    for t in sc.frame_times():
        hit = det.detect(sc.image_at(float(t), bg))
        if hit is None or (flicker > 0 and rng.random() < flicker):
            out.append((float(t), None))
        else:
            out.append((float(t), (hit.u + 0.5, hit.v + 0.5)))
    return out


def evaluate(model_path: str, recordings, truths) -> Dict:
    """Angular errors (deg) of one whole-recording estimate per test recording."""
    from sbm_ros.core.localizer import SBMLocalizer
    from sbm_ros.core.model import SBMModel
    model = SBMModel.load(model_path)
    rate = model.feature_config.sample_rate
    errs = []
    for x, (az, el) in zip(recordings, truths):
        loc = SBMLocalizer(model, window_s=x.shape[0] / rate)
        loc.push_audio(x)
        est = loc.estimate()
        if est is None or not est.sources:
            errs.append(np.nan)
            continue
        a, e = est.sources[0].position[:2]
        errs.append(float(np.hypot(a - az, e - el)))
    errs = np.asarray(errs)
    ok = errs[np.isfinite(errs)]
    return {"n": int(errs.size), "n_estimated": int(ok.size),
            "mean_deg": round(float(ok.mean()), 3) if ok.size else None,
            "median_deg": round(float(np.median(ok)), 3) if ok.size else None,
            "p90_deg": round(float(np.percentile(ok, 90)), 3) if ok.size else None,
            "max_deg": round(float(ok.max()), 3) if ok.size else None}


def _test_set(sc, head, tmp: str, say):
    """(recordings, truths (az, el), kind) of the comparison test set."""
    from sbm_ros.core.dataset import load_recordings, read_dataset
    from sbm_ros.sim import espeak_available, make_speech_test_set
    from sbm_ros.sim.datasets import grid_positions
    from sbm_ros.sim.sources import white_noise
    n_az, n_el = TEST_GRID
    if espeak_available():
        ds = read_dataset(make_speech_test_set(os.path.join(tmp, "test"), head, sc.camera,
                                               n_az=n_az, n_el=n_el, seed=1))
        return load_recordings(ds, sc.sample_rate), ds.targets, "speech (espeak-ng)"
    say("espeak-ng missing: testing on 1 s of white noise instead of speech")
    pos = grid_positions(n_az, n_el, sc.camera)
    recs = [head.render(white_noise(1.0, sc.sample_rate, seed=[1, i]), az, el,
                        noise_seed=[1, i, 2]) for i, (az, el) in enumerate(pos)]
    return recs, pos, "white noise 1 s"


def run(out_dir: str, sweep_path: Optional[str] = None, params=None, flicker: float = 0.0,
        compare: bool = True, components: int = 32, sweep=None,
        say: Callable[[str], None] = say_default) -> Dict:
    """The whole offline check (module docstring); returns the figures (also in
    ``OUT/calibrate.json``). ``sweep``: a :class:`~sbm_ros.sim.sweep.SweepScene` instead of
    ``sweep_path``; ``params``: :class:`~sbm_ros.core.sweep.SweepParams`."""
    from sbm_ros.core.sweep import CoverageGrid, SweepParams, segment_recording
    from sbm_ros.core.sweep_writer import SampleWriter
    from sbm_ros.core.training import train_model
    from sbm_ros.sim import make_training_set
    from sbm_ros.sim.sweep import load_sweep

    params = params or SweepParams()
    sc = sweep or load_sweep(sweep_path)
    out_dir = os.path.abspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    res: Dict = {"sweep": sc.source or sc.name, "scene_s": round(sc.duration_s, 2),
                 "params": params.__dict__, "flicker": flicker, "times_s": {}}
    times = res["times_s"]
    head = sc.make_head()

    t0 = time.perf_counter()
    audio = sc.render_audio(head, say=say)
    times["render_audio"] = round(time.perf_counter() - t0, 2)
    say(f"rendered {sc.duration_s:.1f} s of sweep audio in {times['render_audio']:.1f} s")

    t0 = time.perf_counter()
    markers = detect_markers(sc, flicker, sc.seed)
    times["render_detect_frames"] = round(time.perf_counter() - t0, 2)
    n_seen = sum(p is not None for _, p in markers)
    say(f"{len(markers)} frames drawn, marker detected in {n_seen} "
        f"({times['render_detect_frames']:.1f} s)")

    t0 = time.perf_counter()
    samples, seg = segment_recording(markers, audio, sc.sample_rate, 0.0, params,
                                     _Unprojector(sc.camera))
    ds_dir = os.path.join(out_dir, "dataset")
    shutil.rmtree(ds_dir, ignore_errors=True)
    writer = SampleWriter(ds_dir, camera=sc.camera.to_json_dict())
    cov = CoverageGrid(sc.camera.width, sc.camera.height, 12, 9)
    for s in samples:
        writer.append(s.audio, s.rate, s.direction_deg)
        cov.add(*s.pixel)
    times["segment_write"] = round(time.perf_counter() - t0, 2)
    durations = [s.duration_s for s in samples]
    res.update(samples=len(samples), rejected=dict(seg.rejected), coverage=cov.to_dict(),
               sample_duration_s={"mean": round(float(np.mean(durations)), 3) if samples
                                  else None, "min": round(float(np.min(durations)), 3)
                                  if samples else None})
    say(f"{len(samples)} samples accepted, rejected {seg.rejected}, coverage "
        f"{100 * cov.fraction:.1f} % of 12 x 9 cells ({times['segment_write']:.1f} s)")
    real = times["render_audio"] + times["render_detect_frames"] + times["segment_write"]
    res["faster_than_real_time"] = round(sc.duration_s / real, 2)

    t0 = time.perf_counter()
    m_sweep = os.path.join(out_dir, "model_sweep.npz")
    r = train_model(ds_dir, m_sweep, n_sources=1, n_components=components,
                    log=lambda m: say("  [train sweep] " + m))
    times["train_sweep"] = round(time.perf_counter() - t0, 2)
    res["model_sweep"] = {"path": m_sweep, "cv_error": r.cv_error, "n_recordings":
                          r.n_recordings}
    say(r.summary())
    if compare:
        import tempfile
        tmp = tempfile.mkdtemp(prefix=".calib_", dir=out_dir)
        try:
            t0 = time.perf_counter()
            grid = make_training_set(os.path.join(tmp, "grid"), head, sc.camera, n_az=24,
                                     n_el=18, duration_s=1.0, seed=0)
            m_grid = os.path.join(out_dir, "model_grid.npz")
            r = train_model(grid, m_grid, n_sources=1, n_components=components,
                            log=lambda m: say("  [train grid] " + m))
            times["grid_model"] = round(time.perf_counter() - t0, 2)
            res["model_grid"] = {"path": m_grid, "cv_error": r.cv_error,
                                 "n_recordings": r.n_recordings}
            t0 = time.perf_counter()
            recs, truths, kind = _test_set(sc, head, tmp, say)
            res["test"] = {"kind": kind, "positions": len(recs), "test_grid": list(TEST_GRID),
                           "sweep": evaluate(m_sweep, recs, truths),
                           "grid": evaluate(m_grid, recs, truths)}
            times["test"] = round(time.perf_counter() - t0, 2)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        a, b = res["test"]["sweep"]["mean_deg"], res["test"]["grid"]["mean_deg"]
        res["error_ratio"] = round(a / b, 3) if a is not None and b else None
        say(f"test ({kind}, {len(recs)} positions): sweep model mean error {a} deg, grid "
            f"model {b} deg, ratio {res['error_ratio']}")
    with open(os.path.join(out_dir, "calibrate.json"), "w") as fh:
        json.dump(res, fh, indent=1, default=str)
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="sbm-calibrate-offline", description=__doc__.split(
        "\n")[0])
    ap.add_argument("--sweep", default=None, help="sweep YAML (default "
                    "config/sweep_scenario.yaml)")
    ap.add_argument("--out", default="out/calibrate", help="output folder")
    ap.add_argument("--flicker", type=float, default=0.0,
                    help="probability of dropping a marker detection (default 0)")
    ap.add_argument("--tolerance", type=float, default=1.0,
                    help="marker motion tolerance, degrees (default 1.0)")
    ap.add_argument("--min-duration", type=float, default=0.4,
                    help="shortest accepted segment, s (default 0.4)")
    ap.add_argument("--no-compare", action="store_true",
                    help="skip the grid model and the test set")
    args = ap.parse_args(argv)
    from sbm_ros.core.sweep import SweepParams
    from sbm_ros.sim.scenario import ScenarioError
    try:
        params = SweepParams(tolerance=args.tolerance, min_duration_s=args.min_duration,
                             max_duration_s=max(1.0, args.min_duration))
        if not 0.0 <= args.flicker < 1.0:
            raise ValueError("--flicker must be in [0, 1)")
        run(args.out, args.sweep, params, args.flicker, compare=not args.no_compare)
    except (ScenarioError, ValueError) as exc:
        print(f"calibrate: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
