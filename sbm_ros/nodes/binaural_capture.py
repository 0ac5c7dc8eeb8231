"""binaural_capture: the two ear microphones (or a WAV file) -> ``audio/audio_stamped``.

Publishes ``audio/audio_stamped`` (audio_common_msgs/AudioDataStamped, reliable: raw interleaved
S16LE, channel 0 = left ear, 1 = right ear; ``header.stamp`` = acquisition time of the chunk's
FIRST sample, ``header.frame_id`` = parameter ``frame_id``), ``audio/audio_info``
(audio_common_msgs/AudioInfo, transient-local) and ``/diagnostics``.

Sources (parameter ``source``):

* ``device``: ``sounddevice`` (PortAudio). The PortAudio callback only copies the block into a
  queue (with its arrival time on the monotonic clock and the overflow flag); a publisher thread
  converts, stamps and publishes, so nothing slow ever runs in the audio callback. Input
  overflows (samples lost by PortAudio) are counted, logged (throttled) and reported in the
  diagnostics. If the device cannot be opened the node logs the available input devices and
  retries every ``reopen_period_s``.
* ``file``: a WAV file (resampled to ``sample_rate``), published in blocks of ``block_size``
  paced at ``realtime_factor`` x real time, optionally looping. The file is streamed from disk
  (:class:`sbm_ros.core.audio_io.WavBlockReader`, about one second in memory; the samples are
  those of resampling the whole file at once). The pace and the stamps start at the first
  chunk read; when playback falls more than ``MAX_CATCH_UP_S`` (0.2 s) behind its pace (a
  stall) the pacing restarts from now instead of publishing the backlog as one burst (at 10x a
  2.6 s stall was a burst of 520 chunks, beyond the localiser's queue: the first chunks of the
  stream were lost); ``pacing_restarts`` on /diagnostics.

Stamping (device source): stamps are counted in samples, ``stamp_k = anchor + n_k / rate`` with
``n_k`` the samples published before chunk k. The anchor is the node clock at the first
callback minus the block duration (the first chunk's first sample). Each chunk's arrival time
(mapped from the monotonic clock to the node clock) is compared with the stamped end of the
chunk; the minimum of this offset over the last ``drift_history`` chunks (callback scheduling
only ever delays arrivals, so the minimum is the actual clock offset) is the drift. When it
exceeds ``max_drift_s`` the anchor is moved by the drift and a warning is logged; after an input
overflow (samples lost) the stamps are re-anchored at the next chunk. The file source uses
sample-count stamps anchored at the node clock at the first chunk (stamps follow audio time,
also with ``realtime_factor`` != 1 and across loops).
"""

from __future__ import annotations

import array
import collections
import os
import queue
import threading
import time
from typing import Optional

import numpy as np

from rclpy.clock import Clock, ClockType
from rclpy.node import Node

from .common import (LogThrottle, Param, declare_parameters, describe_qos,
                     latched_qos, ns_to_stamp, one_of, positive, run, stream_qos)

NODE_NAME = 'binaural_capture'
MAX_CATCH_UP_S = 0.2     # file source: a stall longer than this restarts the pacing (no burst)


def _channel_map_ok(v) -> Optional[str]:
    v = list(v)
    if len(v) != 2 or any(int(c) < 0 for c in v):
        return 'must be two non-negative device channel indices [left, right]'
    return None


