"""``sensor_msgs/Image`` <-> numpy without ROS, and the audio-visual overlay drawing.

No ROS import: functions take the message's fields (or any object that has ``height``, ``width``,
``encoding``, ``is_bigendian``, ``step`` and ``data``), so they run and are tested on a machine
without ROS. Nodes may use ``cv_bridge`` instead where it is installed (:func:`try_cv_bridge`);
this module is the fallback for the common encodings:

=========  ========  ==========  =========================
encoding   channels  dtype       numpy shape
=========  ========  ==========  =========================
rgb8       3         uint8       (height, width, 3)
bgr8       3         uint8       (height, width, 3)
rgba8      4         uint8       (height, width, 4)
bgra8      4         uint8       (height, width, 4)
mono8      1         uint8       (height, width)
mono16     1         uint16      (height, width)
=========  ========  ==========  =========================

Rows may be padded (``step`` > ``width * channels * bytes``); ``mono16`` honours
``is_bigendian``. Every malformed message raises :class:`ImageError` whose text names the problem
(unknown encoding, ``step`` too small, data size that does not match ``step * height``).

Pixel coordinates follow OpenCV: (u, v) with u to the right and v down, integer values at pixel
centres.
"""

from __future__ import annotations

import array
from typing import Iterable, Optional, Sequence, Tuple

import numpy as np

# encoding -> (channels, numpy dtype)
ENCODINGS = {
    'rgb8': (3, np.uint8),
    'bgr8': (3, np.uint8),
    'rgba8': (4, np.uint8),
    'bgra8': (4, np.uint8),
    'mono8': (1, np.uint8),
    'mono16': (1, np.uint16),
}


class ImageError(ValueError):
    """An image message cannot be converted; the message names the problem."""


def supported_encodings() -> Tuple[str, ...]:
    return tuple(ENCODINGS)


def _spec(encoding: str):
    enc = str(encoding).strip().lower()
    if enc not in ENCODINGS:
        raise ImageError(f"unsupported image encoding {encoding!r}; supported without cv_bridge: "
                         f"{', '.join(ENCODINGS)}")
    return enc, ENCODINGS[enc]


def decode_image(encoding: str, height: int, width: int, step: int, data,
                 is_bigendian: bool = False) -> np.ndarray:
    """Image fields -> numpy array (a copy; shape and dtype per the module table)."""
    enc, (ch, dtype) = _spec(encoding)
    height, width, step = int(height), int(width), int(step)
    if height <= 0 or width <= 0:
        raise ImageError(f"image size {width}x{height} is empty")
    item = np.dtype(dtype).itemsize
    row = width * ch * item
    if step < row:
        raise ImageError(f"image step {step} < width*channels*bytes = {row} for {width}x{height} "
                         f"{enc}")
    try:
        buf = np.frombuffer(data, dtype=np.uint8)   # bytes, array.array('B'), memoryview
    except TypeError:
        buf = np.asarray(data, dtype=np.uint8).reshape(-1)   # a list of ints
    if buf.size != step * height:
        raise ImageError(f"image data has {buf.size} bytes, expected step*height = "
                         f"{step}*{height} = {step * height} for {width}x{height} {enc}")
    rows = buf.reshape(height, step)[:, :row]
    dt = np.dtype(dtype)
    if item > 1:
        dt = dt.newbyteorder('>' if is_bigendian else '<')
    arr = np.ascontiguousarray(rows).view(dt).reshape(height, width, ch)
    arr = arr.astype(np.dtype(dtype).newbyteorder('='), copy=True)
    return arr[:, :, 0] if ch == 1 else arr


def encode_image(arr: np.ndarray, encoding: str) -> Tuple[int, int, int, bool, bytes]:
    """numpy array -> (height, width, step, is_bigendian, data) for ``encoding`` (no padding,
    little-endian)."""
    enc, (ch, dtype) = _spec(encoding)
    a = np.asarray(arr)
    if ch == 1 and a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    want = 2 if ch == 1 else 3
    if a.ndim != want or (ch > 1 and a.shape[2] != ch):
        raise ImageError(f"array of shape {a.shape} cannot be encoded as {enc} "
                         f"({'(H, W)' if ch == 1 else f'(H, W, {ch})'} expected)")
    if a.dtype != np.dtype(dtype):
        raise ImageError(f"array dtype {a.dtype} cannot be encoded as {enc} "
                         f"({np.dtype(dtype)} expected)")
    a = np.ascontiguousarray(a.astype(np.dtype(dtype).newbyteorder('<'), copy=False))
    h, w = a.shape[:2]
    step = w * ch * a.dtype.itemsize
    return h, w, step, False, a.tobytes()


