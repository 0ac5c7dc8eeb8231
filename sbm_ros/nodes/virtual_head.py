"""virtual_head: a simulated robot head that publishes what the real one would.

Reads a scenario (YAML, :mod:`sbm_ros.sim.scenario`), renders the whole timeline first (every
utterance synthesised with espeak-ng and rendered with measured KEMAR HRIRs in a reverberant
room, one binaural track; progress is logged), then publishes it at real time (``rate`` 1.0) or
faster (``rate`` > 1):

* ``audio/audio_stamped`` (audio_common_msgs/AudioDataStamped, reliable): ``chunk_size`` frames
  of raw interleaved S16LE, header.stamp = acquisition time of the chunk's FIRST sample,
  header.frame_id = ``frame_id``. A chunk is published when its last sample would have been
  acquired.
* ``audio/audio_info`` (audio_common_msgs/AudioInfo, transient-local).
* ``image`` (sensor_msgs/Image, bgr8) and ``camera_info`` (sensor_msgs/CameraInfo) at ``fps``,
  header.frame_id = ``camera_frame_id``: the room and the people's faces drawn with OpenCV, each
  mouth opening with the loudness of that person's speech.
* ``faces`` (vision_msgs/Detection2DArray, camera header): one detection per person whose face
  is in view, id = person name. These are NOT produced by a face detector: the boxes are the
  scenario's ground truth with noise (centre jitter N(0, ``face_jitter_px``) px per axis, size
  factor 1 + N(0, ``face_size_jitter``), fresh every frame).
* ``ground_truth/sound_sources`` (vision_msgs/Detection2DArray, pixels, camera header): one
  detection per person talking at that frame (id = person name, bbox centre = mouth pixel,
  results[0].hypothesis.class_id = 'talker'); an empty list when nobody talks.
* ``~/scenario`` (std_msgs/String, transient-local): JSON with the ground truth of every
  utterance (who, language, text, start/end in scene seconds, direction, pixel), the moves, and
  ``t0_ns``, the stamp of scene time 0 (updated at every loop).
* with ``sweep`` set, a calibration sweep is played instead of the scenario: the white noise
  of the moving loudspeaker, and images with the loudspeaker and its ArUco marker drawn where
  it is (:mod:`sbm_ros.sim.sweep`); ``faces`` stay empty and ``ground_truth/sound_sources``
  holds the loudspeaker ('loudspeaker') while it plays.
* ``/clock`` (rosgraph_msgs/Clock) with the scene time when ``publish_clock`` is true, so that
  other nodes run with ``use_sim_time`` at any ``rate``.

Timing: all stamps are ``t0 + scene time``, where ``t0`` is the node clock when publishing
starts; audio chunk k is stamped ``t0 + k * chunk_size / sample_rate`` and image j
``t0 + j / fps``. Publishing is paced by a steady clock in a dedicated thread (the executor
keeps serving parameters meanwhile). With ``rate`` > 1 the stamps run ahead of the wall clock
(scene time), exactly as a bag played faster.
"""

from __future__ import annotations

import array
import json
import math
import threading
import time

import numpy as np
import rclpy
from rclpy.node import Node

from .common import (Param, declare_parameters, describe_qos, latched_qos,
                     non_negative, ns_to_stamp, positive, run, stream_qos)

NODE_NAME = 'virtual_head'


def _fps_ok(v):
    return None if 0.0 < v <= 120.0 else 'must be within (0, 120]'


def _chunk_ok(v):
    return None if 16 <= v <= 65536 else 'must be within [16, 65536]'


