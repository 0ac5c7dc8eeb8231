"""VoiceTracker on synthetic estimate streams: birth, death, crossing, walking, gating, bad
input."""

import math

import numpy as np
import pytest

from sbm_ros.core.tracker import Detection, TrackerParams, VoiceTracker

DT = 0.04
COV = np.diag([1.0, 1.0])


def det(az, el=0.0, cov=COV):
    return Detection(az, el, cov)


def run(tracker, frames, t0=0.0):
    """frames: list of (detections, speech); returns the list of updates."""
    return [tracker.update(t0 + k * DT, d, s) for k, (d, s) in enumerate(frames)]


def test_birth_after_consistent_detections_and_stable_id():
    rng = np.random.default_rng(0)
    tr = VoiceTracker(TrackerParams(birth_hits=3))
    ups = run(tr, [([det(10 + rng.normal(0, 1.5))], True) for _ in range(50)])
    assert ups[0].voices == [] and ups[1].voices == []
    assert [v.id for v in ups[2].voices] == ["v1"] and ups[2].born == ["v1"]
    assert all([v.id for v in u.voices] == ["v1"] for u in ups[2:])
    v = ups[-1].voices[0]
    assert v.is_speaking and v.n_updates == 50
    assert np.median([abs(u.voices[0].azimuth_deg - 10) for u in ups[25:]]) < 1.0
    assert ups[-1].assignments == ["v1"]


def test_single_outliers_do_not_make_voices():
    """Three detections within 0.5 s confirm a voice: outliers 0.3 s apart never can."""
    rng = np.random.default_rng(3)
    frames = []
    for k in range(3000):      # 120 s of one estimate every 0.32 s, all at one place
        d = [det(rng.normal(5, 0.5), rng.normal(0, 0.5))] if k % 8 == 0 else []
        frames.append((d, True))
    assert all(u.voices == [] for u in run(VoiceTracker(), frames))
    # every 0.16 s: three of them fall within 0.5 s -> a voice
    frames = [([det(5.0)] if k % 4 == 0 else [], True) for k in range(20)]
    assert [u.born for u in run(VoiceTracker(), frames) if u.born] == [["v1"]]


def test_non_speech_windows_feed_no_voice_but_detections_are_returned():
    tr = VoiceTracker()
    ups = run(tr, [([det(5.0)], False) for _ in range(40)])
    assert all(u.voices == [] and u.assignments == [None] for u in ups)
    assert not ups[-1].speech
    ups = run(tr, [([det(5.0)], 0.9) for _ in range(5)], t0=2.0)
    assert [v.id for v in ups[-1].voices] == ["v1"]


def test_birth_at_the_first_speech_window_when_the_direction_was_known_before():
    """The localiser answers before the speech detector decides (its block must fill): the
    detections of the non-speech windows just before count as birth hits, so the voice is born
    and speaking at the first speech window, not birth_hits windows later."""
    tr = VoiceTracker(TrackerParams(birth_hits=3))
    ups = run(tr, [([det(5.0)], False)] * 3 + [([det(5.0)], True)])
    assert all(u.voices == [] and u.assignments == [None] for u in ups[:3])
    assert ups[3].born == ["v1"] and ups[3].assignments == ["v1"]
    assert ups[3].voices[0].is_speaking
    # a lone detection before the speech is not enough: three within birth_window_s
    tr = VoiceTracker(TrackerParams(birth_hits=3))
    ups = run(tr, [([det(5.0)], False), ([], False), ([], False), ([det(5.0)], True)])
    assert ups[3].born == []
    # the old behaviour on request
    tr = VoiceTracker(TrackerParams(birth_hits=3, birth_before_speech=False))
    ups = run(tr, [([det(5.0)], False)] * 3 + [([det(5.0)], True)] * 3)
    assert [u.born for u in ups[3:]] == [[], [], ["v1"]]


def test_non_speech_detections_never_feed_or_move_a_voice():
    tr = VoiceTracker()
    run(tr, [([det(2.0)], True) for _ in range(10)])
    v = tr.voices[0]
    ups = run(tr, [([det(3.5)], False) for _ in range(20)], t0=10 * DT)
    assert all(u.assignments == [None] and u.born == [] for u in ups)
    w = ups[-1].voices[0]
    assert w.id == v.id and w.azimuth_deg == pytest.approx(v.azimuth_deg, abs=0.3)
    assert w.n_updates == v.n_updates and not w.is_speaking
    assert [t for t in tr._tracks if t.id is None] == []      # no tentative next to a voice


def test_death_after_silence_timeout_and_new_id_on_return():
    p = TrackerParams(death_timeout_s=2.0)
    tr = VoiceTracker(p)
    run(tr, [([det(0.0)], True) for _ in range(20)])
    ups = run(tr, [([], False) for _ in range(70)], t0=20 * DT)
    alive = [u for u in ups if u.voices]
    dead_at = [u.stamp for u in ups if u.died]
    assert alive and dead_at == [pytest.approx(19 * DT + 2.0 + DT, abs=DT)]
    assert ups[0].voices[0].is_speaking is False          # fell at the first silent window
    ups = run(tr, [([det(0.0)], True) for _ in range(10)], t0=10.0)
    assert [v.id for v in ups[-1].voices] == ["v2"]


