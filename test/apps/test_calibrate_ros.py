"""``tools/dev calibrate`` in small (sbm_ros.apps.calibrate_ros): a short sweep played by the
virtual head over real DDS into sbm_calibrator, the dataset, training with the cross-validated
error (status topic and model file) and the hand-over to a running sbm_localizer. The demo
comparison is left out here (it takes minutes); ``tools/dev calibrate`` runs it."""

import json
import os

import pytest

pytest.importorskip("rclpy")
pytest.importorskip("audio_common_msgs.msg")
pytest.importorskip("cv2")

from rostest_utils import domain_id_for  # noqa: E402

DOMAIN = domain_id_for(__name__)

SHORT_SWEEP = """\
name: short test sweep
camera: narrow
sample_rate: 16000
room: {t60: 0.3, distance: 2.0}
snr_db: 30
seed: 0
lead_in_s: 0.5
tail_s: 0.5
camera_rate: 15
loudspeaker:
  level_dbfs: -20
  marker: {dictionary: DICT_4X4_50, id: 7, side_m: 0.08}
  raster: {rows: 2, speed_deg_s: 2.1, margin_px: 48, turn_pause_s: 0.6}
"""


def test_short_sweep_over_dds_gives_a_model_handed_to_the_localizer(tmp_path, monkeypatch):
    from sbm_ros.apps.calibrate_ros import run
    from sbm_ros.core.model import SBMModel
    from sbm_ros.core.sweep_writer import check_dataset
    monkeypatch.setenv("ROS_DOMAIN_ID", str(DOMAIN))
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(SHORT_SWEEP)
    out = tmp_path / "out"
    res = run(str(out), str(sweep), rate=4.0, demo=False, components=6,
              min_train_samples=10, say=print)
    # two passes of ~28 deg at 2.1 deg/s, 1 deg tolerance: a sample every ~0.5-1 s
    assert res["samples"] >= 25, res
    assert 0.1 < res["coverage"] < 0.4 and not res["complete"]      # two of nine grid rows
    assert res["unsaved"] == 0
    assert sum(res["rejected"].values()) < res["samples"], res["rejected"]
    m = res["model"]
    assert m["cv_error"] and m["cv_error"] == pytest.approx(m["cv_error_in_model_file"])
    assert set(m["cv_error"]) == {"azimuth_deg", "elevation_deg"}
    assert "model handed to /sbm_localizer" in m["handoff"], m["handoff"]
    model = SBMModel.load(m["path"])
    assert model.n_sources == 1 and model.target_space == "degrees"
    assert check_dataset(str(out / "dataset")).ok
    with open(out / "calibrate_ros.json") as fh:
        assert json.load(fh)["samples"] == res["samples"]
    assert os.path.basename(m["path"]) in (out / "logs" / "sbm_localizer.log").read_text()
