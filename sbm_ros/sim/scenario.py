"""Demo scenarios for the virtual head: who stands where, who speaks when, what they look like.

The scenario file (YAML) and its validation: :func:`load_scenario` reads a file,
:func:`parse_scenario` checks a mapping entry by entry and gives a :class:`Scenario` (people with
their voice, mouth direction and look; utterances; moves), or raises :class:`ScenarioError`
naming the entry and the problem. Pure Python (PyYAML for the file); no ROS. What happens in
time is :mod:`.timeline`; the camera picture is :mod:`.scene_view`.

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
    sounds:                      # optional non-speech sounds (sbm_ros.sim.NONSPEECH_KINDS)
      - {kind: door, start: 4.0, direction: [-30.0, 0.0]}          # door, clap: natural length
      - {kind: music, start: 6.0, duration: 3.0, direction: [20.0, 5.0], level_db: -6.0}
      - {kind: fan, start: 9.0, duration: 5.0, direction: [-60.0, -30.0], level_db: -10.0}

A person without utterances is **silent** (stands in view, never speaks). Positions are the
MOUTH (the sound source); faces are drawn around it. A move must not overlap an utterance of the
person moving (validated), so every utterance has one true direction. A sound's ``start`` is
counted from the end of the lead-in like an utterance's; ``level_db`` is relative to the speech
RMS (0.1); sounds are still (they never move) and are not people (no face).
"""

from __future__ import annotations

import copy
import math
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from .camera import VirtualCamera
from .render import VirtualHead
from .room import Room
from .sources import COUNT_WORDS, NONSPEECH_KINDS

__all__ = [
    "ScenarioError", "Person", "Utterance", "Move", "Sound", "Scenario", "load_scenario",
    "parse_scenario", "default_scenario_path",
]

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
class Sound:
    index: int
    kind: str                                     # one of sbm_ros.sim.NONSPEECH_KINDS
    start_s: float                                # after the lead-in, like Utterance.start_s
    duration_s: Optional[float]                   # None: the kind's natural length
    direction: Tuple[float, float]
    level_db: float = 0.0                         # re the speech RMS


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
    sounds: List[Sound] = field(default_factory=list)
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
        return VirtualHead(room=Room(**self.room), snr_db=self.snr_db,
                           sample_rate=self.sample_rate, seed=self.seed)


def default_scenario_path() -> str:
    """``config/demo_scenario.yaml`` of the checkout, else of the installed package share."""
    checkout = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    here = os.path.join(checkout, "config", "demo_scenario.yaml")
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
    words = COUNT_WORDS.get(lang, COUNT_WORDS["en"])
    if lang == "am":
        words = [str(i) for i in range(1, 21)]
    return ", ".join(words[first - 1:last])


def _check_keys(d: Dict, known, where: str) -> None:
    unknown = set(d) - set(known)
    if unknown:
        raise ScenarioError(f"{where}: unknown key(s) {sorted(unknown)}")


def _parse_camera(data: Dict):
    """(camera name, :class:`VirtualCamera`) of the scenario's ``camera`` entry."""
    cam_name = str(data.get("camera", "narrow"))
    if cam_name == "narrow":
        camera = VirtualCamera.narrow(frame_id="camera_optical")
    elif cam_name == "wide":
        camera = VirtualCamera.wide(frame_id="camera_optical")
    else:
        raise ScenarioError(f"camera must be 'narrow' or 'wide', got {cam_name!r}")
    return cam_name, camera


def _parse_room(data: Dict) -> Dict:
    room = dict(data.get("room") or {})
    allowed_room = {"t60", "distance", "dims", "head_pos", "drr_db", "seed", "anechoic",
                    "tail_model"}
    if set(room) - allowed_room:
        raise ScenarioError(f"room: unknown key(s) {sorted(set(room) - allowed_room)} "
                            f"(known: {sorted(allowed_room)})")
    return room


def _parse_person(pr, i: int, names: set, camera) -> Person:
    where = f"people[{i}]"
    if not isinstance(pr, dict) or not pr.get("name"):
        raise ScenarioError(f"{where}: needs a 'name'")
    name = str(pr["name"])
    where = f"people[{i}] ({name})"
    if name in names:
        raise ScenarioError(f"{where}: duplicate name")
    names.add(name)
    _check_keys(pr, {"name", "language", "voice", "direction", "pixel", "look", "speed",
                     "pitch", "level_db"}, where)
    lang = str(pr.get("language", "en"))
    if lang not in COUNT_WORDS:
        raise ScenarioError(f"{where}: language {lang!r} is not one of "
                            f"{sorted(COUNT_WORDS)}")
    return Person(
        name=name, language=lang, voice=str(pr.get("voice") or lang),
        direction=_position(pr, where, camera), look=_look(pr.get("look"), i, where),
        speed=None if pr.get("speed") is None else int(pr["speed"]),
        pitch=None if pr.get("pitch") is None else int(pr["pitch"]),
        level_db=_num(pr, "level_db", where, 0.0), index=i)


def _parse_people(people_raw, camera) -> List[Person]:
    if not isinstance(people_raw, list) or not people_raw:
        raise ScenarioError("'people' must be a non-empty list")
    names: set = set()
    return [_parse_person(pr, i, names, camera) for i, pr in enumerate(people_raw)]