PARAMS = [
    Param('source', 'device', "Audio source: 'device' (sounddevice/PortAudio) or 'file' (WAV).",
          one_of('device', 'file'), read_only=True),
    Param('device', '', "sounddevice input device: index or (part of) its name; '' = the "
          "system default input.", read_only=True),
    Param('sample_rate', 16000, 'Sample rate in Hz (the device is opened at this rate; a WAV '
          'file is resampled to it). Must match the model used by sbm_localizer.', positive,
          read_only=True),
    Param('block_size', 1600, 'Samples per published chunk (and per PortAudio callback): '
          '1600 = 100 ms at 16 kHz, one chunk per localiser estimate; smaller blocks lower '
          'the latency by up to a block and cost the localiser about 1 ms of CPU per extra '
          'message.', positive, read_only=True),
    Param('channels', 0, 'Channels to open on the device; 0 = max(channel_map) + 1.',
          lambda v: None if v >= 0 else 'must be >= 0', read_only=True),
    Param('channel_map', [0, 1], 'Device channels used as [left ear, right ear].',
          _channel_map_ok, read_only=True),
    Param('frame_id', 'head', 'header.frame_id of the audio chunks (the head frame).'),
    Param('file_path', '', "WAV file to publish when source is 'file' (stereo: channel 0 = "
          "left ear).", read_only=True),
    Param('loop', False, "Loop the WAV file (source 'file'); stamps keep increasing.",
          read_only=True),
    Param('realtime_factor', 1.0, "Playback speed of the WAV file (source 'file'); 1.0 = real "
          'time. Stamps follow audio time whatever the speed.', positive, read_only=True),
    Param('start_delay_s', 0.0, 'Wait this long before opening the device / playing the file '
          '(e.g. to let subscribers connect first).',
          lambda v: None if v >= 0 else 'must be >= 0', read_only=True),
    Param('wait_for_subscribers', 0, 'Before opening the device / playing the file, wait until '
          'the audio topic has this many matched subscriptions (0 = do not wait).',
          lambda v: None if v >= 0 else 'must be >= 0', read_only=True),
    Param('max_duration_s', 0.0, 'Stop publishing after this much audio (s); 0 = no limit.',
          lambda v: None if v >= 0 else 'must be >= 0', read_only=True),
    Param('max_drift_s', 0.02, 'Re-anchor the sample-count stamps (with a warning) when they '
          'drift from the node clock by more than this (s).', positive),
    Param('drift_history', 32, 'Chunks over which the minimum clock offset is taken (jitter '
          'rejection of the drift estimate).', positive, read_only=True),
    Param('queue_size', 200, 'Blocks buffered between the audio callback and the publisher '
          'thread; when full, blocks are dropped and counted.', positive, read_only=True),
    Param('qos_depth', 100, 'History depth of the reliable audio publisher.', positive,
          read_only=True),
    Param('reopen_period_s', 2.0, 'Retry period when the device cannot be opened (s).',
          positive, read_only=True),
    Param('diagnostics_period_s', 1.0, 'Period of /diagnostics (steady clock, s).', positive,
          read_only=True),
]


class ChunkStamper:
    """Sample-count stamps anchored to a clock, re-anchored when they drift (see module doc).

    Pure Python (no ROS): ``stamp(n, arrival_ns)`` returns ``(stamp_ns, reanchor_offset_ns)``
    where ``arrival_ns`` is the clock time at which the chunk's last sample was available and
    ``reanchor_offset_ns`` is None unless the anchor was just moved (by that amount).
    """

    def __init__(self, sample_rate: int, max_drift_ns: int, history: int = 32):
        self.rate = int(sample_rate)
        self.max_drift_ns = int(max_drift_ns)
        self._offsets = collections.deque(maxlen=max(1, int(history)))
        self.reset()

    def reset(self) -> None:
        """Forget the anchor: the next chunk is anchored afresh (after lost samples)."""
        self.anchor_ns: Optional[int] = None
        self.samples = 0
        self._offsets.clear()

    def _t(self, samples: int) -> int:
        return self.anchor_ns + (samples * 1_000_000_000) // self.rate

    def stamp(self, n: int, arrival_ns: int):
        if self.anchor_ns is None:
            self.anchor_ns = int(arrival_ns) - (int(n) * 1_000_000_000) // self.rate
            self.samples = 0
        stamp = self._t(self.samples)
        offset = int(arrival_ns) - self._t(self.samples + n)
        self._offsets.append(offset)
        moved = None
        lo = min(self._offsets)
        if abs(lo) > self.max_drift_ns:
            self.anchor_ns += lo
            stamp += lo
            moved = lo
            self._offsets.clear()
        self.samples += int(n)
        return stamp, moved


