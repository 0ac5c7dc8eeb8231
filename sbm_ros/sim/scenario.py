"""Demo scenarios for the virtual head: who stands where, who speaks when, what the camera sees.

Pure Python (numpy, OpenCV for drawing, PyYAML for the file); no ROS. Used by the
``virtual_head`` node, by ``python -m sbm_ros.apps.demo`` and by the tests.

Scenario file (YAML, see ``config/demo_scenario.yaml`` for a commented example)::

    name: demo
    camera: narrow               # the paper's lenses: narrow (640x480, 28x21 deg) or wide
    sample_rate: 16000
    room: {t60: 0.3, drr_db: 4.0, distance: 2.0}   # sbm_ros.sim.Room arguments
    snr_db: 30.0                 # microphone self-noise re the mean power of the speech
    lead_in_s: 1.0               # silence before the first utterance (noise-floor tracking)
    tail_s: 1.5                  # silence after the last utterance
    seed: 0
    people:
      - name: alice
        language: en             # counting words of sbm_ros.sim.COUNT_WORDS
        voice: en+f3             # espeak-ng voice (default: the language's base voice)
        direction: [9.0, 1.0]    # MOUTH direction (azimuth LEFT+, elevation UP+, degrees)
        # or   pixel: [120, 250] # mouth pixel (u, v) of the scenario camera
        look: {skin: light, hair: brown, hair_style: long, shirt: [40, 90, 180]}
    utterances:                  # in time order
      - {who: alice, count: [1, 4], start: 1.0}      # absolute start (s)
      - {who: bruno, count: [1, 3], after: 0.8}      # s after the end of the previous one
      - {who: alice, text: "hello", after: -0.6}      # negative: overlaps the previous one
    moves:                       # a person walks to a new place between two utterances
      - {who: alice, after_utterance: 2, duration: 1.2, direction: [4.0, -2.0]}

A person without utterances is **silent** (stands in view, never speaks). Positions are the
MOUTH (the sound source); faces are drawn around it. A move must not overlap an utterance of the
person moving (validated), so every utterance has one true direction.

Timeline (:func:`build_timeline`): every utterance is synthesised with espeak-ng
(:func:`sbm_ros.sim.speech`), rendered with the virtual head at its speaker's direction
(KEMAR HRIRs, reverberant room, reverberation tail kept) and summed into one binaural track;
microphone self-noise is added to the whole track at ``snr_db`` relative to the mean power of the
clean track over the samples where somebody speaks. The ground truth is one
:class:`UtteranceTruth` per utterance.

Camera image (:class:`SceneRenderer`): a simple room background and, for each person in view, a
cartoon face drawn with OpenCV -- hair, skin-tone head oval with ears, eyes (with blinks),
eyebrows, nose, a mouth that opens with the loudness envelope of that person's speech, neck and
shirt -- distinct per person (skin, hair colour and style, shirt, glasses, beard).

Face detections (:meth:`SceneRenderer.face_detections`): **not** a face detector. The boxes come
from the scenario's ground truth (the drawn face's forehead-to-chin box, mouth at a quarter of
the box height below its centre, as ``av_fusion`` assumes) with noise: the centre jitters with a
Gaussian of ``jitter_px`` (default 2.5 px) per axis and the size by a factor ``1 + N(0,
size_jitter)`` (default 5 %), independently per frame. :func:`haar_faces` runs OpenCV's Haar
cascade on a drawn image to check whether a classic detector takes the drawings for faces.
"""

from __future__ import annotations

import copy
import math
import os
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

__all__ = [
    "ScenarioError", "Person", "Utterance", "Move", "Scenario", "UtteranceTruth", "Timeline",
    "PersonState", "load_scenario", "parse_scenario", "build_timeline", "SceneRenderer",
    "haar_faces", "default_scenario_path",
]

#: geometry of a drawn head, metres relative to the mouth (x right, y down)
FACE_BOX_H = 0.19          # forehead-to-chin box height of the face detections
FACE_BOX_W = 0.15
MOUTH_OFFSET = 0.25        # mouth below the box centre, fraction of the box height

SKIN = {"light": (189, 215, 244), "fair": (170, 200, 235), "medium": (130, 170, 215),
        "tan": (100, 145, 195), "brown": (70, 110, 160), "dark": (45, 75, 115)}
HAIR = {"black": (30, 30, 35), "brown": (35, 60, 100), "blond": (90, 180, 220),
        "red": (40, 70, 170), "grey": (160, 160, 165), "white": (220, 220, 225)}
