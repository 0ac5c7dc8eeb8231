"""The timeline of a scenario: when each utterance sounds, where everybody is, the ground truth.

:func:`build_timeline` synthesises every utterance (:mod:`.scene_audio`), places it in time
(absolute starts or gaps after the previous one; negative gaps overlap), checks that nobody says
two things at once or moves while speaking, schedules the moves, gives each utterance its true
direction (its speaker's at the utterance's middle), computes each person's mouth envelope and,
unless asked not to, renders the binaural track (:func:`~.scene_audio.render_track`), with the
scenario's non-speech sounds (:class:`SoundTruth`). The ground truth is one
:class:`UtteranceTruth` per utterance; :class:`Timeline` answers who talks and where
everybody is at a time (:class:`PersonState`, with the face box the detections are drawn from).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from .scenario import Scenario, ScenarioError
from .scene_audio import mouth_envelopes, render_track, utterance_speech

__all__ = ["UtteranceTruth", "SoundTruth", "PersonState", "Timeline", "build_timeline",
           "FACE_BOX_H", "FACE_BOX_W", "MOUTH_OFFSET"]

#: geometry of a drawn head, metres relative to the mouth (x right, y down)
FACE_BOX_H = 0.19          # forehead-to-chin box height of the face detections
FACE_BOX_W = 0.15
MOUTH_OFFSET = 0.25        # mouth below the box centre, fraction of the box height


@dataclass
class UtteranceTruth:
    index: int
    who: str
    language: str
    voice: str
    text: str
    start_s: float
    end_s: float
    azimuth_deg: float
    elevation_deg: float
    u_px: float
    v_px: float
    overlaps: List[int] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    def to_dict(self) -> Dict:
        return {k: (round(v, 4) if isinstance(v, float) else v)
                for k, v in self.__dict__.items()}


@dataclass
class SoundTruth:
    index: int
    kind: str
    start_s: float
    end_s: float
    azimuth_deg: float
    elevation_deg: float
    signal: Optional[np.ndarray] = field(default=None, repr=False)   # mono source signal

    def to_dict(self) -> Dict:
        return {k: (round(v, 4) if isinstance(v, float) else v)
                for k, v in self.__dict__.items() if k != "signal"}


@dataclass
class PersonState:
    name: str
    azimuth_deg: float
    elevation_deg: float
    u_px: float                 # mouth pixel
    v_px: float
    talking: bool
    mouth_open: float           # 0..1
    px_per_m: float

    def face_box(self) -> Tuple[float, float, float, float]:
        """(u_centre, v_centre, width, height) of the drawn face's forehead-to-chin box."""
        h = FACE_BOX_H * self.px_per_m
        w = FACE_BOX_W * self.px_per_m
        return self.u_px, self.v_px - MOUTH_OFFSET * h, w, h


@dataclass
class Timeline:
    scenario: Scenario
    utterances: List[UtteranceTruth]
    duration_s: float
    audio: Optional[np.ndarray]                 # (n, 2) float, column 0 = LEFT ear
    envelopes: Dict[str, np.ndarray]            # per person, 0..1 at envelope_rate
    envelope_rate: float = 100.0
    moves: List[Tuple[str, float, float, Tuple[float, float], Tuple[float, float]]] = \
        field(default_factory=list)             # (who, t0, t1, from, to)
    sounds: List[SoundTruth] = field(default_factory=list)

    def sounds_at(self, t: float) -> List[SoundTruth]:
        return [s for s in self.sounds if s.start_s <= t < s.end_s]

    def talkers_at(self, t: float) -> List[UtteranceTruth]:
        return [u for u in self.utterances if u.start_s <= t < u.end_s]

    def direction_at(self, name: str, t: float) -> Tuple[float, float]:
        d = self.scenario.person(name).direction
        for who, t0, t1, a, b in self.moves:
            if who != name or t < t0:
                continue
            if t >= t1:
                d = b
            else:
                s = (t - t0) / (t1 - t0)
                s = 0.5 - 0.5 * math.cos(math.pi * s)      # ease in / out
                d = (a[0] + s * (b[0] - a[0]), a[1] + s * (b[1] - a[1]))
        return d

    def states_at(self, t: float) -> List[PersonState]:
        cam = self.scenario.camera
        dist = float(self.scenario.room.get("distance", 2.0))
        talking = {u.who for u in self.talkers_at(t)}
        out = []
        for p in self.scenario.people:
            az, el = self.direction_at(p.name, t)
            u, v = cam.direction_to_pixel(az, el)
            env = self.envelopes.get(p.name)
            k = int(t * self.envelope_rate)
            mo = float(env[k]) if env is not None and 0 <= k < env.size else 0.0
            out.append(PersonState(p.name, az, el, float(u), float(v), p.name in talking, mo,
                                   float(cam.fy) / dist))
        return out

    def summary(self) -> Dict:
        sc = self.scenario
        return {"name": sc.name, "source": sc.source, "camera": sc.camera.to_json_dict(),
                "duration_s": round(self.duration_s, 3), "sample_rate": sc.sample_rate,
                "people": [{"name": p.name, "language": p.language, "voice": p.voice,
                            "direction": list(p.direction),
                            "silent": p.name in sc.silent_people} for p in sc.people],
                "moves": [{"who": w, "start_s": round(a, 3), "end_s": round(b, 3),
                           "from": list(f), "to": list(to)} for w, a, b, f, to in self.moves],
                "utterances": [u.to_dict() for u in self.utterances],
                "sounds": [s.to_dict() for s in self.sounds]}


