"""OpenCV drawings of the virtual camera's picture: the room and the cartoon people in it.

:func:`draw_room` paints the background of a W x H picture (a wall with light from above, a
dado rail, a door on the right, a framed mountain picture on the left, a clock).
:func:`draw_person` draws one person around their mouth pixel, at ``px_per_m`` pixels per
metre, back to front: shirt and neck, hair behind the head, ears, face oval and cheeks, hair on
top, eyebrows, eyes (blinking about 0.15 s every few seconds, a phase per person), glasses,
nose, beard and a mouth that opens with the person's loudness envelope. The look (skin, hair
colour and style, shirt, eye colour, glasses, beard) is the one validated by :mod:`.scenario`.
OpenCV is imported when drawing.
"""

from __future__ import annotations

import math
from typing import Dict

import numpy as np

__all__ = ["draw_room", "draw_person"]


def _cv2():
    import cv2
    return cv2


def _shade(c, f):
    return tuple(int(np.clip(v * f, 0, 255)) for v in c)


def draw_room(W: int, H: int) -> np.ndarray:
    """The background: a BGR image (H, W, 3) uint8 of the room's wall (drawn for 640 x 480 and
    scaled with the width)."""
    cv2 = _cv2()
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


class _Pen:
    """Drawing on ``img`` in head coordinates: metres relative to the mouth (x right, y down)."""

    def __init__(self, img: np.ndarray, st):
        self.cv2 = _cv2()
        self.img = img
        self.k = st.px_per_m
        self.mu, self.mv = st.u_px, st.v_px
        self.AA = self.cv2.LINE_AA
        self.line = max(1, int(round(0.004 * self.k)))     # thin line width, px

    def P(self, x, y):
        """Pixel of the point (x, y) m."""
        return int(round(self.mu + x * self.k)), int(round(self.mv + y * self.k))

    def A(self, a, b):
        """Pixel half-axes of an ellipse of half-axes (a, b) m (at least 1 px)."""
        return max(1, int(round(a * self.k))), max(1, int(round(b * self.k)))


def _draw_body(pen: _Pen, shirt, dark_skin) -> None:
    """Torso (shirt, with a collar) and neck."""
    cv2, img, P, A, AA = pen.cv2, pen.img, pen.P, pen.A, pen.AA
    cv2.ellipse(img, P(0, 0.34), A(0.22, 0.2), 0, 180, 360, shirt, -1, AA)
    cv2.rectangle(img, P(-0.22, 0.34), P(0.22, 0.9), shirt, -1)
    cv2.ellipse(img, P(0, 0.15), A(0.05, 0.03), 0, 0, 180, _shade(shirt, 0.75), -1, AA)
    cv2.rectangle(img, P(-0.033, 0.02), P(0.033, 0.15), dark_skin, -1)


def _draw_hair_behind(pen: _Pen, style: str, hair) -> None:
    """Hair behind the head: long hair, curls or a bun."""
    cv2, img, P, A, AA = pen.cv2, pen.img, pen.P, pen.A, pen.AA
    if style == "long":
        cv2.ellipse(img, P(0, -0.06), A(0.095, 0.13), 0, 0, 360, hair, -1, AA)
        cv2.rectangle(img, P(-0.095, -0.06), P(0.095, 0.12), hair, -1)
    elif style == "curly":
        for ang in range(0, 360, 30):
            a = math.radians(ang)
            cv2.circle(img, P(0.082 * math.cos(a), -0.085 + 0.1 * math.sin(a) - 0.01),
                       max(2, int(0.03 * pen.k)), hair, -1, AA)
    elif style == "bun":
        cv2.circle(img, P(0, -0.185), max(2, int(0.035 * pen.k)), hair, -1, AA)


def _draw_head(pen: _Pen, skin, dark_skin) -> None:
    """Ears, face oval and cheeks."""
    cv2, img, P, A, AA = pen.cv2, pen.img, pen.P, pen.A, pen.AA
    for sx in (-1, 1):
        cv2.ellipse(img, P(sx * 0.075, -0.05), A(0.014, 0.024), 0, 0, 360, dark_skin, -1,
                    AA)
    cv2.ellipse(img, P(0, -0.05), A(0.074, 0.108), 0, 0, 360, skin, -1, AA)
    # cheeks (a touch of colour)
    for sx in (-1, 1):
        cv2.ellipse(img, P(sx * 0.042, -0.02), A(0.014, 0.008), 0, 0, 360,
                    _shade(skin, 0.93), -1, AA)


