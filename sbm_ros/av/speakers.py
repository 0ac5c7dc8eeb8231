"""Who is speaking, over time: the state ``av_fusion`` keeps between messages (no ROS).

:class:`SpeakerFusion` holds the recent face and sound messages (time alignment), the face ids
and the speaking scores. ``add_faces`` takes a face message (capped at ``max_faces``, checked
against the image, ids assigned) and returns each face's speaking state; ``add_sounds`` matches
a sound message with the faces closest in time and updates the scores; ``scene_at`` is what the
overlay shows at an image's time. Every problem a node should log comes back as a
:class:`Notice` (a throttle key, the text and how often to repeat it), never raised.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import List, Optional, Sequence

import numpy as np

from .fusion import (Face, FaceIdAssigner, MatchConfig, Sound, SpeakingScores, TimedBuffer,
                     check_faces_in_image, match_sources)
from .overlay import OverlayScene


@dataclass(frozen=True)
class Notice:
    key: str                  # throttle key: one notice per key and period
    text: str
    period: float = 5.0       # seconds between two notices of the same key
    info: bool = False        # an info, not a warning


@dataclass
class FaceState:
    face: Face                # with its stable id
    index: int                # position in the message's detections
    score: float
    speaking: bool


@dataclass
class FacesUpdate:
    faces: List[FaceState] = field(default_factory=list)
    notices: List[Notice] = field(default_factory=list)


@dataclass
class SoundsUpdate:
    matches: list = field(default_factory=list)
    faces: List[Face] = field(default_factory=list)
    notices: List[Notice] = field(default_factory=list)


def sound_from_box(sid: str, u: float, v: float, size_x: float, size_y: float,
                   confidence: float = 1.0, cov=None) -> Optional[Sound]:
    """A sound estimate from a detection: ``cov`` (2x2) when given, else the box taken as its
    2-sigma box (4 sigma wide); None for a non-finite position."""
    if not (math.isfinite(u) and math.isfinite(v)):
        return None
    if cov is None:
        sx, sy = max(float(size_x), 1.0) / 4, max(float(size_y), 1.0) / 4
        cov = np.diag([sx * sx, sy * sy])
    return Sound(sid, float(u), float(v), cov, float(confidence))


def strongest(faces: Sequence[Face], cap: int) -> List[int]:
    """Indices of the ``cap`` faces with the highest detector score, in message order."""
    if len(faces) <= cap:
        return list(range(len(faces)))
    score = np.array([f.score if math.isfinite(f.score) else -np.inf for f in faces])
    return sorted(np.argsort(-score, kind='stable')[:cap].tolist())


class SpeakerFusion:
    """Faces x sounds over time: ids, time alignment, matching and speaking scores."""

    def __init__(self, cfg: MatchConfig = MatchConfig(), scores: Optional[SpeakingScores] = None,
                 history: float = 3.0, time_tolerance: float = 0.25,
                 check_frame_id: bool = True, max_faces: int = 100):
        self.cfg = cfg
        self.scores = scores or SpeakingScores()
        self.time_tolerance = float(time_tolerance)
        self.check_frame_id = bool(check_frame_id)
        self.max_faces = int(max_faces)
        self.faces_buf: TimedBuffer = TimedBuffer(history)
        self.sounds_buf: TimedBuffer = TimedBuffer(history)
        self.ids = FaceIdAssigner()

    def _jumped(self, what: str) -> Notice:
        self.faces_buf.clear()
        self.sounds_buf.clear()
        self.scores.reset()
        return Notice(f'jump:{what}', f"'{what}' stamps jumped backwards (bag loop / sim time "
                      'reset?): history and speaking scores cleared', 0.0)

    def _usable_faces(self, frame_id: str, faces: Sequence[Face], image_size,
                      camera_frame: str, notes: List[Notice]) -> List[int]:
        """Indices of the faces kept: the strongest ``max_faces``, inside the image."""
        keep = strongest(faces, max(self.max_faces, 0))
        if len(keep) < len(faces):
            notes.append(Notice('max_faces', f"'faces' ({frame_id!r}): {len(faces)} detections,"
                                f' only the {len(keep)} with the highest scores are used '
                                '(parameter max_faces)'))
        ok, bad = check_faces_in_image([faces[i] for i in keep],
                                       *(image_size or (10 ** 9, 10 ** 9)))
        if bad:
            where = f' of the {image_size[0]}x{image_size[1]} image' if image_size else ''
            notes.append(Notice('faces_bad', f"'faces' ({frame_id!r}): ignored {len(bad)} "
                                f"detection(s){where}: {'; '.join(bad[:3])} -- from another "
                                'camera or image size?'))
        okid = {id(f) for f in ok}
        keep = [i for i in keep if id(faces[i]) in okid]
        if (self.check_frame_id and camera_frame and frame_id and camera_frame != frame_id):
            notes.append(Notice('faces_frame', f"'faces' frame {frame_id!r} differs from the "
                                f'camera_info frame {camera_frame!r}: are the faces from '
                                'another camera?', 10.0))
        return keep

    def add_faces(self, t: float, frame_id: str, faces: Sequence[Face], image_size=None,
                  camera_frame: str = '') -> FacesUpdate:
        """A face message at time ``t`` (s); ``image_size`` (width, height) when known."""
        up = FacesUpdate()
        keep = self._usable_faces(frame_id, faces, image_size, camera_frame, up.notices)
        named = self.ids.assign([faces[i] for i in keep])
        if self.faces_buf.add(t, (frame_id, named)):
            up.notices.append(self._jumped('faces'))
        if not faces:
            up.notices.append(Notice('faces_empty', "'faces': empty detection list (nobody in "
                                     'view?)', 30.0, info=True))
        up.faces = [FaceState(f, i, self.scores.score(f.id, t), self.scores.is_speaking(f.id, t))
                    for f, i in zip(named, keep)]
        return up

    def add_sounds(self, t: float, frame_id: str, sounds: Sequence[Sound]) -> SoundsUpdate:
        """A sound message at time ``t`` (s): matched with the faces closest in time."""
        up = SoundsUpdate()
        if self.sounds_buf.add(t, (frame_id, list(sounds))):
            up.notices.append(self._jumped('sound_sources'))
        hit = self.faces_buf.closest(t, self.time_tolerance)
        if hit is None:
            if len(self.faces_buf):
                ft = self.faces_buf.latest()[0]
                up.notices.append(Notice('faces_late', (
                    f"no 'faces' message within {self.time_tolerance} s of the sound stamp "
                    f'{t:.3f} (newest faces stamp {ft:.3f}, difference {t - ft:+.3f} s): '
                    'clocks out of sync or time_tolerance too small?')))
            self.scores.update(t, {}, [])
            return up
        _, (fframe, faces) = hit
        if self.check_frame_id and frame_id and fframe and frame_id != fframe:
            up.notices.append(Notice('sound_frame', (
                f"'sound_sources' frame {frame_id!r} differs from 'faces' frame {fframe!r}: "
                'not matched (both must be pixels of the same camera; set check_frame_id '
                'false to override)')))
            return up
        up.matches = match_sources(sounds, faces, self.cfg)
        up.faces = faces
        evidence = {m.face.id: float(np.clip(m.sound.confidence, 0, 1)) for m in up.matches}
        self.scores.update(t, evidence, [f.id for f in faces])
        return up

    def scene_at(self, t: float, sound_tolerance: float = 0.5) -> OverlayScene:
        """Faces (with scores) and sounds closest to time ``t`` (an image's stamp)."""
        fh = self.faces_buf.closest(t, self.time_tolerance)
        faces = fh[1][1] if fh else []
        sh = self.sounds_buf.closest(t, max(self.time_tolerance, sound_tolerance))
        sounds = sh[1][1] if sh else []
        return OverlayScene(list(faces), list(sounds),
                            {f.id: self.scores.score(f.id, t) for f in faces},
                            {f.id for f in faces if self.scores.is_speaking(f.id, t)})

    @staticmethod
    def summary(t: float, n_sounds: int, up: SoundsUpdate) -> str:
        return (f'sound t={t:.3f}: {n_sounds} source(s), {len(up.faces)} face(s), matches '
                + ', '.join(f'{m.sound.id}->{m.face.id} (d2 {m.d2:.2f})' for m in up.matches))