def test_is_speaking_rises_on_speech_and_falls_quickly():
    tr = VoiceTracker(TrackerParams(speaking_hold_s=0.2))
    run(tr, [([det(3.0)], True) for _ in range(20)])
    # speech continues (the other talker) but this voice gets no more detections
    ups = run(tr, [([], True) for _ in range(10)], t0=20 * DT)
    fell = next(u.stamp for u in ups if not u.voices[0].is_speaking)
    assert fell - 19 * DT == pytest.approx(0.2 + DT, abs=DT + 1e-9)
    ups = run(tr, [([det(3.0)], True)], t0=40 * DT)
    assert ups[0].voices[0].is_speaking and ups[0].voices[0].id == "v1"


def test_is_speaking_falls_when_the_voice_has_no_share_of_the_newest_audio():
    """Two talkers, then A stops while B goes on: the two-source answers still hold A (the
    window holds his speech) but with a small share of the newest audio. A's voice keeps being
    fed (no new voice, no death) and stops speaking after speaking_hold_s; B's speaks on."""
    tr = VoiceTracker(TrackerParams(speaking_hold_s=0.2))
    run(tr, [([det(8.0), det(-8.0)], True) for _ in range(20)])
    a, b = (Detection(8.0, 0.0, COV, share=0.05), Detection(-8.0, 0.0, COV, share=0.4))
    ups = run(tr, [([a, b], True) for _ in range(15)], t0=20 * DT)
    assert all(u.assignments == ["v1", "v2"] and not u.born for u in ups)
    fell = next(u.stamp for u in ups if not next(v for v in u.voices if v.id == "v1").is_speaking)
    assert fell - 19 * DT == pytest.approx(0.2 + DT, abs=DT + 1e-9)
    assert all(next(v for v in u.voices if v.id == "v2").is_speaking for u in ups)
    up = tr.update(35 * DT, [Detection(8.0, 0.0, COV, share=0.3), b], True)
    assert all(v.is_speaking for v in up.voices)                 # heard again: rises at once
    tr = VoiceTracker(TrackerParams(speaking_hold_s=0.2, min_share=0.0))   # off: as before
    run(tr, [([det(8.0), det(-8.0)], True) for _ in range(20)])
    ups = run(tr, [([a, b], True) for _ in range(15)], t0=20 * DT)
    assert all(v.is_speaking for u in ups for v in u.voices)
    with pytest.raises(ValueError, match="min_share"):
        TrackerParams(min_share=-0.1)


def crossing_stream(flip_order, speed=8.0, n=150, el=(2.0, -2.0), both_every=1):
    """Two talkers walking towards each other at +/- speed deg/s, crossing at t = 3 s."""
    frames, truth = [], []
    for k in range(n):
        t = k * DT
        a = -speed * (t - 3.0)         # from +24 to -36
        b = speed * (t - 3.0)
        truth.append((a, b))
        if abs(a - b) < 4.0:           # too close: the estimate gives one source between them
            frames.append(([det(0.5 * (a + b), 0.0)], True))
            continue
        ds = [det(a, el[0]), det(b, el[1])]
        if flip_order:                 # canonical order: left-most first
            ds.sort(key=lambda d: -d.azimuth_deg)
        frames.append((ds, True))
    return frames, truth


@pytest.mark.parametrize("flip", [False, True])
def test_crossing_talkers_keep_their_ids_when_the_canonical_order_flips(flip):
    frames, truth = crossing_stream(flip)
    tr = VoiceTracker()
    ups = run(tr, frames)
    ids_a, ids_b = set(), set()
    for u, (a, b) in zip(ups, truth):
        for v in u.voices:
            if abs(v.azimuth_deg - a) < 3 and abs(a - b) > 6:
                ids_a.add(v.id)
            if abs(v.azimuth_deg - b) < 3 and abs(a - b) > 6:
                ids_b.add(v.id)
    assert ids_a == {"v1"} and ids_b == {"v2"}
    assert {v.id for v in ups[-1].voices} == {"v1", "v2"}
    va = next(v for v in ups[-1].voices if v.id == "v1")
    assert va.velocity_deg_s[0] == pytest.approx(-8.0, abs=2.0)


def test_walking_talker_is_followed_with_its_velocity():
    rng = np.random.default_rng(1)
    frames, truth = [], []
    for k in range(200):
        t = k * DT
        az = -15.0 + 6.0 * t                               # walks 6 deg/s for 8 s
        truth.append(az)
        frames.append(([det(az + rng.normal(0, 1.0), 1.0 + rng.normal(0, 1.0))], True))
    tr = VoiceTracker()
    ups = run(tr, frames)
    assert {v.id for u in ups for v in u.voices} == {"v1"}
    errs = [abs(u.voices[0].azimuth_deg - a) for u, a in zip(ups[20:], truth[20:])]
    assert np.median(errs) < 1.0
    assert ups[-1].voices[0].velocity_deg_s[0] == pytest.approx(6.0, abs=2.0)


