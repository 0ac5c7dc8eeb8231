"""ROS4HRI (REP 155) side of ``av_fusion``: faces in, VOICE <-> FACE candidate matches out.

Faces: ``/humans/faces/tracked`` (``hri_msgs/IdsList``) names the faces; each face's box comes
from ``/humans/faces/<id>/roi``, whose type depends on the ROS4HRI version:

* ``normalized`` (default): ``hri_msgs/NormalizedRegionOfInterest2D``, corners in [0, 1] of the
  image size -- what ``hri_msgs`` 2.x (Humble, Jazzy, Kilted) defines and ``hri_face_detect``
  publishes in ROS 2. The image size comes from ``camera_info`` (or the last image);
* ``pixels``: ``sensor_msgs/RegionOfInterest`` (x_offset, y_offset, width, height in pixels) of
  the older (ROS 1) ROS4HRI face detectors.

A roi subscription is created when a face id appears in ``tracked`` and destroyed when it leaves
(at most ``max_faces`` ids are followed). At each ``tracked`` message the faces with a valid roi
are handed to the fusion with the message's stamp; a roi with non-finite values, corners outside
[0, 1] (normalised) or an empty box is ignored with a throttled warning.

Matches: every match of a sound estimate that carries a voice id with a face is published on
``/humans/candidate_matches`` (``hri_msgs/IdsMatch``: id1 = the voice, VOICE; id2 = the face,
FACE), with confidence = sound confidence x exp(-d2 / 2), d2 the squared Mahalanobis distance
between the sound and the face's mouth point (1.0 when they coincide).
"""

from __future__ import annotations

import math
from typing import Callable, Dict, List, Optional

from sbm_ros.av.fusion import Face

from .common import stream_qos

FACES_TRACKED = '/humans/faces/tracked'
MATCHES_TOPIC = '/humans/candidate_matches'


def face_from_normalized(fid: str, roi, width: int, height: int) -> Optional[Face]:
    """A pixel :class:`Face` from a NormalizedRegionOfInterest2D, None if it is unusable."""
    vals = (roi.xmin, roi.ymin, roi.xmax, roi.ymax)
    if not all(math.isfinite(v) and -1e-3 <= v <= 1.0 + 1e-3 for v in vals):
        return None
    if roi.xmax <= roi.xmin or roi.ymax <= roi.ymin:
        return None
    u = 0.5 * (roi.xmin + roi.xmax) * width
    v = 0.5 * (roi.ymin + roi.ymax) * height
    c = float(roi.c) if math.isfinite(roi.c) else 1.0
    return Face(fid, u, v, (roi.xmax - roi.xmin) * width, (roi.ymax - roi.ymin) * height, c)


def face_from_pixels(fid: str, roi) -> Optional[Face]:
    """A :class:`Face` from a sensor_msgs/RegionOfInterest (pixels), None if empty."""
    if roi.width <= 0 or roi.height <= 0:
        return None
    return Face(fid, roi.x_offset + roi.width / 2.0, roi.y_offset + roi.height / 2.0,
                float(roi.width), float(roi.height), 1.0)


class HriFaces:
    """ROS4HRI faces of one node and its candidate matches (see the module docstring)."""

    def __init__(self, node, on_faces: Callable, roi_type: str = 'normalized',
                 max_faces: int = 100, callback_group=None,
                 warn: Optional[Callable[[str, str], None]] = None):
        from hri_msgs.msg import IdsList, IdsMatch, NormalizedRegionOfInterest2D
        from sensor_msgs.msg import RegionOfInterest
        self.node = node
        self.on_faces = on_faces
        self.roi_type = roi_type
        self.roi_msg = NormalizedRegionOfInterest2D if roi_type == 'normalized' \
            else RegionOfInterest
        self.max_faces = int(max_faces)
        self.group = callback_group
        self.warn = warn or (lambda key, text: node.get_logger().warning(text))
        self.qos = stream_qos('reliable', 10)
        self.rois: Dict[str, object] = {}            # face id -> newest roi message
        self.subs: Dict[str, object] = {}            # face id -> roi subscription
        self.sub_tracked = node.create_subscription(IdsList, FACES_TRACKED, self._on_tracked,
                                                    self.qos, callback_group=callback_group)
        self.pub_matches = node.create_publisher(IdsMatch, MATCHES_TOPIC, stream_qos('reliable',
                                                                                     50))
        self.IdsMatch = IdsMatch

    # ------------------------------------------------------------------ faces
    def _follow(self, fid: str) -> None:
        def cb(msg, fid=fid):
            self.rois[fid] = msg
        self.subs[fid] = self.node.create_subscription(
            self.roi_msg, f'/humans/faces/{fid}/roi', cb, self.qos, callback_group=self.group)

    def _forget(self, fid: str) -> None:
        sub = self.subs.pop(fid, None)
        if sub is not None:
            self.node.destroy_subscription(sub)
        self.rois.pop(fid, None)

    def _on_tracked(self, msg) -> None:
        ids = []
        for i in msg.ids:
            i = str(i)
            if i and i not in ids and '/' not in i and ' ' not in i:
                ids.append(i)
        if len(ids) > self.max_faces:
            self.warn('hri_faces_cap', f"'{FACES_TRACKED}': {len(ids)} face ids, only the first "
                      f'{self.max_faces} are followed (parameter max_faces)')
            ids = ids[:self.max_faces]
        for fid in [f for f in self.subs if f not in ids]:
            self._forget(fid)
        for fid in ids:
            if fid not in self.subs:
                self._follow(fid)
        size = self.node._image_size()
        faces: List[Face] = []
        bad = []
        for fid in ids:
            roi = self.rois.get(fid)
            if roi is None:
                continue
            if self.roi_type == 'normalized':
                if size is None:
                    self.warn('hri_faces_size', 'ROS4HRI faces: normalised rois but no '
                              'camera_info or image yet to scale them to pixels')
                    return
                f = face_from_normalized(fid, roi, size[0], size[1])
            else:
                f = face_from_pixels(fid, roi)
            if f is None:
                bad.append(fid)
            else:
                faces.append(f)
        if bad:
            self.warn('hri_faces_bad', f'ROS4HRI faces: ignored the roi of {bad[:5]} (non-finite,'
                      + (' outside [0, 1],' if self.roi_type == 'normalized' else '')
                      + ' or empty)')
        self.on_faces(msg.header, faces)

    # ------------------------------------------------------------------ matches
    def publish_matches(self, matches, voice_ids, gate: float) -> int:
        """One IdsMatch per (voice, face) match; returns how many were published."""
        n = 0
        for m in matches:
            if m.sound.id not in voice_ids:
                continue
            d2 = float(m.d2) if math.isfinite(m.d2) else float('inf')
            conf = max(0.0, min(1.0, float(m.sound.confidence))) * math.exp(-0.5 * d2)
            self.pub_matches.publish(self.IdsMatch(
                id1=m.sound.id, id1_type=self.IdsMatch.VOICE, id2=m.face.id,
                id2_type=self.IdsMatch.FACE, confidence=float(conf)))
            n += 1
        return n