HAIR_STYLES = ("short", "long", "bun", "bald", "curly")
_PALETTE = [
    {"skin": "light", "hair": "brown", "hair_style": "short", "shirt": (160, 90, 40),
     "eyes": (140, 100, 40), "glasses": False, "beard": True},
    {"skin": "medium", "hair": "black", "hair_style": "long", "shirt": (60, 50, 180),
     "eyes": (40, 60, 90), "glasses": False, "beard": False},
    {"skin": "dark", "hair": "black", "hair_style": "curly", "shirt": (70, 150, 60),
     "eyes": (30, 40, 60), "glasses": True, "beard": False},
    {"skin": "fair", "hair": "blond", "hair_style": "bun", "shirt": (150, 60, 140),
     "eyes": (160, 130, 60), "glasses": True, "beard": False},
    {"skin": "tan", "hair": "grey", "hair_style": "bald", "shirt": (40, 120, 200),
     "eyes": (50, 70, 90), "glasses": False, "beard": True},
]


class ScenarioError(ValueError):
    """The scenario file is invalid; the message names the entry and the problem."""


@dataclass
class Person:
    name: str
    language: str = "en"
    voice: str = ""
    direction: Tuple[float, float] = (0.0, 0.0)   # initial mouth direction (az, el) deg
    look: Dict = field(default_factory=dict)
    speed: Optional[int] = None                   # espeak-ng words per minute
    pitch: Optional[int] = None
    level_db: float = 0.0
    index: int = 0


@dataclass
class Utterance:
    index: int
    who: str
    text: str
    start_s: Optional[float] = None               # absolute start, or
    after_s: Optional[float] = None               # relative to the previous utterance's end
    count: Optional[Tuple[int, int]] = None


@dataclass
class Move:
    who: str
    start_s: Optional[float]
    after_utterance: Optional[int]
    duration_s: float
    direction: Tuple[float, float]


@dataclass
class Scenario:
    name: str
    camera_name: str
    camera: object                                # sbm_ros.sim.VirtualCamera
    sample_rate: int
    room: Dict
    snr_db: Optional[float]
    lead_in_s: float
    tail_s: float
    seed: int
    people: List[Person]
    utterances: List[Utterance]
    moves: List[Move]
    source: str = ""
    raw: Dict = field(default_factory=dict, repr=False)

    def person(self, name: str) -> Person:
        for p in self.people:
            if p.name == name:
                return p
        raise KeyError(name)

    @property
    def silent_people(self) -> List[str]:
        talkers = {u.who for u in self.utterances}
        return [p.name for p in self.people if p.name not in talkers]

    def make_head(self):
        """The scenario's :class:`~sbm_ros.sim.VirtualHead` (room, self-noise)."""
        from . import Room, VirtualHead
        return VirtualHead(room=Room(**self.room), snr_db=self.snr_db,
                           sample_rate=self.sample_rate, seed=self.seed)


def default_scenario_path() -> str:
    """``config/demo_scenario.yaml`` of the checkout, else of the installed package share."""
    here = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "config", "demo_scenario.yaml")
    if os.path.exists(here):
        return here
    try:
        from ament_index_python.packages import get_package_share_directory
        return os.path.join(get_package_share_directory("sbm_ros"), "config",
                            "demo_scenario.yaml")
    except Exception:  # noqa: BLE001 - not an ament install
        return here


# ----------------------------------------------------------------------------- parsing
def _num(d, key, where, default=None, positive=False, nonneg=False):
    v = d.get(key, default)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ScenarioError(f"{where}: '{key}' must be a number, got {v!r}")
    v = float(v)
    if not math.isfinite(v):
        raise ScenarioError(f"{where}: '{key}' must be finite")
    if positive and v <= 0:
        raise ScenarioError(f"{where}: '{key}' must be > 0, got {v}")
    if nonneg and v < 0:
        raise ScenarioError(f"{where}: '{key}' must be >= 0, got {v}")
    return v


def _pair(v, where, what):
    if (not isinstance(v, (list, tuple)) or len(v) != 2
            or not all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in v)):
        raise ScenarioError(f"{where}: '{what}' must be a list of two numbers, got {v!r}")
    return float(v[0]), float(v[1])