def _place_utterances(sc: Scenario, say: Callable[[str], None]):
    """(speech signals, ground truths without directions yet) of the utterances, in order."""
    rate = sc.sample_rate
    sigs, truths = [], []
    prev_end = None
    for k, u in enumerate(sc.utterances):
        p = sc.person(u.who)
        s = utterance_speech(sc, u)
        start = sc.lead_in_s + u.start_s if u.start_s is not None else prev_end + u.after_s
        start = max(0.0, round(start * rate) / rate)
        end = start + s.size / rate
        prev_end = end
        sigs.append(s)
        truths.append(UtteranceTruth(u.index, u.who, p.language, p.voice, u.text, start, end,
                                     0.0, 0.0, 0.0, 0.0))
        say(f"utterance {k + 1}/{len(sc.utterances)}: {u.who} ({p.voice}) "
            f"'{u.text}' {start:.2f}-{end:.2f} s")
    return sigs, truths


def _mark_overlaps(truths: List[UtteranceTruth]) -> None:
    """Fill ``overlaps``; a person saying two things at once is a :class:`ScenarioError`."""
    for a in truths:
        for b in truths:
            if a.index < b.index and a.start_s < b.end_s and b.start_s < a.end_s:
                if a.who == b.who:
                    raise ScenarioError(f"utterances[{a.index}] and [{b.index}]: {a.who} cannot "
                                        f"say two things at once ({a.start_s:.2f}-{a.end_s:.2f}"
                                        f" s and {b.start_s:.2f}-{b.end_s:.2f} s)")
                a.overlaps.append(b.index)
                b.overlaps.append(a.index)


def _schedule_moves(sc: Scenario, truths: List[UtteranceTruth]) -> List[Tuple]:
    """Moves in time order as (who, t0, t1, from, to); a move while speaking is an error."""
    moves, cur = [], {p.name: p.direction for p in sc.people}
    mv = []
    for m in sc.moves:
        t0 = (truths[m.after_utterance].end_s + 0.2 if m.after_utterance is not None
              else sc.lead_in_s + m.start_s)
        mv.append((t0, m))
    for t0, m in sorted(mv, key=lambda x: x[0]):
        t1 = t0 + m.duration_s
        for tr in truths:
            if tr.who == m.who and tr.start_s < t1 and t0 < tr.end_s:
                raise ScenarioError(f"{m.who} moves during utterances[{tr.index}] "
                                    f"({t0:.2f}-{t1:.2f} s vs {tr.start_s:.2f}-{tr.end_s:.2f} s)"
                                    f": moves happen between utterances")
        moves.append((m.who, t0, t1, cur[m.who], m.direction))
        cur[m.who] = m.direction
    return moves


def _place_sounds(sc: Scenario) -> List[SoundTruth]:
    """The scenario's non-speech sounds, synthesised (seeded per sound) and placed in time."""
    from .sources import nonspeech

    out = []
    for s in sc.sounds:
        x = nonspeech(s.kind, s.duration_s, sc.sample_rate, seed=[sc.seed, 7001, s.index],
                      rms=0.1 * 10 ** (s.level_db / 20.0))
        start = round((sc.lead_in_s + s.start_s) * sc.sample_rate) / sc.sample_rate
        out.append(SoundTruth(s.index, s.kind, start, start + x.size / sc.sample_rate,
                              float(s.direction[0]), float(s.direction[1]), x))
    return out


def _set_true_directions(tl: Timeline) -> None:
    """Each utterance's direction and mouth pixel: its speaker's at the utterance's middle."""
    cam = tl.scenario.camera
    for tr in tl.utterances:
        az, el = tl.direction_at(tr.who, 0.5 * (tr.start_s + tr.end_s))
        u, v = cam.direction_to_pixel(az, el)
        tr.azimuth_deg, tr.elevation_deg, tr.u_px, tr.v_px = float(az), float(el), float(u), \
            float(v)


def build_timeline(sc: Scenario, head=None, render_audio: bool = True,
                   progress: Optional[Callable[[str], None]] = None) -> Timeline:
    """Synthesise every utterance, place it in time and (optionally) render the binaural track.

    ``head``: a :class:`~sbm_ros.sim.VirtualHead` (default ``sc.make_head()``).
    ``render_audio=False`` only computes timings, ground truth and mouth envelopes (fast).
    Raises :class:`ScenarioError` if a person speaks twice at once or moves while speaking.
    """
    say = progress or (lambda msg: None)
    env_rate = 100.0
    sigs, truths = _place_utterances(sc, say)
    _mark_overlaps(truths)
    moves = _schedule_moves(sc, truths)
    sounds = _place_sounds(sc)
    last_end = max([t.end_s for t in truths] + [t1 for _, _, t1, _, _ in moves]
                   + [s.end_s for s in sounds] + [0.0])
    duration = last_end + sc.tail_s
    tl = Timeline(sc, truths, duration, None, {}, env_rate, moves, sounds)
    _set_true_directions(tl)
    tl.envelopes = mouth_envelopes([p.name for p in sc.people], truths, sigs, sc.sample_rate,
                                   env_rate, duration)
    if not render_audio:
        return tl
    tl.audio = render_track(sc, head or sc.make_head(), truths, sigs, duration, say,
                            sounds=sounds)
    return tl
