"""Training capture with a marked loudspeaker (paper section VI), without ROS.

What ``av_fusion``'s ``~/capture_sample`` does between the messages: the audio clock
(:class:`AudioTimeline`), the recording of the audio acquired after a request
(:class:`Recording`), the checks before and after a capture (each returns the refusal reason, or
None) and the sample appended to the dataset (:func:`append_capture`). Inputs are plain Python:
the audio format as ``(rate, channels, sample_format)``, stamps in integer nanoseconds, marker
detections as objects with ``u`` and ``v``, camera fields as numbers.

Audio selection: a capture records the audio ACQUIRED after the request, whatever the audio
driver's clock and latency. The request time is taken in the audio stream's timeline: the
smallest (arrival time - stamp of the chunk's last sample) over the chunks of the last 10 s is
the offset between the node's steady clock and the audio clock plus the smallest delivery
latency; the request time is mapped through it. Chunks queued from before the request are
skipped, the chunk under way at the request is trimmed to it. A discontinuity in the stamps
(restarted driver, bag loop) restarts the estimate; unstamped chunks (stamp 0) are taken by
arrival.
"""

from __future__ import annotations

import math
import os
from collections import deque
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np

from sbm_ros.core.audio_io import SAMPLE_FORMATS as SAMPLE_BYTES
from sbm_ros.core.audio_io import PcmStreamDecoder
from sbm_ros.core.dataset import DatasetError, append_sample

TARGET_NAMES = ['u_px', 'v_px']
RAW_CODINGS = ('', 'wave', 'wav', 'raw', 'pcm', 's16le', 'pcm_s16le')
NS = 1_000_000_000

#: the audio-clock offset is the smallest (arrival - stamp) over this many seconds of chunks
OFFSET_WINDOW_NS = 10 * NS
#: a chunk whose stamp differs more than this from the previous chunk's end is a discontinuity
#: (restarted driver, bag loop, dropped audio): the offset estimate restarts
STAMP_JUMP_NS = NS // 2

#: (sample rate, channels, sample format) of the audio stream
AudioFormat = Tuple[int, int, str]


# ----------------------------------------------------------------------------- audio format
def audio_format(info, sample_rate: int = 0, sample_format: str = 'S16LE',
                 formats: Sequence[str] = tuple(SAMPLE_BYTES)) -> Union[AudioFormat, str]:
    """(rate, 2, format) of a binaural stream from an ``AudioInfo``-like object (fields
    ``coding_format``, ``sample_format``, ``channels``, ``sample_rate``), or from the fallback
    ``sample_rate`` / ``sample_format`` when ``info`` is None; else the error string."""
    if info is None:
        if sample_rate > 0:
            return int(sample_rate), 2, str(sample_format)
        return "no 'audio/audio_info' received (and parameter sample_rate is 0)"
    coding = str(info.coding_format).strip().lower()
    if coding not in RAW_CODINGS:
        return (f"audio coding_format {info.coding_format!r} is not raw PCM (e.g. mp3): "
                "configure the audio driver for raw/wave")
    fmt = str(info.sample_format).strip().upper() or 'S16LE'
    if fmt not in formats:
        return f'audio sample_format {info.sample_format!r} not one of {tuple(formats)}'
    if info.channels != 2:
        return f'binaural capture needs 2 audio channels, audio_info says {info.channels}'
    if info.sample_rate <= 0:
        return f'audio_info sample_rate {info.sample_rate} is invalid'
    return int(info.sample_rate), 2, fmt


def chunk_end_ns(stamp_ns: int, n_bytes: int, fmt: AudioFormat) -> int:
    """Stamp just past the last sample of a chunk of ``n_bytes`` starting at ``stamp_ns``."""
    frames = n_bytes // (SAMPLE_BYTES.get(fmt[2], 2) * fmt[1])
    return stamp_ns + frames * NS // fmt[0]


# ----------------------------------------------------------------------------- audio clock
class AudioTimeline:
    """Maps this process's steady clock (``time.monotonic_ns``) to the audio stream's stamps.

    ``add`` is given each chunk's arrival time and the stamps of its first and just past its
    last sample; the offset is the smallest ``arrival - end`` over the last ``window_ns``: the
    clock offset plus the smallest delivery latency seen (a queued or late chunk only has a
    larger difference). ``to_audio(t)`` is then the audio stamp of steady time ``t``, at most
    that smallest latency early. Any clock offset works (another machine, a lagging driver).
    """

    def __init__(self, window_ns: int = OFFSET_WINDOW_NS, jump_ns: int = STAMP_JUMP_NS):
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


