"""The demo recorder's voice scoring (no ROS): the voice of each utterance, id switches per
person, and whether the best VOICE<->FACE candidate match names the talker's face."""

import numpy as np

from sbm_ros.apps.recorder import _voices_summary, _with_voices, score_voices, \
    voices_totals_text


def _info(gap_s=1.0):
    u = [("ann", 1.0, 8.0, 1.0), ("niko", 4.0, -7.0, -1.0), ("ann", 7.0 + gap_s, 8.0, 1.0)]
    return {"utterances": [{"index": k, "who": w, "start_s": s, "end_s": s + 2.0,
                            "azimuth_deg": a, "elevation_deg": e, "overlaps": []}
                           for k, (w, s, a, e) in enumerate(u)],
            "people": [{"name": "ann"}, {"name": "niko"}, {"name": "sam", "silent": True}]}


def _estimates(info, third_voice, far_voice=None):
    """Estimates every 0.1 s near each talker (from 0.3 s after the start to 0.2 s after the
    end) carrying voice v1 (ann), v2 (niko) or ``third_voice`` (ann's second utterance); with
    ``far_voice``, a source 20 degrees away from everybody with that voice too."""
    out = []
    u = info["utterances"]
    for t in np.arange(0.0, u[-1]["end_s"] + 1.0, 0.1):
        s = []
        for r, vid in zip(u, ("v1", "v2", third_voice)):
            if r["start_s"] + 0.3 < t < r["end_s"] + 0.2:
                s.append((r["azimuth_deg"] + 0.5, r["elevation_deg"], vid))
        if far_voice and s:
            s.append((25.0, 0.0, far_voice))
        out.append((float(t), s))
    return out


def test_one_voice_per_person_and_matches():
    info = _info()
    m = [(2.0, "v1", "ann", 0.9), (2.1, "v1", "sam", 0.4), (5.0, "v2", "niko", 0.8),
         (5.5, "v2", "ann", 0.85), (9.0, "v1", "ann", 0.7), (9.0, "v9", "ann", 0.99)]
    v = score_voices(info, _estimates(info, "v1", far_voice="v7"), m)
    assert [r["voice"] for r in v["utterances"]] == ["v1", "v2", "v1"]
    assert all(r["voice_share"] == 1.0 for r in v["utterances"])   # v7 is nobody's
    assert v["persons"]["ann"] == {"ids": ["v1"], "switches": 0, "reappearances": 0}
    assert v["voice_switches"] == 0 and v["voice_found"] == 3
    # niko's best match names ann (0.85 > 0.8): wrong; the match of v9 is nobody's
    assert [r["match_face"] for r in v["utterances"]] == ["ann", "ann", "ann"]
    assert [r["match_correct"] for r in v["utterances"]] == [True, False, True]
    assert v["match_correct"] == 2 and abs(v["match_accuracy"] - 2 / 3) < 1e-9
    assert v["utterances"][0]["n_matches"] == 2 and v["n_matches"] == 6
    text = "\n".join(_voices_summary(v))
    assert "| 1 | niko | v2 (100 %) | ann (0.85, 2) | NO |" in text
    assert "2/3 utterances (67 %)" in text


def test_switches_and_reappearances():
    info = _info()
    v = score_voices(info, _estimates(info, "v3"), [])
    assert v["persons"]["ann"] == {"ids": ["v1", "v3"], "switches": 1, "reappearances": 0}
    assert v["voice_switches"] == 1 and v["match_correct"] == 0
    assert all(r["match_face"] is None and not r["match_correct"] for r in v["utterances"])
    # silent for longer than the death timeout: a new id is a re-appearance, not a switch
    info = _info(gap_s=10.0)
    v = score_voices(info, _estimates(info, "v3"), [])
    assert v["persons"]["ann"]["switches"] == 0 and v["persons"]["ann"]["reappearances"] == 1


def test_no_voices_and_ros4hri_off():
    info = _info()
    est = [(t, [(a, e, None) for a, e, _ in s]) for t, s in _estimates(info, "v1")]
    v = score_voices(info, est, [], ros4hri=False)
    assert v["voice_found"] == 0 and v["voice_switches"] == 0 and v["match_accuracy"] == 0.0
    assert all(r["voice"] is None for r in v["utterances"])
    assert voices_totals_text(v) == ["ROS4HRI off: no voice ids, no VOICE↔FACE matches"]


def test_directions_get_the_voice_ids_of_the_same_stamp():
    dirs = [(10, [(1.0, 2.0)]), (20, [(3.0, 4.0), (5.0, 6.0)]), (30, [(7.0, 8.0)])]
    srcs = [(10, [("source_0", 0, 0, 1.0, "v1")]),
            (20, [("source_0", 0, 0, 1.0, None), ("source_1", 0, 0, 1.0, "v2")]),
            (30, [])]                           # no pixel: counts differ, no voice
    D = [(s / 10.0, d) for s, d in dirs]
    out = _with_voices(D, dirs, srcs)
    assert out == [(1.0, [(1.0, 2.0, "v1")]), (2.0, [(3.0, 4.0, None), (5.0, 6.0, "v2")]),
                   (3.0, [(7.0, 8.0, None)])]
