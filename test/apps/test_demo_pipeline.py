"""The demo end to end over real DDS: virtual_head -> sbm_localizer -> av_fusion -> recorder.

A SHORT scenario (about 9 s: two talkers in turn, the first one twice, one silent person) with
small models trained on the spot (16 x 12 grid, K = 20, one source), run by ``python -m
sbm_ros.apps.demo`` in a subprocess on this module's own DDS domain; the test reads the run's
``scores.json``. With hri_msgs and tf2_msgs importable the nodes run with ROS4HRI on and the
voices are checked (one voice id per person, no id switch, the VOICE<->FACE candidate match
names the talker's face); without them the demo must say that ROS4HRI is off.
Skipped when the ROS 2 environment or espeak-ng is missing.
"""

import json
import os
import subprocess
import sys
import time

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SCENARIO = {
    "name": "short", "camera": "narrow", "room": {"t60": 0.3, "drr_db": 4.0, "distance": 2.0},
    "snr_db": 30.0, "lead_in_s": 1.0, "tail_s": 1.0,
    "people": [
        {"name": "ann", "language": "en", "voice": "en+f3", "direction": [8.0, 1.0]},
        {"name": "niko", "language": "el", "voice": "el+m3", "direction": [-7.0, -1.0]},
        {"name": "sam", "direction": [0.5, 0.5]},
    ],
    "utterances": [
        {"who": "ann", "count": [1, 4], "start": 0.0},
        {"who": "niko", "count": [1, 4], "after": 1.0},
        {"who": "ann", "count": [5, 8], "after": 1.0},     # ann again: her voice id must stay
    ],
}


def _ros_ok():
    r = subprocess.run([sys.executable, "-c", "import rclpy, audio_common_msgs.msg, "
                        "vision_msgs.msg, cv2, matplotlib"], capture_output=True)
    return r.returncode == 0


def _hri_ok():
    r = subprocess.run([sys.executable, "-c", "import hri_msgs.msg, tf2_msgs.msg"],
                       capture_output=True)
    return r.returncode == 0


def _check_voices(s, stdout, ros4hri):
    """The voice fields of the scores (see sbm_ros.apps.recorder.score_voices)."""
    v = s["voices"]
    assert v["n_utterances"] == s["n_utterances"]
    assert v["match_accuracy"] == v["match_correct"] / v["n_utterances"]
    if not ros4hri:
        assert not v["ros4hri"] and "ROS4HRI off" in stdout
        assert v["voice_found"] == 0 and v["n_matches"] == 0
        return
    assert v["ros4hri"] and "ROS4HRI on" in stdout
    rows = v["utterances"]
    assert [r["who"] for r in rows] == [u["who"] for u in s["utterances"]]
    for r in rows:
        assert r["voice"] is not None and r["voice"].startswith("v"), r   # voice ids present
        assert r["voice_share"] >= 0.8, r
        assert r["n_matches"] >= 2, r
        assert r["match_face"] == r["who"] and r["match_correct"], r
    # one voice per person, different persons different voices, no switch (ann spoke twice)
    assert set(v["persons"]) == {"ann", "niko"}
    assert v["persons"]["ann"]["ids"] == [rows[0]["voice"]] == [rows[2]["voice"]]
    assert v["persons"]["niko"]["ids"] == [rows[1]["voice"]] != [rows[0]["voice"]]
    assert v["voice_switches"] == 0 and v["voice_found"] == 3
    assert all(p["switches"] == 0 for p in v["persons"].values())
    assert v["match_correct"] == 3 and v["match_accuracy"] == 1.0
    assert v["n_matches"] >= sum(r["n_matches"] for r in rows)
    assert "voice ids: ann " in stdout and "VOICE↔FACE match names the talker's face: 3/3" \
        in stdout


def test_short_demo_scores(tmp_path):
    from sbm_ros.sim import espeak_available
    if not espeak_available():
        pytest.skip("espeak-ng not installed")
    if not _ros_ok():
        pytest.skip("ROS 2 environment not available (source .dev/env.sh)")
    from rostest_utils import domain_id_for
    scen = tmp_path / "short.yaml"
    scen.write_text(yaml.safe_dump(SCENARIO))
    out = tmp_path / "out"
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain_id_for(__name__)), PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "sbm_ros.apps.demo", "--scenario", str(scen), "-o",
                        str(out), "--models-dir", str(tmp_path / "models"), "--grid", "16x12",
                        "-K", "20", "--one-source"], env=env, cwd=ROOT, capture_output=True,
                       text=True, timeout=150)
    took = time.monotonic() - t0
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    res = json.loads((out / "scores.json").read_text())
    s = res["scores"]
    assert s["n_utterances"] == 3 and s["n_single"] == 3
    for u in s["utterances"]:
        assert u["n_estimates"] >= 3, u
        assert u["error_deg"] < 3.0, u                     # localised within 3 degrees
        assert u["marked"] == [u["who"]], u                # the right face, only that one
        assert u["speaking_correct"]
    assert s["speaking_accuracy"] == 1.0
    assert s["silent_marked_fraction"]["sam"] < 0.05
    assert (out / "summary.md").exists() and (out / "directions.png").exists()
    assert list((out / "frames").glob("*.png"))
    assert "speaking face correct" in r.stdout
    ros4hri = _hri_ok()
    _check_voices(s, r.stdout, ros4hri)
    summary = (out / "summary.md").read_text()
    assert "## Voices (ROS4HRI)" in summary
    assert (out / "candidate_matches.jsonl").exists() == ros4hri
    # Speed is a benchmark figure, not a timed assertion (shared machines are noisy).
    print(f"demo pipeline took {took:.0f} s")