def _draw_hair_top(pen: _Pen, style: str, hair) -> None:
    """Hair on top of the head (side hair when bald)."""
    cv2, img, P, A, AA = pen.cv2, pen.img, pen.P, pen.A, pen.AA
    if style in ("short", "long", "bun", "curly"):
        cv2.ellipse(img, P(0, -0.105), A(0.079, 0.06), 0, 180, 360, hair, -1, AA)
        if style == "short":
            cv2.ellipse(img, P(-0.02, -0.125), A(0.06, 0.022), -8, 0, 360, hair, -1, AA)
        else:
            cv2.ellipse(img, P(0.0, -0.12), A(0.07, 0.025), 0, 0, 360, hair, -1, AA)
    else:  # bald: side hair
        for sx in (-1, 1):
            cv2.ellipse(img, P(sx * 0.07, -0.085), A(0.012, 0.03), 0, 0, 360, hair, -1, AA)


def _draw_eyebrows(pen: _Pen, style: str, hair) -> None:
    brow = _shade(hair, 0.7) if style != "bald" else (60, 60, 70)
    for sx in (-1, 1):
        pen.cv2.line(pen.img, pen.P(sx * 0.015, -0.094), pen.P(sx * 0.045, -0.098), brow,
                     max(1, int(round(0.006 * pen.k))), pen.AA)


def _draw_eyes(pen: _Pen, iris, t: float, index: int) -> None:
    """Eyes, or closed lids while blinking (~0.15 s every few seconds, phase per person)."""
    cv2, img, P, A, AA, k, line = pen.cv2, pen.img, pen.P, pen.A, pen.AA, pen.k, pen.line
    period = 3.3 + 0.7 * index
    blink = ((t + 1.1 * index) % period) < 0.15
    for sx in (-1, 1):
        c = P(sx * 0.03, -0.075)
        if blink:
            cv2.line(img, P(sx * 0.018, -0.075), P(sx * 0.042, -0.075), (40, 40, 40),
                     line, AA)
            continue
        cv2.ellipse(img, c, A(0.014, 0.0075), 0, 0, 360, (250, 250, 250), -1, AA)
        cv2.circle(img, c, max(1, int(round(0.0062 * k))), iris, -1, AA)
        cv2.circle(img, c, max(1, int(round(0.003 * k))), (15, 15, 15), -1, AA)
        cv2.ellipse(img, c, A(0.014, 0.0075), 0, 180, 360, (50, 50, 60), line, AA)


def _draw_glasses(pen: _Pen) -> None:
    cv2, img, P, AA, line = pen.cv2, pen.img, pen.P, pen.AA, pen.line
    for sx in (-1, 1):
        cv2.circle(img, P(sx * 0.03, -0.075), max(2, int(round(0.02 * pen.k))),
                   (40, 40, 40), line, AA)
    cv2.line(img, P(-0.01, -0.077), P(0.01, -0.077), (40, 40, 40), line, AA)


def _draw_nose(pen: _Pen, skin) -> None:
    nose = _shade(skin, 0.72)
    pen.cv2.line(pen.img, pen.P(0.0, -0.07), pen.P(-0.006, -0.033), nose, pen.line, pen.AA)
    pen.cv2.ellipse(pen.img, pen.P(0.0, -0.03), pen.A(0.012, 0.006), 0, 0, 180, nose, pen.line,
                    pen.AA)


def _draw_beard(pen: _Pen, hair) -> None:
    """Beard around the mouth and chin."""
    cv2, img, P, A, AA = pen.cv2, pen.img, pen.P, pen.A, pen.AA
    cv2.ellipse(img, P(0, 0.012), A(0.06, 0.05), 0, 0, 180, _shade(hair, 0.9), -1, AA)
    cv2.ellipse(img, P(0, -0.008), A(0.03, 0.008), 0, 0, 360, _shade(hair, 0.9), -1, AA)


def _draw_mouth(pen: _Pen, mouth_open: float) -> None:
    """A lip line when closed, an open dark ellipse with lips (and teeth) while speaking."""
    cv2, img, P, A, AA, k = pen.cv2, pen.img, pen.P, pen.A, pen.AA, pen.k
    open_ = float(np.clip(mouth_open, 0.0, 1.0))
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


def draw_person(img: np.ndarray, st, look: Dict, t: float, index: int = 0) -> None:
    """Draw one person on ``img`` (in place) around the mouth pixel of ``st`` (a
    :class:`~sbm_ros.sim.timeline.PersonState`: ``u_px``, ``v_px``, ``px_per_m``,
    ``mouth_open``) with ``look`` at scene time ``t``; ``index`` sets the blink phase."""
    pen = _Pen(img, st)
    skin, hair, shirt = look["skin"], look["hair"], look["shirt"]
    dark_skin = _shade(skin, 0.8)
    style = look["hair_style"]
    _draw_body(pen, shirt, dark_skin)
    _draw_hair_behind(pen, style, hair)
    _draw_head(pen, skin, dark_skin)
    _draw_hair_top(pen, style, hair)
    _draw_eyebrows(pen, style, hair)
    _draw_eyes(pen, look["eyes"], t, index)
    if look["glasses"]:
        _draw_glasses(pen)
    _draw_nose(pen, skin)
    if look["beard"]:
        _draw_beard(pen, hair)
    _draw_mouth(pen, st.mouth_open)
