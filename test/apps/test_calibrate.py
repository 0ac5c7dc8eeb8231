"""Offline calibration sweep end to end (sbm_ros.apps.calibrate) on a short sweep: rendered
audio and frames, real marker detection, segmentation, the crash-safe dataset, training, and
the trained model localising a fresh recording at a swept position."""

import json
import os

import numpy as np
import pytest

pytest.importorskip("cv2")


def test_short_sweep_end_to_end(tmp_path):
    from sbm_ros.apps.calibrate import run
    from sbm_ros.core.dataset import read_dataset
    from sbm_ros.core.localizer import SBMLocalizer
    from sbm_ros.core.model import SBMModel
    from sbm_ros.core.sweep_writer import check_dataset
    from sbm_ros.sim import white_noise
    from sbm_ros.sim.sweep import parse_sweep

    from sbm_ros.core.sweep import SweepParams
    sc = parse_sweep({"camera": "narrow", "room": {"t60": 0.3}, "snr_db": 30.0,
                      "lead_in_s": 0.5, "tail_s": 0.5, "camera_rate": 10, "loudspeaker": {
                          "raster": {"rows": 3, "speed_deg_s": 3.0, "margin_px": 48,
                                     "turn_pause_s": 0.6}}})
    params = SweepParams(tolerance=1.5, min_duration_s=0.4)
    res = run(str(tmp_path), sweep=sc, params=params, compare=False, flicker=0.05,
              components=8, say=lambda m: None)
    # ~ 88 degrees of path, tolerance 1.5 degrees: one sample per ~1.8 degrees + the stops
    assert res["samples"] >= 40
    assert res["rejected"]["marker_lost"] == 0          # 5 % flicker is bridged
    cov = np.array(res["coverage"]["counts"])
    assert cov[0].min() >= 1 and cov[-1].min() >= 1      # top and bottom passes cover rows
    ds = read_dataset(str(tmp_path / "dataset"))
    assert len(ds) == res["samples"] and check_dataset(tmp_path / "dataset").ok
    assert ds.camera["width"] == 640
    with open(tmp_path / "calibrate.json") as fh:
        assert json.load(fh)["samples"] == res["samples"]
    # the model localises fresh white noise at a position of the middle pass
    model = SBMModel.load(os.path.join(tmp_path, "model_sweep.npz"))
    head = sc.make_head()
    az, el = sc.camera.pixel_to_direction(300.0, 240.0)
    x = head.render(white_noise(1.5, 16000, seed=77, rms=0.1), float(az), float(el),
                    noise_seed=78)
    loc = SBMLocalizer(model, window_s=1.4, noise_floor=1e-9)
    loc.push_audio(x)
    est = loc.estimate()
    assert est is not None
    a, e = est.sources[0].position[:2]
    assert abs(a - az) < 1.5 and abs(e - el) < 1.5