def msg_to_array(msg) -> np.ndarray:
    """A ``sensor_msgs/Image`` (or any object with its fields) -> numpy array."""
    return decode_image(msg.encoding, msg.height, msg.width, msg.step, msg.data,
                        bool(getattr(msg, 'is_bigendian', False)))


def fill_msg(msg, arr: np.ndarray, encoding: str):
    """Write ``arr`` into an Image message's fields (header untouched); returns ``msg``."""
    h, w, step, big, data = encode_image(arr, encoding)
    msg.height, msg.width, msg.step, msg.is_bigendian = h, w, step, big
    msg.encoding = _spec(encoding)[0]
    buf = array.array('B')
    buf.frombytes(data)   # array.array: rclpy assigns it without checking each element
    msg.data = buf
    return msg


def to_bgr8(arr: np.ndarray, encoding: str) -> np.ndarray:
    """Any supported image -> 3-channel uint8 BGR (for drawing and marker detection)."""
    enc, _ = _spec(encoding)
    a = np.asarray(arr)
    if enc == 'bgr8':
        return a.copy()
    if enc == 'rgb8':
        return a[:, :, ::-1].copy()
    if enc == 'bgra8':
        return a[:, :, :3].copy()
    if enc == 'rgba8':
        return a[:, :, 2::-1].copy()
    if enc == 'mono16':
        a = (a >> 8).astype(np.uint8)
    return np.repeat(a[:, :, None], 3, axis=2)


def to_gray8(arr: np.ndarray, encoding: str) -> np.ndarray:
    """Any supported image -> (H, W) uint8 luminance (BT.601 weights)."""
    enc, _ = _spec(encoding)
    a = np.asarray(arr)
    if enc == 'mono8':
        return a
    if enc == 'mono16':
        return (a >> 8).astype(np.uint8)
    bgr = to_bgr8(a, enc).astype(np.float32)
    y = 0.114 * bgr[:, :, 0] + 0.587 * bgr[:, :, 1] + 0.299 * bgr[:, :, 2]
    return np.clip(np.rint(y), 0, 255).astype(np.uint8)


def overlay_encoding(encoding: str) -> str:
    """Encoding of the overlay published for an input image: rgb8 stays rgb8, else bgr8."""
    return 'rgb8' if str(encoding).lower() in ('rgb8', 'rgba8') else 'bgr8'


def from_bgr8(bgr: np.ndarray, encoding: str) -> np.ndarray:
    """BGR uint8 -> the array for ``overlay_encoding``-style output (rgb8 or bgr8)."""
    return bgr[:, :, ::-1].copy() if encoding == 'rgb8' else bgr


def try_cv_bridge():
    """A ``cv_bridge.CvBridge`` instance when cv_bridge (ROS 2) is importable, else None."""
    try:
        from cv_bridge import CvBridge  # noqa: WPS433 (optional dependency)
        return CvBridge()
    except Exception:  # ImportError, or the ROS 1 PyPI package failing on numpy 2
        return None


# ----------------------------------------------------------------------------- drawing
# BGR colours
COLOR_FACE = (200, 200, 200)
COLOR_SPEAKING = (0, 220, 0)
COLOR_SOUND = (0, 140, 255)


def _cv2():
    import cv2
    return cv2


def ellipse_axes(cov: np.ndarray, n_sigma: float = 2.0):
    """(half-axis a, half-axis b, angle deg) of the n-sigma ellipse of a 2x2 covariance."""
    C = np.asarray(cov, float).reshape(2, 2)
    C = 0.5 * (C + C.T)
    w, V = np.linalg.eigh(C)
    w = np.clip(w, 0.0, None)
    a, b = n_sigma * np.sqrt(w[1]), n_sigma * np.sqrt(w[0])
    angle = np.degrees(np.arctan2(V[1, 1], V[0, 1]))
    return float(a), float(b), float(angle)


def _label_origin(placed: list, x0: int, y0: int, y1: int, tw: int, th: int, base: int,
                  W: int, H: int) -> tuple:
    """Text origin for a face label: above the box, else below it, else stacked further up or
    down, at the first place whose rectangle overlaps no label in ``placed`` (then appended)."""
    x = int(min(max(0, x0), max(0, W - tw)))
    th = th + base                       # rectangle height: glyphs plus descenders
    step = th + 2
    tops = [y0 - 4 - th, y1 + 4]
    for i in range(1, 8):
        tops += [y0 - 4 - th - i * step, y1 + 4 + i * step]
    for top in tops + [tops[0]]:
        top = int(min(max(0, top), max(0, H - th)))
        rect = (x, top, x + tw, top + th)
        if all(rect[2] <= r[0] or r[2] <= rect[0] or rect[3] <= r[1] or r[3] <= rect[1]
               for r in placed):
            break
    placed.append(rect)
    return x, rect[1] + th - base


