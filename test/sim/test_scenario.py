"""Pure tests of the scripted scene (sbm_ros.sim.scenario, .timeline, .scene_view, .faces): YAML
validation, timeline, ground truth, drawing, face noise."""

import copy
import os

import numpy as np
import pytest
import yaml

from sbm_ros.sim.faces import haar_faces
from sbm_ros.sim.scenario import (ScenarioError, default_scenario_path, load_scenario,
                                  parse_scenario)
from sbm_ros.sim.scene_view import SceneRenderer
from sbm_ros.sim.timeline import FACE_BOX_H, MOUTH_OFFSET, build_timeline
from sbm_ros.sim import espeak_available

needs_espeak = pytest.mark.skipif(not espeak_available(), reason="espeak-ng not installed")

BASE = {
    "name": "t", "camera": "narrow", "room": {"t60": 0.3, "distance": 2.0}, "lead_in_s": 0.5,
    "tail_s": 0.5,
    "people": [
        {"name": "a", "language": "en", "direction": [8.0, 0.0]},
        {"name": "b", "language": "fr", "voice": "fr+f3", "direction": [-8.0, 1.0]},
        {"name": "c", "pixel": [320, 240]},
    ],
    "utterances": [
        {"who": "a", "count": [1, 2], "start": 0.0},
        {"who": "b", "count": [1, 2], "after": 0.5},
        {"who": "a", "count": [3, 4], "after": -0.3},
    ],
    "moves": [],
}


def _sc(**changes):
    d = copy.deepcopy(BASE)
    d.update(changes)
    return parse_scenario(d, "test")


def test_default_scenario_is_valid():
    sc = load_scenario(default_scenario_path())
    assert sc.camera_name == "narrow" and (sc.camera.width, sc.camera.height) == (640, 480)
    assert len(sc.people) >= 3 and sc.silent_people          # somebody stays silent
    langs = {sc.person(u.who).language for u in sc.utterances}
    assert "en" in langs and len(langs) >= 2
    assert 8 <= len(sc.utterances) <= 12 and sc.moves


def test_parse_pixel_position_and_silent():
    sc = _sc()
    c = sc.person("c")
    assert c.direction == pytest.approx((0.0, 0.0), abs=1e-9)    # image centre = optical axis
    assert sc.silent_people == ["c"]
    assert sc.person("a").look != sc.person("b").look            # distinct default looks


@pytest.mark.parametrize("mutate, words", [
    (lambda d: d.update(bogus=1), "unknown key"),
    (lambda d: d["people"].append({"name": "a", "direction": [0, 0]}), "duplicate"),
    (lambda d: d["people"][0].pop("direction"), "direction"),
    (lambda d: d["utterances"][1].update(who="zoe"), "zoe"),
    (lambda d: d["utterances"][1].update(start=1.0), "exactly one of 'start'"),
    (lambda d: d["utterances"][0].update(count=[3, 1]), "count"),
    (lambda d: d["people"][0].update(language="xx"), "language"),
    (lambda d: d["people"][0].update(look={"hair_style": "mohawk"}), "hair_style"),
    (lambda d: d.update(camera="fisheye"), "camera"),
    (lambda d: d["moves"].append({"who": "a", "after_utterance": 7, "direction": [0, 0]}),
     "after_utterance"),
])
def test_validation_errors_name_the_problem(mutate, words):
    d = copy.deepcopy(BASE)
    mutate(d)
    with pytest.raises(ScenarioError, match=words):
        parse_scenario(d, "test")


