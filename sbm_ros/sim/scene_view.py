"""The camera picture of a scene and the face detections the virtual head publishes.

:class:`SceneRenderer` draws, for a :class:`~sbm_ros.sim.timeline.Timeline` at a scene time, a
simple room background and, for each person in view (back to front), a cartoon face drawn with
OpenCV (:mod:`.drawing`) -- hair, skin-tone head oval with ears, eyes (with blinks), eyebrows,
nose, a mouth that opens with the loudness envelope of that person's speech, neck and shirt --
distinct per person (skin, hair colour and style, shirt, glasses, beard). Its face detections
(:meth:`SceneRenderer.face_detections`) are **not** a face detector: the boxes come from the
scenario's ground truth (the drawn face's forehead-to-chin box, mouth at a quarter of the box
height below its centre, as ``av_fusion`` assumes) with noise: the centre jitters with a
Gaussian of ``jitter_px`` (default 2.5 px) per axis and the size by a factor
``1 + N(0, size_jitter)`` (default 5 %), independently per frame.
"""

from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import numpy as np

from .drawing import draw_person, draw_room
from .timeline import PersonState, Timeline

__all__ = ["SceneRenderer"]


class SceneRenderer:
    """Draws the camera image of a timeline and the noisy face detections (see module doc)."""

    def __init__(self, timeline: Timeline, jitter_px: float = 2.5, size_jitter: float = 0.05,
                 seed: int = 0):
        self.tl = timeline
        self.cam = timeline.scenario.camera
        self.jitter_px = float(jitter_px)
        self.size_jitter = float(size_jitter)
        self.rng = np.random.default_rng([int(seed), 4242])
        self.background = draw_room(self.cam.width, self.cam.height)

    def draw_person(self, img: np.ndarray, st: PersonState, look: Dict, t: float,
                    index: int = 0) -> None:
        """Draw one person on ``img`` (see :func:`sbm_ros.sim.drawing.draw_person`)."""
        draw_person(img, st, look, t, index=index)

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