def _clip_int(x: float, lim: int) -> int:
    """A coordinate OpenCV can take: rounded and clipped to [-lim, lim] (int32 overflows)."""
    return int(round(min(max(float(x), -lim), lim)))


def draw_overlay(bgr: np.ndarray, faces: Iterable = (), sounds: Iterable = (),
                 scores: Optional[dict] = None, speaking: Optional[set] = None,
                 n_sigma: float = 2.0, mouth: Optional[Sequence] = None) -> np.ndarray:
    """Draw faces (boxes; speaking ones thick green with their score), sound estimates (a cross
    and the ``n_sigma`` uncertainty ellipse) onto a copy of a BGR uint8 image.

    ``faces``: objects with ``id, u, v, w, h`` (see :class:`sbm_ros.av.fusion.Face`);
    ``sounds``: objects with ``u, v, cov`` (2x2 px^2), ``confidence`` and optionally ``voice``
    (a ROS4HRI voice id: the label reads e.g. ``v3 0.87``);
    ``scores``: {face id: speaking score}; ``speaking``: set of face ids drawn as speaking;
    ``mouth``: optional list of (u, v) mouth points drawn as small dots.

    Never fails on coordinates: items with a non-finite position (or face size) are skipped,
    huge ones clipped a few image sizes outside the image (:mod:`sbm_ros.av.overlay` reports
    them).
    """
    cv2 = _cv2()
    img = np.ascontiguousarray(bgr).copy()
    H, W = img.shape[:2]
    lim = 4 * max(H, W)  # drawing beyond this draws nothing more, and OpenCV needs int32
    thick = max(1, int(round(min(H, W) / 240)))
    scores = scores or {}
    speaking = speaking or set()
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, 0.4 * thick
    placed = []          # label rectangles already drawn (x0, y0, x1, y1): labels never overlap
    for f in faces:
        if not all(np.isfinite((f.u, f.v, f.w, f.h))):
            continue
        x0, y0 = _clip_int(f.u - f.w / 2, lim), _clip_int(f.v - f.h / 2, lim)
        x1, y1 = _clip_int(f.u + f.w / 2, lim), _clip_int(f.v + f.h / 2, lim)
        talk = f.id in speaking
        color = COLOR_SPEAKING if talk else COLOR_FACE
        cv2.rectangle(img, (x0, y0), (x1, y1), color, 3 * thick if talk else thick)
        label = f'{f.id} {scores.get(f.id, 0.0):.2f}' + (' speaking' if talk else '')
        (tw, th), base = cv2.getTextSize(label, font, scale, thick)
        org = _label_origin(placed, x0, y0, y1, tw, th, base, W, H)
        cv2.putText(img, label, org, font, scale, color, thick, cv2.LINE_AA)
    for (mu, mv) in (mouth or []):
        if np.isfinite(mu) and np.isfinite(mv):
            cv2.circle(img, (_clip_int(mu, lim), _clip_int(mv, lim)), 2 * thick, COLOR_FACE, -1)
    for s in sounds:
        u, v = float(s.u), float(s.v)
        if not (np.isfinite(u) and np.isfinite(v)):
            continue
        _draw_sound(cv2, img, s, _clip_int(u, lim), _clip_int(v, lim), n_sigma, lim, thick)
    return img


def _draw_sound(cv2, img, s, u: int, v: int, n_sigma: float, lim: int, thick: int) -> None:
    """A sound estimate at integer pixel (u, v): its uncertainty ellipse (when the covariance
    is finite), a cross and its label: the voice id (when it has one) and the confidence."""
    try:
        a, b, ang = ellipse_axes(s.cov, n_sigma)
    except (ValueError, np.linalg.LinAlgError):
        a = b = ang = float('nan')
    if np.isfinite(a) and np.isfinite(b) and np.isfinite(ang):
        cv2.ellipse(img, (u, v), (_clip_int(a, lim), _clip_int(b, lim)), ang, 0, 360,
                    COLOR_SOUND, thick, cv2.LINE_AA)
    r = 6 * thick
    cv2.line(img, (u - r, v), (u + r, v), COLOR_SOUND, thick)
    cv2.line(img, (u, v - r), (u, v + r), COLOR_SOUND, thick)
    conf = getattr(s, 'confidence', None)
    parts = [str(getattr(s, 'voice', '') or '')]
    if conf is not None and np.isfinite(conf):
        parts.append(f'{conf:.2f}')
    label = ' '.join(p for p in parts if p)
    if label:
        cv2.putText(img, label, (u + r, v - r), cv2.FONT_HERSHEY_SIMPLEX,
                    0.4 * thick, COLOR_SOUND, thick, cv2.LINE_AA)