PARAMS = [
    Param('scenario', '', "Scenario YAML file ('' = the package's config/demo_scenario.yaml). "
          'Read at start.', read_only=True),
    Param('sweep', '', "Calibration sweep YAML to play instead of the scenario ('' = play the "
          "scenario; 'default' = the package's config/sweep_scenario.yaml): a loudspeaker "
          'playing white noise with an ArUco marker moved through the view '
          '(sbm_ros.sim.sweep). Read at start.', read_only=True),
    Param('rate', 1.0, 'Publishing speed: 1.0 = real time, 2.0 = twice as fast (stamps follow '
          'scene time).', positive),
    Param('chunk_size', 1024, 'Audio frames per AudioDataStamped message.', _chunk_ok,
          read_only=True),
    Param('fps', 15.0, 'Camera frames per second (scene time).', _fps_ok, read_only=True),
    Param('frame_id', 'head', 'frame_id of the audio chunks (the head / microphone frame).'),
    Param('camera_frame_id', 'camera_optical', 'frame_id of image, camera_info, faces and '
          'ground_truth/sound_sources.'),
    Param('face_jitter_px', 2.5, 'Std of the pixel jitter of the face box centres (the '
          "'faces' are ground truth plus noise).", non_negative),
    Param('face_size_jitter', 0.05, 'Relative std of the face box size jitter.', non_negative),
    Param('seed', 0, 'Seed of the face-box noise.'),
    Param('loop', False, 'Start the scenario again when it ends (stamps keep increasing).'),
    Param('exit_when_done', False, 'Shut the node down (exit code 0) after the scenario '
          '(ignored with loop).'),
    Param('start_delay_s', 1.0, 'Wait this long (wall clock) after rendering before publishing '
          '(discovery).', non_negative, read_only=True),
    Param('wait_for_subscribers', 0, 'Before publishing, wait until audio/audio_stamped, image '
          'and faces (not with sweep) each have at least this many subscribers (at most '
          'wait_timeout_s).',
          non_negative, read_only=True),
    Param('wait_timeout_s', 30.0, 'Longest wait for wait_for_subscribers (s).', positive,
          read_only=True),
    Param('start_on_sweep', '', "A calibrator's status topic (std_msgs/String JSON, e.g. "
          "'sbm_calibrator/calibration_status'): after rendering, publish only camera_info "
          "(so ~/start_sweep is accepted) and start playing once the status says "
          "'sweeping' ('' = play at once). For a sweep started by hand under ros2 launch.",
          read_only=True),
    Param('publish_clock', False, 'Publish /clock with the scene time (for use_sim_time '
          'consumers).', read_only=True),
    Param('progress_period_s', 5.0, 'Log the scene time every this many seconds (wall).',
          positive),
]