# ----------------------------------------------------------------------------- recording
class Recording:
    """The audio of one capture: ``n_samples`` samples acquired after steady time
    ``start_steady_ns`` (the request). ``delay_ns``: its first sample's stamp minus the request
    time in the audio timeline (None for unstamped audio); ``stale``: chunks skipped as
    acquired before the request; ``error``: why it stopped early."""

    def __init__(self, n_samples: int, start_steady_ns: int = 0):
        self.n_samples = n_samples
        self.start_steady_ns = start_steady_ns
        self.delay_ns: Optional[int] = None
        self.started = False
        self.chunks: List[np.ndarray] = []
        self.count = 0
        self.stale = 0
        self.trimmed = 0
        self.done = False
        self.error: Optional[str] = None
        self._decoder: Optional[PcmStreamDecoder] = None
        self._decoder_fmt = None

    def fail(self, why: str) -> None:
        self.error, self.done = why, True

    def reset_decoder(self) -> None:
        """The stream's format changed (new audio_info): decode the next chunk afresh."""
        self._decoder = None

    def add(self, data: bytes, stamp_ns: int, fmt: Union[AudioFormat, str],
            timeline: AudioTimeline) -> None:
        """Append the audio of a chunk acquired after the request (``stamp_ns`` 0: unstamped,
        taken as it comes); ``fmt`` an error string stops the recording with it."""
        if self.done:
            return
        if isinstance(fmt, str):
            self.fail(fmt)
            return
        if self._decoder is None or self._decoder_fmt != fmt:
            self._decoder, self._decoder_fmt = PcmStreamDecoder(fmt[1], fmt[2]), fmt
        try:
            x = self._decoder.decode(bytes(data))
        except ValueError as exc:
            self.fail(f'audio chunk cannot be decoded: {exc}')
            return
        # Record the audio ACQUIRED after the request, not what happens to arrive: chunks
        # still queued from before it (a busy node, a burst from the driver) would put audio
        # from before the loudspeaker was placed into the dataset. The request time is mapped
        # into the audio clock, which may lag or lead the node's clock.
        if not self.started and stamp_ns:
            x = self._trim_to_request(x, stamp_ns, fmt[0], timeline)
            if x is None:
                return
        need = self.n_samples - self.count
        if len(x):
            self.started = True
            self.chunks.append(x[:need])
            self.count += min(len(x), need)
        if self.count >= self.n_samples:
            self.done = True

    def _trim_to_request(self, x: np.ndarray, stamp_ns: int, rate: int,
                         timeline: AudioTimeline) -> Optional[np.ndarray]:
        """The part of the chunk acquired after the request (None: all of it was before)."""
        start = timeline.to_audio(self.start_steady_ns)
        skip = 0
        if start is not None and start > stamp_ns:
            skip = -(-(start - stamp_ns) * rate // NS)   # samples, rounded up
            if skip >= len(x):
                self.stale += 1
                return None
            x = x[skip:]
            self.trimmed = skip
        if start is not None and len(x):
            self.delay_ns = stamp_ns + skip * NS // rate - start
        return x

    def samples(self) -> np.ndarray:
        """The recorded (n_samples, channels) float audio."""
        return np.concatenate(self.chunks, axis=0)[:self.n_samples]

    def shortfall(self, rate: int, duration: float) -> str:
        """Why the recording did not complete in time (a refusal reason)."""
        stale = (f' ({self.stale} chunk(s) acquired before the request were skipped)'
                 if self.stale else '')
        return (f'audio stopped: got {self.count / rate:.2f} s of {duration:.2f} s within the '
                f'timeout{stale}')


# ----------------------------------------------------------------------------- camera
def camera_problem(width: int, height: int, K: Sequence[float]) -> Optional[str]:
    """What is wrong with a camera calibration (None if it is usable): empty size, K not 3x3,
    non-finite K, focal lengths fx / fy not > 0."""
    if not (width > 0 and height > 0):
        return f'image size {width}x{height} is empty'
    k = np.asarray(list(K), float).reshape(-1)
    if k.size != 9:
        return f'K has {k.size} values, not 9'
    if not np.all(np.isfinite(k)):
        return f'K has non-finite values: {k.tolist()}'
    if not (k[0] > 0 and k[4] > 0):
        return f'focal lengths fx = {k[0]:g}, fy = {k[4]:g} must be > 0 (uncalibrated camera?)'
    return None


def camera_dict(width: int, height: int, K, D, distortion_model: str, frame_id: str) -> dict:
    """The ``camera.json`` record of a dataset."""
    return {'width': int(width), 'height': int(height), 'K': [float(v) for v in K],
            'D': [float(v) for v in D], 'distortion_model': str(distortion_model),
            'frame_id': str(frame_id)}


# ----------------------------------------------------------------------------- checks
def audio_age_problem(age_s: Optional[float], timeout_s: float) -> Optional[str]:
    """Refusal reason when no audio has arrived (``age_s`` None) or not for ``timeout_s``."""
    if age_s is None:
        return "no audio received on 'audio/audio_stamped' yet"
    if age_s > timeout_s:
        return f'no audio for {age_s:.1f} s: is the capture node running?'
    return None


def image_age_problem(age_s: float, max_age_s: float) -> Optional[str]:
    if age_s > max_age_s:
        return (f'the current image is {age_s:.1f} s old (max_image_age {max_age_s} s): is the '
                'camera running?')
    return None


def image_size_problem(image_size, camera_size) -> Optional[str]:
    if tuple(image_size) != tuple(camera_size):
        return (f'image {image_size[0]}x{image_size[1]} and camera_info '
                f'{camera_size[0]}x{camera_size[1]} differ')
    return None


def marker_motion_problem(det0, det1, max_px: float) -> Optional[str]:
    moved = math.hypot(det1.u - det0.u, det1.v - det0.v)
    if moved > max_px:
        return (f'the marker moved {moved:.1f} px during the recording (max_marker_motion_px '
                f'{max_px}): hold the loudspeaker still')
    return None


def rms_dbfs(x: np.ndarray) -> float:
    rms = float(np.sqrt(np.mean(np.asarray(x, float) ** 2))) if np.size(x) else 0.0
    return 20 * math.log10(max(rms, 1e-12))


def level_problem(dbfs: float, min_dbfs: float) -> Optional[str]:
    if dbfs < min_dbfs:
        return (f'audio too quiet: RMS {dbfs:.1f} dBFS < min_rms_dbfs {min_dbfs:.1f}: is the '
                'loudspeaker playing white noise?')
    return None


# ----------------------------------------------------------------------------- the sample
@dataclass
class CaptureResult:
    """One appended sample: file name, marker pixel, level, duration, samples in the dataset."""

    name: str
    u: float
    v: float
    dbfs: float
    seconds: float
    total: int
    root: str
    delay_ns: Optional[int] = None

    @property
    def message(self) -> str:
        since = (f' from {self.delay_ns * 1e-9:.3f} s after the request'
                 if self.delay_ns is not None else '')
        return (f'{self.name}: marker at ({self.u:.1f}, {self.v:.1f}) px, RMS {self.dbfs:.1f} '
                f'dBFS, {self.seconds:.2f} s{since}; {self.total} sample(s) in {self.root}')


def count_samples(root: str) -> int:
    """Samples in a dataset folder (rows of its targets.csv; 0 if there is none)."""
    try:
        with open(os.path.join(root, 'targets.csv')) as fh:
            return max(0, sum(1 for ln in fh if ln.strip()) - 1)
    except OSError:
        return 0


def append_capture(root: str, x: np.ndarray, rate: int, det0, det1, camera: dict,
                   dbfs: float, delay_ns: Optional[int] = None) -> Union[CaptureResult, str]:
    """Append the recording with the marker pixel (the mean of its positions before and after
    the recording) to the dataset ``root``; the result, or the refusal reason."""
    u, v = 0.5 * (det0.u + det1.u), 0.5 * (det0.v + det1.v)
    try:
        name = append_sample(root, x, rate, (u, v), TARGET_NAMES, camera=camera)
    except (DatasetError, OSError, ValueError) as exc:
        return f'cannot write to {root!r}: {exc}'
    return CaptureResult(name, u, v, dbfs, len(x) / rate, count_samples(root), root, delay_ns)