def _position(d, where, camera, required=True):
    has_dir, has_px = "direction" in d, "pixel" in d
    if has_dir and has_px:
        raise ScenarioError(f"{where}: give either 'direction' or 'pixel', not both")
    if has_dir:
        az, el = _pair(d["direction"], where, "direction")
    elif has_px:
        u, v = _pair(d["pixel"], where, "pixel")
        az, el = (float(a) for a in camera.pixel_to_direction(u, v))
    elif required:
        raise ScenarioError(f"{where}: needs 'direction: [azimuth_deg, elevation_deg]' or "
                            f"'pixel: [u, v]'")
    else:
        return None
    if not (-90.0 < az < 90.0 and -60.0 <= el <= 60.0):
        raise ScenarioError(f"{where}: direction ({az}, {el}) deg is not in front of the head")
    return az, el


def _colour(v, table, where, key):
    if isinstance(v, str):
        if v not in table:
            raise ScenarioError(f"{where}: look.{key} {v!r} is not one of {sorted(table)} "
                                f"(or give [B, G, R])")
        return tuple(table[v])
    if (isinstance(v, (list, tuple)) and len(v) == 3
            and all(isinstance(c, (int, float)) and 0 <= c <= 255 for c in v)):
        return tuple(int(c) for c in v)
    raise ScenarioError(f"{where}: look.{key} must be a name or [B, G, R] (0-255), got {v!r}")


def _look(raw, index, where) -> Dict:
    base = dict(_PALETTE[index % len(_PALETTE)])
    raw = raw or {}
    if not isinstance(raw, dict):
        raise ScenarioError(f"{where}: 'look' must be a mapping")
    unknown = set(raw) - {"skin", "hair", "hair_style", "shirt", "eyes", "glasses", "beard"}
    if unknown:
        raise ScenarioError(f"{where}: unknown look key(s) {sorted(unknown)}")
    base.update(raw)
    look = {
        "skin": _colour(base["skin"], SKIN, where, "skin"),
        "hair": _colour(base["hair"], HAIR, where, "hair"),
        "shirt": _colour(base["shirt"], {}, where, "shirt"),
        "eyes": _colour(base["eyes"], {}, where, "eyes"),
        "glasses": bool(base["glasses"]),
        "beard": bool(base["beard"]),
        "hair_style": base["hair_style"],
    }
    if look["hair_style"] not in HAIR_STYLES:
        raise ScenarioError(f"{where}: look.hair_style {look['hair_style']!r} is not one of "
                            f"{list(HAIR_STYLES)}")
    return look


def _count_text(lang: str, first: int, last: int) -> str:
    from .sources import COUNT_WORDS
    words = COUNT_WORDS.get(lang, COUNT_WORDS["en"])
    if lang == "am":
        words = [str(i) for i in range(1, 21)]
    return ", ".join(words[first - 1:last])


