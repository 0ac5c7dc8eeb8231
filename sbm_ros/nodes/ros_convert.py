"""Conversions between the SBM core's numpy estimates and ROS 2 messages.

Two layers:

* **Pure numpy** (importable without ROS): :func:`resolve_sources` turns the localiser's
  per-source estimates (in the model's target space, degrees or pixels) into both
  representations the nodes publish, a head-frame direction ``(azimuth, elevation)`` in degrees
  with its 2x2 covariance and an image pixel ``(u, v)`` with its 2x2 covariance, using a
  :class:`~sbm_ros.core.geometry.PinholeCamera` when one is known (first-order covariance
  propagation, see :mod:`sbm_ros.core.geometry`). A representation that cannot be produced (no
  camera, direction behind the camera) is ``None``.
* **Message builders** (import the message packages lazily, so the pure layer works without
  ROS): ``Detection2DArray``, ``PoseArray``, ``MarkerArray``, ``ImageMarker``, ``AudioInfo``,
  ``CameraInfo`` -> camera.

Conventions (``docs/ros_api_contract.md``): Detection2D ``id = "source_<m>"``, bbox centre =
estimated pixel, bbox size = 4 standard deviations (a +-2 sigma box) of the pixel covariance,
``results[0].hypothesis = ("sound_source", confidence)``, ``results[0].pose.pose.position =
(u, v, 0)``, pose covariance entries ``[0] = var_u``, ``[1] = [6] = cov_uv``, ``[7] = var_v``.
Directions follow REP 103 (azimuth positive to the left, elevation up); a pose's orientation
rotates the head frame's +x axis onto the source direction, its position is the head origin.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional, Sequence

import numpy as np

from sbm_ros.core.geometry import PinholeCamera, quaternion_from_direction

__all__ = [
    'SourceOutput',
    'resolve_sources',
    'camera_from_camera_info',
    'detections_msg',
    'pose_array_msg',
    'marker_array_msg',
    'image_marker_msgs',
    'audio_info_msg',
    'SOURCE_CLASS_ID',
]

#: class id of a sound source hypothesis in Detection2D results
SOURCE_CLASS_ID = 'sound_source'
#: RGBA colours of source 0, 1 (markers)
_COLOURS = ((1.0, 0.3, 0.1, 0.9), (0.1, 0.5, 1.0, 0.9))


@dataclass
class SourceOutput:
    """One localised source in both output spaces (either may be None)."""

    index: int
    confidence: float
    direction: Optional[np.ndarray] = None       # (az, el) degrees
    direction_cov: Optional[np.ndarray] = None   # (2, 2) deg^2
    pixel: Optional[np.ndarray] = None           # (u, v)
    pixel_cov: Optional[np.ndarray] = None       # (2, 2) px^2
    share: float = 1.0                           # of the newest audio (SourceEstimate.share)


def _finite(a) -> bool:
    return a is not None and bool(np.all(np.isfinite(a)))


def resolve_sources(sources: Sequence, target_space: str, dims_per_source: int,
                    camera: Optional[PinholeCamera]) -> List[SourceOutput]:
    """Directions and pixels of localiser estimates.

    Parameters
    ----------
    sources : sequence of objects with ``position`` (l,), ``covariance`` (l, l), ``confidence``
        (:class:`sbm_ros.core.localizer.SourceEstimate`), in the model's target space.
    target_space : ``"degrees"`` or ``"pixels"``
    dims_per_source : 1 (azimuth or u only) or 2
    camera : PinholeCamera or None
        Needed to go from degrees to pixels or back. An azimuth-only model gets elevation 0;
        a u-only pixel model gets ``v = cy`` (only with a camera).
    """
    out = []
    for m, s in enumerate(sources):
        pos = np.asarray(s.position, dtype=np.float64).reshape(-1)
        cov = np.asarray(s.covariance, dtype=np.float64).reshape(len(pos), len(pos))
        o = SourceOutput(index=m, confidence=float(s.confidence),
                         share=float(getattr(s, 'share', 1.0)))
        if target_space == 'degrees':
            if dims_per_source == 1:
                d, c = np.array([pos[0], 0.0]), np.diag([cov[0, 0], 0.0])
            else:
                d, c = pos[:2].copy(), cov[:2, :2].copy()
            o.direction, o.direction_cov = d, c
            if camera is not None:
                uv, ok = camera.project(d)
                if bool(ok):
                    o.pixel = uv
                    o.pixel_cov = camera.cov_deg_to_px(d, c)
        elif target_space == 'pixels':
            if dims_per_source == 1:
                if camera is None:
                    out.append(o)
                    continue
                uv, c = np.array([pos[0], camera.cy]), np.diag([cov[0, 0], 0.0])
            else:
                uv, c = pos[:2].copy(), cov[:2, :2].copy()
            o.pixel, o.pixel_cov = uv, c
            if camera is not None:
                o.direction = camera.unproject(uv)
                with np.errstate(all='ignore'):
                    try:
                        o.direction_cov = camera.cov_px_to_deg(uv, c)
                    except np.linalg.LinAlgError:
                        o.direction_cov = None
        else:
            raise ValueError(f'unknown target space {target_space!r}')
        for name in ('direction', 'direction_cov', 'pixel', 'pixel_cov'):
            if getattr(o, name) is not None and not _finite(getattr(o, name)):
                setattr(o, name, None)
        out.append(o)
    return out


# ------------------------------------------------------------------------- message builders


def camera_from_camera_info(msg) -> PinholeCamera:
    """PinholeCamera from a ``sensor_msgs/CameraInfo`` (K, width, height, header.frame_id).

    Raises ValueError for an uncalibrated camera (zero focal lengths or image size)."""
    K = np.asarray(msg.k, dtype=np.float64).reshape(3, 3)
    if not (K[0, 0] > 0 and K[1, 1] > 0 and msg.width > 0 and msg.height > 0):
        raise ValueError(f'camera_info is not calibrated (fx={K[0, 0]}, fy={K[1, 1]}, '
                         f'size {msg.width}x{msg.height})')
    kw = {'frame_id': msg.header.frame_id} if msg.header.frame_id else {}
    return PinholeCamera.from_K(K, int(msg.width), int(msg.height), **kw)


def _cov_sqrt_diag(c) -> tuple:
    c = np.asarray(c, dtype=np.float64)
    return math.sqrt(max(c[0, 0], 0.0)), math.sqrt(max(c[1, 1], 0.0))


#: class_id prefix of the extra hypothesis naming a source's ROS4HRI voice ('voice:v3')
VOICE_CLASS_PREFIX = 'voice:'


def detections_msg(header, outputs: Sequence[SourceOutput], voice_ids=None):
    """``vision_msgs/Detection2DArray`` of the sources that have a pixel.

    ``voice_ids`` (per output, an id or None; ROS4HRI output on): a source fed to a tracked
    voice gets a second hypothesis ``(voice:<id>, 1.0)`` after ``results[0]``."""
    from vision_msgs.msg import Detection2D, Detection2DArray, ObjectHypothesisWithPose
    arr = Detection2DArray()
    arr.header = header
    for o in outputs:
        if o.pixel is None:
            continue
        det = Detection2D()
        det.header = header
        det.id = f'source_{o.index}'
        su, sv = _cov_sqrt_diag(o.pixel_cov)
        det.bbox.center.position.x = float(o.pixel[0])
        det.bbox.center.position.y = float(o.pixel[1])
        det.bbox.center.theta = 0.0
        det.bbox.size_x = 4.0 * su
        det.bbox.size_y = 4.0 * sv
        hyp = ObjectHypothesisWithPose()
        hyp.hypothesis.class_id = SOURCE_CLASS_ID
        hyp.hypothesis.score = float(min(max(o.confidence, 0.0), 1.0))
        hyp.pose.pose.position.x = float(o.pixel[0])
        hyp.pose.pose.position.y = float(o.pixel[1])
        hyp.pose.pose.orientation.w = 1.0
        cov = [0.0] * 36
        cov[0] = float(o.pixel_cov[0, 0])
        cov[1] = cov[6] = float(o.pixel_cov[0, 1])
        cov[7] = float(o.pixel_cov[1, 1])
        hyp.pose.covariance = cov
        det.results.append(hyp)
        vid = voice_ids[o.index] if voice_ids is not None and o.index < len(voice_ids) else None
        if vid:
            vh = ObjectHypothesisWithPose()
            vh.hypothesis.class_id = f'{VOICE_CLASS_PREFIX}{vid}'
            vh.hypothesis.score = 1.0
            vh.pose.pose.orientation.w = 1.0
            det.results.append(vh)
        arr.detections.append(det)
    return arr


def pose_array_msg(header, outputs: Sequence[SourceOutput]):
    """``geometry_msgs/PoseArray`` (head frame): one pose per source with a direction."""
    from geometry_msgs.msg import Pose, PoseArray
    arr = PoseArray()
    arr.header = header
    for o in outputs:
        if o.direction is None:
            continue
        p = Pose()
        x, y, z, w = quaternion_from_direction(float(o.direction[0]), float(o.direction[1]))
        p.orientation.x, p.orientation.y, p.orientation.z, p.orientation.w = x, y, z, w
        arr.poses.append(p)
    return arr


def marker_array_msg(header, outputs: Sequence[SourceOutput], distance: float = 1.5,
                     lifetime_s: float = 0.5, ns: str = 'sound_sources'):
    """``visualization_msgs/MarkerArray`` for RViz: an arrow from the head origin towards each
    source (length ``distance`` m, thicker when less confident) and a text label."""
    from builtin_interfaces.msg import Duration
    from visualization_msgs.msg import Marker, MarkerArray
    from geometry_msgs.msg import Point
    arr = MarkerArray()
    life = Duration(sec=int(lifetime_s), nanosec=int((lifetime_s % 1.0) * 1e9))
    for o in outputs:
        if o.direction is None:
            continue
        az, el = float(o.direction[0]), float(o.direction[1])
        v = np.array([math.cos(math.radians(el)) * math.cos(math.radians(az)),
                      math.cos(math.radians(el)) * math.sin(math.radians(az)),
                      math.sin(math.radians(el))]) * distance
        r, g, b, a = _COLOURS[o.index % len(_COLOURS)]
        arrow = Marker()
        arrow.header = header
        arrow.ns = ns
        arrow.id = 2 * o.index
        arrow.type = Marker.ARROW
        arrow.action = Marker.ADD
        arrow.points = [Point(), Point(x=float(v[0]), y=float(v[1]), z=float(v[2]))]
        arrow.pose.orientation.w = 1.0
        arrow.scale.x = 0.03            # shaft diameter
        arrow.scale.y = 0.08            # head diameter
        arrow.scale.z = 0.12            # head length
        arrow.color.r, arrow.color.g, arrow.color.b = r, g, b
        arrow.color.a = float(0.3 + 0.7 * min(max(o.confidence, 0.0), 1.0)) * a
        arrow.lifetime = life
        text = Marker()
        text.header = header
        text.ns = ns
        text.id = 2 * o.index + 1
        text.type = Marker.TEXT_VIEW_FACING
        text.action = Marker.ADD
        text.pose.position.x = float(v[0] * 1.1)
        text.pose.position.y = float(v[1] * 1.1)
        text.pose.position.z = float(v[2] * 1.1 + 0.05)
        text.pose.orientation.w = 1.0
        text.scale.z = 0.08
        text.color.r, text.color.g, text.color.b, text.color.a = r, g, b, 1.0
        text.text = f'source_{o.index}: az {az:+.1f} el {el:+.1f} ({o.confidence:.2f})'
        text.lifetime = life
        arr.markers.extend([arrow, text])
    return arr


def image_marker_msgs(header, outputs: Sequence[SourceOutput], lifetime_s: float = 0.5,
                      min_radius: float = 5.0, ns: str = 'sound_sources') -> list:
    """One ``visualization_msgs/ImageMarker`` CIRCLE per source with a pixel; radius = 2
    standard deviations (RMS of the two axes), at least ``min_radius`` pixels."""
    from builtin_interfaces.msg import Duration
    from std_msgs.msg import ColorRGBA
    from visualization_msgs.msg import ImageMarker
    out = []
    for o in outputs:
        if o.pixel is None:
            continue
        su, sv = _cov_sqrt_diag(o.pixel_cov)
        m = ImageMarker()
        m.header = header
        m.ns = ns
        m.id = o.index
        m.type = ImageMarker.CIRCLE
        m.action = ImageMarker.ADD
        m.position.x = float(o.pixel[0])
        m.position.y = float(o.pixel[1])
        m.scale = float(max(2.0 * math.sqrt(0.5 * (su * su + sv * sv)), min_radius))
        r, g, b, a = _COLOURS[o.index % len(_COLOURS)]
        m.outline_color = ColorRGBA(r=r, g=g, b=b, a=a)
        m.filled = 0
        m.lifetime = Duration(sec=int(lifetime_s), nanosec=int((lifetime_s % 1.0) * 1e9))
        out.append(m)
    return out


def audio_info_msg(sample_rate: int, channels: int = 2, sample_format: str = 'S16LE'):
    """``audio_common_msgs/AudioInfo`` for raw interleaved PCM (coding_format ``wave``)."""
    from audio_common_msgs.msg import AudioInfo
    from sbm_ros.core.audio_io import bytes_per_sample
    info = AudioInfo()
    info.channels = int(channels)
    info.sample_rate = int(sample_rate)
    info.sample_format = str(sample_format)
    info.bitrate = int(sample_rate) * int(channels) * 8 * bytes_per_sample(sample_format)
    info.coding_format = 'wave'
    return info