def test_load_reports_file_and_yaml_errors(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("people: [\n")
    with pytest.raises(ScenarioError, match="not valid YAML"):
        load_scenario(str(p))
    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenario(str(tmp_path / "missing.yaml"))


@needs_espeak
def test_timeline_ground_truth_and_overlaps():
    tl = build_timeline(_sc(), render_audio=False)
    u = tl.utterances
    assert u[0].start_s == pytest.approx(0.5)
    assert u[1].start_s == pytest.approx(u[0].end_s + 0.5, abs=1e-3)
    assert u[2].start_s == pytest.approx(u[1].end_s - 0.3, abs=1e-3)
    assert u[1].overlaps == [2] and u[2].overlaps == [1] and u[0].overlaps == []
    cam = tl.scenario.camera
    for t in u:
        uu, vv = cam.direction_to_pixel(t.azimuth_deg, t.elevation_deg)
        assert (t.u_px, t.v_px) == pytest.approx((float(uu), float(vv)))
    assert tl.duration_s == pytest.approx(max(t.end_s for t in u) + 0.5)
    assert [x.who for x in tl.talkers_at(u[2].start_s + 0.05)] == ["b", "a"]


@needs_espeak
def test_same_person_twice_and_moving_while_talking_are_refused():
    d = copy.deepcopy(BASE)
    d["utterances"][1]["who"] = "a"
    with pytest.raises(ScenarioError, match="two things at once"):
        build_timeline(parse_scenario(d), render_audio=False)
    d = copy.deepcopy(BASE)
    d["moves"] = [{"who": "a", "start": 0.2, "duration": 1.0, "direction": [2.0, 0.0]}]
    with pytest.raises(ScenarioError, match="between utterances"):
        build_timeline(parse_scenario(d), render_audio=False)


@needs_espeak
def test_move_between_utterances_changes_truth_and_face():
    d = copy.deepcopy(BASE)
    d["utterances"] = [{"who": "a", "count": [1, 2], "start": 0.0},
                       {"who": "a", "count": [3, 4], "after": 2.0}]
    d["moves"] = [{"who": "a", "after_utterance": 0, "duration": 1.0, "direction": [3.0, -2.0]}]
    tl = build_timeline(parse_scenario(d), render_audio=False)
    assert tl.utterances[0].azimuth_deg == pytest.approx(8.0)
    assert (tl.utterances[1].azimuth_deg, tl.utterances[1].elevation_deg) == \
        pytest.approx((3.0, -2.0))
    who, t0, t1, a, b = tl.moves[0]
    mid = tl.direction_at("a", 0.5 * (t0 + t1))
    assert 3.0 < mid[0] < 8.0                                    # walks, does not jump


@needs_espeak
def test_rendered_track_puts_sound_on_the_talker_side():
    d = copy.deepcopy(BASE)
    d["people"][0]["direction"] = [25.0, 0.0]                    # wide-ish: clear ILD
    d["camera"] = "wide"
    d["utterances"] = [{"who": "a", "count": [1, 2], "start": 0.0}]
    tl = build_timeline(parse_scenario(d))
    x = tl.audio
    assert x.ndim == 2 and x.shape[1] == 2
    assert x.shape[0] == pytest.approx(tl.duration_s * 16000, abs=2)
    u = tl.utterances[0]
    s = slice(int(u.start_s * 16000), int(u.end_s * 16000))
    speech = np.mean(x[s] ** 2)
    pause = np.mean(x[:int(0.4 * 16000)] ** 2)
    assert 10 * np.log10(speech / pause) > 20                    # SNR 30 dB re speech power
    assert np.mean(x[s, 0] ** 2) > 2 * np.mean(x[s, 1] ** 2)     # left ear louder (az > 0)


@needs_espeak
def test_faces_drawn_mouth_moves_and_detections_are_noisy_truth():
    tl = build_timeline(_sc(), render_audio=False)
    r = SceneRenderer(tl, jitter_px=2.5, size_jitter=0.05, seed=1)
    u0 = tl.utterances[0]
    talk_t = None
    env = tl.envelopes["a"]
    for k in range(int(u0.start_s * 100), int(u0.end_s * 100)):
        if env[k] > 0.6 and env[k + 1] > 0.6 and env[k - 1] > 0.6:
            talk_t = k / 100.0
            break
    assert talk_t is not None
    img_talk, st_talk = r.image_at(talk_t)
    img_quiet, _ = r.image_at(0.1)
    assert img_talk.shape == (480, 640, 3) and img_talk.dtype == np.uint8
    a = st_talk[0]
    assert a.talking and a.mouth_open > 0.5
    y, x = int(a.v_px), int(a.u_px)
    patch = (slice(y - 12, y + 12), slice(x - 15, x + 15))
    assert np.abs(img_talk[patch].astype(int) - img_quiet[patch].astype(int)).mean() > 10
    # face box of person c (silent) never changes its mouth
    c = st_talk[2]
    y, x = int(c.v_px), int(c.u_px)
    patch = (slice(y - 10, y + 10), slice(x - 12, x + 12))
    assert np.array_equal(img_talk[patch], img_quiet[patch])
    # detections: ground truth + noise of the documented size
    errs, sizes = [], []
    for _ in range(300):
        dets = r.face_detections(st_talk)
        assert [d["id"] for d in dets] == ["a", "b", "c"]
        for d, st in zip(dets, st_talk):
            u, v, w, h = st.face_box()
            errs.append((d["u"] - u, d["v"] - v))
            sizes.append(d["h"] / h)
    errs = np.asarray(errs)
    assert np.abs(errs.mean(axis=0)).max() < 0.5
    assert errs.std(axis=0) == pytest.approx([2.5, 2.5], rel=0.15)
    assert np.std(sizes) == pytest.approx(0.05, rel=0.2)
    # the mouth sits MOUTH_OFFSET box heights below the box centre (what av_fusion assumes)
    u, v, w, h = a.face_box()
    assert a.v_px - v == pytest.approx(MOUTH_OFFSET * h)
    assert h == pytest.approx(FACE_BOX_H * a.px_per_m)
    assert 100 < h < 160                                         # ~0.19 m at 2 m, narrow lens
    assert isinstance(haar_faces(img_talk), list)                 # informative only


def test_scenario_yaml_round_trip(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump(BASE))
    sc = load_scenario(str(p))
    assert sc.source == str(p) and [q.name for q in sc.people] == ["a", "b", "c"]
    assert os.path.exists(default_scenario_path())


def test_default_scenario_is_the_checkouts_config():
    import os
    from sbm_ros.sim.scenario import default_scenario_path
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert default_scenario_path() == os.path.join(root, 'config', 'demo_scenario.yaml')


def test_demo_starts_its_nodes_from_the_checkout():
    import os
    from sbm_ros.apps import demo
    assert os.path.isdir(os.path.join(demo.ROOT, 'sbm_ros', 'nodes'))