def parse_scenario(data: Dict, source: str = "") -> Scenario:
    """Validate a scenario mapping (the YAML content); raises :class:`ScenarioError`."""
    from . import VirtualCamera
    from .sources import COUNT_WORDS
    if not isinstance(data, dict):
        raise ScenarioError(f"{source or 'scenario'}: top level must be a mapping")
    known = {"name", "camera", "sample_rate", "room", "snr_db", "lead_in_s", "tail_s", "seed",
             "people", "utterances", "moves", "description"}
    unknown = set(data) - known
    if unknown:
        raise ScenarioError(f"{source or 'scenario'}: unknown key(s) {sorted(unknown)} "
                            f"(known: {sorted(known)})")
    cam_name = str(data.get("camera", "narrow"))
    if cam_name == "narrow":
        camera = VirtualCamera.narrow(frame_id="camera_optical")
    elif cam_name == "wide":
        camera = VirtualCamera.wide(frame_id="camera_optical")
    else:
        raise ScenarioError(f"camera must be 'narrow' or 'wide', got {cam_name!r}")
    rate = data.get("sample_rate", 16000)
    if not isinstance(rate, int) or rate < 8000:
        raise ScenarioError(f"sample_rate must be an integer >= 8000, got {rate!r}")
    room = dict(data.get("room") or {})
    allowed_room = {"t60", "distance", "dims", "head_pos", "drr_db", "seed", "anechoic",
                    "tail_model"}
    if set(room) - allowed_room:
        raise ScenarioError(f"room: unknown key(s) {sorted(set(room) - allowed_room)} "
                            f"(known: {sorted(allowed_room)})")
    snr = _num(data, "snr_db", "scenario", 30.0)
    lead = _num(data, "lead_in_s", "scenario", 1.0, nonneg=True)
    tail = _num(data, "tail_s", "scenario", 1.5, nonneg=True)
    seed = int(data.get("seed", 0))

    people_raw = data.get("people")
    if not isinstance(people_raw, list) or not people_raw:
        raise ScenarioError("'people' must be a non-empty list")
    people, names = [], set()
    for i, pr in enumerate(people_raw):
        where = f"people[{i}]"
        if not isinstance(pr, dict) or not pr.get("name"):
            raise ScenarioError(f"{where}: needs a 'name'")
        name = str(pr["name"])
        where = f"people[{i}] ({name})"
        if name in names:
            raise ScenarioError(f"{where}: duplicate name")
        names.add(name)
        unknown = set(pr) - {"name", "language", "voice", "direction", "pixel", "look",
                             "speed", "pitch", "level_db"}
        if unknown:
            raise ScenarioError(f"{where}: unknown key(s) {sorted(unknown)}")
        lang = str(pr.get("language", "en"))
        if lang not in COUNT_WORDS:
            raise ScenarioError(f"{where}: language {lang!r} is not one of "
                                f"{sorted(COUNT_WORDS)}")
        people.append(Person(
            name=name, language=lang, voice=str(pr.get("voice") or lang),
            direction=_position(pr, where, camera), look=_look(pr.get("look"), i, where),
            speed=None if pr.get("speed") is None else int(pr["speed"]),
            pitch=None if pr.get("pitch") is None else int(pr["pitch"]),
            level_db=_num(pr, "level_db", where, 0.0), index=i))

    utt_raw = data.get("utterances") or []
    if not isinstance(utt_raw, list):
        raise ScenarioError("'utterances' must be a list")
    utts = []
    by_name = {p.name: p for p in people}
    for i, ur in enumerate(utt_raw):
        where = f"utterances[{i}]"
        if not isinstance(ur, dict):
            raise ScenarioError(f"{where}: must be a mapping")
        unknown = set(ur) - {"who", "text", "count", "start", "after"}
        if unknown:
            raise ScenarioError(f"{where}: unknown key(s) {sorted(unknown)}")
        who = ur.get("who")
        if who not in by_name:
            raise ScenarioError(f"{where}: 'who' {who!r} is not one of the people "
                                f"{sorted(by_name)}")
        if ("start" in ur) == ("after" in ur):
            raise ScenarioError(f"{where}: give exactly one of 'start' (absolute s) or 'after' "
                                f"(s after the previous utterance's end)")
        if i == 0 and "after" in ur:
            raise ScenarioError(f"{where}: the first utterance needs 'start'")
        start = _num(ur, "start", where, nonneg=True) if "start" in ur else None
        after = _num(ur, "after", where) if "after" in ur else None
        count = None
        if ("text" in ur) == ("count" in ur):
            raise ScenarioError(f"{where}: give exactly one of 'text' or 'count: [first, last]'")
        if "count" in ur:
            a, b = _pair(ur["count"], where, "count")
            if not (a == int(a) and b == int(b) and 1 <= a <= b <= 20):
                raise ScenarioError(f"{where}: count must be [first, last] with 1 <= first <= "
                                    f"last <= 20, got {ur['count']!r}")
            count = (int(a), int(b))
            text = _count_text(by_name[who].language, *count)
        else:
            text = str(ur["text"]).strip()
            if not text:
                raise ScenarioError(f"{where}: empty text")
        utts.append(Utterance(index=i, who=who, text=text, start_s=start, after_s=after,
                              count=count))

    moves = []
    for i, mr in enumerate(data.get("moves") or []):
        where = f"moves[{i}]"
        if not isinstance(mr, dict):
            raise ScenarioError(f"{where}: must be a mapping")
        unknown = set(mr) - {"who", "start", "after_utterance", "duration", "direction", "pixel"}
        if unknown:
            raise ScenarioError(f"{where}: unknown key(s) {sorted(unknown)}")
        if mr.get("who") not in by_name:
            raise ScenarioError(f"{where}: 'who' {mr.get('who')!r} is not one of the people")
        if ("start" in mr) == ("after_utterance" in mr):
            raise ScenarioError(f"{where}: give exactly one of 'start' (s) or 'after_utterance'"
                                f" (index: the move starts 0.2 s after that utterance ends)")
        au = mr.get("after_utterance")
        if au is not None and not (isinstance(au, int) and 0 <= au < len(utts)):
            raise ScenarioError(f"{where}: after_utterance must be an utterance index in "
                                f"0..{len(utts) - 1}")
        moves.append(Move(who=mr["who"], start_s=_num(mr, "start", where, nonneg=True),
                          after_utterance=au,
                          duration_s=_num(mr, "duration", where, 1.0, positive=True),
                          direction=_position(mr, where, camera)))
    return Scenario(name=str(data.get("name", "scenario")), camera_name=cam_name, camera=camera,
                    sample_rate=int(rate), room=room, snr_db=snr, lead_in_s=lead, tail_s=tail,
                    seed=seed, people=people, utterances=utts, moves=moves, source=source,
                    raw=copy.deepcopy(data))


