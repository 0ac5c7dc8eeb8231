"""``tools/dev calibrate`` in small (sbm_ros.apps.calibrate_ros): a short sweep played by the
virtual head over real DDS into sbm_calibrator, the dataset, training of the one-source model
(cross-validated error on the status topic and in the model file) and of the two-source model
from the same sweep (its error on fresh mixtures likewise), and the hand-over of both to a
running sbm_localizer (automatic mode). The demo comparison is left out here (it takes
minutes); ``tools/dev calibrate`` runs it; its scores are read by the test below."""

import json
import os

import pytest

pytest.importorskip("rclpy")
pytest.importorskip("audio_common_msgs.msg")
pytest.importorskip("cv2")

from rostest_utils import domain_id_for  # noqa: E402
from synth import SHORT_SWEEP  # noqa: E402

DOMAIN = domain_id_for(__name__)


def test_short_sweep_over_dds_gives_both_models_handed_to_the_localizer(tmp_path, monkeypatch):
    from sbm_ros.apps.calibrate_ros import run
    from sbm_ros.core.model import SBMModel
    from sbm_ros.core.sweep_writer import check_dataset
    monkeypatch.setenv("ROS_DOMAIN_ID", str(DOMAIN))
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(SHORT_SWEEP)
    out = tmp_path / "out"
    res = run(str(out), str(sweep), rate=4.0, demo=False, components=6,
              min_train_samples=10, say=print, components_two=8, pairs=600)
    # two passes of ~28 deg at 2.1 deg/s, 1 deg tolerance: a sample every ~0.5-1 s
    assert res["samples"] >= 25, res
    assert 0.1 < res["coverage"] < 0.4 and not res["complete"]      # two of nine grid rows
    assert res["unsaved"] == 0
    assert sum(res["rejected"].values()) < res["samples"], res["rejected"]
    m = res["model"]
    assert m["cv_error"] and m["cv_error"] == pytest.approx(m["cv_error_in_model_file"])
    assert set(m["cv_error"]) == {"azimuth_deg", "elevation_deg"}
    m2 = res["model_two"]
    assert m2["path"] == str(out / "model_sweep_2src.npz") and m2["pairs"] == 600
    assert m2["mix_error"] and m2["mix_error"] == pytest.approx(m2["mix_error_in_model_file"])
    assert set(m2["mix_error"]) == {"azimuth_deg", "elevation_deg"}
    assert m2["n_components"] == 8 and m2["train_s"] > 0 and m["train_s"] > 0
    assert res["handoff"] == m["handoff"] == (
        f"models handed to /sbm_localizer: model_path={m['path']}, "
        f"model_path_two={m2['path']}, n_sources=0"), m["handoff"]
    model = SBMModel.load(m["path"])
    assert model.n_sources == 1 and model.target_space == "degrees"
    model2 = SBMModel.load(m2["path"])
    assert model2.n_sources == 2 and model2.target_space == "degrees"
    assert model2.n_train == 600 and model2.info["dataset"] == model.info["dataset"]
    assert check_dataset(str(out / "dataset")).ok
    with open(out / "calibrate_ros.json") as fh:
        saved = json.load(fh)
    assert saved["samples"] == res["samples"]
    assert saved["model_two"]["mix_error"] == pytest.approx(m2["mix_error"])
    log = (out / "logs" / "sbm_localizer.log").read_text()
    assert os.path.basename(m["path"]) in log
    assert f"two-source model {m2['path']}" in log, log[-3000:]


def test_the_demo_comparison_runs_both_model_pairs_in_automatic_mode(tmp_path, monkeypatch):
    # the demo runs are replaced by a stand-in that checks the command line against the demo's
    # parser and writes a scores.json in the demo's layout
    import types
    from sbm_ros.apps import calibrate_ros as cr
    from sbm_ros.apps.demo import _parser
    calls = []

    def fake_run(cmd, stdout, stderr, timeout, env):
        calls.append(cmd)
        args = _parser().parse_args(cmd[3:])
        assert cmd[1:3] == ["-m", "sbm_ros.apps.demo"] and not args.one_source
        os.makedirs(args.out)
        utts = [{"index": 0, "who": "adam", "mode": "one talker", "error_deg": 0.4,
                 "est_azimuth_deg": 9.1, "est_elevation_deg": 0.6, "marked": ["adam"],
                 "marked_fraction": {"adam": 1.0}, "speaking_correct": True},
                {"index": 1, "who": "beatrice", "mode": "overlap (two-source)",
                 "error_deg": 4.8, "est_azimuth_deg": -8.9, "est_elevation_deg": 4.8,
                 "marked": ["adam"], "marked_fraction": {"adam": 1.0, "beatrice": 0.3},
                 "speaking_correct": False}]
        mode = ("automatic one/two-source (model_path + model_path_two, n_sources 0)"
                if args.model_two or not args.model_one else "one-source model only")
        with open(os.path.join(args.out, "scores.json"), "w") as fh:
            json.dump({"scores": {"utterances": utts, "n_utterances": 2, "n_single": 1,
                                  "single_within_3deg": 1, "single_mean_error_deg": 0.4,
                                  "single_max_error_deg": 0.4, "speaking_correct": 1,
                                  "speaking_accuracy": 0.5, "speaking_correct_overlap": 0,
                                  "n_overlap": 1, "overlap_errors_deg": [4.8]},
                       "meta": {"localizer mode": mode,
                                "model files": f"{args.model_one}, {args.model_two}"}}, fh)
        return types.SimpleNamespace(returncode=0)
    monkeypatch.setattr(cr.subprocess, "run", fake_run)
    said = []
    d = cr._demo(("/m/one.npz", "/m/two.npz"), str(tmp_path / "demo_sweep"), 2.0, said.append,
                 60.0)
    cmd = calls[0]
    assert cmd[cmd.index("--model-one") + 1] == "/m/one.npz"
    assert cmd[cmd.index("--model-two") + 1] == "/m/two.npz"
    assert d["mode"].startswith("automatic") and d["model_files"] == "/m/one.npz, /m/two.npz"
    assert (d["speaking_correct"], d["n_utterances"], d["overlap_errors_deg"]) == (1, 2, [4.8])
    assert [(u["index"], u["who"], u["marked"]) for u in d["misses"]] == [
        (1, "beatrice", ["adam"])]
    g = cr._demo(None, str(tmp_path / "demo_grid"), 2.0, said.append, 60.0)
    assert "--model-one" not in calls[1] and "--model-two" not in calls[1]
    assert g["mode"].startswith("automatic") and g["log"].endswith("demo_grid.log")
