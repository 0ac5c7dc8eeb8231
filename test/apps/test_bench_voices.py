"""The voices section of sbm-bench: its scores on estimate streams made from a scene's truth
(cheap: no rendering, no localiser), its table, and the command line's ``--only voices``."""

import os

import numpy as np
import pytest

from sbm_ros.apps.bench import voices as V
from sbm_ros.apps.bench.cli import SECTIONS, build_parser
from sbm_ros.core.tracker import TrackerParams
from sbm_ros.sim import espeak_available
from sbm_ros.sim.scenario import load_scenario
from sbm_ros.sim.timeline import build_timeline

needs_espeak = pytest.mark.skipif(not espeak_available(), reason="espeak-ng not installed")


def truth_blocks(tl, rng, noise_deg=1.0, lag_s=0.15, linger_s=0.0, swap=False):
    """40 ms blocks whose sources are the talkers heard ``lag_s`` ago (direction + noise),
    lingering ``linger_s`` after an utterance ends; ``swap`` flips the order of two sources."""
    blocks = []
    for k in range(int(tl.duration_s / V.HOP_S)):
        t = (k + 1) * V.HOP_S
        srcs = []
        for u in tl.utterances:
            if u.start_s + lag_s <= t <= u.end_s + linger_s:
                a, e = tl.direction_at(u.who, t)
                srcs.append((a + rng.normal(0, noise_deg), e + rng.normal(0, noise_deg),
                             np.eye(2)))
        if swap and k % 2:
            srcs = srcs[::-1]
        blocks.append({"t": t, "sources": srcs[:2], "block": (0, 0)})
    return blocks


def speech_flags(tl, blocks, hang_s=0.1):
    return [any(u.start_s <= b["t"] <= u.end_s + hang_s for u in tl.utterances) for b in blocks]


@needs_espeak
def test_scores_of_a_clean_stream_on_the_crossing_scene():
    tl = build_timeline(load_scenario(V._scene_path("crossing")), render_audio=False)
    rng = np.random.default_rng(0)
    blocks = truth_blocks(tl, rng, swap=True)
    r = V.track_scene(tl, blocks, speech_flags(tl, blocks), TrackerParams())
    assert r["found"] == r["n_utterances"] == len(tl.utterances)
    assert r["switches"] <= 1 and r["spurious"] == 0
    assert set(r["ids_per_person"]) == {"alice", "bruno"}
    rises = [u["rise"] for u in r["utterances"] if u["rise"] is not None]
    assert max(rises) <= 0.15 + 3 * V.HOP_S + 1e-9    # lag + birth (3 detections)
    # the speech flag's hangover, or the hold when the other one talks on
    falls = [u["fall"] for u in r["utterances"] if u["fall"] is not None]
    assert max(falls) <= TrackerParams().speaking_hold_s + V.HOP_S + 1e-9
    assert min(falls) <= 0.1 + V.HOP_S + 1e-9
    # every window fed regardless of speech: lingering sources keep is_speaking up
    blocks = truth_blocks(tl, rng, linger_s=1.0)
    r2 = V.track_scene(tl, blocks, [True] * len(blocks), TrackerParams())
    assert max(u["fall"] for u in r2["utterances"] if u["fall"] is not None) > 0.9


@needs_espeak
def test_scores_count_spurious_voices_and_vad_errors():
    tl = build_timeline(load_scenario(V._scene_path("noises")), render_audio=False)
    rng = np.random.default_rng(1)
    blocks = truth_blocks(tl, rng)
    for b in blocks:                                  # every sound becomes a detection
        for s in tl.sounds_at(b["t"]):
            b["sources"] = (b["sources"] + [(s.azimuth_deg, s.elevation_deg, np.eye(2))])[:2]
    fed_all = [True] * len(blocks)
    # reclaiming off: a sound near a voice heard in the last 3 s would continue that voice
    # (TrackerParams.reclaim_deg) instead of becoming a spurious one; this checks the counting
    r = V.track_scene(tl, blocks, fed_all, TrackerParams(reclaim_deg=0.0))
    assert r["spurious"] >= 3                         # door, music, fan... became voices
    times = np.array([b["t"] for b in blocks])
    v = V._vad_scores(tl, times, fed_all)
    assert v["speech_recall"] == 1.0 and v["false_on_sounds"] == 1.0
    r = V.track_scene(tl, blocks, speech_flags(tl, blocks, 0.0), TrackerParams())
    assert r["found"] == len(tl.utterances)
    res = {"params": TrackerParams(), "models": "test", "scenes": {
        "noises": {"duration_s": tl.duration_s, "per": {"truth": {"vad": v, "track": r}}}}}
    md = V.render(res)
    row = next(line for line in md.splitlines() if line.startswith("| noises"))
    assert f"| {r['found']}/{len(tl.utterances)} |" in row


def test_command_line_has_the_voices_section():
    assert "voices" in SECTIONS
    assert build_parser().parse_args(["--only", "voices"]).only == "voices"
    assert os.path.exists(V._scene_path("demo")) and os.path.exists(V._scene_path("noises"))