def load_scenario(path: str) -> Scenario:
    """Read and validate a scenario YAML file."""
    import yaml
    path = os.path.expanduser(str(path))
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except OSError as exc:
        raise ScenarioError(f"cannot read scenario {path!r}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ScenarioError(f"scenario {path!r} is not valid YAML: {exc}") from None
    try:
        return parse_scenario(data, source=path)
    except ScenarioError as exc:
        raise ScenarioError(f"{path}: {exc}") from None


# ----------------------------------------------------------------------------- timeline
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
                "utterances": [u.to_dict() for u in self.utterances]}


def _envelope(x: np.ndarray, rate: int, env_rate: float) -> np.ndarray:
    hop = int(rate / env_rate)
    n = x.size // hop
    if n == 0:
        return np.zeros(0)
    frames = x[:n * hop].reshape(n, hop)
    e = np.sqrt(np.mean(frames ** 2, axis=1))
    return e


def build_timeline(sc: Scenario, head=None, render_audio: bool = True,
                   progress: Optional[Callable[[str], None]] = None) -> Timeline:
    """Synthesise every utterance, place it in time and (optionally) render the binaural track.

    ``head``: a :class:`~sbm_ros.sim.VirtualHead` (default ``sc.make_head()``).
    ``render_audio=False`` only computes timings, ground truth and mouth envelopes (fast).
    Raises :class:`ScenarioError` if a person speaks twice at once or moves while speaking.
    """
    from . import speech
    say = progress or (lambda msg: None)
    rate = sc.sample_rate
    env_rate = 100.0
    sigs, truths = [], []
    prev_end = None
    for k, u in enumerate(sc.utterances):
        p = sc.person(u.who)
        try:
            s = speech(u.text, voice=p.voice, rate=rate, speed=p.speed, pitch=p.pitch)
        except RuntimeError as exc:
            raise ScenarioError(f"utterances[{u.index}] ({u.who}): {exc}") from None
        start = sc.lead_in_s + u.start_s if u.start_s is not None else prev_end + u.after_s
        start = max(0.0, round(start * rate) / rate)
        end = start + s.size / rate
        prev_end = end
        sigs.append(s * 10.0 ** (p.level_db / 20.0))
        truths.append(UtteranceTruth(u.index, u.who, p.language, p.voice, u.text, start, end,
                                     0.0, 0.0, 0.0, 0.0))
        say(f"utterance {k + 1}/{len(sc.utterances)}: {u.who} ({p.voice}) "
            f"'{u.text}' {start:.2f}-{end:.2f} s")
    # same person twice at once?
    for a in truths:
        for b in truths:
            if a.index < b.index and a.start_s < b.end_s and b.start_s < a.end_s:
                if a.who == b.who:
                    raise ScenarioError(f"utterances[{a.index}] and [{b.index}]: {a.who} cannot "
                                        f"say two things at once ({a.start_s:.2f}-{a.end_s:.2f}"
                                        f" s and {b.start_s:.2f}-{b.end_s:.2f} s)")
                a.overlaps.append(b.index)
                b.overlaps.append(a.index)
    # moves: absolute times, positions
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
    last_end = max([t.end_s for t in truths] + [t1 for _, _, t1, _, _ in moves] + [0.0])
    duration = last_end + sc.tail_s
    tl = Timeline(sc, truths, duration, None, {}, env_rate, moves)
    cam = sc.camera
    for tr in truths:
        az, el = tl.direction_at(tr.who, 0.5 * (tr.start_s + tr.end_s))
        u, v = cam.direction_to_pixel(az, el)
        tr.azimuth_deg, tr.elevation_deg, tr.u_px, tr.v_px = float(az), float(el), float(u), \
            float(v)
    # mouth envelopes
    n_env = int(math.ceil(duration * env_rate)) + 1
    for p in sc.people:
        tl.envelopes[p.name] = np.zeros(n_env)
    for tr, s in zip(truths, sigs):
        e = _envelope(s, rate, env_rate)
        ref = np.percentile(e, 90) if e.size else 1.0
        e = np.clip(e / max(ref, 1e-12), 0.0, 1.0) ** 0.7
        k0 = int(round(tr.start_s * env_rate))
        seg = tl.envelopes[tr.who][k0:k0 + e.size]
        tl.envelopes[tr.who][k0:k0 + seg.size] = np.maximum(seg, e[:seg.size])
    for name, e in tl.envelopes.items():          # light smoothing (~30 ms)
        tl.envelopes[name] = np.convolve(e, np.ones(3) / 3.0, mode="same")
    if not render_audio:
        return tl
    head = head or sc.make_head()
    n = int(math.ceil(duration * rate))
    track = np.zeros((n, 2))
    active = np.zeros(n, dtype=bool)
    for k, (tr, s) in enumerate(zip(truths, sigs)):
        y = head.render_clean(s, tr.azimuth_deg, tr.elevation_deg, keep_tail=True)
        i0 = int(round(tr.start_s * rate))
        m = min(y.shape[0], n - i0)
        track[i0:i0 + m] += y[:m]
        active[i0:min(n, i0 + s.size)] = True
        say(f"rendered utterance {k + 1}/{len(truths)} at az {tr.azimuth_deg:+.1f} el "
            f"{tr.elevation_deg:+.1f} deg")
    if sc.snr_db is not None and active.any():
        from . import add_self_noise
        ref = float(np.mean(track[active] ** 2))
        track = add_self_noise(track, sc.snr_db, np.random.default_rng([sc.seed, 99]),
                               reference_power=ref)
    peak = float(np.max(np.abs(track))) if track.size else 0.0
    if peak > 0.99:
        track *= 0.99 / peak
        say(f"track peak {peak:.2f} > 0.99: scaled down")
    tl.audio = track
    return tl