def test_gating_uses_the_estimate_covariance():
    tr = VoiceTracker(TrackerParams(cov_floor_deg=1.0, new_voice_cost=12.0))
    run(tr, [([det(0.0, cov=np.eye(2) * 0.5)], True) for _ in range(10)])
    t0 = 10 * DT
    # 8 deg away: outside the gate with a tight covariance -> not assigned to v1
    u = tr.update(t0, [det(8.0, cov=np.eye(2) * 0.5)], True)
    assert u.assignments == [None]
    # the same offset with a wide covariance (6 deg std) is inside the gate
    u = tr.update(t0 + DT, [det(8.0, cov=np.eye(2) * 36.0)], True)
    assert u.assignments == ["v1"]


def test_duplicate_second_source_near_a_voice_makes_no_new_voice():
    tr = VoiceTracker()
    frames = [([det(10.0), det(13.0)], True) for _ in range(40)]   # spurious 2nd source 3 deg off
    ups = run(tr, frames)
    assert {v.id for v in ups[-1].voices} == {"v1"}


def test_a_talker_whose_estimates_jump_keeps_his_voice_unless_silent_too_long():
    """Reclaim: the talker's estimates jump 9 deg (beyond the gate to his voice) after a short
    pause: the track born there continues his voice; after a long pause (or with reclaiming
    off) it is a new voice; another voice fed meanwhile is never reclaimed."""
    def scene(pause_s, params):
        tr = VoiceTracker(params)
        run(tr, [([det(-9.0, 0.0)], True) for _ in range(25)])
        t = 25 * DT + pause_s
        run(tr, [([], False) for _ in range(int(pause_s / DT))], t0=25 * DT)
        return tr, run(tr, [([det(-9.0, 9.0)], True) for _ in range(25)], t0=t)
    tr, ups = scene(1.0, TrackerParams())
    assert [v.id for v in ups[-1].voices] == ["v1"] and not any(u.born for u in ups)
    assert ups[2].assignments == ["v1"] and ups[-1].voices[0].elevation_deg > 7.0
    for pause, params in ((4.0, TrackerParams()), (1.0, TrackerParams(reclaim_deg=0.0)),
                          (1.0, TrackerParams(reclaim_deg=5.0))):
        tr, ups = scene(pause, params)
        assert [v.id for v in ups[-1].voices] == ["v1", "v2"], (pause, params)
    # a track born 8 deg from a voice fed at the same time is somebody else: a new voice
    tr = VoiceTracker()
    run(tr, [([det(20.0)], True) for _ in range(25)])
    ups = run(tr, [([det(20.0), det(28.0)], True) for _ in range(10)], t0=25 * DT)
    assert [v.id for v in ups[-1].voices] == ["v1", "v2"] and ups[-1].assignments == ["v1", "v2"]


def test_bad_input_is_rejected_and_counted():
    tr = VoiceTracker()
    bad = [Detection(float("nan"), 0.0), Detection(1.0, float("inf")), "not a detection",
           Detection(2.0, 0.0, covariance=np.full((2, 2), np.nan))]
    ups = run(tr, [(bad, True) for _ in range(5)])
    # the last one has a usable position (its covariance falls back to the floor)
    assert ups[-1].assignments[:3] == [None, None, None]
    assert ups[-1].assignments[3] == "v1"
    assert tr.n_rejected == 15
    u = tr.update(1.0, [], float("nan"))        # NaN probability: not speech
    assert not u.speech
    with pytest.raises(ValueError, match="stamp"):
        tr.update(float("nan"), [])
    with pytest.raises(ValueError, match="speech"):
        tr.update(1.1, [], "yes")
    u = tr.update(1.2, None, True)             # None detections: an empty window
    assert u.assignments == []


def test_time_going_back_resets_or_is_held():
    tr = VoiceTracker()
    run(tr, [([det(0.0)], True) for _ in range(10)], t0=5.0)
    u = tr.update(5.0, [det(0.0)], True)              # small step back: no time passes
    assert not u.reset and u.stamp == pytest.approx(5.0 + 9 * DT)
    u = tr.update(0.0, [det(0.0)], True)              # bag loop: reset, the voice dies
    assert u.reset and u.died == ["v1"] and u.voices == []


def test_params_are_validated():
    with pytest.raises(ValueError, match="gate_chi2"):
        TrackerParams(gate_chi2=-1.0)
    with pytest.raises(ValueError, match="birth_hits"):
        TrackerParams(birth_hits=0)
    with pytest.raises(ValueError, match="speech_threshold"):
        TrackerParams(speech_threshold=2.0)
    assert math.isfinite(TrackerParams().death_timeout_s)