def _utterance_text(ur: Dict, where: str, language: str):
    """(text, count or None) of an utterance entry: its ``text`` or its ``count`` in words."""
    if ("text" in ur) == ("count" in ur):
        raise ScenarioError(f"{where}: give exactly one of 'text' or 'count: [first, last]'")
    if "count" in ur:
        a, b = _pair(ur["count"], where, "count")
        if not (a == int(a) and b == int(b) and 1 <= a <= b <= 20):
            raise ScenarioError(f"{where}: count must be [first, last] with 1 <= first <= "
                                f"last <= 20, got {ur['count']!r}")
        count = (int(a), int(b))
        return _count_text(language, *count), count
    text = str(ur["text"]).strip()
    if not text:
        raise ScenarioError(f"{where}: empty text")
    return text, None


def _parse_utterance(ur, i: int, by_name: Dict[str, Person]) -> Utterance:
    where = f"utterances[{i}]"
    if not isinstance(ur, dict):
        raise ScenarioError(f"{where}: must be a mapping")
    _check_keys(ur, {"who", "text", "count", "start", "after"}, where)
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
    text, count = _utterance_text(ur, where, by_name[who].language)
    return Utterance(index=i, who=who, text=text, start_s=start, after_s=after, count=count)


def _parse_utterances(utt_raw, by_name: Dict[str, Person]) -> List[Utterance]:
    if not isinstance(utt_raw, list):
        raise ScenarioError("'utterances' must be a list")
    return [_parse_utterance(ur, i, by_name) for i, ur in enumerate(utt_raw)]


def _parse_move(mr, i: int, by_name: Dict[str, Person], n_utterances: int, camera) -> Move:
    where = f"moves[{i}]"
    if not isinstance(mr, dict):
        raise ScenarioError(f"{where}: must be a mapping")
    _check_keys(mr, {"who", "start", "after_utterance", "duration", "direction", "pixel"}, where)
    if mr.get("who") not in by_name:
        raise ScenarioError(f"{where}: 'who' {mr.get('who')!r} is not one of the people")
    if ("start" in mr) == ("after_utterance" in mr):
        raise ScenarioError(f"{where}: give exactly one of 'start' (s) or 'after_utterance'"
                            f" (index: the move starts 0.2 s after that utterance ends)")
    au = mr.get("after_utterance")
    if au is not None and not (isinstance(au, int) and 0 <= au < n_utterances):
        raise ScenarioError(f"{where}: after_utterance must be an utterance index in "
                            f"0..{n_utterances - 1}")
    return Move(who=mr["who"], start_s=_num(mr, "start", where, nonneg=True),
                after_utterance=au,
                duration_s=_num(mr, "duration", where, 1.0, positive=True),
                direction=_position(mr, where, camera))


def _parse_sound(sr, i: int, camera) -> Sound:
    where = f"sounds[{i}]"
    if not isinstance(sr, dict):
        raise ScenarioError(f"{where}: must be a mapping")
    _check_keys(sr, {"kind", "start", "duration", "direction", "pixel", "level_db"}, where)
    kind = sr.get("kind")
    if kind not in NONSPEECH_KINDS:
        raise ScenarioError(f"{where}: 'kind' {kind!r} is not one of {list(NONSPEECH_KINDS)}")
    if "start" not in sr:
        raise ScenarioError(f"{where}: needs 'start' (s after the lead-in)")
    dur = _num(sr, "duration", where, positive=True)
    if dur is None and kind in ("music", "fan"):
        raise ScenarioError(f"{where}: a {kind} sound needs 'duration' (s)")
    return Sound(index=i, kind=kind, start_s=_num(sr, "start", where, nonneg=True),
                 duration_s=dur, direction=_position(sr, where, camera),
                 level_db=_num(sr, "level_db", where, 0.0))


def parse_scenario(data: Dict, source: str = "") -> Scenario:
    """Validate a scenario mapping (the YAML content); raises :class:`ScenarioError`."""
    if not isinstance(data, dict):
        raise ScenarioError(f"{source or 'scenario'}: top level must be a mapping")
    known = {"name", "camera", "sample_rate", "room", "snr_db", "lead_in_s", "tail_s", "seed",
             "people", "utterances", "moves", "sounds", "description"}
    unknown = set(data) - known
    if unknown:
        raise ScenarioError(f"{source or 'scenario'}: unknown key(s) {sorted(unknown)} "
                            f"(known: {sorted(known)})")
    cam_name, camera = _parse_camera(data)
    rate = data.get("sample_rate", 16000)
    if not isinstance(rate, int) or rate < 8000:
        raise ScenarioError(f"sample_rate must be an integer >= 8000, got {rate!r}")
    room = _parse_room(data)
    snr = _num(data, "snr_db", "scenario", 30.0)
    lead = _num(data, "lead_in_s", "scenario", 1.0, nonneg=True)
    tail = _num(data, "tail_s", "scenario", 1.5, nonneg=True)
    seed = int(data.get("seed", 0))
    people = _parse_people(data.get("people"), camera)
    by_name = {p.name: p for p in people}
    utts = _parse_utterances(data.get("utterances") or [], by_name)
    moves = [_parse_move(mr, i, by_name, len(utts), camera)
             for i, mr in enumerate(data.get("moves") or [])]
    sounds_raw = data.get("sounds") or []
    if not isinstance(sounds_raw, list):
        raise ScenarioError("'sounds' must be a list")
    sounds = [_parse_sound(sr, i, camera) for i, sr in enumerate(sounds_raw)]
    return Scenario(name=str(data.get("name", "scenario")), camera_name=cam_name, camera=camera,
                    sample_rate=int(rate), room=room, snr_db=snr, lead_in_s=lead, tail_s=tail,
                    seed=seed, people=people, utterances=utts, moves=moves, source=source,
                    raw=copy.deepcopy(data), sounds=sounds)


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