# ----------------------------------------------------------------------------- drawing
def _cv2():
    import cv2
    return cv2


def _shade(c, f):
    return tuple(int(np.clip(v * f, 0, 255)) for v in c)


class SceneRenderer:
    """Draws the camera image of a timeline and the noisy face detections (see module doc)."""

    def __init__(self, timeline: Timeline, jitter_px: float = 2.5, size_jitter: float = 0.05,
                 seed: int = 0):
        self.tl = timeline
        self.cam = timeline.scenario.camera
        self.jitter_px = float(jitter_px)
        self.size_jitter = float(size_jitter)
        self.rng = np.random.default_rng([int(seed), 4242])
        self.background = self._background()

    # -- background
    def _background(self) -> np.ndarray:
        cv2 = _cv2()
        W, H = self.cam.width, self.cam.height
        s = W / 640.0
        img = np.zeros((H, W, 3), np.uint8)
        # wall with a soft vertical gradient (light from above)
        g = np.linspace(1.0, 0.82, H)[:, None, None]
        img[:] = (np.array([175, 200, 214])[None, None, :] * g).astype(np.uint8)
        # dado rail and lower wall
        y_rail = int(0.78 * H)
        img[y_rail:] = (np.array([120, 150, 170]) * np.linspace(1.0, 0.9, H - y_rail)[:, None]
                        ).astype(np.uint8)[:, None, :]
        cv2.rectangle(img, (0, y_rail - int(6 * s)), (W, y_rail), (225, 235, 240), -1)
        # door frame on the right
        x0 = int(0.83 * W)
        cv2.rectangle(img, (x0, int(0.06 * H)), (W + 10, H + 10), (70, 100, 140), -1)
        cv2.rectangle(img, (x0 + int(10 * s), int(0.06 * H) + int(10 * s)), (W + 10, H + 10),
                      (95, 135, 180), -1)
        cv2.circle(img, (x0 + int(24 * s), int(0.6 * H)), int(5 * s), (60, 180, 210), -1)
        # framed picture (mountains) on the left
        px0, py0, px1, py1 = int(0.04 * W), int(0.08 * H), int(0.24 * W), int(0.30 * H)
        cv2.rectangle(img, (px0 - int(6 * s), py0 - int(6 * s)), (px1 + int(6 * s),
                      py1 + int(6 * s)), (40, 60, 90), -1)
        cv2.rectangle(img, (px0, py0), (px1, py1), (235, 205, 160), -1)
        pts = np.array([[px0, py1], [px0 + (px1 - px0) // 3, py0 + (py1 - py0) // 3],
                        [px0 + (px1 - px0) // 2, py0 + (py1 - py0) // 2],
                        [px0 + 3 * (px1 - px0) // 4, py0 + (py1 - py0) // 4], [px1, py1]],
                       np.int32)
        cv2.fillPoly(img, [pts], (90, 130, 90))
        cv2.circle(img, (px1 - int(18 * s), py0 + int(16 * s)), int(8 * s), (80, 220, 250), -1)
        # a clock in the middle, high on the wall
        cc = (int(0.5 * W), int(0.09 * H))
        cv2.circle(img, cc, int(20 * s), (60, 60, 60), -1, cv2.LINE_AA)
        cv2.circle(img, cc, int(17 * s), (245, 245, 245), -1, cv2.LINE_AA)
        cv2.line(img, cc, (cc[0], cc[1] - int(12 * s)), (30, 30, 30), max(1, int(2 * s)))
        cv2.line(img, cc, (cc[0] + int(9 * s), cc[1] + int(3 * s)), (30, 30, 30),
                 max(1, int(2 * s)))
        return img

    # -- one person
    def draw_person(self, img: np.ndarray, st: PersonState, look: Dict, t: float,
                    index: int = 0) -> None:
        cv2 = _cv2()
        k = st.px_per_m
        mu, mv = st.u_px, st.v_px
        AA = cv2.LINE_AA

        def P(x, y):
            return int(round(mu + x * k)), int(round(mv + y * k))

        def A(a, b):
            return max(1, int(round(a * k))), max(1, int(round(b * k)))

        skin, hair, shirt = look["skin"], look["hair"], look["shirt"]
        dark_skin = _shade(skin, 0.8)
        line = max(1, int(round(0.004 * k)))
        style = look["hair_style"]
        # torso (shirt) and neck
        cv2.ellipse(img, P(0, 0.34), A(0.22, 0.2), 0, 180, 360, shirt, -1, AA)
        cv2.rectangle(img, P(-0.22, 0.34), P(0.22, 0.9), shirt, -1)
        cv2.ellipse(img, P(0, 0.15), A(0.05, 0.03), 0, 0, 180, _shade(shirt, 0.75), -1, AA)
        cv2.rectangle(img, P(-0.033, 0.02), P(0.033, 0.15), dark_skin, -1)
        # hair behind the head
        if style == "long":
            cv2.ellipse(img, P(0, -0.06), A(0.095, 0.13), 0, 0, 360, hair, -1, AA)
            cv2.rectangle(img, P(-0.095, -0.06), P(0.095, 0.12), hair, -1)
        elif style == "curly":
            for ang in range(0, 360, 30):
                a = math.radians(ang)
                cv2.circle(img, P(0.082 * math.cos(a), -0.085 + 0.1 * math.sin(a) - 0.01),
                           max(2, int(0.03 * k)), hair, -1, AA)
        elif style == "bun":
            cv2.circle(img, P(0, -0.185), max(2, int(0.035 * k)), hair, -1, AA)
        # ears
        for sx in (-1, 1):
            cv2.ellipse(img, P(sx * 0.075, -0.05), A(0.014, 0.024), 0, 0, 360, dark_skin, -1,
                        AA)
        # face oval
        cv2.ellipse(img, P(0, -0.05), A(0.074, 0.108), 0, 0, 360, skin, -1, AA)
        # cheeks (a touch of colour)
        for sx in (-1, 1):
            cv2.ellipse(img, P(sx * 0.042, -0.02), A(0.014, 0.008), 0, 0, 360,
                        _shade(skin, 0.93), -1, AA)
        # hair on top
        if style in ("short", "long", "bun", "curly"):
            cv2.ellipse(img, P(0, -0.105), A(0.079, 0.06), 0, 180, 360, hair, -1, AA)
            if style == "short":
                cv2.ellipse(img, P(-0.02, -0.125), A(0.06, 0.022), -8, 0, 360, hair, -1, AA)
            else:
                cv2.ellipse(img, P(0.0, -0.12), A(0.07, 0.025), 0, 0, 360, hair, -1, AA)
        else:  # bald: side hair
            for sx in (-1, 1):
                cv2.ellipse(img, P(sx * 0.07, -0.085), A(0.012, 0.03), 0, 0, 360, hair, -1, AA)
        # eyebrows
        brow = _shade(hair, 0.7) if style != "bald" else (60, 60, 70)
        for sx in (-1, 1):
            cv2.line(img, P(sx * 0.015, -0.094), P(sx * 0.045, -0.098), brow,
                     max(1, int(round(0.006 * k))), AA)
        # eyes (blink ~0.15 s every few seconds, different phase per person)
        period = 3.3 + 0.7 * index
        blink = ((t + 1.1 * index) % period) < 0.15
        for sx in (-1, 1):
            c = P(sx * 0.03, -0.075)
            if blink:
                cv2.line(img, P(sx * 0.018, -0.075), P(sx * 0.042, -0.075), (40, 40, 40),
                         line, AA)
                continue
            cv2.ellipse(img, c, A(0.014, 0.0075), 0, 0, 360, (250, 250, 250), -1, AA)
            cv2.circle(img, c, max(1, int(round(0.0062 * k))), look["eyes"], -1, AA)
            cv2.circle(img, c, max(1, int(round(0.003 * k))), (15, 15, 15), -1, AA)
            cv2.ellipse(img, c, A(0.014, 0.0075), 0, 180, 360, (50, 50, 60), line, AA)
        # glasses
        if look["glasses"]:
            for sx in (-1, 1):
                cv2.circle(img, P(sx * 0.03, -0.075), max(2, int(round(0.02 * k))),
                           (40, 40, 40), line, AA)
            cv2.line(img, P(-0.01, -0.077), P(0.01, -0.077), (40, 40, 40), line, AA)
        # nose
        nose = _shade(skin, 0.72)
        cv2.line(img, P(0.0, -0.07), P(-0.006, -0.033), nose, line, AA)
        cv2.ellipse(img, P(0.0, -0.03), A(0.012, 0.006), 0, 0, 180, nose, line, AA)
        # beard (around the mouth and chin)
        if look["beard"]:
            cv2.ellipse(img, P(0, 0.012), A(0.06, 0.05), 0, 0, 180, _shade(hair, 0.9), -1, AA)
            cv2.ellipse(img, P(0, -0.008), A(0.03, 0.008), 0, 0, 360, _shade(hair, 0.9), -1, AA)
        # mouth: a lip line when closed, an open dark ellipse with lips while speaking
        open_ = float(np.clip(st.mouth_open, 0.0, 1.0))
        lip = (90, 90, 190)
        if open_ < 0.08:
            cv2.ellipse(img, P(0, -0.004), A(0.022, 0.006), 0, 20, 160, lip,
                        max(1, int(round(0.005 * k))), AA)
        else:
            h = 0.003 + 0.016 * open_
            cv2.ellipse(img, P(0, 0), A(0.022, h), 0, 0, 360, (40, 30, 90), -1, AA)
            cv2.ellipse(img, P(0, 0), A(0.022, h), 0, 0, 360, lip,
                        max(1, int(round(0.004 * k))), AA)
            if h > 0.008:
                cv2.ellipse(img, P(0, -h + 0.002), A(0.015, 0.003), 0, 0, 180,
                            (235, 235, 240), -1, AA)

    def image_at(self, t: float) -> Tuple[np.ndarray, List[PersonState]]:
        """BGR image (H, W, 3) uint8 at scene time t, and the people's states."""
        img = self.background.copy()
        states = self.tl.states_at(t)
        order = sorted(range(len(states)), key=lambda i: -self.tl.scenario.people[i].index)
        for i in order:
            st = states[i]
            if not np.isfinite(st.u_px):
                continue
            p = self.tl.scenario.people[i]
            self.draw_person(img, st, p.look, t, index=p.index)
        return img, states

    def face_detections(self, states: Sequence[PersonState]) -> List[Dict]:
        """Noisy face boxes of the people whose face centre is in the image:
        ``[{id, u, v, w, h}]`` (centre, size in px; see module docstring for the noise)."""
        out = []
        W, H = self.cam.width, self.cam.height
        for st in states:
            u, v, w, h = st.face_box()
            if not (np.isfinite(u) and 0 <= u < W and 0 <= v < H):
                continue
            du, dv = self.rng.normal(0.0, self.jitter_px, 2)
            f = 1.0 + self.rng.normal(0.0, self.size_jitter)
            out.append({"id": st.name, "u": float(u + du), "v": float(v + dv),
                        "w": float(w * f), "h": float(h * f)})
        return out


def haar_faces(bgr: np.ndarray) -> List[Tuple[int, int, int, int]]:
    """Face boxes (x, y, w, h) found by OpenCV's frontal-face Haar cascade (empty if OpenCV
    ships no cascade files)."""
    cv2 = _cv2()
    path = os.path.join(getattr(getattr(cv2, "data", None), "haarcascades", ""),
                        "haarcascade_frontalface_default.xml")
    if not os.path.exists(path):
        return []
    det = cv2.CascadeClassifier(path)
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    found = det.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=4, minSize=(40, 40))
    return [tuple(int(v) for v in b) for b in (found if len(found) else [])]