class VirtualHeadNode(Node):

    def __init__(self):
        super().__init__(NODE_NAME)
        from audio_common_msgs.msg import AudioDataStamped, AudioInfo
        from sensor_msgs.msg import CameraInfo, Image
        from std_msgs.msg import String
        from vision_msgs.msg import Detection2DArray

        self.p = declare_parameters(self, PARAMS)
        self.finished = threading.Event()
        self._stop = threading.Event()

        qos = stream_qos('reliable', 50)
        img_qos = stream_qos('reliable', 5)
        self.pub_audio = self.create_publisher(AudioDataStamped, 'audio/audio_stamped', qos)
        self.pub_info = self.create_publisher(AudioInfo, 'audio/audio_info', latched_qos())
        self.pub_image = self.create_publisher(Image, 'image', img_qos)
        self.pub_caminfo = self.create_publisher(CameraInfo, 'camera_info', img_qos)
        self.pub_faces = self.create_publisher(Detection2DArray, 'faces',
                                               stream_qos('reliable', 20))
        self.pub_truth = self.create_publisher(Detection2DArray, 'ground_truth/sound_sources',
                                               stream_qos('reliable', 20))
        self.pub_scenario = self.create_publisher(String, '~/scenario', latched_qos())
        self.pub_clock = None
        if self.p['publish_clock']:
            from rosgraph_msgs.msg import Clock as ClockMsg
            self.pub_clock = self.create_publisher(ClockMsg, '/clock',
                                                   stream_qos('reliable', 10))
        self.get_logger().info(
            f'publishing {self.pub_audio.topic_name} [{describe_qos(qos)}], '
            f'{self.pub_info.topic_name} [{describe_qos(latched_qos())}], '
            f'{self.pub_image.topic_name} + {self.pub_caminfo.topic_name} '
            f'[{describe_qos(img_qos)}], {self.pub_faces.topic_name}, '
            f'{self.pub_truth.topic_name}, {self.pub_scenario.topic_name}')

        self._load_and_render()
        self._thread = threading.Thread(target=self._publish_loop, name='virtual_head',
                                        daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ setup
    def _load_and_render(self):
        if str(self.p['sweep']).strip():
            return self._load_sweep()
        from sbm_ros.sim.scenario import default_scenario_path, load_scenario
        from sbm_ros.sim.scene_view import SceneRenderer
        from sbm_ros.sim.timeline import build_timeline
        path = self.p['scenario'] or default_scenario_path()
        log = self.get_logger()
        sc = load_scenario(path)
        log.info(f"scenario {sc.name!r} from {path}: {len(sc.people)} people "
                 f"({', '.join(p.name for p in sc.people)}; silent: "
                 f"{', '.join(sc.silent_people) or 'none'}), {len(sc.utterances)} utterances, "
                 f'{len(sc.moves)} move(s), camera {sc.camera!r}')
        t0 = time.monotonic()
        log.info('rendering the whole timeline first (espeak-ng + KEMAR HRIRs + room) ...')
        self.timeline = build_timeline(sc, progress=lambda m: log.info(m))
        x = self.timeline.audio
        log.info(f'rendered {x.shape[0] / sc.sample_rate:.1f} s of binaural audio in '
                 f'{time.monotonic() - t0:.1f} s (peak {np.max(np.abs(x)):.2f} full scale)')
        self.scene = sc
        self.renderer = SceneRenderer(self.timeline, jitter_px=self.p['face_jitter_px'],
                                      size_jitter=self.p['face_size_jitter'],
                                      seed=self.p['seed'])
        from sbm_ros.core.audio_io import float_to_pcm_bytes
        self.pcm = float_to_pcm_bytes(x, 'S16LE')
        self.n_samples = x.shape[0]

    def _load_sweep(self):
        from sbm_ros.core.audio_io import float_to_pcm_bytes
        from sbm_ros.sim.sweep import SweepPlayback, load_sweep
        path = str(self.p['sweep']).strip()
        log = self.get_logger()
        sc = load_sweep(None if path == 'default' else path)
        log.info(f'sweep {sc.name!r} from {sc.source}: loudspeaker (white noise, marker '
                 f'{sc.marker_dictionary} id {sc.marker_id}) moving '
                 f'{sc.trajectory.start_s:.1f}-{sc.trajectory.end_s:.1f} s, camera '
                 f'{sc.camera!r}')
        t0 = time.monotonic()
        log.info('rendering the sweep first (moving loudspeaker, KEMAR HRIRs + room) ...')
        pb = SweepPlayback.render(sc, say=lambda m: log.info(m))
        log.info(f'rendered {pb.duration_s:.1f} s of binaural audio in '
                 f'{time.monotonic() - t0:.1f} s (peak {np.max(np.abs(pb.audio)):.2f} full '
                 'scale)')
        self.scene = sc
        self.timeline = self.renderer = pb
        self.pcm = float_to_pcm_bytes(pb.audio, 'S16LE')
        self.n_samples = pb.audio.shape[0]

    # ------------------------------------------------------------------ messages
    def _header(self, stamp_ns: int, frame_id: str):
        from std_msgs.msg import Header
        return Header(stamp=ns_to_stamp(stamp_ns), frame_id=frame_id)

    def _camera_info(self, header):
        from sensor_msgs.msg import CameraInfo
        d = self.scene.camera.camera_info_dict()
        return CameraInfo(header=header, width=d['width'], height=d['height'],
                          distortion_model=d['distortion_model'], d=d['d'], k=d['k'],
                          r=d['r'], p=d['p'])

    @staticmethod
    def _detection(header, det_id, u, v, w, h, class_id, score=1.0):
        from vision_msgs.msg import Detection2D, ObjectHypothesisWithPose
        d = Detection2D(header=header, id=str(det_id))
        d.bbox.center.position.x = float(u)
        d.bbox.center.position.y = float(v)
        d.bbox.size_x = float(w)
        d.bbox.size_y = float(h)
        hyp = ObjectHypothesisWithPose()
        hyp.hypothesis.class_id = class_id
        hyp.hypothesis.score = float(score)
        hyp.pose.pose.position.x = float(u)
        hyp.pose.pose.position.y = float(v)
        hyp.pose.pose.orientation.w = 1.0
        d.results.append(hyp)
        return d

    def _publish_audio(self, k: int, t0_ns: int):
        from audio_common_msgs.msg import AudioDataStamped
        rate = self.scene.sample_rate
        n = int(self.p['chunk_size'])
        i0 = k * n
        i1 = min(self.n_samples, i0 + n)
        msg = AudioDataStamped()
        msg.header = self._header(t0_ns + i0 * 1_000_000_000 // rate, self.p['frame_id'])
        buf = array.array('B')
        buf.frombytes(self.pcm[4 * i0:4 * i1])
        msg.audio.data = buf
        self.pub_audio.publish(msg)

    def _publish_frame(self, j: int, t0_ns: int):
        from sensor_msgs.msg import Image
        from vision_msgs.msg import Detection2DArray
        from sbm_ros.av import image_io
        t = j / float(self.p['fps'])
        header = self._header(t0_ns + int(round(t * 1e9)), self.p['camera_frame_id'])
        img, states = self.renderer.image_at(t)
        msg = Image(header=header)
        image_io.fill_msg(msg, img, 'bgr8')
        self.pub_image.publish(msg)
        self.pub_caminfo.publish(self._camera_info(header))
        faces = Detection2DArray(header=header)
        for f in self.renderer.face_detections(states):
            faces.detections.append(self._detection(header, f['id'], f['u'], f['v'], f['w'],
                                                    f['h'], 'face'))
        self.pub_faces.publish(faces)
        truth = Detection2DArray(header=header)
        for st in states:
            if st.talking and np.isfinite(st.u_px):
                truth.detections.append(self._detection(header, st.name, st.u_px, st.v_px,
                                                        10.0, 10.0, 'talker'))
        self.pub_truth.publish(truth)

    def _publish_scenario_info(self, t0_ns: int, loop_index: int):
        from std_msgs.msg import String
        info = self.timeline.summary()
        info.update(t0_ns=int(t0_ns), loop_index=loop_index, fps=float(self.p['fps']),
                    chunk_size=int(self.p['chunk_size']), rate=float(self.p['rate']),
                    audio_frame_id=self.p['frame_id'],
                    camera_frame_id=self.p['camera_frame_id'],
                    faces_noise={'jitter_px': self.p['face_jitter_px'],
                                 'size_jitter': self.p['face_size_jitter']})
        self.pub_scenario.publish(String(data=json.dumps(info)))

    # ------------------------------------------------------------------ publishing
    def _sleep_until(self, t_wall: float) -> bool:
        """Sleep until monotonic time ``t_wall``; False when stopping."""
        while not self._stop.is_set():
            dt = t_wall - time.monotonic()
            if dt <= 0:
                return True
            self._stop.wait(min(dt, 0.05))
        return False

    def _publish_loop(self):
        log = self.get_logger()
        try:
            from .ros_convert import audio_info_msg
            self.pub_info.publish(audio_info_msg(self.scene.sample_rate, 2, 'S16LE'))
            want = int(self.p['wait_for_subscribers'])
            if want > 0:
                pubs = (self.pub_audio, self.pub_image, self.pub_faces)
                if str(self.p['sweep']).strip():      # a sweep has no faces to wait for
                    pubs = (self.pub_audio, self.pub_image)
                deadline = time.monotonic() + self.p['wait_timeout_s']
                while (min(p.get_subscription_count() for p in pubs) < want
                       and time.monotonic() < deadline and not self._stop.is_set()):
                    time.sleep(0.05)
                for p in pubs:
                    n = p.get_subscription_count()
                    if n < want:
                        log.warn(f'only {n} of {want} subscriber(s) on {p.topic_name} after '
                                 f'{self.p["wait_timeout_s"]} s: starting anyway')
            if not self._sleep_until(time.monotonic() + self.p['start_delay_s']):
                return
            if str(self.p['start_on_sweep']).strip() and not self._wait_for_sweep_start():
                return
            loop_index = 0
            t0_ns = self.get_clock().now().nanoseconds
            while not self._stop.is_set():
                self._run_once(t0_ns, loop_index)
                if self._stop.is_set():
                    return
                if not self.get_parameter('loop').value:
                    break
                loop_index += 1
                t0_ns += int(round(self.timeline.duration_s * 1e9))
            log.info(f'scenario finished ({self.timeline.duration_s:.1f} s of scene)')
            if self.get_parameter('exit_when_done').value:
                time.sleep(0.5)            # let the last messages leave
                self.finished.set()
        except Exception as exc:  # noqa: BLE001 - report, then stop the node with an error
            if self._stop.is_set() or not self.context.ok():
                # Ctrl-C: rclpy shuts the context down from its signal thread while this thread
                # may be publishing ("publisher's context is invalid"), before destroy_node()
                # stops it. Expected at shutdown, not a failure.
                log.debug(f'publishing stopped by the shutdown: {type(exc).__name__}: {exc}')
                return
            log.error(f'publishing failed: {type(exc).__name__}: {exc}')
            self.failed = exc
            self.finished.set()

    def _wait_for_sweep_start(self) -> bool:
        """Publish camera_info (5 Hz) until the calibrator's status says 'sweeping'; False
        when the node stops first."""
        from std_msgs.msg import String
        topic = str(self.p['start_on_sweep']).strip()
        started = threading.Event()

        def on_status(msg):
            try:
                if json.loads(msg.data).get('state') == 'sweeping':
                    started.set()
            except (ValueError, AttributeError):
                pass
        sub = self.create_subscription(String, topic, on_status, latched_qos())
        self.get_logger().info(f'sweep rendered: waiting for the sweep to start on '
                               f'{sub.topic_name} (call ~/start_sweep of the calibrator); '
                               f'publishing camera_info meanwhile')
        while not started.is_set():
            stamp = self.get_clock().now().nanoseconds
            self.pub_caminfo.publish(self._camera_info(
                self._header(stamp, self.p['camera_frame_id'])))
            if self._stop.wait(0.2):
                return False
        self.destroy_subscription(sub)
        self.get_logger().info('the sweep has started: playing')
        return True

    def _run_once(self, t0_ns: int, loop_index: int):
        log = self.get_logger()
        rate_hz = self.scene.sample_rate
        chunk = int(self.p['chunk_size'])
        fps = float(self.p['fps'])
        n_chunks = int(math.ceil(self.n_samples / chunk))
        n_frames = int(math.floor(self.timeline.duration_s * fps)) + 1
        self._publish_scenario_info(t0_ns, loop_index)
        log.info(f'publishing the scene (loop {loop_index}): {self.timeline.duration_s:.1f} s, '
                 f'{n_chunks} audio chunks of {chunk}, {n_frames} frames at {fps:g} fps, '
                 f"rate {self.get_parameter('rate').value:g}x; scene time 0 = stamp "
                 f'{t0_ns / 1e9:.3f}')
        k = j = 0
        scene_pos = 0.0             # scene time reached
        wall_pos = time.monotonic()
        next_log = wall_pos + self.get_parameter('progress_period_s').value
        while (k < n_chunks or j < n_frames) and not self._stop.is_set():
            t_audio = (k + 1) * chunk / rate_hz if k < n_chunks else math.inf
            t_frame = j / fps if j < n_frames else math.inf
            t_next = min(t_audio, t_frame)
            rate = max(1e-3, float(self.get_parameter('rate').value))
            # pace by scene time; a rate change applies from now on
            target = wall_pos + (t_next - scene_pos) / rate
            if not self._sleep_until(target):
                return
            wall_pos, scene_pos = max(target, wall_pos), t_next
            if self.pub_clock is not None:
                from rosgraph_msgs.msg import Clock as ClockMsg
                self.pub_clock.publish(ClockMsg(clock=ns_to_stamp(
                    t0_ns + int(round(t_next * 1e9)))))
            if t_audio <= t_frame:
                self._publish_audio(k, t0_ns)
                k += 1
            else:
                self._publish_frame(j, t0_ns)
                j += 1
            now = time.monotonic()
            if now >= next_log:
                talk = ', '.join(u.who for u in self.timeline.talkers_at(scene_pos)) or 'nobody'
                log.info(f'scene time {scene_pos:5.1f} / {self.timeline.duration_s:.1f} s '
                         f'(talking: {talk}); lag {now - target:+.3f} s')
                next_log = now + self.get_parameter('progress_period_s').value

    def destroy_node(self):
        self._stop.set()
        t = getattr(self, '_thread', None)
        if t is not None and t.is_alive():
            t.join(timeout=2.0)
        return super().destroy_node()


def main(args=None) -> int:
    """Humble-safe main: spin until Ctrl-C, or until the scenario ends with exit_when_done.

    Shutdown as in the other nodes (:func:`.common.run`): a second SIGINT during the cleanup is
    ignored, errors raised once the shutdown began are not failures. A node that cannot start
    (e.g. an invalid scenario) says why and exits 1, without a traceback.
    """
    from rclpy.executors import SingleThreadedExecutor

    def spin(node) -> int:
        ex = SingleThreadedExecutor()
        ex.add_node(node)
        while rclpy.ok() and not node.finished.is_set():
            ex.spin_once(timeout_sec=0.1)
        return 1 if getattr(node, 'failed', None) is not None else 0

    def on_error(exc) -> int:
        import sys
        print(f'[virtual_head] error: {type(exc).__name__}: {exc}', file=sys.stderr, flush=True)
        return 1

    return run(VirtualHeadNode, args=args, spin=spin, on_error=on_error)


if __name__ == '__main__':
    raise SystemExit(main())