class BinauralCapture(Node):

    def __init__(self):
        super().__init__(NODE_NAME)
        self.p = declare_parameters(self, PARAMS)
        from audio_common_msgs.msg import AudioDataStamped, AudioInfo
        from diagnostic_msgs.msg import DiagnosticArray
        self._AudioDataStamped = AudioDataStamped
        self.rate = int(self.p['sample_rate'])
        self.block = int(self.p['block_size'])
        qos = stream_qos('reliable', self.p['qos_depth'])
        self.pub_audio = self.create_publisher(AudioDataStamped, 'audio/audio_stamped', qos)
        self.pub_info = self.create_publisher(AudioInfo, 'audio/audio_info', latched_qos())
        self.pub_diag = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        from .ros_convert import audio_info_msg
        self.pub_info.publish(audio_info_msg(self.rate, 2, 'S16LE'))
        self.get_logger().info(
            f"publishing {self.pub_audio.topic_name} ({describe_qos(qos)}) and "
            f"{self.pub_info.topic_name} (transient_local): {self.rate} Hz, 2 ch S16LE, "
            f"{self.block} samples/chunk ({1e3 * self.block / self.rate:.1f} ms), "
            f"source={self.p['source']}")

        self._stop = threading.Event()
        self._q: queue.Queue = queue.Queue(maxsize=int(self.p['queue_size']))
        self.stamper = ChunkStamper(self.rate, int(self.p['max_drift_s'] * 1e9),
                                    self.p['drift_history'])
        self.stats = collections.Counter()
        self._stats_lock = threading.Lock()
        self.status = 'starting'
        self.last_stamp_ns = 0
        self._log_throttle = LogThrottle(self.get_logger())
        self._stream = None
        self._dropped_in_callback = 0

        if self.p['source'] == 'file':
            target = self._file_loop
        else:
            target = self._device_loop
        self._thread = threading.Thread(target=target, name='sbm-capture', daemon=True)
        self._thread.start()
        steady = Clock(clock_type=ClockType.STEADY_TIME)
        self.create_timer(self.p['diagnostics_period_s'], self._publish_diagnostics,
                          clock=steady)

    # ------------------------------------------------------------------ helpers
    def _throttled(self, level: str, key: str, msg: str, period: float = 5.0) -> None:
        self._log_throttle(level, key, msg, period)

    def _count(self, key: str, n: int = 1) -> None:
        with self._stats_lock:
            self.stats[key] += n

    def _now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    def _publish_chunk(self, lr_int16: np.ndarray, stamp_ns: int) -> bool:
        """Publish one chunk; False once ``max_duration_s`` of audio has been published."""
        limit = int(round(self.p['max_duration_s'] * self.rate))
        if limit:
            left = limit - self.stats['samples']
            if left <= 0:
                return False
            lr_int16 = lr_int16[:left]
        msg = self._AudioDataStamped()
        msg.header.stamp = ns_to_stamp(stamp_ns)
        msg.header.frame_id = self.get_parameter('frame_id').value
        msg.audio.data = array.array('B', np.ascontiguousarray(lr_int16, dtype='<i2').tobytes())
        try:
            self.pub_audio.publish(msg)
        except Exception as exc:  # noqa: BLE001 - e.g. shutting down under the thread's feet
            if not self.context.ok():
                self._stop.set()
                return
            self._throttled('error', 'publish', f'cannot publish an audio chunk: {exc}')
            return
        self.last_stamp_ns = stamp_ns
        self._count('chunks')
        self._count('samples', lr_int16.shape[0])
        if limit and self.stats['samples'] >= limit:
            self.status = 'max_duration_s reached'
            self.get_logger().info(f"published max_duration_s={self.p['max_duration_s']} s of "
                                   f'audio: stopping')
            self._stop.set()
            return False
        return True

    def _wait_to_start(self) -> bool:
        """start_delay_s and wait_for_subscribers; False when the node is stopping."""
        want = int(self.p['wait_for_subscribers'])
        t0 = time.monotonic()
        while want and self.pub_audio.get_subscription_count() < want:
            if time.monotonic() - t0 > 1.0:
                self._throttled('info', 'waitsubs', f'waiting for {want} subscriber(s) of '
                                f'{self.pub_audio.topic_name} (have '
                                f'{self.pub_audio.get_subscription_count()})', period=5.0)
            if self._stop.wait(0.05):
                return False
        return not self._stop.wait(self.p['start_delay_s'])

    # ------------------------------------------------------------------ file source
    def _file_chunks(self, reader):
        """int16 (n, 2) chunks of ``block_size`` read from the file (the file's last chunk may be
        shorter), again from the start when ``loop`` is set."""
        from sbm_ros.core.audio_io import float_to_pcm_bytes
        while reader.frames:
            rest = np.empty((0, 2), dtype='<i2')
            for x in reader.blocks():
                pcm = np.frombuffer(float_to_pcm_bytes(x, 'S16LE'), dtype='<i2').reshape(-1, 2)
                rest = np.concatenate([rest, pcm])
                while rest.shape[0] >= self.block:
                    yield rest[:self.block]
                    rest = rest[self.block:]
            if rest.shape[0]:
                yield rest
            if not self.p['loop']:
                return

    def _file_loop(self) -> None:
        from sbm_ros.core.audio_io import WavBlockReader
        path = self.p['file_path']
        try:
            if not path:
                raise ValueError("parameter 'file_path' is empty")
            reader = WavBlockReader(os.path.expanduser(path), target_rate=self.rate)
        except (ValueError, OSError, ImportError) as exc:
            self.status = f'cannot read WAV file: {exc}'
            self.get_logger().error(f"source 'file': cannot read {path!r}: {exc}; publishing "
                                    f"nothing")
            return
        self.get_logger().info(f"source 'file': {path} ({reader.frames / self.rate:.2f} s), "
                               f"realtime_factor={self.p['realtime_factor']}, "
                               f"loop={self.p['loop']}")
        if not self._wait_to_start():
            return
        self.status = 'playing file'
        speed = float(self.p['realtime_factor'])
        anchor = t0 = None      # stamp and pacing clock start at the first chunk read
        sent = 0            # samples published since start (all loops)
        for chunk in self._file_chunks(reader):
            if self._stop.is_set():
                return
            if t0 is None:
                anchor = self._now_ns()
                if anchor == 0:
                    self.get_logger().warning('the node clock reads 0 (use_sim_time without '
                                              '/clock?): stamps start at 0')
                self.get_logger().info(f"source 'file': playing, first stamp {anchor} ns")
                t0 = time.monotonic()
            due = t0 + (sent + chunk.shape[0]) / self.rate / speed
            delay = due - time.monotonic()
            if delay < -MAX_CATCH_UP_S:
                # Behind the pace (a stall: disk, CPU, a lazy import): go on from now instead
                # of publishing the backlog as one burst, which a subscriber's queue drops at
                # high speeds. The stamps follow the audio, so they stay contiguous.
                t0 -= delay
                self._count('pacing_restarts')
                self._throttled('info', 'pacing', f"source 'file': {-delay:.2f} s behind the "
                                f'playback pace: pacing restarted from now (no burst)')
            elif delay > 0 and self._stop.wait(delay):
                return
            if not self._publish_chunk(chunk, anchor + (sent * 1_000_000_000) // self.rate):
                return
            sent += chunk.shape[0]
        self.status = 'end of file'
        self.get_logger().info(f"source 'file': end of {path} after {sent / self.rate:.2f} s "
                               f"of audio")

    # ------------------------------------------------------------------ device source
    def _audio_callback(self, indata, frames, time_info, status) -> None:
        # PortAudio thread: copy and enqueue only.
        try:
            self._q.put_nowait((indata.copy(), bool(status.input_overflow),
                                time.monotonic_ns(), self._dropped_in_callback))
            self._dropped_in_callback = 0    # reported with the block that follows them
        except queue.Full:
            self._dropped_in_callback += 1

    def _resolve_device(self, sd):
        dev = str(self.p['device']).strip()
        if dev == '':
            return None
        if dev.lstrip('-').isdigit():
            return int(dev)
        return dev

    def _open_stream(self, sd):
        cmap = [int(c) for c in self.p['channel_map']]
        channels = int(self.p['channels']) or (max(cmap) + 1)
        if max(cmap) >= channels:
            raise ValueError(f'channel_map {cmap} needs at least {max(cmap) + 1} channels, '
                             f'channels={channels}')
        stream = sd.InputStream(device=self._resolve_device(sd), samplerate=self.rate,
                                blocksize=self.block, channels=channels, dtype='int16',
                                callback=self._audio_callback)
        stream.start()
        return stream, cmap

    def _device_loop(self) -> None:
        try:
            import sounddevice as sd
        except (ImportError, OSError) as exc:
            self.status = f'sounddevice unavailable: {exc}'
            self.get_logger().error(f'cannot import sounddevice ({exc}): install it (pip install '
                                    f"sounddevice; Debian: libportaudio2) or use source:=file")
            return
        cmap = [0, 1]
        if not self._wait_to_start():
            return
        while not self._stop.is_set():
            if self._stream is None:
                try:
                    self._stream, cmap = self._open_stream(sd)
                except Exception as exc:  # PortAudioError, ValueError: keep retrying
                    self.status = f'cannot open device: {exc}'
                    try:
                        inputs = [f"{i}: {d['name']} ({d['max_input_channels']} ch)"
                                  for i, d in enumerate(sd.query_devices())
                                  if d['max_input_channels'] > 0]
                    except Exception:  # noqa: BLE001 - listing is best effort
                        inputs = []
                    self._throttled('error', 'open',
                                    f"cannot open input device {self.p['device']!r} at "
                                    f'{self.rate} Hz: {exc}; input devices: '
                                    f"{'; '.join(inputs) or 'none'}; retrying every "
                                    f"{self.p['reopen_period_s']} s", period=30.0)
                    self._stop.wait(self.p['reopen_period_s'])
                    continue
                self.stamper.reset()
                self.status = 'capturing'
                self.get_logger().info(
                    f"capturing from {self.p['device'] or 'the default input'!r} (PortAudio "
                    f'device {self._stream.device!r}) at {self._stream.samplerate:g} Hz, '
                    f'{self._stream.channels} channel(s), left/right = channels {cmap}, '
                    f'latency {self._stream.latency:.3f} s')
            try:
                item = self._q.get(timeout=0.5)
            except queue.Empty:
                if self._stream is not None and not self._stream.active:
                    self._throttled('error', 'inactive', 'the input stream stopped (device '
                                    'lost?); reopening it')
                    self._close_stream()
                continue
            self._handle_block(*item, cmap=cmap)
        self._close_stream()

    def _handle_block(self, block: np.ndarray, overflow: bool, arrival_mono: int,
                      dropped: int, cmap) -> None:
        if dropped:          # blocks lost between the previous one and this one
            self._count('queue_drops', dropped)
            self.stamper.reset()
            self._throttled('warn', 'qdrop', f'{dropped} audio block(s) dropped: the publisher '
                            f'thread fell behind (queue_size={self.p["queue_size"]}); stamps '
                            f're-anchored')
        if overflow:
            self._count('overflows')
            self.stamper.reset()
            self._throttled('warn', 'overflow',
                            f'input overflow (#{self.stats["overflows"]}): PortAudio lost '
                            f'samples (CPU busy or block_size too small); stamps re-anchored')
        now_ns = self._now_ns()
        arrival_ns = now_ns - (time.monotonic_ns() - arrival_mono)
        n = block.shape[0]
        stamp, moved = self.stamper.stamp(n, arrival_ns)
        if moved is not None:
            self._count('reanchors')
            self._throttled('warn', 'drift', f'audio stamps drifted {moved / 1e6:+.1f} ms from '
                            f"the node clock (> max_drift_s={self.p['max_drift_s']}): "
                            f're-anchored')
        self._publish_chunk(block[:, cmap], stamp)

    def _close_stream(self) -> None:
        s, self._stream = self._stream, None
        if s is not None:
            try:
                s.abort(ignore_errors=True)
                s.close(ignore_errors=True)
            except Exception:  # noqa: BLE001 - closing is best effort
                pass

    # ------------------------------------------------------------------ diagnostics
    def _publish_diagnostics(self) -> None:
        from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
        with self._stats_lock:
            st = dict(self.stats)
        prev = getattr(self, '_prev_stats', {})
        self._prev_stats = st
        new_over = st.get('overflows', 0) - prev.get('overflows', 0)
        new_drop = st.get('queue_drops', 0) - prev.get('queue_drops', 0)
        new_chunks = st.get('chunks', 0) - prev.get('chunks', 0)
        s = DiagnosticStatus()
        s.name = f'{self.get_name()}: audio capture'
        s.hardware_id = str(self.p['device'] or self.p['file_path'] or 'default')
        if self.status.startswith(('cannot', 'sounddevice')):
            s.level, s.message = DiagnosticStatus.ERROR, self.status
        elif new_over or new_drop:
            s.level = DiagnosticStatus.WARN
            s.message = f'{new_over} overflow(s), {new_drop} dropped block(s) in the last period'
        elif new_chunks == 0 and self.status in ('capturing', 'playing file'):
            s.level = DiagnosticStatus.WARN
            s.message = f'{self.status}: no audio in the last period'
        else:
            s.level, s.message = DiagnosticStatus.OK, self.status
        vals = {
            'source': self.p['source'], 'sample_rate': self.rate, 'block_size': self.block,
            'chunks_published': st.get('chunks', 0),
            'audio_published_s': f"{st.get('samples', 0) / self.rate:.2f}",
            'input_overflows': st.get('overflows', 0),
            'dropped_blocks': st.get('queue_drops', 0),
            'reanchors': st.get('reanchors', 0),
            'pacing_restarts': st.get('pacing_restarts', 0),
            'last_stamp': f'{self.last_stamp_ns / 1e9:.6f}',
        }
        s.values = [KeyValue(key=k, value=str(v)) for k, v in vals.items()]
        arr = DiagnosticArray()
        arr.header.stamp = self.get_clock().now().to_msg()
        arr.status = [s]
        self.pub_diag.publish(arr)

    def destroy_node(self):
        self._stop.set()
        self._close_stream()
        if self._thread.is_alive():
            self._thread.join(timeout=2.0)
        return super().destroy_node()


def main(args=None) -> int:
    return run(BinauralCapture, args=args)


if __name__ == '__main__':
    raise SystemExit(main())
