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
driver's clock and latency. The request time is taken in the audio stream's timeline: the node
keeps the smallest (arrival time - stamp of the chunk's last sample) over the chunks of the last
10 s, i.e. the offset between its steady clock and the audio clock plus the smallest delivery
latency, and maps the request time through it. Audio from another machine's unsynchronised
clock, or a driver whose clock lags or leads, is recorded from the request on; chunks queued
from before the request (a burst from the driver, a busy node) are skipped, and the chunk under
way at the request is trimmed to it. Audio acquired at most the smallest delivery latency before
the request (milliseconds for a local driver) cannot be told apart and may be included. A
discontinuity in the stamps (restarted driver, bag loop) restarts the estimate; unstamped chunks
(stamp 0) are taken by arrival.

Threading: a SingleThreadedExecutor. Callbacks never block: ``~/capture_sample`` is a coroutine
(``async def``, awaited by the executor on Humble, Jazzy and Kilted) that awaits rclpy Futures
completed by the audio / image callbacks or by a steady-clock timeout timer, so the
subscriptions keep running while it records; training is a subprocess polled by a timer and the
hand-off uses future callbacks. (rclpy's MultiThreadedExecutor of Humble/Jazzy re-queues tasks
that have not started yet and runs callbacks seconds late on a loaded machine: ros2/rclpy#1452.)
Each stream has its own mutually exclusive callback group and ``~/capture_sample`` another one,
so a pending capture (which holds its group until it answers) never holds back an input.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import threading
import time
from collections import deque
from typing import Callable, List, Optional

import numpy as np
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.task import Future
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import String
from std_srvs.srv import Trigger
from vision_msgs.msg import (Detection2D, Detection2DArray, ObjectHypothesis,
                             ObjectHypothesisWithPose)

from sbm_ros.av import image_io
from sbm_ros.av.fusion import (Face, FaceIdAssigner, MatchConfig, Sound, SpeakingScores,
                               TimedBuffer, check_faces_in_image, covariance_from_flat,
                               match_sources)
from sbm_ros.core.audio_io import SAMPLE_FORMATS as SAMPLE_BYTES
from sbm_ros.core.audio_io import PcmStreamDecoder
from sbm_ros.core.dataset import DatasetError, append_sample
from .common import (SAMPLE_FORMATS, Param, declare_parameters, describe_qos, fraction,
                     latched_qos, non_negative, one_of, positive, stamp_to_ns, stream_qos)

try:  # capture needs audio_common_msgs; fusion works without it
    from audio_common_msgs.msg import AudioDataStamped, AudioInfo
except ImportError:  # pragma: no cover - depends on the install
    AudioDataStamped = AudioInfo = None

TARGET_NAMES = ['u_px', 'v_px']
RAW_CODINGS = ('', 'wave', 'wav', 'raw', 'pcm', 's16le', 'pcm_s16le')


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
    Param('handoff_timeout', 10.0, 'seconds to wait for the localizer set_parameters service',
          positive),
]


def _t(stamp) -> float:
    return stamp_to_ns(stamp) * 1e-9


#: the audio-clock offset is the smallest (arrival - stamp) over this many seconds of chunks
_OFFSET_WINDOW_NS = 10 * 1_000_000_000
#: a chunk whose stamp differs more than this from the previous chunk's end is a discontinuity
#: (restarted driver, bag loop, dropped audio): the offset estimate restarts
_STAMP_JUMP_NS = 500_000_000


class AudioTimeline:
    """Maps this process's steady clock (``time.monotonic_ns``) to the audio stream's stamps.

    ``add`` is given each chunk's arrival time and the stamps of its first and just past its
    last sample; the offset is the smallest ``arrival - end`` over the last ``window_ns``: the
    clock offset plus the smallest delivery latency seen (a queued or late chunk only has a
    larger difference). ``to_audio(t)`` is then the audio stamp of steady time ``t``, at most
    that smallest latency early. Any clock offset works (another machine, a lagging driver).
    """

    def __init__(self, window_ns: int = _OFFSET_WINDOW_NS, jump_ns: int = _STAMP_JUMP_NS):
        self.window_ns = window_ns
        self.jump_ns = jump_ns
        self._mins = deque()      # (arrival_ns, offset_ns), offsets increasing: sliding minimum
        self._last_end: Optional[int] = None
        self.resets = 0

    def add(self, arrival_ns: int, stamp_ns: int, end_ns: int) -> None:
        if self._last_end is not None and abs(stamp_ns - self._last_end) > self.jump_ns:
            self._mins.clear()
            self.resets += 1
        self._last_end = end_ns
        off = arrival_ns - end_ns
        while self._mins and self._mins[-1][1] >= off:
            self._mins.pop()
        self._mins.append((arrival_ns, off))
        while self._mins[0][0] < arrival_ns - self.window_ns:
            self._mins.popleft()

    @property
    def offset_ns(self) -> Optional[int]:
        return self._mins[0][1] if self._mins else None

    def to_audio(self, steady_ns: int) -> Optional[int]:
        """The audio stamp of steady time ``steady_ns`` (None before any stamped chunk)."""
        return None if not self._mins else steady_ns - self._mins[0][1]


class _Recording:
    """The audio of one capture: ``n_samples`` samples acquired after steady time
    ``start_steady_ns`` (the request); ``delay_ns``: its first sample's stamp minus the request
    time in the audio timeline (None for unstamped audio)."""

    def __init__(self, n_samples: int, start_steady_ns: int = 0):
        self.n_samples = n_samples
        self.start_steady_ns = start_steady_ns
        self.delay_ns: Optional[int] = None    # first recorded sample after the request
        self.started = False
        self.chunks: List[np.ndarray] = []
        self.count = 0
        self.stale = 0
        self.trimmed = 0
        self.done = False
        self.error: Optional[str] = None


class AvFusionNode(Node):

    def __init__(self, **kwargs):
        super().__init__('av_fusion', **kwargs)
        self.p = declare_parameters(self, PARAMS)
        self.add_on_set_parameters_callback(self._on_params)
        self._lock = threading.RLock()
        self._apply_params()
        self.bridge = image_io.try_cv_bridge() if self.p['use_cv_bridge'] else None

        self.faces_buf: TimedBuffer = TimedBuffer(self.p['history'])
        self.sounds_buf: TimedBuffer = TimedBuffer(self.p['history'])
        self.ids = FaceIdAssigner()
        self.camera_info: Optional[CameraInfo] = None
        self.image: Optional[Image] = None
        self.image_rx = 0.0           # monotonic arrival time of self.image
        self.image_dirty = False
        self.last_overlay = 0.0
        self.rx = {}                  # topic -> monotonic time of the last message
        self._warned = {}             # throttle key -> monotonic time of the last warning
        self.audio_info = None
        self.audio_rx = 0.0
        self.decoder = None
        self.timeline = AudioTimeline()
        self.recording: Optional[_Recording] = None
        self._waiter: Optional[Future] = None      # awaited by ~/capture_sample
        self._steady = Clock(clock_type=ClockType.STEADY_TIME)
        self.train_proc: Optional[subprocess.Popen] = None
        self.train_out = ''
        self.train_log = ''
        self.train_t0 = 0.0
        self.handoff_client = None
        self.handoff_name = ''
        self._detector = None
        self._detector_key = None
        # import OpenCV/aruco now, not in the first capture (an import inside a callback that
        # holds self._lock would stall every other callback)
        try:
            self._marker_detector()
        except Exception as exc:
            self.get_logger().warning(f'marker detection unavailable, captures will be refused: '
                                      f'{exc}')

        # Callback groups (one executor thread, see the module docstring): a coroutine holds
        # its group until it returns, so ~/capture_sample (which awaits audio and images) has a
        # group of its own, as has each input stream and the timers (+ ~/train), and its
        # timeout timers another one: a pending capture never holds back a callback it waits
        # for. Shared state is still guarded by self._lock (cheap, uncontended).
        sounds_g, faces_g, video_g, audio_g = (MutuallyExclusiveCallbackGroup()
                                               for _ in range(4))
        self.timer_group = MutuallyExclusiveCallbackGroup()
        self.capture_group = MutuallyExclusiveCallbackGroup()
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

        audio_qos = stream_qos(self.p['reliability'], 200)
        if AudioDataStamped is not None:
            self.create_subscription(AudioDataStamped, 'audio/audio_stamped', self._on_audio,
                                     audio_qos, callback_group=audio_g)
            self.create_subscription(AudioInfo, 'audio/audio_info', self._on_audio_info,
                                     latched_qos(), callback_group=audio_g)
        else:
            self.get_logger().warning('audio_common_msgs is not installed: ~/capture_sample '
                                      'will refuse every capture (fusion works)')
        self.create_service(Trigger, '~/capture_sample', self._srv_capture,
                            callback_group=self.capture_group)
        tg = self.timer_group
        self.create_service(Trigger, '~/train', self._srv_train, callback_group=tg)
        self.create_timer(0.02, self._overlay_tick, callback_group=tg)
        self.create_timer(0.25, self._train_tick, callback_group=tg)
        self.create_timer(5.0, self._watchdog, callback_group=tg)
        self.get_logger().info(
            f"av_fusion ready: sound_sources/faces/audio {describe_qos(rel)}, image "
            f"{describe_qos(img_qos)}, image conversion "
            f"{'cv_bridge' if self.bridge else 'built-in'}; dataset_dir "
            f"{self.dataset_dir()!r}, marker {self.p['marker_dictionary']} id "
            f"{self.p['marker_id']}")

    # ------------------------------------------------------------------ parameters
    def _apply_params(self):
        p = self.p
        self.match_cfg = MatchConfig(gate=p['gate'], mouth_offset=p['mouth_offset'],
                                     face_sigma=p['face_sigma'],
                                     min_confidence=p['min_source_confidence']).validate()
        self.scores = SpeakingScores(attack_s=p['attack'], release_s=p['release'],
                                     on_threshold=p['on_threshold'],
                                     off_threshold=p['off_threshold'])

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
        if msg.width <= 0 or msg.height <= 0 or not any(msg.k):
            self.get_logger().warning(
                f'camera_info with size {msg.width}x{msg.height} and K={list(msg.k)} ignored '
                '(uncalibrated camera?)', throttle_duration_sec=10.0)
            return
        with self._lock:
            self.camera_info = msg

    def _on_image(self, msg: Image):
        self._note('image')
        with self._lock:
            self.image = msg
            self.image_rx = time.monotonic()
            self.image_dirty = True
        self._wake()

    def _parse_faces(self, msg: Detection2DArray):
        """[(Face with a stable id, original Detection2D)] of the usable detections."""
        faces, orig = [], {}
        for d in msg.detections:
            score = float(d.results[0].hypothesis.score) if d.results else 1.0
            f = Face(str(d.id), float(d.bbox.center.position.x),
                     float(d.bbox.center.position.y), float(d.bbox.size_x),
                     float(d.bbox.size_y), score)
            faces.append(f)
            orig[id(f)] = d
        size = self._image_size()
        faces, bad = check_faces_in_image(faces, *(size or (10 ** 9, 10 ** 9)))
        if bad:
            where = f' of the {size[0]}x{size[1]} image' if size else ''
            self.get_logger().warning(
                f"'faces' ({msg.header.frame_id!r}): ignored {len(bad)} detection(s){where}: "
                f"{'; '.join(bad[:3])} -- from another camera or image size?",
                throttle_duration_sec=5.0)
        ci = self.camera_info
        if (self.p['check_frame_id'] and ci is not None and ci.header.frame_id
                and msg.header.frame_id and ci.header.frame_id != msg.header.frame_id):
            self.get_logger().warning(
                f"'faces' frame {msg.header.frame_id!r} differs from the camera_info frame "
                f"{ci.header.frame_id!r}: are the faces from another camera?",
                throttle_duration_sec=10.0)
        dets = [orig[id(f)] for f in faces]
        return list(zip(self.ids.assign(faces), dets))

    def _on_faces(self, msg: Detection2DArray):
        self._note('faces')
        t = _t(msg.header.stamp)
        with self._lock:
            pairs = self._parse_faces(msg)
            faces = [f for f, _ in pairs]
            if self.faces_buf.add(t, (msg.header, faces)):
                self._time_jump('faces')
            if not msg.detections:
                self.get_logger().info("'faces': empty detection list (nobody in view?)",
                                       throttle_duration_sec=30.0)
            out = Detection2DArray(header=msg.header)
            for f, d in pairs:
                s = self.scores.score(f.id, t)
                talk = self.scores.is_speaking(f.id, t)
                det = Detection2D(header=msg.header, id=f.id, bbox=d.bbox)
                hyp = ObjectHypothesisWithPose(hypothesis=ObjectHypothesis(
                    class_id='speaking' if talk else 'silent', score=float(s)))
                hyp.pose.pose.position.x = f.u
                hyp.pose.pose.position.y = f.v + self.match_cfg.mouth_offset * f.h
                det.results = [hyp] + list(d.results)
                out.detections.append(det)
        self.pub_speaking.publish(out)

    def _time_jump(self, what):
        self.get_logger().warning(f"'{what}' stamps jumped backwards (bag loop / sim time "
                                  'reset?): history and speaking scores cleared')
        self.faces_buf.clear()
        self.sounds_buf.clear()
        self.scores.reset()

    def _parse_sounds(self, msg: Detection2DArray) -> List[Sound]:
        out = []
        for k, d in enumerate(msg.detections):
            u, v = float(d.bbox.center.position.x), float(d.bbox.center.position.y)
            cov, conf = None, 1.0
            if d.results:
                conf = float(d.results[0].hypothesis.score)
                cov = covariance_from_flat(d.results[0].pose.covariance)
            if cov is None:   # bbox = 2-sigma box (4 sigma wide)
                sx, sy = max(float(d.bbox.size_x), 1.0) / 4, max(float(d.bbox.size_y), 1.0) / 4
                cov = np.diag([sx * sx, sy * sy])
            if not (math.isfinite(u) and math.isfinite(v)):
                self.get_logger().warning("'sound_sources': non-finite position ignored",
                                          throttle_duration_sec=10.0)
                continue
            out.append(Sound(str(d.id) or f'source_{k}', u, v, cov, conf))
        return out

    def _on_sounds(self, msg: Detection2DArray):
        self._note('sound_sources')
        t = _t(msg.header.stamp)
        with self._lock:
            sounds = self._parse_sounds(msg)
            if self.sounds_buf.add(t, (msg.header, sounds)):
                self._time_jump('sound_sources')
            hit = self.faces_buf.closest(t, self.p['time_tolerance'])
            if hit is None:
                if len(self.faces_buf):
                    ft = self.faces_buf.latest()[0]
                    self.get_logger().warning(
                        f"no 'faces' message within {self.p['time_tolerance']} s of the sound "
                        f"stamp {t:.3f} (newest faces stamp {ft:.3f}, difference "
                        f"{t - ft:+.3f} s): clocks out of sync or time_tolerance too small?",
                        throttle_duration_sec=5.0)
                self.scores.update(t, {}, [])
                return
            _, (fheader, faces) = hit
            if (self.p['check_frame_id'] and msg.header.frame_id and fheader.frame_id
                    and msg.header.frame_id != fheader.frame_id):
                self.get_logger().warning(
                    f"'sound_sources' frame {msg.header.frame_id!r} differs from 'faces' frame "
                    f"{fheader.frame_id!r}: not matched (both must be pixels of the same "
                    "camera; set check_frame_id false to override)", throttle_duration_sec=5.0)
                return
            matches = match_sources(sounds, faces, self.match_cfg)
            evidence = {m.face.id: float(np.clip(m.sound.confidence, 0, 1)) for m in matches}
            self.scores.update(t, evidence, [f.id for f in faces])
        self.get_logger().debug(
            f'sound t={t:.3f}: {len(sounds)} source(s), {len(faces)} face(s), matches '
            + ', '.join(f'{m.sound.id}->{m.face.id} (d2 {m.d2:.2f})' for m in matches))

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
            t = _t(msg.header.stamp)
            tol = self.p['time_tolerance']
            fh = self.faces_buf.closest(t, tol)
            faces = fh[1][1] if fh else []
            sh = self.sounds_buf.closest(t, max(tol, 0.5))
            sounds = sh[1][1] if sh else []
            scores = {f.id: self.scores.score(f.id, t) for f in faces}
            speaking = {f.id for f in faces if self.scores.is_speaking(f.id, t)}
        if self.pub_overlay.get_subscription_count() == 0:
            return
        try:
            bgr = self._to_bgr(msg)
        except image_io.ImageError as exc:
            self._warn(f'img:{str(exc)[:24]}', f"'image' not drawn: {exc}")
            return
        size = self._image_size()
        if size is not None and (msg.width, msg.height) != tuple(size):
            self.get_logger().warning(
                f"'image' is {msg.width}x{msg.height} but camera_info says {size[0]}x{size[1]}",
                throttle_duration_sec=10.0)
        mouths = [tuple(f.mouth(self.match_cfg.mouth_offset)) for f in faces]
        out = image_io.draw_overlay(bgr, faces, sounds, scores, speaking,
                                    n_sigma=self.p['overlay_sigma'], mouth=mouths)
        enc = image_io.overlay_encoding(msg.encoding)
        o = Image(header=msg.header)
        image_io.fill_msg(o, image_io.from_bgr8(out, enc), enc)
        self.pub_overlay.publish(o)

    def _warn(self, key: str, text: str, period: float = 5.0, info: bool = False):
        """A warning (or info) throttled per ``key`` (rclpy throttles per call site only)."""
        now = time.monotonic()
        if now - self._warned.get(key, -1e9) >= period:
            self._warned[key] = now
            if info:
                self.get_logger().info(text)
            else:
                self.get_logger().warning(text)

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
            self.decoder = None

    def _audio_format(self):
        """(rate, channels, fmt) or an error string."""
        info = self.audio_info
        if info is None:
            if self.p['sample_rate'] > 0:
                return int(self.p['sample_rate']), 2, str(self.p['sample_format'])
            return "no 'audio/audio_info' received (and parameter sample_rate is 0)"
        coding = str(info.coding_format).strip().lower()
        if coding not in RAW_CODINGS:
            return (f"audio coding_format {info.coding_format!r} is not raw PCM (e.g. mp3): "
                    "configure the audio driver for raw/wave")
        fmt = str(info.sample_format).strip().upper() or 'S16LE'
        if fmt not in SAMPLE_FORMATS:
            return f'audio sample_format {info.sample_format!r} not one of {SAMPLE_FORMATS}'
        if info.channels != 2:
            return f'binaural capture needs 2 audio channels, audio_info says {info.channels}'
        if info.sample_rate <= 0:
            return f'audio_info sample_rate {info.sample_rate} is invalid'
        return int(info.sample_rate), 2, fmt

    def _on_audio(self, msg):
        arrival = time.monotonic_ns()
        self.audio_rx = time.monotonic()
        stamp = stamp_to_ns(msg.header.stamp)
        with self._lock:
            fmt = self._audio_format()
            if stamp and not isinstance(fmt, str):
                frames = len(msg.audio.data) // (SAMPLE_BYTES.get(fmt[2], 2) * fmt[1])
                self.timeline.add(arrival, stamp, stamp + frames * 1_000_000_000 // fmt[0])
            rec = self.recording
            if rec is None or rec.done:
                return
            self._record(rec, msg, stamp, fmt)
            done = rec.done
        if done:
            self._wake()

    def _record(self, rec: _Recording, msg, stamp: int, fmt) -> None:
        """Append the chunk's audio acquired after the request to ``rec`` (under self._lock)."""
        if isinstance(fmt, str):
            rec.error, rec.done = fmt, True
            return
        if self.decoder is None:
            self.decoder = PcmStreamDecoder(fmt[1], fmt[2])
        try:
            x = self.decoder.decode(bytes(msg.audio.data))
        except ValueError as exc:
            rec.error, rec.done = f'audio chunk cannot be decoded: {exc}', True
            return
        # Record the audio ACQUIRED after the request, not what happens to arrive: chunks
        # still queued from before it (a busy node, a burst from the driver) would put audio
        # from before the loudspeaker was placed into the dataset. The request time is mapped
        # into the audio clock (self.timeline), which may lag or lead this node's clock.
        if not rec.started and stamp:
            start = self.timeline.to_audio(rec.start_steady_ns)
            skip = 0
            if start is not None and start > stamp:
                skip = -(-(start - stamp) * fmt[0] // 1_000_000_000)   # samples, rounded up
                if skip >= len(x):
                    rec.stale += 1
                    return
                x = x[skip:]
                rec.trimmed = skip
            if start is not None and len(x):
                # first recorded sample's stamp - the request time in the audio timeline
                rec.delay_ns = stamp + skip * 1_000_000_000 // fmt[0] - start
        need = rec.n_samples - rec.count
        if len(x):
            rec.started = True
            rec.chunks.append(x[:need])
            rec.count += min(len(x), need)
        if rec.count >= rec.n_samples:
            rec.done = True

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
        """(detection or None, error string or None, image header) on the current image."""
        with self._lock:
            msg, rx = self.image, self.image_rx
        if msg is None:
            return None, "no image received on 'image' yet", None
        max_age = self.p['max_image_age']
        age = time.monotonic() - rx
        if age > max_age:
            # a stream that stalled for a moment (a loaded machine, a camera driver hiccup)
            # should not fail the capture: give it max_image_age to deliver a fresh frame
            await self._wait_until(lambda: self.image_rx > rx, max_age)
            with self._lock:
                msg, rx = self.image, self.image_rx
            age = time.monotonic() - rx
        if age > max_age:
            return None, (f"the current image is {age:.1f} s old (max_image_age "
                          f"{max_age} s): is the camera running?"), None
        try:
            bgr = self._to_bgr(msg)
        except image_io.ImageError as exc:
            return None, f'cannot read the image: {exc}', None
        try:
            det = self._marker_detector().detect(bgr)
        except Exception as exc:
            return None, f'marker detection failed: {exc}', None
        if det is None:
            return None, (f"marker {self.p['marker_dictionary']} id {self.p['marker_id']} is "
                          'not visible in the current image'), msg.header
        return det, None, msg.header

    def _refuse(self, response, why):
        self.get_logger().warning(f'capture refused: {why}')
        response.success = False
        response.message = why
        return response

    def _camera_dict(self, ci: CameraInfo) -> dict:
        return {'width': int(ci.width), 'height': int(ci.height),
                'K': [float(v) for v in ci.k], 'D': [float(v) for v in ci.d],
                'distortion_model': str(ci.distortion_model),
                'frame_id': str(ci.header.frame_id)}

    async def _srv_capture(self, request, response):
        if AudioDataStamped is None:
            return self._refuse(response, 'audio_common_msgs is not installed')
        with self._lock:
            ci = self.camera_info
            fmt = self._audio_format()
            audio_age = time.monotonic() - self.audio_rx if self.audio_rx else None
        if ci is None:
            return self._refuse(response, "no camera_info received on 'camera_info' yet")
        if isinstance(fmt, str):
            return self._refuse(response, fmt)
        if audio_age is None:
            return self._refuse(response, "no audio received on 'audio/audio_stamped' yet")
        if audio_age > self.p['audio_timeout']:
            return self._refuse(response, f'no audio for {audio_age:.1f} s: is the capture '
                                'node running?')
        det0, err, header = await self._find_marker()
        if err:
            return self._refuse(response, err)
        with self._lock:
            img = self.image
        if (img.width, img.height) != (ci.width, ci.height):
            return self._refuse(response, f'image {img.width}x{img.height} and camera_info '
                                f'{ci.width}x{ci.height} differ')
        rate = fmt[0]
        dur = float(self.p['capture_duration'])
        rec = _Recording(int(round(dur * rate)), time.monotonic_ns())
        with self._lock:
            self.decoder = None
            self.recording = rec
        try:
            ok = await self._wait_until(lambda: rec.done,
                                        dur + float(self.p['audio_timeout']))
        finally:
            with self._lock:
                if self.recording is rec:
                    self.recording = None
        if rec.error:
            return self._refuse(response, rec.error)
        if not ok:
            stale = (f' ({rec.stale} chunk(s) acquired before the request were skipped)'
                     if rec.stale else '')
            return self._refuse(response, f'audio stopped: got {rec.count / rate:.2f} s of '
                                f'{dur:.2f} s within the timeout{stale}')
        x = np.concatenate(rec.chunks, axis=0)[:rec.n_samples]
        det1, err, _ = await self._find_marker()
        if err:
            return self._refuse(response, f'after recording: {err}')
        moved = math.hypot(det1.u - det0.u, det1.v - det0.v)
        if moved > self.p['max_marker_motion_px']:
            lim = self.p['max_marker_motion_px']
            return self._refuse(response, f'the marker moved {moved:.1f} px during the '
                                f'recording (max_marker_motion_px {lim}): hold the '
                                'loudspeaker still')
        rms = float(np.sqrt(np.mean(x ** 2)))
        dbfs = 20 * math.log10(max(rms, 1e-12))
        if dbfs < self.p['min_rms_dbfs']:
            return self._refuse(response, f"audio too quiet: RMS {dbfs:.1f} dBFS < "
                                f"min_rms_dbfs {self.p['min_rms_dbfs']:.1f}: is the "
                                'loudspeaker playing white noise?')
        u, v = 0.5 * (det0.u + det1.u), 0.5 * (det0.v + det1.v)
        root = self.dataset_dir()
        try:
            name = append_sample(root, x, rate, (u, v), TARGET_NAMES,
                                 camera=self._camera_dict(ci))
        except (DatasetError, OSError, ValueError) as exc:
            return self._refuse(response, f'cannot write to {root!r}: {exc}')
        n = self._count_samples(root)
        response.success = True
        since = (f' from {rec.delay_ns * 1e-9:.3f} s after the request'
                 if rec.delay_ns is not None else '')
        response.message = (f'{name}: marker at ({u:.1f}, {v:.1f}) px, RMS {dbfs:.1f} dBFS, '
                            f'{len(x) / rate:.2f} s{since}; {n} sample(s) in {root}')
        self.get_logger().info(f'captured {response.message}')
        return response

    @staticmethod
    def _count_samples(root) -> int:
        try:
            with open(os.path.join(root, 'targets.csv')) as fh:
                return max(0, sum(1 for ln in fh if ln.strip()) - 1)
        except OSError:
            return 0

    # ------------------------------------------------------------------ training
    def _status(self, text, error=False):
        (self.get_logger().error if error else self.get_logger().info)(text)
        self.pub_status.publish(String(data=text))

    def _srv_train(self, request, response):
        with self._lock:
            if self.train_proc is not None:
                response.success = False
                response.message = (f'training already running (pid {self.train_proc.pid}, '
                                    f'{time.monotonic() - self.train_t0:.0f} s)')
                return response
            root = self.dataset_dir()
            n = self._count_samples(root)
            if n < 2:
                response.success = False
                response.message = (f'{root!r} holds {n} sample(s): capture more with '
                                    '~/capture_sample first')
                self.get_logger().warning(f'train refused: {response.message}')
                return response
            out = str(self.p['model_output']).strip()
            if out:
                out = os.path.abspath(os.path.expanduser(out))
            else:
                stamp = time.strftime('%Y%m%d_%H%M%S')
                out = os.path.join(root, 'models', f'model_{stamp}_{os.getpid()}_'
                                   f'{int(time.time() * 1000) % 1000:03d}.npz')
            os.makedirs(os.path.dirname(out) or '.', exist_ok=True)
            cmd = [sys.executable, '-m', 'sbm_ros.apps.cli', root, '-o', out,
                   '--max-iter', str(int(self.p['train_max_iter']))]
            k = int(self.p['train_components'])
            cmd += ['-K', str(k)] if k > 0 else ['--auto-components']
            env = dict(os.environ)
            pkg_parent = os.path.dirname(os.path.dirname(os.path.dirname(
                os.path.abspath(__file__))))
            env['PYTHONPATH'] = os.pathsep.join(
                [pkg_parent] + [p for p in env.get('PYTHONPATH', '').split(os.pathsep) if p])
            self.train_log = out + '.log'
            try:
                with open(self.train_log, 'w') as logf:
                    self.train_proc = subprocess.Popen(cmd, stdout=logf,
                                                       stderr=subprocess.STDOUT, env=env)
            except OSError as exc:
                response.success = False
                response.message = f'cannot start training: {exc}'
                return response
            self.train_out = out
            self.train_t0 = time.monotonic()
        response.success = True
        response.message = (f'training started on {n} samples in {root} (pid '
                            f'{self.train_proc.pid}); model -> {out}')
        self._status(response.message)
        return response

    def _train_tick(self):
        with self._lock:
            proc = self.train_proc
            if proc is None or proc.poll() is None:
                return
            self.train_proc = None
            rc, out, logp = proc.returncode, self.train_out, self.train_log
            dt = time.monotonic() - self.train_t0
        try:
            with open(logp) as fh:
                lines = [ln.strip() for ln in fh if ln.strip()]
        except OSError:
            lines = []
        if rc != 0 or not os.path.exists(out):
            tail = lines[-1] if lines else f'exit code {rc}'
            self._status(f'training failed after {dt:.1f} s: {tail} (log {logp})', error=True)
            return
        summary = next((ln for ln in reversed(lines) if 'wrote' in ln), f'wrote {out}')
        self._status(f'training finished in {dt:.1f} s: {summary}')
        self._handoff(out, time.monotonic())

    def _handoff(self, path, t0):
        name = str(self.p['localizer_node']).strip().rstrip('/')
        if not name:
            self._status(f'model {path} ready; localizer_node is empty, not handed over')
            return
        srv = f'{name}/set_parameters'
        from rcl_interfaces.srv import SetParameters
        if self.handoff_client is None or self.handoff_name != srv:
            if self.handoff_client is not None:
                self.destroy_client(self.handoff_client)
            self.handoff_client = self.create_client(SetParameters, srv,
                                                     callback_group=self.timer_group)
            self.handoff_name = srv
        cli = self.handoff_client
        full = self.resolve_service_name(srv)
        target = full[:-len('/set_parameters')]
        if not cli.service_is_ready():
            if time.monotonic() - t0 > self.p['handoff_timeout']:
                self._status(f"localizer service {full!r} not available after "
                             f"{self.p['handoff_timeout']} s: set model_path:={path} by hand",
                             error=True)
                return
            timer = None

            def retry():
                self.destroy_timer(timer)
                self._handoff(path, t0)
            timer = self.create_timer(0.5, retry, callback_group=self.timer_group)
            return
        from rclpy.parameter import Parameter
        req = SetParameters.Request(
            parameters=[Parameter('model_path', Parameter.Type.STRING, path)
                        .to_parameter_msg()])
        fut = cli.call_async(req)   # never waited on: the result arrives in the callback

        def done(f):
            try:
                res = f.result().results[0]
            except Exception as exc:
                self._status(f'setting model_path on {target} failed: {exc}',
                             error=True)
                return
            if res.successful:
                self._status(f'model handed to {target}: model_path={path}')
            else:
                self._status(f'{target} refused model_path={path}: {res.reason}',
                             error=True)
        fut.add_done_callback(done)

    def destroy_node(self):
        with self._lock:
            proc, self.train_proc = self.train_proc, None
            if self.recording is not None:
                self.recording.error = 'node shutting down'
                self.recording.done = True
        self._wake()
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                proc.kill()
        return super().destroy_node()


def main(args=None):
    from .common import run
    # single-threaded on purpose: see "Threading" in the module docstring (ros2/rclpy#1452)
    return run(AvFusionNode, args=args, executor_factory=SingleThreadedExecutor)


if __name__ == '__main__':
    sys.exit(main())
