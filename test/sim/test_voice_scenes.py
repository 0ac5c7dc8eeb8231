"""Non-speech sounds, the scenario's ``sounds`` entries and the voice-tracking scenes."""

import copy
import os

import numpy as np
import pytest

from sbm_ros.sim import espeak_available
from sbm_ros.sim.scenario import ScenarioError, load_scenario, parse_scenario
from sbm_ros.sim.sources import NONSPEECH_KINDS, nonspeech
from sbm_ros.sim.timeline import build_timeline

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
needs_espeak = pytest.mark.skipif(not espeak_available(), reason="espeak-ng not installed")
RATE = 16000

BASE = {
    "name": "t", "camera": "narrow", "room": {"t60": 0.3, "distance": 2.0}, "lead_in_s": 0.5,
    "tail_s": 0.5,
    "people": [{"name": "a", "language": "en", "direction": [8.0, 0.0]}],
    "utterances": [{"who": "a", "count": [1, 2], "start": 0.0}],
    "sounds": [{"kind": "clap", "start": 2.0, "direction": [-20.0, 0.0]},
               {"kind": "fan", "start": 2.5, "duration": 2.0, "direction": [-60.0, -30.0],
                "level_db": -12.0}],
}


def _rms(x):
    return float(np.sqrt(np.mean(x ** 2)))


@pytest.mark.parametrize("kind", NONSPEECH_KINDS)
def test_nonspeech_sounds_are_finite_seeded_and_at_level(kind):
    x = nonspeech(kind, 2.0, RATE, seed=1, rms=0.1)
    assert x.ndim == 1 and np.all(np.isfinite(x))
    loud = np.abs(x) >= np.max(np.abs(x)) * 10 ** (-30 / 20)
    assert _rms(x[loud]) == pytest.approx(0.1, rel=0.02)     # fades: a little less
    assert np.array_equal(x, nonspeech(kind, 2.0, RATE, seed=1, rms=0.1))
    assert not np.array_equal(x, nonspeech(kind, 2.0, RATE, seed=2, rms=0.1))


def test_nonspeech_shapes_in_time():
    door, clap = nonspeech("door"), nonspeech("clap")
    assert door.size == int(0.5 * RATE) and clap.size == int(0.12 * RATE)
    for x in (door, clap):                       # impulsive: the energy is at the start
        e = np.cumsum(x ** 2) / np.sum(x ** 2)
        assert e[int(0.1 * RATE) if x is door else int(0.03 * RATE)] > 0.8
    fan = nonspeech("fan", 4.0)                  # switches on: quiet first, then steady
    assert _rms(fan[:int(0.3 * RATE)]) < 0.1 * _rms(fan[-RATE:])
    assert _rms(fan[-2 * RATE:-RATE]) == pytest.approx(_rms(fan[-RATE:]), rel=0.1)
    music = nonspeech("music", 3.0)              # harmonic: a strong periodicity
    seg = music[RATE:RATE + 1024] - music[RATE:RATE + 1024].mean()
    ac = np.correlate(seg, seg, "full")[1023:]
    assert np.max(ac[40:230]) / ac[0] > 0.5


def test_nonspeech_bad_arguments():
    with pytest.raises(ValueError, match="unknown sound kind"):
        nonspeech("trumpet", 1.0)
    with pytest.raises(ValueError, match="duration"):
        nonspeech("music")


@pytest.mark.parametrize("mutate, words", [
    (lambda d: d["sounds"][0].update(kind="siren"), "not one of"),
    (lambda d: d["sounds"][1].pop("duration"), "needs 'duration'"),
    (lambda d: d["sounds"][0].pop("start"), "needs 'start'"),
    (lambda d: d["sounds"][0].update(volume=3), "unknown key"),
    (lambda d: d["sounds"][0].update(direction=[120.0, 0.0]), "not in front"),
    (lambda d: d.update(sounds={"kind": "door"}), "must be a list"),
])
def test_sound_entries_are_validated(mutate, words):
    d = copy.deepcopy(BASE)
    mutate(d)
    with pytest.raises(ScenarioError, match=words):
        parse_scenario(d, "test")


@needs_espeak
def test_sounds_are_placed_and_rendered_in_the_track():
    tl = build_timeline(parse_scenario(copy.deepcopy(BASE)))
    assert [s.kind for s in tl.sounds] == ["clap", "fan"]
    clap, fan = tl.sounds
    assert clap.start_s == pytest.approx(2.5) and fan.end_s == pytest.approx(5.0)
    assert tl.duration_s == pytest.approx(5.5)
    assert [s.kind for s in tl.sounds_at(4.0)] == ["fan"]
    x = tl.audio
    quiet = _rms(x[int(1.8 * RATE):int(2.4 * RATE)])             # after the speech
    assert _rms(x[int(2.5 * RATE):int(2.55 * RATE)]) > 5 * quiet  # the clap
    assert _rms(x[int(4.0 * RATE):int(4.8 * RATE)]) > 3 * quiet   # the fan, running
    r = x[int(4.0 * RATE):int(4.8 * RATE)]
    assert np.mean(r[:, 1] ** 2) > 2 * np.mean(r[:, 0] ** 2)      # fan on the right
    assert tl.summary()["sounds"][0]["kind"] == "clap"


@pytest.mark.parametrize("name", ["crossing", "return", "noises"])
def test_voice_scenes_are_valid(name):
    sc = load_scenario(os.path.join(ROOT, "config", f"voices_{name}.yaml"))
    assert sc.name == f"voices_{name}" and len(sc.people) == 2
    if not espeak_available():
        return
    tl = build_timeline(sc, render_audio=False)
    if name == "crossing":                   # alice and bruno swap sides, in view throughout
        a0, b0 = tl.direction_at("alice", 0.0), tl.direction_at("bruno", 0.0)
        a1, b1 = (tl.direction_at(p, tl.duration_s) for p in ("alice", "bruno"))
        assert a0[0] > b0[0] and a1[0] < b1[0]
        assert sum(bool(u.overlaps) for u in tl.utterances) >= 4
    elif name == "return":                   # carol away, and a silence longer than 8 s
        ends = sorted((u.start_s, u.end_s) for u in tl.utterances)
        gaps = [b[0] - a[1] for a, b in zip(ends, ends[1:])]
        assert max(gaps) > 10.0
        assert tl.direction_at("carol", 12.0)[0] == pytest.approx(60.0)
    else:                                    # every kind of sound, during and between speech
        assert {s.kind for s in tl.sounds} == set(NONSPEECH_KINDS)
        during = [s for s in tl.sounds if any(u.start_s < s.start_s < u.end_s
                                              for u in tl.utterances)]
        assert during and len(during) < len(tl.sounds)
