"""``av_fusion``: which face is speaking, and training capture with a marked loudspeaker.

Fusion: subscribes ``sound_sources`` (vision_msgs/Detection2DArray in pixels, from
``sbm_localizer``) and ``faces`` (vision_msgs/Detection2DArray from any face detector), optionally
``image`` (sensor_msgs/Image) and ``camera_info``. Each sound estimate is matched to the face
detections closest to it in time (within ``time_tolerance``) by the gated Mahalanobis rule of
:mod:`sbm_ros.av.fusion`; per-face speaking scores are smoothed over time. Publishes
``speaking_faces`` (the faces of every ``faces`` message with results[0] = 'speaking' | 'silent'
and the score) and ``overlay`` (the image with faces, sound estimates with their uncertainty
ellipses and the speaking faces highlighted; camera header kept).

Training capture (paper section VI): ``~/capture_sample`` (std_srvs/Trigger) records the next
``capture_duration`` seconds of binaural audio (``audio/audio_stamped`` + ``audio/audio_info``)
and the pixel position of an ArUco marker on the loudspeaker in the current image, and appends
both to ``dataset_dir`` (sbm-train format, u_px/v_px, camera.json from ``camera_info``).
``~/train`` (std_srvs/Trigger) fits a model in a separate process, then hands it to the
localiser by an asynchronous SetParameters call (``<localizer_node>/set_parameters``,
``model_path``); progress on ``~/training_status`` (std_msgs/String, latched).

Audio selection: a capture records the audio ACQUIRED after the request, whatever the audio
driver's clock and latency (the request time is mapped into the audio stamps' timeline, see
:mod:`sbm_ros.av.capture`). Audio from another machine's unsynchronised clock, or a driver whose
clock lags or leads, is recorded from the request on; chunks queued from before the request (a
burst from the driver, a busy node) are skipped, and the chunk under way at the request is
trimmed to it. Audio acquired at most the smallest delivery latency before the request
(milliseconds for a local driver) cannot be told apart and may be included.

One capture at a time: a ``~/capture_sample`` request that arrives while a capture is running
is refused at once ("a capture is already running"), so every caller gets an answer (requests
held back in the service's queue beyond its depth would be dropped by DDS, unanswered).

The logic is in :mod:`sbm_ros.av`: faces x sounds over time in :mod:`~sbm_ros.av.speakers`,
the overlay in :mod:`~sbm_ros.av.overlay`, the capture in :mod:`~sbm_ros.av.capture`, the
training subprocess in :mod:`~sbm_ros.av.training_run`, the hand-over of the model in
:mod:`.model_handoff` (shared with ``sbm_calibrator``). This node converts messages, holds
parameters, services and timers, and logs.

Threading: a SingleThreadedExecutor. Callbacks never block: ``~/capture_sample`` is a coroutine
(``async def``, awaited by the executor on Humble, Jazzy and Kilted) that awaits rclpy Futures
completed by the audio / image callbacks or by a steady-clock timeout timer, so the
subscriptions keep running while it records; training is a subprocess polled by a timer and the
hand-off uses future callbacks. (rclpy's MultiThreadedExecutor of Humble/Jazzy re-queues tasks
that have not started yet and runs callbacks seconds late on a loaded machine: ros2/rclpy#1452.)
Each stream has its own mutually exclusive callback group; ``~/capture_sample`` has a reentrant
one, so a pending capture never holds back an input nor the answer to another request.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import replace
from typing import Callable, List, Optional

import numpy as np
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.task import Future
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import String
from std_srvs.srv import Trigger
from vision_msgs.msg import (Detection2D, Detection2DArray, ObjectHypothesis,
                             ObjectHypothesisWithPose)

from sbm_ros.av import capture as cap
from sbm_ros.av import image_io
from sbm_ros.av.capture import AudioTimeline, Recording
from sbm_ros.av.fusion import Face, MatchConfig, SpeakingScores, covariance_from_flat
from sbm_ros.av.overlay import render as render_overlay
from sbm_ros.av.speakers import Notice, SpeakerFusion, sound_from_box
from sbm_ros.av.training_run import TrainingRun, default_model_path
from .common import (SAMPLE_FORMATS, LogThrottle, Param, declare_parameters, describe_qos,
                     fraction, latched_qos, non_negative, one_of, positive, stamp_to_ns,
                     stream_qos)
from .model_handoff import ModelHandoff

try:  # capture needs audio_common_msgs; fusion works without it
    from audio_common_msgs.msg import AudioDataStamped, AudioInfo
except ImportError:  # pragma: no cover - depends on the install
    AudioDataStamped = AudioInfo = None

__all__ = ['AvFusionNode', 'AudioTimeline', 'PARAMS', 'main']


def _rel(v):
    return None if str(v).lower().replace('-', '_') in ('reliable', 'best_effort') \
        else "must be 'reliable' or 'best_effort'"


PARAMS = [
    # --- fusion -----------------------------------------------------------------------------
    Param('gate', 3.0, 'Mahalanobis gate (sigmas) between a sound estimate and a face mouth '
          'point, with the sound covariance plus the face-size term', positive),
    Param('mouth_offset', 0.25, 'mouth point below the face box centre, as a fraction of the '
          'box height (0 = box centre)', lambda v: None if -0.5 <= v <= 0.5
          else 'must be within [-0.5, 0.5]'),
    Param('face_sigma', 0.25, 'face-size standard deviation as a fraction of the box width / '
          'height, added to the sound covariance', non_negative),
    Param('min_source_confidence', 0.0, 'sound estimates with a lower confidence are ignored',
          fraction),
    Param('time_tolerance', 0.25, 'max |stamp difference| (s) between a sound estimate and the '
          'face detections it is matched with', positive),
    Param('history', 3.0, 'seconds of face / sound messages kept for time alignment', positive),
    Param('attack', 0.15, 'speaking score rise time constant (s)', positive),
    Param('release', 1.0, 'speaking score decay time constant (s): keeps a face speaking '
          'across short pauses', positive),
    Param('on_threshold', 0.5, 'score at which a face becomes speaking', fraction),
    Param('off_threshold', 0.3, 'score under which a speaking face becomes silent (<= '
          'on_threshold)', fraction),
    Param('check_frame_id', True, 'refuse to match sounds and faces whose header.frame_id '
          'differ (both non-empty)'),
    Param('max_faces', 100, 'faces used per faces message at most (those with the highest '
          'detection scores; a warning says when more came): bounds the work per message',
          positive),
    Param('overlay_rate', 10.0, 'max overlay images per second (0 = one per input image)',
          non_negative),
    Param('overlay_sigma', 2.0, 'the sound uncertainty ellipse drawn at this many sigmas',
          positive),
    Param('use_cv_bridge', True, 'convert images with cv_bridge when it is installed (the '
          'built-in conversion handles rgb8/bgr8/rgba8/bgra8/mono8/mono16)'),
    Param('image_reliability', 'best_effort', "QoS reliability of the image subscription "
          "('best_effort' also receives from reliable publishers)", _rel),
    Param('reliability', 'reliable', 'QoS reliability of the faces, sound_sources and audio '
          'subscriptions', _rel),
    # --- training capture ---------------------------------------------------------------------
    Param('dataset_dir', '~/.ros/sbm_ros/dataset', 'training dataset folder written by '
          '~/capture_sample and read by ~/train (sbm-train format, pixel targets)',
          lambda v: None if str(v).strip() else 'must not be empty'),
    Param('capture_duration', 1.0, 'seconds of audio recorded per training sample: the audio '
          'acquired after the request, the request time being mapped into the audio stamps\' '
          'timeline by the observed offset between arrival time and stamp (so an audio clock '
          'that lags or leads the node\'s works; unstamped audio is taken by arrival)',
          positive),
    Param('min_rms_dbfs', -40.0, 'a capture whose audio RMS (dB full scale) is lower is refused '
          '(loudspeaker not playing?)'),
    Param('marker_dictionary', 'DICT_4X4_50', 'OpenCV ArUco dictionary of the loudspeaker '
          'marker'),
    Param('marker_id', 0, 'ArUco id of the loudspeaker marker', non_negative),
    Param('max_marker_motion_px', 8.0, 'a capture is refused when the marker moved more than '
          'this between the start and the end of the recording', positive),
    Param('max_image_age', 1.0, 'the current image must have arrived at most this many seconds '
          'ago; an older one is waited for (up to this long again) before a capture is refused',
          positive),
    Param('audio_timeout', 5.0, 'extra seconds to wait for audio beyond capture_duration',
          positive),
    Param('sample_rate', 0, 'audio sample rate used when no audio_info was received (0 = '
          'require audio_info)', non_negative),
    Param('sample_format', 'S16LE', 'audio sample format used when no audio_info was received',
          one_of(*SAMPLE_FORMATS)),
    Param('localizer_node', 'sbm_localizer', 'node whose model_path parameter is set after '
          'training'),
    Param('model_output', '', "model file written by ~/train ('' = "
          "<dataset_dir>/models/model_<time>.npz, a new file each time)"),
    Param('train_components', 0, 'GLLiM components K for ~/train (0 = automatic: 32 capped at '
          'samples/5)', non_negative),
    Param('train_max_iter', 100, 'EM iterations at most for ~/train', positive),
    Param('handoff_timeout', 10.0, 'seconds to wait for the localizer '
          'set_parameters_atomically service', positive),
    # --- ROS4HRI ------------------------------------------------------------------------------
    Param('ros4hri', False, 'publish /humans/candidate_matches (hri_msgs/IdsMatch, VOICE <-> '
          'FACE) for sound estimates that carry a voice id (sbm_localizer with ros4hri) and '
          'also take ROS4HRI faces (/humans/faces/tracked + /humans/faces/<id>/roi); needs '
          'hri_msgs (without it: off, with a warning). Read at start.', read_only=True),
    Param('faces_roi_type', 'normalized', "type of /humans/faces/<id>/roi: 'normalized' "
          "(hri_msgs/NormalizedRegionOfInterest2D, [0, 1]; ROS 2 Humble/Jazzy hri_msgs 2.x) or "
          "'pixels' (sensor_msgs/RegionOfInterest; older ROS4HRI face detectors). Read at "
          "start.", one_of('normalized', 'pixels'), read_only=True),
]


def _t(stamp) -> float:
    return stamp_to_ns(stamp) * 1e-9


def _answer(response, success: bool, message: str):
    response.success, response.message = success, message
    return response


class AvFusionNode(Node):

    def __init__(self, **kwargs):
        super().__init__('av_fusion', **kwargs)
        self.p = declare_parameters(self, PARAMS)
        self.add_on_set_parameters_callback(self._on_params)
        self._lock = threading.RLock()
        self.fusion = SpeakerFusion(history=self.p['history'])
        self._apply_params()
        self.bridge = image_io.try_cv_bridge() if self.p['use_cv_bridge'] else None
        self._init_state()
        # import OpenCV/aruco now, not in the first capture (an import inside a callback that
        # holds self._lock would stall every other callback)
        try:
            self._marker_detector()
        except Exception as exc:
            self.get_logger().warning(f'marker detection unavailable, captures will be refused: '
                                      f'{exc}')
        rel, img_qos = self._init_interfaces()
        self.get_logger().info(
            f"av_fusion ready: sound_sources/faces/audio {describe_qos(rel)}, image "
            f"{describe_qos(img_qos)}, image conversion "
            f"{'cv_bridge' if self.bridge else 'built-in'}; dataset_dir "
            f"{self.dataset_dir()!r}, marker {self.p['marker_dictionary']} id "
            f"{self.p['marker_id']}")

    def _init_state(self):
        self.camera_info: Optional[CameraInfo] = None   # the newest usable camera_info
        self.camera_problem: Optional[str] = None       # what is wrong with the newest one
        self.image: Optional[Image] = None
        self.image_rx = 0.0           # monotonic arrival time of self.image
        self.image_dirty = False
        self.last_overlay = 0.0
        self.rx = {}                  # topic -> monotonic time of the last message
        self._log_throttle = LogThrottle(self.get_logger())     # per-key throttled log
        self.audio_info = None
        self.audio_rx = 0.0
        self.timeline = AudioTimeline()
        self.recording: Optional[Recording] = None
        self.capturing = False                     # a ~/capture_sample request is being served
        self._waiter: Optional[Future] = None      # awaited by ~/capture_sample
        self._steady = Clock(clock_type=ClockType.STEADY_TIME)
        self.train_run: Optional[TrainingRun] = None
        self._detector = None
        self._detector_key = None

    def _init_interfaces(self):
        """Subscriptions, publishers, services and timers; returns the stream QoS profiles.

        Callback groups (one executor thread, see the module docstring): a coroutine holds a
        mutually exclusive group until it returns, so ~/capture_sample (which awaits audio and
        images) has a reentrant group of its own (a second request is answered at once), each
        input stream its own group, the timers (+ ~/train) one, and the capture's timeout
        timers another: a pending capture never holds back a callback it waits for. Shared
        state is still guarded by self._lock (cheap, uncontended)."""
        sounds_g, faces_g, video_g, audio_g = (MutuallyExclusiveCallbackGroup()
                                               for _ in range(4))
        self.timer_group = MutuallyExclusiveCallbackGroup()
        self.capture_group = ReentrantCallbackGroup()
        self.wait_group = MutuallyExclusiveCallbackGroup()
        rel = stream_qos(self.p['reliability'], 20)
        img_qos = stream_qos(self.p['image_reliability'], 2)
        self._sub_qos = {'sound_sources': rel, 'faces': rel, 'image': img_qos,
                         'camera_info': img_qos}
        self.create_subscription(Detection2DArray, 'sound_sources', self._on_sounds, rel,
                                 callback_group=sounds_g)
        self.create_subscription(Detection2DArray, 'faces', self._on_faces, rel,
                                 callback_group=faces_g)
        self.create_subscription(Image, 'image', self._on_image, img_qos,
                                 callback_group=video_g)
        self.create_subscription(CameraInfo, 'camera_info', self._on_camera_info, img_qos,
                                 callback_group=video_g)
        self.pub_speaking = self.create_publisher(Detection2DArray, 'speaking_faces',
                                                  stream_qos('reliable', 10))
        self.pub_overlay = self.create_publisher(Image, 'overlay', stream_qos('reliable', 2))
        self.pub_status = self.create_publisher(String, '~/training_status', latched_qos(5))
        if AudioDataStamped is not None:
            self.create_subscription(AudioDataStamped, 'audio/audio_stamped', self._on_audio,
                                     stream_qos(self.p['reliability'], 200),
                                     callback_group=audio_g)
            self.create_subscription(AudioInfo, 'audio/audio_info', self._on_audio_info,
                                     latched_qos(), callback_group=audio_g)
        else:
            self.get_logger().warning('audio_common_msgs is not installed: ~/capture_sample '
                                      'will refuse every capture (fusion works)')
        # reliable, keep-last 100 (services default: 10): a burst of requests is queued until
        # each is answered (refused at once while a capture runs), not dropped unanswered
        self.create_service(Trigger, '~/capture_sample', self._srv_capture,
                            qos_profile=stream_qos('reliable', 100),
                            callback_group=self.capture_group)
        tg = self.timer_group
        self.handoff = ModelHandoff(self, tg, lambda text, error: self._status(text, error))
        self.create_service(Trigger, '~/train', self._srv_train, callback_group=tg)
        self.create_timer(0.02, self._overlay_tick, callback_group=tg)
        self.create_timer(0.25, self._train_tick, callback_group=tg)
        self.create_timer(5.0, self._watchdog, callback_group=tg)
        self.hri = None
        if self.p['ros4hri']:
            from .hri_faces import HriFaces
            from .ros4hri import hri_interfaces
            why = hri_interfaces()
            if why:
                self.get_logger().warning(f'ROS4HRI is OFF although ros4hri is true: {why} '
                                          '(no /humans/candidate_matches, no ROS4HRI faces)')
            else:
                self.hri = HriFaces(self, self._on_hri_faces, self.p['faces_roi_type'],
                                    int(self.p['max_faces']), faces_g,
                                    warn=lambda k, t: self._warn(k, t, 10.0))
                self.get_logger().info(
                    'ROS4HRI on: /humans/candidate_matches (VOICE <-> FACE); faces also from '
                    f"/humans/faces/tracked + /humans/faces/<id>/roi ({self.p['faces_roi_type']})")
        return rel, img_qos

    # ------------------------------------------------------------------ parameters
    def _apply_params(self):
        p, fu = self.p, self.fusion
        fu.cfg = MatchConfig(gate=p['gate'], mouth_offset=p['mouth_offset'],
                             face_sigma=p['face_sigma'],
                             min_confidence=p['min_source_confidence']).validate()
        fu.scores = SpeakingScores(attack_s=p['attack'], release_s=p['release'],
                                   on_threshold=p['on_threshold'],
                                   off_threshold=p['off_threshold'])
        fu.time_tolerance = float(p['time_tolerance'])
        fu.check_frame_id = bool(p['check_frame_id'])
        fu.max_faces = int(p['max_faces'])

    def _on_params(self, changes):
        from rcl_interfaces.msg import SetParametersResult
        new = dict(self.p)
        for ch in changes:
            if ch.name in new:
                new[ch.name] = ch.value
        if new['off_threshold'] > new['on_threshold']:
            return SetParametersResult(successful=False, reason=(
                f"off_threshold {new['off_threshold']} > on_threshold {new['on_threshold']}"))
        key = (new['marker_dictionary'], new['marker_id'])
        if key != (self.p['marker_dictionary'], self.p['marker_id']):
            try:
                from sbm_ros.av.marker import MarkerDetector
                MarkerDetector(new['marker_dictionary'], new['marker_id'])
            except Exception as exc:
                return SetParametersResult(successful=False, reason=str(exc))
        with self._lock:
            self.p.update(new)
            self._apply_params()
        return SetParametersResult(successful=True)

    def dataset_dir(self) -> str:
        return os.path.abspath(os.path.expanduser(str(self.p['dataset_dir'])))

    # ------------------------------------------------------------------ logging
    def _warn(self, key: str, text: str, period: float = 5.0, info: bool = False):
        """A warning (or info) throttled per ``key`` (rclpy throttles per call site only)."""
        self._log_throttle('info' if info else 'warn', key, text, period)

    def _notify(self, notices: List[Notice]):
        for n in notices:
            self._warn(n.key, n.text, n.period, n.info)

    # ------------------------------------------------------------------ inputs
    def _note(self, topic):
        self.rx[topic] = time.monotonic()

    def _image_size(self):
        if self.camera_info is not None and self.camera_info.width > 0:
            return self.camera_info.width, self.camera_info.height
        if self.image is not None:
            return self.image.width, self.image.height
        return None

    def _on_camera_info(self, msg: CameraInfo):
        self._note('camera_info')
        why = cap.camera_problem(msg.width, msg.height, msg.k)
        with self._lock:
            self.camera_problem = why
            if why is None:
                self.camera_info = msg
        if why:
            k = [float(v) for v in msg.k]
            self._warn('camera_info', f"'camera_info' refused: {why} (size {msg.width}x"
                       f'{msg.height}, K={k}); captures are refused until a valid one arrives',
                       period=10.0)

    def _on_image(self, msg: Image):
        self._note('image')
        with self._lock:
            self.image = msg
            self.image_rx = time.monotonic()
            self.image_dirty = True
        self._wake()

    def _on_hri_faces(self, header, faces: List[Face]):
        """ROS4HRI faces (ids from /humans/faces/tracked, boxes from their roi) in pixels."""
        self._note('hri_faces')
        with self._lock:
            ci = self.camera_info
            up = self.fusion.add_faces(_t(header.stamp), header.frame_id, faces,
                                       self._image_size(),
                                       ci.header.frame_id if ci is not None else '')
        self._notify(up.notices)

    def _on_faces(self, msg: Detection2DArray):
        self._note('faces')
        t = _t(msg.header.stamp)
        faces = [Face(str(d.id), float(d.bbox.center.position.x),
                      float(d.bbox.center.position.y), float(d.bbox.size_x),
                      float(d.bbox.size_y),
                      float(d.results[0].hypothesis.score) if d.results else 1.0)
                 for d in msg.detections]
        with self._lock:
            ci = self.camera_info
            up = self.fusion.add_faces(t, msg.header.frame_id, faces, self._image_size(),
                                       ci.header.frame_id if ci is not None else '')
            mouth_offset = self.fusion.cfg.mouth_offset
        self._notify(up.notices)
        out = Detection2DArray(header=msg.header)
        for st in up.faces:
            d, f = msg.detections[st.index], st.face
            det = Detection2D(header=msg.header, id=f.id, bbox=d.bbox)
            hyp = ObjectHypothesisWithPose(hypothesis=ObjectHypothesis(
                class_id='speaking' if st.speaking else 'silent', score=float(st.score)))
            hyp.pose.pose.position.x = f.u
            hyp.pose.pose.position.y = f.v + mouth_offset * f.h
            det.results = [hyp] + list(d.results)
            out.detections.append(det)
        self.pub_speaking.publish(out)

    def _parse_sounds(self, msg: Detection2DArray):
        """Sounds of a message; a sound with a ROS4HRI voice (an extra hypothesis
        'voice:<id>' from sbm_localizer) takes the voice id as its id (in ``self._voice_ids``)
        and as its ``voice``, which the overlay writes next to the cross."""
        from .ros_convert import VOICE_CLASS_PREFIX
        out = []
        self._voice_ids = set()
        for k, d in enumerate(msg.detections):
            cov, conf = None, 1.0
            if d.results:
                conf = float(d.results[0].hypothesis.score)
                cov = covariance_from_flat(d.results[0].pose.covariance)
            sid = str(d.id) or f'source_{k}'
            voice = ''
            for r in d.results[1:]:
                cid = str(r.hypothesis.class_id)
                if cid.startswith(VOICE_CLASS_PREFIX) and len(cid) > len(VOICE_CLASS_PREFIX):
                    sid = voice = cid[len(VOICE_CLASS_PREFIX):]
                    self._voice_ids.add(sid)
                    break
            s = sound_from_box(sid, float(d.bbox.center.position.x),
                               float(d.bbox.center.position.y), d.bbox.size_x, d.bbox.size_y,
                               conf, cov)
            if s is None:
                self._warn('sound_nan', "'sound_sources': non-finite position ignored", 10.0)
                continue
            out.append(replace(s, voice=voice) if voice else s)
        return out

    def _on_sounds(self, msg: Detection2DArray):
        self._note('sound_sources')
        t = _t(msg.header.stamp)
        sounds = self._parse_sounds(msg)
        with self._lock:
            up = self.fusion.add_sounds(t, msg.header.frame_id, sounds)
        self._notify(up.notices)
        if self.hri is not None:
            self.hri.publish_matches(up.matches, self._voice_ids, self.fusion.cfg.gate)
        self.get_logger().debug(SpeakerFusion.summary(t, len(sounds), up))

    # ------------------------------------------------------------------ images
    def _to_bgr(self, msg: Image) -> np.ndarray:
        if self.bridge is not None:
            try:
                return np.asarray(self.bridge.imgmsg_to_cv2(msg, desired_encoding='bgr8'))
            except Exception as exc:  # fall back to the built-in conversion
                self.get_logger().debug(f'cv_bridge failed ({exc}); built-in conversion')
        return image_io.to_bgr8(image_io.msg_to_array(msg), msg.encoding)

    def _overlay_tick(self):
        rate = self.p['overlay_rate']
        now = time.monotonic()
        with self._lock:
            if not self.image_dirty or (rate > 0 and now - self.last_overlay < 1.0 / rate):
                return
            msg = self.image
            self.image_dirty = False
            self.last_overlay = now
            scene = self.fusion.scene_at(_t(msg.header.stamp))
            mouth_offset = self.fusion.cfg.mouth_offset
        if self.pub_overlay.get_subscription_count() == 0:
            return
        try:
            bgr = self._to_bgr(msg)
        except image_io.ImageError as exc:
            self._warn(f'img:{str(exc)[:24]}', f"'image' not drawn: {exc}")
            return
        size = self._image_size()
        if size is not None and (msg.width, msg.height) != tuple(size):
            self._warn('img_size', f"'image' is {msg.width}x{msg.height} but camera_info says "
                       f'{size[0]}x{size[1]}', 10.0)
        try:
            out, bad = render_overlay(bgr, scene, mouth_offset, self.p['overlay_sigma'])
        except Exception as exc:   # a drawing failure must not stop the node
            self._warn('overlay', f'overlay not drawn: {type(exc).__name__}: {exc}')
            return
        if bad:
            self._warn('overlay_skip', f'overlay: {len(bad)} item(s) not drawn: '
                       + '; '.join(bad[:3]))
        enc = image_io.overlay_encoding(msg.encoding)
        o = Image(header=msg.header)
        image_io.fill_msg(o, image_io.from_bgr8(out, enc), enc)
        self.pub_overlay.publish(o)

    def _qos_problems(self, topic: str, endpoints) -> List[str]:
        """Why this node's subscription cannot receive from these publishers ([] = it can)."""
        from rclpy.qos import QoSCompatibility, qos_check_compatible
        out = []
        for ep in endpoints:
            try:
                comp, reason = qos_check_compatible(ep.qos_profile, self._sub_qos[topic])
            except Exception:  # pragma: no cover - rmw without the check
                continue
            if comp == QoSCompatibility.ERROR:
                out.append(f'{ep.node_namespace.rstrip("/")}/{ep.node_name} '
                           f'({str(reason).strip().rstrip(";")})')
        return out

    def _watchdog(self):
        now = time.monotonic()
        for topic in ('sound_sources', 'faces', 'image', 'camera_info'):
            name = self.resolve_topic_name(topic)
            pubs = self.get_publishers_info_by_topic(name)
            if not pubs or now - self.rx.get(topic, 0.0) <= 5.0:
                continue
            bad = self._qos_problems(topic, pubs)
            if bad:
                param = 'reliability' if topic in ('sound_sources', 'faces') else \
                    'image_reliability'
                self._warn(f'qos:{topic}', (
                    f"'{name}': QoS mismatch, nothing can arrive from {'; '.join(bad)} "
                    f"(this subscription: {describe_qos(self._sub_qos[topic])}; see the "
                    f"{param} parameter)"), period=30.0)
                continue
            why = 'QoS is compatible: the publishers publish nothing'
            if topic == 'sound_sources':
                why = ("QoS is compatible: sbm_localizer publishes sound_sources only for "
                       "windows with an active source and, with a model in degrees, only once "
                       "it has received camera_info (its log says which)")
            self._warn(f'idle:{topic}', f"'{name}' has {len(pubs)} publisher(s) but nothing "
                       f"arrived for 5 s: {why}", period=30.0, info=True)

    # ------------------------------------------------------------------ audio (capture)
    def _on_audio_info(self, msg):
        with self._lock:
            self.audio_info = msg
            if self.recording is not None:
                self.recording.reset_decoder()

    def _audio_format(self):
        """(rate, channels, fmt) or an error string."""
        return cap.audio_format(self.audio_info, self.p['sample_rate'],
                                str(self.p['sample_format']), SAMPLE_FORMATS)

    def _on_audio(self, msg):
        arrival = time.monotonic_ns()
        self.audio_rx = time.monotonic()
        stamp = stamp_to_ns(msg.header.stamp)
        with self._lock:
            fmt = self._audio_format()
            if stamp and not isinstance(fmt, str):
                self.timeline.add(arrival, stamp,
                                  cap.chunk_end_ns(stamp, len(msg.audio.data), fmt))
            rec = self.recording
            if rec is None or rec.done:
                return
            rec.add(msg.audio.data, stamp, fmt, self.timeline)
            done = rec.done
        if done:
            self._wake()

    def _wake(self) -> None:
        """Complete the Future the capture coroutine awaits (new audio or image)."""
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(True)

    async def _wait_until(self, cond: Callable[[], bool], timeout: float) -> bool:
        """Await ``cond()`` for at most ``timeout`` s (steady clock) without blocking the
        executor; returns ``cond()``. Each wait is an rclpy Future completed by the next image
        or finished recording (``_wake``) or by a one-shot timer at the deadline."""
        deadline = time.monotonic() + timeout
        while not cond():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            fut = Future()

            def expire(f=fut):
                if not f.done():
                    f.set_result(False)
            self._waiter = fut
            timer = self.create_timer(left, expire, callback_group=self.wait_group,
                                      clock=self._steady)
            try:
                await fut
            finally:
                self.destroy_timer(timer)
                if self._waiter is fut:
                    self._waiter = None
        return True

    # ------------------------------------------------------------------ capture service
    def _marker_detector(self):
        from sbm_ros.av.marker import MarkerDetector
        key = (self.p['marker_dictionary'], self.p['marker_id'])
        if self._detector_key != key:
            self._detector = MarkerDetector(*key)
            self._detector_key = key
        return self._detector

    async def _find_marker(self):
        """(detection or None, error string or None) on the current image."""
        with self._lock:
            msg, rx = self.image, self.image_rx
        if msg is None:
            return None, "no image received on 'image' yet"
        max_age = self.p['max_image_age']
        if time.monotonic() - rx > max_age:
            # a stream that stalled for a moment (a loaded machine, a camera driver hiccup)
            # should not fail the capture: give it max_image_age to deliver a fresh frame
            await self._wait_until(lambda: self.image_rx > rx, max_age)
            with self._lock:
                msg, rx = self.image, self.image_rx
        why = cap.image_age_problem(time.monotonic() - rx, max_age)
        if why:
            return None, why
        try:
            bgr = self._to_bgr(msg)
        except image_io.ImageError as exc:
            return None, f'cannot read the image: {exc}'
        try:
            det = self._marker_detector().detect(bgr)
        except Exception as exc:
            return None, f'marker detection failed: {exc}'
        if det is None:
            return None, (f"marker {self.p['marker_dictionary']} id {self.p['marker_id']} is "
                          'not visible in the current image')
        return det, None

    def _refuse(self, response, why):
        self.get_logger().warning(f'capture refused: {why}')
        return _answer(response, False, why)

    async def _srv_capture(self, request, response):
        if self.capturing:     # checked and set before any await: one capture at a time
            return self._refuse(response, 'a capture is already running: request again when '
                                'it has answered')
        self.capturing = True
        try:
            why = await self._capture(response)
        finally:
            self.capturing = False
        return self._refuse(response, why) if why else response

    def _capture_inputs(self):
        """(camera_info, audio format) for a capture, or why it cannot start."""
        if AudioDataStamped is None:
            return 'audio_common_msgs is not installed'
        with self._lock:
            ci, ci_why = self.camera_info, self.camera_problem
            fmt = self._audio_format()
            audio_age = time.monotonic() - self.audio_rx if self.audio_rx else None
        if ci_why:
            return f"the newest 'camera_info' is unusable: {ci_why}"
        if ci is None:
            return "no camera_info received on 'camera_info' yet"
        if isinstance(fmt, str):
            return fmt
        return cap.audio_age_problem(audio_age, self.p['audio_timeout']) or (ci, fmt)

    async def _record(self, rate: int):
        """(the recording, why it failed or None): the next capture_duration s of audio."""
        dur = float(self.p['capture_duration'])
        rec = Recording(int(round(dur * rate)), time.monotonic_ns())
        with self._lock:
            self.recording = rec
        try:
            ok = await self._wait_until(lambda: rec.done,
                                        dur + float(self.p['audio_timeout']))
        finally:
            with self._lock:
                if self.recording is rec:
                    self.recording = None
        if rec.error:
            return rec, rec.error
        return rec, (None if ok else rec.shortfall(rate, dur))

    async def _capture(self, response) -> Optional[str]:
        """One capture: the refusal reason, or None with ``response`` filled in."""
        ready = self._capture_inputs()
        if isinstance(ready, str):
            return ready
        ci, (rate, _, _) = ready
        det0, err = await self._find_marker()
        if err:
            return err
        with self._lock:
            img = self.image
        why = cap.image_size_problem((img.width, img.height), (ci.width, ci.height))
        if why:
            return why
        rec, why = await self._record(rate)
        if why:
            return why
        x = rec.samples()
        det1, err = await self._find_marker()
        if err:
            return f'after recording: {err}'
        dbfs = cap.rms_dbfs(x)
        why = (cap.marker_motion_problem(det0, det1, self.p['max_marker_motion_px'])
               or cap.level_problem(dbfs, self.p['min_rms_dbfs']))
        if why:
            return why
        camera = cap.camera_dict(ci.width, ci.height, ci.k, ci.d, ci.distortion_model,
                                 ci.header.frame_id)
        res = cap.append_capture(self.dataset_dir(), x, rate, det0, det1, camera, dbfs,
                                 rec.delay_ns)
        if isinstance(res, str):
            return res
        _answer(response, True, res.message)
        self.get_logger().info(f'captured {res.message}')
        return None

    # ------------------------------------------------------------------ training
    def _status(self, text, error=False):
        # one call site per severity: rclpy refuses two severities from the same line
        if error:
            self.get_logger().error(text)
        else:
            self.get_logger().info(text)
        self.pub_status.publish(String(data=text))

    def _srv_train(self, request, response):
        with self._lock:
            run = self.train_run
            if run is not None:
                return _answer(response, False, f'training already running (pid {run.pid}, '
                               f'{run.elapsed():.0f} s)')
            root = self.dataset_dir()
            n = cap.count_samples(root)
            if n < 2:
                why = f'{root!r} holds {n} sample(s): capture more with ~/capture_sample first'
                self.get_logger().warning(f'train refused: {why}')
                return _answer(response, False, why)
            out = str(self.p['model_output']).strip()
            out = os.path.abspath(os.path.expanduser(out)) if out else default_model_path(root)
            run = TrainingRun(root, out, self.p['train_max_iter'], self.p['train_components'])
            try:
                run.start()
            except OSError as exc:
                return _answer(response, False, f'cannot start training: {exc}')
            self.train_run = run
        _answer(response, True, f'training started on {n} samples in {root} (pid {run.pid}); '
                f'model -> {out}')
        self._status(response.message)
        return response

    def _train_tick(self):
        with self._lock:
            run = self.train_run
            res = run.poll() if run is not None else None
            if res is None:
                return
            self.train_run = None
        if not res.ok:
            self._status(f'training failed after {res.seconds:.1f} s: {res.message} (log '
                         f'{res.log})', error=True)
            return
        self._status(f'training finished in {res.seconds:.1f} s: {res.message}')
        self._handoff(res.model, time.monotonic())

    def _handoff(self, path, t0):
        self.handoff.send(path, self.p['localizer_node'], self.p['handoff_timeout'], t0=t0)

    def destroy_node(self):
        with self._lock:
            run, self.train_run = self.train_run, None
            if self.recording is not None:
                self.recording.fail('node shutting down')
        self._wake()
        if run is not None:
            run.stop()
        return super().destroy_node()


def main(args=None):
    from .common import run
    # single-threaded on purpose: see "Threading" in the module docstring (ros2/rclpy#1452)
    return run(AvFusionNode, args=args, executor_factory=SingleThreadedExecutor)


if __name__ == '__main__':
    sys.exit(main())
