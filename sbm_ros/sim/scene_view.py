"""The camera picture of a scene and the face detections the virtual head publishes.

:class:`SceneRenderer` draws, for a :class:`~sbm_ros.sim.timeline.Timeline` at a scene time, a
simple room background and, for each person in view, a cartoon face drawn with OpenCV -- hair,
skin-tone head oval with ears, eyes (with blinks), eyebrows, nose, a mouth that opens with the
loudness envelope of that person's speech, neck and shirt -- distinct per person (skin, hair
colour and style, shirt, glasses, beard). Its face detections
(:meth:`SceneRenderer.face_detections`) are **not** a face detector: the boxes come from the
scenario's ground truth (the drawn face's forehead-to-chin box, mouth at a quarter of the box
height below its centre, as ``av_fusion`` assumes) with noise: the centre jitters with a
Gaussian of ``jitter_px`` (default 2.5 px) per axis and the size by a factor
``1 + N(0, size_jitter)`` (default 5 %), independently per frame.
"""

from __future__ import annotations

import math
from typing import Dict, List, Sequence, Tuple

import numpy as np

from .timeline import PersonState, Timeline

__all__ = ["SceneRenderer"]


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
