"""``sbm_calibrator``: calibrate a head by sweeping a loudspeaker through the camera's view.

The owner moves a loudspeaker playing white noise and carrying an ArUco marker slowly through
the camera's view (about three minutes) while this node records continuously:

* subscribes ``audio/audio_stamped`` (audio_common_msgs/AudioDataStamped, stamp = first sample)
  + ``audio/audio_info``, ``image`` (sensor_msgs/Image) and ``camera_info``;
* ``~/start_sweep`` (std_srvs/Trigger) opens ``dataset_dir`` (repairing what a crash left, see
  :mod:`sbm_ros.core.sweep_writer`; samples already there stay and count for the coverage);
  from then on the marker is detected in every image and the audio is cut into segments during
  which the marker moved less than ``tolerance`` (:mod:`sbm_ros.core.sweep`); each accepted
  segment is appended at once to the folder (``sbm-train`` format, azimuth/elevation targets,
  ``camera.json``), each rejected one (marker lost, too fast, too short, too quiet, clipped,
  audio missing) is counted by reason;
* ``~/stop_sweep`` closes the open segment and writes what is left (and trains when
  ``train_on_stop``);
* ``~/train`` fits, in a separate process (``sbm-train``), a one-source model (with the
  cross-validated error, which the model file stores) and then, with ``train_two_source`` (the
  default), a two-source model from the same folder (``train_pairs`` random pairs of its
  recordings mixed, K = ``train_components_two``; the model file stores its covariance factor
  and its error on fresh mixtures); it reports both and hands them to ``localizer_node`` in one
  call (``model_path``, ``model_path_two`` and ``n_sources: 0``, the automatic one/two-source
  mode; :mod:`.model_handoff`). Without ``train_two_source`` the one-source model alone is
  handed over (``model_path``); when only the two-source training fails, it is handed over
  with ``n_sources: 1`` and ``model_path_two`` cleared (no older two-source model stays in use
  next to it);
* ``~/calibration_status`` (std_msgs/String, JSON, transient-local): state, samples, coverage
  and ``complete``, missing cells, rejected segments by reason, held (unsaved) samples and the
  write error, stalled inputs, the training outcome (``train``: both models, the
  cross-validated error of the one-source one, ``two_source`` with the other's figures, the
  hand-over);
* ``calibration_overlay`` (sensor_msgs/Image, camera header): the image with the coverage grid
  (covered cells green, missing red), the marker and the open segment.

``complete`` is true when ``coverage_complete`` (a fraction) of the ``grid_cols`` x
``grid_rows`` cells hold ``min_samples_per_cell`` samples; the status lists the missing cells.

Bad input (each logged as a throttled warning that says what to do; the node keeps running and
nothing already captured is lost): marker flicker and occlusion (bridged up to ``max_gap_s``,
then rejected), the loudspeaker silent or not moving, the camera or the audio stalled, the
dataset folder full or unwritable (samples held in memory, ``max_unsaved`` at most, and written
as soon as it works again; ``~/stop_sweep`` tries once more), a crash (``kill -9``: the folder is
repaired on the next ``~/start_sweep``). Parameters take effect at the next ``~/start_sweep``;
invalid values are refused with the reason.

The logic is in :mod:`sbm_ros.av.sweep_session` (no ROS); this node converts messages, holds
parameters, services and timers, and logs. Single-threaded executor; the image callback only
queues frames, a thread of its own detects the marker (the executor keeps taking messages), a
timer writes the samples and publishes.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections import deque
from typing import Optional

from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import String
from std_srvs.srv import Trigger

from sbm_ros.av import image_io
from sbm_ros.av.training_run import TrainingRun, default_model_path, two_source_path
from .common import (SAMPLE_FORMATS, LogThrottle, Param, declare_parameters, describe_qos,
                     fraction, latched_qos, non_negative, one_of, positive, stamp_to_ns,
                     stream_qos)
from .model_handoff import ModelHandoff

try:
    from audio_common_msgs.msg import AudioDataStamped, AudioInfo
except ImportError:  # pragma: no cover - depends on the install
    AudioDataStamped = AudioInfo = None

__all__ = ['CalibratorNode', 'PARAMS', 'main']

NODE_NAME = 'sbm_calibrator'


def _rel(v):
    return None if str(v).lower().replace('-', '_') in ('reliable', 'best_effort') \
        else "must be 'reliable' or 'best_effort'"


def _at_least_one(v):
    return None if v >= 1 else 'must be >= 1'


def _open_fraction(v):
    return None if 0.0 < v <= 1.0 else 'must be within (0, 1]'


PARAMS = [
    Param('dataset_dir', '~/.ros/sbm_ros/sweep_dataset', 'dataset folder the sweep appends to '
          '(sbm-train format, azimuth/elevation targets); repaired on ~/start_sweep',
          lambda v: None if str(v).strip() else 'must not be empty'),
    # --- segmentation (sbm_ros.core.sweep.SweepParams) -----------------------------------------
    Param('tolerance', 1.0, 'a segment ends when the marker positions of it span more than '
          'this (bounding-box diagonal, in tolerance_unit)', positive),
    Param('tolerance_unit', 'deg', "unit of tolerance: 'deg' (directions) or 'px' (pixels)",
          one_of('deg', 'px')),
    Param('min_duration_s', 0.4, 'shorter segments are rejected (too_fast / marker_lost)',
          positive),
    Param('max_duration_s', 1.0, 'longest segment (a loudspeaker held still gives one sample '
          'every max_duration_s); >= min_duration_s', positive),
    Param('max_gap_s', 0.25, 'marker losses up to this long are bridged (detector flicker); a '
          'longer one ends the segment', non_negative),
    Param('min_rms_dbfs', -50.0, 'segments quieter than this (dB full scale) are rejected '
          '(too_quiet)'),
    Param('clip_level', 0.999, 'a sample at or above this (full scale 1.0) is clipped',
          fraction),
    Param('max_clipped_fraction', 0.001, 'segments with more clipped samples are rejected',
          fraction),
    # --- coverage -------------------------------------------------------------------------------
    Param('grid_cols', 12, 'coverage grid columns over the image', _at_least_one),
    Param('grid_rows', 9, 'coverage grid rows over the image', _at_least_one),
    Param('min_samples_per_cell', 1, 'samples a cell needs to be covered', _at_least_one),
    Param('coverage_complete', 0.95, 'the sweep is complete when this fraction of the cells is '
          'covered (the missing cells are listed in the status)', _open_fraction),
    # --- inputs ---------------------------------------------------------------------------------
    Param('marker_dictionary', 'DICT_4X4_50', 'OpenCV ArUco dictionary of the loudspeaker '
          'marker'),
    Param('marker_id', 7, 'ArUco id of the loudspeaker marker', non_negative),
    Param('image_reliability', 'best_effort', "QoS reliability of the image and camera_info "
          "subscriptions ('best_effort' also receives from reliable publishers)", _rel),
    Param('reliability', 'reliable', 'QoS reliability of the audio subscription', _rel),
    Param('sample_rate', 0, 'audio sample rate used when no audio_info was received (0 = '
          'require audio_info)', non_negative),
    Param('sample_format', 'S16LE', 'audio sample format used when no audio_info was received',
          one_of(*SAMPLE_FORMATS)),
    Param('input_timeout', 2.0, 'warn when no image / no audio arrived for this long during a '
          'sweep (s)', positive),
    Param('max_unsaved', 300, 'samples held in memory while the dataset folder cannot be '
          'written (the oldest are dropped beyond, with a warning)', _at_least_one),
    # --- outputs --------------------------------------------------------------------------------
    Param('overlay_rate', 5.0, 'calibration_overlay images per second at most (0 = none)',
          non_negative),
    Param('status_period', 0.5, 'seconds between ~/calibration_status messages during a sweep',
          positive),
    # --- training -------------------------------------------------------------------------------
    Param('train_on_stop', False, 'start ~/train when ~/stop_sweep ends a sweep'),
    Param('min_train_samples', 20, '~/train refuses a folder with fewer samples',
          _at_least_one),
    Param('train_components', 32, 'GLLiM components K for ~/train (0 = automatic)',
          non_negative),
    Param('train_max_iter', 100, 'EM iterations at most for ~/train', positive),
    Param('train_two_source', True, '~/train also fits a two-source model from the same '
          'dataset (after the one-source one; about as long again, ~1 GB of memory with 10000 '
          'pairs) and hands both to localizer_node (n_sources 0: automatic one/two-source)'),
    Param('train_pairs', 10000, 'two-source training mixtures (random pairs of the recordings)',
          _at_least_one),
    Param('train_components_two', 60, 'GLLiM components K of the two-source model (0 = '
          'automatic)', non_negative),
    Param('model_output', '', "model file written by ~/train ('' = "
          "<dataset_dir>/models/model_<time>.npz, a new file each time)"),
    Param('model_output_two', '', "two-source model file written by ~/train ('' = the "
          "one-source file's name with _2src: <model>_2src.npz)"),
    Param('localizer_node', 'sbm_localizer', "node whose model_path (and model_path_two, "
          "n_sources) is set after training ('' = none)"),
    Param('handoff_timeout', 10.0, 'seconds to wait for the localizer '
          'set_parameters_atomically service', positive),
]


def _answer(response, success: bool, message: str):
    response.success, response.message = success, message
    return response


class CalibratorNode(Node):

    def __init__(self, **kwargs):
        super().__init__(NODE_NAME, **kwargs)
        self.p = declare_parameters(self, PARAMS)
        self.add_on_set_parameters_callback(self._on_params)
        self._lock = threading.RLock()
        self.session = None
        self.state = 'idle'
        self.camera = None           # PinholeCamera of the newest camera_info
        self.camera_json = None
        self.camera_problem = None
        self.audio_info = None
        self.frames = deque(maxlen=120)
        self.frames_dropped = 0
        self.frames_seen = 0
        self.marker_seen = 0
        self.image_rx = 0.0
        self.audio_rx = 0.0
        self.audio_problem = None
        self.last_overlay = 0.0
        self.last_status = 0.0
        self.latest = None           # (header, bgr) of the newest processed frame
        self.train_run: Optional[TrainingRun] = None
        self.train = {'state': 'none'}
        self.last_sweep = None       # status of the last finished sweep
        self._log_throttle = LogThrottle(self.get_logger())     # per-key throttled log
        self._detector = None
        self._detector_key = None
        try:
            self._marker_detector()
        except Exception as exc:  # noqa: BLE001 - reported; ~/start_sweep refuses
            self.get_logger().warning(f'marker detection unavailable: {exc}')
        self._stop = threading.Event()
        self._frames_ready = threading.Event()
        self._detect_thread = threading.Thread(target=self._detect_loop, name='marker',
                                               daemon=True)
        self._detect_thread.start()
        self._init_interfaces()
        self._publish_status()

    # ------------------------------------------------------------------ interfaces
    def _init_interfaces(self):
        # a deep reader queue: every frame counts (a lost frame is a gap in the marker track),
        # and the timer that detects the markers takes them in bursts
        img_qos = stream_qos(self.p['image_reliability'], 30)
        aud_qos = stream_qos(self.p['reliability'], 200)
        self.create_subscription(Image, 'image', self._on_image, img_qos)
        self.create_subscription(CameraInfo, 'camera_info', self._on_camera_info, img_qos)
        if AudioDataStamped is not None:
            self.create_subscription(AudioDataStamped, 'audio/audio_stamped', self._on_audio,
                                     aud_qos)
            self.create_subscription(AudioInfo, 'audio/audio_info', self._on_audio_info,
                                     latched_qos())
        else:
            self.get_logger().warning('audio_common_msgs is not installed: no audio, every '
                                      'segment will be rejected (audio_missing)')
        self.pub_status = self.create_publisher(String, '~/calibration_status', latched_qos())
        self.pub_overlay = self.create_publisher(Image, 'calibration_overlay',
                                                 stream_qos('reliable', 2))
        self.create_service(Trigger, '~/start_sweep', self._srv_start)
        self.create_service(Trigger, '~/stop_sweep', self._srv_stop)
        self.create_service(Trigger, '~/train', self._srv_train)
        self.handoff = ModelHandoff(self, None, self._on_handoff)
        self.create_timer(0.05, self._tick)
        self.create_timer(0.25, self._train_tick)
        self.get_logger().info(
            f'sbm_calibrator ready: image/camera_info {describe_qos(img_qos)}, audio '
            f'{describe_qos(aud_qos)}; dataset_dir {self.dataset_dir()!r}, marker '
            f"{self.p['marker_dictionary']} id {self.p['marker_id']}; call ~/start_sweep")

    def _on_params(self, changes):
        from rcl_interfaces.msg import SetParametersResult
        new = dict(self.p)
        for ch in changes:
            if ch.name in new:
                new[ch.name] = ch.value
        try:
            self._sweep_params(new)
            self._session_config(new)
        except ValueError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        key = (new['marker_dictionary'], new['marker_id'])
        if key != (self.p['marker_dictionary'], self.p['marker_id']):
            try:
                from sbm_ros.av.marker import MarkerDetector
                MarkerDetector(*key)
            except Exception as exc:  # noqa: BLE001 - refused with the reason
                return SetParametersResult(successful=False, reason=str(exc))
        with self._lock:
            self.p.update(new)
        return SetParametersResult(successful=True)

    @staticmethod
    def _sweep_params(p):
        from sbm_ros.core.sweep import SweepParams
        return SweepParams(tolerance=float(p['tolerance']),
                           tolerance_unit=str(p['tolerance_unit']),
                           min_duration_s=float(p['min_duration_s']),
                           max_duration_s=float(p['max_duration_s']),
                           max_gap_s=float(p['max_gap_s']),
                           min_rms_dbfs=float(p['min_rms_dbfs']),
                           clip_level=float(p['clip_level']),
                           max_clipped_fraction=float(p['max_clipped_fraction']),
                           keep_audio_s=max(30.0, 2.0 * float(p["max_duration_s"])))

    @staticmethod
    def _session_config(p):
        from sbm_ros.av.sweep_session import SessionConfig
        return SessionConfig(grid_cols=int(p['grid_cols']), grid_rows=int(p['grid_rows']),
                             min_samples=int(p['min_samples_per_cell']),
                             coverage_complete=float(p['coverage_complete']),
                             max_unsaved=int(p['max_unsaved']))

    def dataset_dir(self) -> str:
        return os.path.abspath(os.path.expanduser(str(self.p['dataset_dir'])))

    def _warn(self, key: str, text: str, period: float = 5.0, error: bool = False):
        self._log_throttle('error' if error else 'warn', key, text, period)

    def _marker_detector(self):
        from sbm_ros.av.marker import MarkerDetector
        key = (self.p['marker_dictionary'], self.p['marker_id'])
        if self._detector_key != key:
            self._detector = MarkerDetector(*key)
            self._detector_key = key
        return self._detector

    # ------------------------------------------------------------------ inputs
    def _on_camera_info(self, msg):
        from sbm_ros.av import capture as cap
        from sbm_ros.core.geometry import PinholeCamera
        try:
            cam = PinholeCamera.from_K(list(msg.k), int(msg.width), int(msg.height),
                                       frame_id=msg.header.frame_id or 'camera_optical')
        except (ValueError, TypeError) as exc:
            self.camera_problem = str(exc)
            self._warn('camera_info', f"unusable 'camera_info' ({exc}): fix the camera "
                       'driver\'s calibration; the sweep needs it')
            return
        self.camera_problem = None
        if self.camera is None or cam != self.camera:
            self.camera = cam
            self.camera_json = cap.camera_dict(msg.width, msg.height, msg.k, msg.d,
                                               msg.distortion_model, msg.header.frame_id)

    def _on_image(self, msg):
        self.image_rx = time.monotonic()
        with self._lock:
            if self.session is None:
                self.latest = (msg.header, None, msg)
                return
            if len(self.frames) == self.frames.maxlen:
                self.frames_dropped += 1
            self.frames.append(msg)
        self._frames_ready.set()

    def _detect_loop(self):
        """The marker detection, in a thread of its own: the executor keeps taking messages
        from DDS meanwhile (a frame the reader queue cannot hold is a gap in the marker
        track). OpenCV releases the GIL while it works."""
        while not self._stop.is_set():
            if not self._frames_ready.wait(0.1):
                continue
            self._frames_ready.clear()
            while not self._stop.is_set():
                with self._lock:
                    sess = self.session
                    msg = self.frames.popleft() if self.frames else None
                if msg is None or sess is None:
                    break
                try:
                    self._process_frame(sess, msg)
                except Exception as exc:  # noqa: BLE001 - one frame lost, the thread goes on
                    self._warn('frame', f'frame ignored: {type(exc).__name__}: {exc}')

    def _on_audio_info(self, msg):
        self.audio_info = msg

    def _on_audio(self, msg):
        from sbm_ros.av import capture as cap
        from sbm_ros.core.audio_io import pcm_bytes_to_float
        self.audio_rx = time.monotonic()
        sess = self.session
        if sess is None:
            return
        fmt = cap.audio_format(self.audio_info, self.p['sample_rate'],
                               str(self.p['sample_format']), SAMPLE_FORMATS)
        if isinstance(fmt, str):
            self.audio_problem = fmt
            self._warn('audio_format', f'audio ignored: {fmt}')
            return
        rate, ch, sf = fmt
        try:
            x = pcm_bytes_to_float(bytes(msg.audio.data), ch, sf)
        except ValueError as exc:
            self._warn('audio_decode', f'audio chunk ignored: {exc}')
            return
        self.audio_problem = None
        with self._lock:
            if self.session is sess:
                sess.push_audio(stamp_to_ns(msg.header.stamp) * 1e-9, x, rate)

    # ------------------------------------------------------------------ the sweep
    def _tick(self):
        now = time.monotonic()
        with self._lock:
            sess = self.session
        if sess is None:
            return
        with self._lock:
            if self.session is not sess:
                return
            res = sess.process(now)
            notices = sess.notices(consume=True)
        if res['recovered']:
            self.get_logger().info(f"wrote {res['recovered']} held sample(s) to "
                                   f'{sess.root}: the folder is writable again')
        for key, text in notices:
            self._warn(key, text, error=(key == 'write'))
        self._check_inputs(now)
        self._overlay(sess, now)
        if now - self.last_status >= self.p['status_period'] or res['written'] or \
                res['recovered']:
            self._publish_status()

    def _process_frame(self, sess, msg):
        try:
            bgr = image_io.to_bgr8(image_io.msg_to_array(msg), msg.encoding)
        except image_io.ImageError as exc:
            self._warn('image', f"image ignored ({exc}): publish bgr8/rgb8/mono8 on 'image'")
            return
        if self.camera is not None and (msg.width, msg.height) != (self.camera.width,
                                                                   self.camera.height):
            self._warn('image_size', f'image {msg.width}x{msg.height} but camera_info '
                       f'{self.camera.width}x{self.camera.height}: frame ignored; check the '
                       'camera topics belong together')
            return
        try:
            det = self._marker_detector().detect(bgr)
        except Exception as exc:  # noqa: BLE001 - a frame without marker
            self._warn('detect', f'marker detection failed: {exc}')
            det = None
        t = stamp_to_ns(msg.header.stamp) * 1e-9
        self.frames_seen += 1
        pix = None
        if det is not None:
            self.marker_seen += 1
            pix = (det.u + 0.5, det.v + 0.5)   # OpenCV pixel centres -> corner convention
        with self._lock:
            if self.session is sess:
                sess.push_marker(t, pix)
        self.latest = (msg.header, bgr, msg)

    def _check_inputs(self, now):
        limit = self.p['input_timeout']
        started = self.sweep_started
        for what, rx, topic in (('image', self.image_rx, 'image'),
                                ('audio', self.audio_rx, 'audio/audio_stamped')):
            age = now - max(rx, started)
            if age > limit:
                name = self.resolve_topic_name(topic)
                self._warn(f'stall_{what}', f"no {what} on '{name}' for {age:.1f} s during the "
                           f'sweep ({what} stalled?): check the '
                           f"{'camera' if what == 'image' else 'audio'} driver; the sweep "
                           'goes on when it comes back, nothing captured is lost')

    def _overlay(self, sess, now):
        rate = self.p['overlay_rate']
        if rate <= 0 or self.latest is None or now - self.last_overlay < 1.0 / rate:
            return
        header, bgr, msg = self.latest
        if bgr is None or self.pub_overlay.get_subscription_count() == 0:
            return
        from sbm_ros.av.sweep_session import draw_overlay
        with self._lock:
            st = sess.status()
            grid = sess.grid
            text = (f"{st['samples']} samples, coverage {100 * st['coverage']:.0f} %"
                    f"{' COMPLETE' if st['complete'] else ''}, rejected {st['rejected_total']}")
            img = draw_overlay(bgr, grid, st['marker'], st['segment'], text)
        out = Image(header=header)
        image_io.fill_msg(out, img, 'bgr8')
        self.pub_overlay.publish(out)
        self.last_overlay = now

    # ------------------------------------------------------------------ status
    def status_dict(self):
        with self._lock:
            d = {'state': self.state, 'dataset_dir': self.dataset_dir(),
                 'frames': self.frames_seen, 'frames_dropped': self.frames_dropped,
                 'marker_detected': self.marker_seen, 'train': dict(self.train)}
            if self.session is not None:
                d.update(self.session.status())
                d['notices'] = [t for _, t in self.session.notices()]
            elif self.last_sweep is not None:
                d.update(self.last_sweep)
            now = time.monotonic()
            d['image_age_s'] = round(now - self.image_rx, 2) if self.image_rx else None
            d['audio_age_s'] = round(now - self.audio_rx, 2) if self.audio_rx else None
            if self.audio_problem:
                d['audio_problem'] = self.audio_problem
        return d

    def _publish_status(self):
        self.last_status = time.monotonic()
        self.pub_status.publish(String(data=json.dumps(self.status_dict())))

    # ------------------------------------------------------------------ services
    def _refuse(self, response, what, why):
        self.get_logger().warning(f'{what} refused: {why}')
        return _answer(response, False, why)

    def _srv_start(self, request, response):
        from sbm_ros.av.sweep_session import SweepSession
        from sbm_ros.core.sweep_writer import DatasetWriteError
        with self._lock:
            if self.session is not None:
                return self._refuse(response, 'start_sweep', (
                    f'a sweep is already running ({self.session.status()["samples"]} samples): '
                    'call ~/stop_sweep first'))
            if self.train_run is not None:
                return self._refuse(response, 'start_sweep', 'training is running: wait for '
                                    'it (see ~/calibration_status)')
            if self.camera is None:
                why = self.camera_problem or "no camera_info received on 'camera_info' yet"
                return self._refuse(response, 'start_sweep', f'{why}: start the camera '
                                    '(its camera_info gives the directions of the pixels)')
            try:
                self._marker_detector()
                sess = SweepSession(self.dataset_dir(), self.camera,
                                    self._sweep_params(self.p), self._session_config(self.p),
                                    camera_json=self.camera_json)
            except (DatasetWriteError, ValueError) as exc:
                return self._refuse(response, 'start_sweep', f'{exc}: choose another '
                                    'dataset_dir or fix the folder')
            self.session = sess
            self.sweep_started = time.monotonic()
            self.frames.clear()
            self.state = 'sweeping'
            self.last_sweep = None
        if sess.repaired is not None and not sess.repaired.ok:
            self.get_logger().warning(f'dataset folder repaired before the sweep: '
                                      f'{sess.repaired.summary()} (WAVs without a row moved '
                                      'to unlisted/)')
        msg = (f'sweep started into {sess.root} ({sess.existing} samples already there, '
               f'coverage {100 * sess.coverage:.1f} %): move the loudspeaker slowly through '
               'the whole image')
        self.get_logger().info(msg)
        self._publish_status()
        return _answer(response, True, msg)

    def _stop_session(self):
        """Finish the sweep (after the frames already received); returns its final status."""
        deadline = time.monotonic() + 3.0
        while self.frames and time.monotonic() < deadline and self._detect_thread.is_alive():
            time.sleep(0.02)
        time.sleep(0.05)                # the frame being detected
        with self._lock:
            sess = self.session
            res = sess.finish(time.monotonic())
            st = sess.status()
            notices = sess.notices(consume=True)      # the last pass's run is told too
            st['notices'] = [t for _, t in notices]
            self.last_sweep = st
            self.session = None
            self.state = 'stopped'
        for key, text in notices:
            if key != 'write':                          # said below with what to do
                self._warn(key, text)
        if res['error']:
            self.get_logger().error(
                f"sweep stopped but {st['unsaved']} sample(s) could not be written to "
                f"{sess.root}: {res['error']}. They are lost when the node stops: free space "
                'and call ~/stop_sweep again to retry')
            self._held = sess
        else:
            self._held = None
        return st

    def _srv_stop(self, request, response):
        held = getattr(self, '_held', None)
        if self.session is None and held is not None:
            n = held.retry(time.monotonic())
            with self._lock:
                self.last_sweep = held.status()
            self._publish_status()
            if held.unsaved:
                return self._refuse(response, 'stop_sweep', (
                    f'no sweep running; {len(held.unsaved)} held sample(s) still cannot be '
                    f'written: {held.write_error}'))
            self._held = None
            return _answer(response, True, f'no sweep running; wrote the {n} held sample(s)')
        if self.session is None:
            return self._refuse(response, 'stop_sweep', 'no sweep running: call ~/start_sweep '
                                'first')
        st = self._stop_session()
        msg = (f"sweep stopped: {st['samples']} samples in {st['dataset_dir']} "
               f"({st['samples_this_sweep']} new), coverage {100 * st['coverage']:.1f} % "
               f"({'complete' if st['complete'] else 'incomplete'}; missing cells "
               f"{st['missing_cells'][:8]}{'...' if len(st['missing_cells']) > 8 else ''}), "
               f"rejected {st['rejected']}")
        self.get_logger().info(msg)
        ok = not st['unsaved']
        if self.p['train_on_stop'] and ok:
            started, why = self._start_training()
            msg += '; ' + why
        self._publish_status()
        return _answer(response, ok, msg if ok else msg + f"; {st['unsaved']} sample(s) "
                       f"unsaved: {st['write_error']}")

    def _srv_train(self, request, response):
        if self.session is not None:
            return self._refuse(response, 'train', 'a sweep is running: call ~/stop_sweep '
                                'first')
        ok, msg = self._start_training()
        if not ok:
            return self._refuse(response, 'train', msg)
        self._publish_status()
        return _answer(response, True, msg)

    def _start_training(self):
        """(started, message)."""
        from sbm_ros.av.sweep_session import count_rows
        from sbm_ros.core.sweep_writer import check_dataset
        with self._lock:
            if self.train_run is not None:
                return False, (f'training already running (pid {self.train_run.pid}, '
                               f'{self.train_run.elapsed():.0f} s)')
            root = self.dataset_dir()
            chk = check_dataset(root)
            n = chk.rows if chk.header is not None else count_rows(root)
            need = int(self.p['min_train_samples'])
            if n < need:
                return False, (f'{root!r} holds {n} sample(s), at least {need} needed '
                               '(min_train_samples): sweep more with ~/start_sweep')
            if not chk.ok:
                return False, (f'{chk.summary()}: call ~/start_sweep and ~/stop_sweep once '
                               'to repair it')
            out = str(self.p['model_output']).strip()
            out = os.path.abspath(os.path.expanduser(out)) if out else default_model_path(root)
            out2 = None
            if self.p['train_two_source']:
                out2 = str(self.p['model_output_two']).strip()
                out2 = os.path.abspath(os.path.expanduser(out2)) if out2 \
                    else two_source_path(out)
                if out2 == out:
                    return False, (f'model_output_two is the one-source model file {out!r}: '
                                   'choose another file')
            run = TrainingRun(root, out, self.p['train_max_iter'], self.p['train_components'])
            try:
                run.start()
            except OSError as exc:
                return False, f'cannot start training: {exc}'
            self.train_run = run
            self.state = 'training'
            self.train = {'state': 'running', 'step': 'one_source', 'samples': n,
                          'model': out, 'model_two': out2, 'pid': run.pid}
            if out2:
                self.train['two_source'] = {
                    'state': 'pending', 'model': out2, 'pairs': int(self.p['train_pairs']),
                    'components': int(self.p['train_components_two'])}
            self._train_t0 = time.monotonic()
        msg = (f'training started on {n} samples in {root} (pid {run.pid}); model -> {out}'
               + (f', then the two-source model -> {out2}' if out2 else ''))
        self.get_logger().info(msg)
        return True, msg

    def _train_tick(self):
        with self._lock:
            run = self.train_run
            res = run.poll() if run is not None else None
            if res is None:
                return
            self.train_run = None
        if run.sources == 2:
            self._two_source_done(res)
            return
        if not res.ok:
            with self._lock:
                self.state = 'train_failed'
                self.train.update(state='failed', message=res.message, log=res.log,
                                  seconds=round(res.seconds, 1))
                self.train.pop('step', None)
                if 'two_source' in self.train:
                    self.train['two_source']['state'] = 'not run'
            self.get_logger().error(f'training failed after {res.seconds:.1f} s: '
                                    f'{res.message} (log {res.log})')
            self._publish_status()
            return
        cv = self._model_info(res.model, 'cv_error')
        with self._lock:
            self.train.update(message=res.message, seconds=round(res.seconds, 1), cv_error=cv,
                              log=res.log)
        cv_txt = ', '.join(f'{k} {v:.2f}' for k, v in (cv or {}).items()) or 'n/a'
        self.get_logger().info(f'one-source training finished in {res.seconds:.1f} s: '
                               f'{res.model}; cross-validated error {cv_txt}')
        out2 = self.train.get('model_two')
        if out2:
            self._start_two_source(run.root, out2)
        else:
            self._trained(res.model, None)

    def _start_two_source(self, root: str, out2: str) -> None:
        """Start the two-source run on the dataset ``root`` the one-source model came from;
        when it cannot start, say so and hand the one-source model over alone."""
        ts = self.train['two_source']
        run = TrainingRun(root, out2, self.p['train_max_iter'], ts['components'], sources=2,
                          pairs=ts['pairs'])
        try:
            run.start()
        except OSError as exc:
            with self._lock:
                ts.update(state='failed', message=f'cannot start training: {exc}')
                self.train['model_two'] = None
            self.get_logger().error(f'two-source training: cannot start: {exc}; handing over '
                                    'the one-source model alone')
            self._trained(self.train['model'], None, one_source=True)
            return
        with self._lock:
            self.train_run = run
            self.train.update(step='two_source', pid=run.pid)
            ts.update(state='running')
        self.get_logger().info(f"two-source training started ({ts['pairs']} pairs, K="
                               f"{ts['components'] or 'automatic'}, pid {run.pid}); model -> "
                               f'{out2}')
        self._publish_status()

    def _two_source_done(self, res):
        ts = self.train['two_source']
        if not res.ok:
            with self._lock:
                ts.update(state='failed', message=res.message, log=res.log,
                          seconds=round(res.seconds, 1))
                self.train['model_two'] = None
            self.get_logger().error(f'two-source training failed after {res.seconds:.1f} s: '
                                    f'{res.message} (log {res.log}); handing over the '
                                    'one-source model alone')
            self._trained(self.train['model'], None, one_source=True)
            return
        info = self._model_info(res.model, None) or {}
        mix = info.get('mix_error')
        with self._lock:
            ts.update(state='done', message=res.message, log=res.log,
                      seconds=round(res.seconds, 1), mix_error=mix,
                      cov_scale=info.get('cov_scale'))
        mix_txt = ', '.join(f'{k} {v:.2f}' for k, v in (mix or {}).items()) or 'n/a'
        self.get_logger().info(f'two-source training finished in {res.seconds:.1f} s: '
                               f'{res.model}; error on fresh mixtures of the recorded '
                               f'positions {mix_txt}')
        self._trained(self.train['model'], res.model)

    def _model_info(self, path: str, key: Optional[str]):
        """``info[key]`` of a model file (all of ``info`` when key is None), None when it
        cannot be read (a warning; the model is still handed over)."""
        try:
            from sbm_ros.core.model import SBMModel
            info = SBMModel.load(path).info
            return info if key is None else info.get(key)
        except Exception as exc:  # noqa: BLE001 - reported, the model is still handed over
            self.get_logger().warning(f'cannot read {key or "the figures"} of {path}: {exc}')
            return None

    def _trained(self, model: str, model_two: Optional[str], one_source: bool = False):
        """Training is over with a one-source ``model`` (and ``model_two``): hand over
        (``one_source``: the two-source training failed, see :class:`ModelHandoff`)."""
        with self._lock:
            self.state = 'trained'
            self.train.update(state='done', handoff='pending',
                              total_seconds=round(time.monotonic() - self._train_t0, 1))
            self.train.pop('step', None)
        self._publish_status()
        self.handoff.send(model, self.p['localizer_node'], self.p['handoff_timeout'],
                          path_two=model_two, one_source=one_source)

    def _on_handoff(self, text, error):
        with self._lock:
            self.train['handoff'] = ('failed: ' if error else '') + text
        if error:
            self.get_logger().error(text)
        else:
            self.get_logger().info(text)
        self._publish_status()

    def destroy_node(self):
        self._stop.set()
        if self._detect_thread.is_alive():
            self._detect_thread.join(timeout=2.0)
        with self._lock:
            run, self.train_run = self.train_run, None
            sess = self.session
        if sess is not None:
            try:
                self._stop_session()
            except Exception as exc:  # noqa: BLE001 - shutting down anyway
                self.get_logger().warning(f'could not finish the sweep: {exc}')
        if run is not None:
            run.stop()
        return super().destroy_node()

    sweep_started = 0.0
    _held = None
    _train_t0 = 0.0


def main(args=None):
    from .common import run
    if hasattr(signal, 'SIGXFSZ'):
        # a file size limit makes a write fail (EFBIG, reported and retried) instead of
        # killing the node
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    def on_error(exc) -> int:
        print(f'[{NODE_NAME}] error: {exc}', file=sys.stderr, flush=True)
        return 2
    return run(CalibratorNode, args=args, executor_factory=SingleThreadedExecutor,
               on_error=on_error)


if __name__ == '__main__':
    sys.exit(main())
