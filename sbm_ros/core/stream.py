"""Audio chunk streams: PCM bytes and stamps in, clean audio in stamp order out, plus what went
wrong.

A ROS node receives audio as chunks of raw bytes with a stamp (the acquisition time of the
chunk's first sample). :class:`StreamGate` turns them into :class:`Segment` objects, released
in stamp order, each telling whether the consumer must flush its window first, and a list of
:class:`Event` objects (a counter key, a log level and a readable message) for the caller to
log (throttled) and count. It imports nothing of ROS and is tested with plain pytest.

What the gate checks, in this order, when a chunk arrives (:meth:`StreamGate.push`):

* **Size**: a chunk holding more than ``max_chunk_s`` seconds of audio is refused *before*
  decoding (``oversized_chunks``): a live chunk is 10-100 ms; a chunk of minutes is a broken
  publisher, would cost its decoded size several times over in memory, block the caller for
  seconds and yield a single estimate from its last window anyway (use ``sbm-localize`` for
  recordings). It is passed on as a refused segment (a hole: the window is flushed, the stream
  cursor moves past it, so it is not also reported as a gap).
* **Decoding**: trailing bytes that are not a whole frame are dropped (``partial_frames``); an
  empty chunk is ignored (``empty_chunks``).
* **Content**: non-finite samples (``nonfinite_chunks``) and digital silence (``zero_chunks``)
  are refused (holes). Clipping (``clipped_chunks``) and a level above ``loud_warn_dbfs``
  (``loud_chunks``) are only reported, the chunk is localised, EXCEPT when the loud chunk's
  left and right channels are also incoherent: its largest normalised cross-correlation over
  the physically possible interaural lags (within ``max_itd_s``) is below ``min_coherence``.
  Uniform random bytes decoded as S16 sit at -4.8 dBFS with a coherence of about
  ``3 / sqrt(samples)`` (0.07 for a 50 ms chunk), whereas one talker, even clipped, gives 0.5
  to 1; such chunks are refused (``random_chunks``). A quiet or coherent chunk is never
  refused for its level.
* **Stamps** (stamp 0 = unstamped: stamped by sample count after the newest chunk,
  ``unstamped_chunks``). A small **reorder buffer** holds up to ``reorder_chunks`` chunks and
  releases them in stamp order (held audio never exceeds ``reorder_window_s``), so a swapped
  pair of chunks is put back in order (``reordered_chunks``) instead of flushing the window.
  Only a chunk that leaves a hole after the cursor waits there (for the chunk that fills the
  hole, until ``reorder_chunks`` newer ones or ``reorder_window_s`` of audio are held, or
  :meth:`StreamGate.drain`): a chunk that continues the cursor within the tolerance is released
  at once, and with it the held chunks it connects to, so an in-order stream is not delayed.
  The stream's first chunk, with no cursor yet, waits for the next one.
  When a chunk is released it is compared with the end of the previous one (the cursor); the
  tolerance is ``min(stamp_tolerance_s, half the typical chunk)`` (median of the last 15):

  - older than the cursor by at most ``reorder_window_s``: a late duplicate or a chunk the
    buffer could not put back; dropped (``late_chunks``), nothing is flushed;
  - older by more (bag loop, restarted publisher): ``backward_jumps``, the chunks still held
    are released first and the window is flushed once;
  - newer by more than the tolerance and at most ``time_jump_s``: a gap, chunks were lost
    (``gaps`` and the estimated number of ``dropped_chunks``: the gap over the median duration
    of the last 15 chunks, so a single short chunk does not inflate it), flush;
  - newer by more than ``time_jump_s``: one ``time_jumps`` event, flush, and no dropped chunks
    are counted (a stamp 10^6 s ahead is one jump, not 2e7 lost chunks). A single chunk stamped
    far ahead of a stream that then goes on as before is dropped as an outlier (also counted
    as a ``time_jumps``).

* **Clock** (optional ``clock_ns``, the node clock): a backward jump of the clock by more than
  the tolerance (``ros2 bag play --loop`` with ``use_sim_time``) flushes (``clock_jumps``).

:class:`LoadMonitor` tells whether the consumer keeps up with the stream (see its docstring).
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections import Counter, deque
from dataclasses import dataclass
from typing import Deque, List, Optional, Tuple

import numpy as np

from .audio_io import bytes_per_sample, pcm_bytes_to_float

__all__ = ["StreamConfig", "Event", "Segment", "PushResult", "StreamGate", "LoadMonitor",
           "LoadStatus", "interaural_coherence"]

_NS = 1_000_000_000
_TYPICAL_OF = 15          # released chunks whose median duration is the typical chunk


@dataclass
class StreamConfig:
    """Settings of a :class:`StreamGate` (see the module docstring; times in seconds)."""

    stamp_tolerance_s: float = 0.03
    max_chunk_s: float = 5.0
    reorder_chunks: int = 1
    reorder_window_s: float = 0.5
    time_jump_s: float = 1.0
    clip_level: float = 0.999
    clip_warn_fraction: float = 0.001
    loud_warn_dbfs: float = -8.0
    min_coherence: float = 0.3
    max_itd_s: float = 0.001


@dataclass
class Event:
    """Something the caller should log and count: ``kind`` is the counter key (and the
    throttling key), ``level`` one of 'info', 'warn', 'error'; ``rejected`` when the chunk's
    audio will not be localised."""

    kind: str
    level: str
    message: str
    count: int = 1
    rejected: bool = False


@dataclass
class Segment:
    """A chunk released in stamp order. ``samples`` is float64 (n, channels), or None for a
    refused chunk (``refused`` names why). ``flush``: flush the window before using it."""

    stamp_ns: int
    n: int
    samples: Optional[np.ndarray]
    duration_ns: int
    arrival_ns: int = 0
    flush: bool = False
    refused: str = ""

    @property
    def end_ns(self) -> int:
        return self.stamp_ns + self.duration_ns


@dataclass
class PushResult:
    segments: List[Segment]
    events: List[Event]


def interaural_coherence(x: np.ndarray, max_lag: int) -> float:
    """Largest ``|normalised cross-correlation|`` of the two columns of ``x`` (n, 2) over lags
    ``-max_lag .. max_lag`` samples (means removed); 0 when a channel is constant."""
    l_ch = x[:, 0] - x[:, 0].mean()
    r_ch = x[:, 1] - x[:, 1].mean()
    norm = math.sqrt(float(l_ch @ l_ch) * float(r_ch @ r_ch))
    if norm <= 0.0:
        return 0.0
    n = x.shape[0]
    max_lag = int(min(max_lag, n - 1))
    nfft = 1 << int(math.ceil(math.log2(n + max_lag + 1)))
    cc = np.fft.irfft(np.fft.rfft(l_ch, nfft) * np.conj(np.fft.rfft(r_ch, nfft)), nfft)
    lags = np.concatenate([cc[:max_lag + 1], cc[nfft - max_lag:]]) if max_lag else cc[:1]
    return float(np.max(np.abs(lags)) / norm)


class StreamGate:
    """Bytes + stamps in, :class:`Segment` objects in stamp order out (see module docstring).

    Parameters
    ----------
    rate, channels, sample_format : the PCM format of the chunks.
    config : StreamConfig, optional
    counts : Counter, optional
        Counters to update (kept by the caller across gates, e.g. after a format change).
    """

    def __init__(self, rate: int, channels: int, sample_format: str,
                 config: Optional[StreamConfig] = None, counts: Optional[Counter] = None):
        self.rate = int(rate)
        self.channels = int(channels)
        self.sample_format = str(sample_format).upper()
        self.frame_bytes = self.channels * bytes_per_sample(self.sample_format)
        self.config = config or StreamConfig()
        self.counts: Counter = counts if counts is not None else Counter()
        self._held: List[Tuple[int, int, Segment]] = []      # heap of (stamp, seq, segment)
        self._seq = itertools.count()
        self._events: List[Event] = []
        self.reset()

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        """Forget the stream position and drop held chunks (after a format change)."""
        self._held.clear()
        self.cursor_ns: Optional[int] = None     # end of the last released chunk
        self.last_dur_ns = 0
        self._durs: Deque[int] = deque(maxlen=_TYPICAL_OF)   # recent released durations
        self._last_clock_ns: Optional[int] = None
        self._flush_next = False

    @property
    def held(self) -> int:
        """Chunks waiting in the reorder buffer."""
        return len(self._held)

    def _dur_ns(self, n: int) -> int:
        return n * _NS // self.rate

    @property
    def typical_dur_ns(self) -> int:
        """Median duration of the last released chunks (0 before any): the chunk length the
        gap tolerance and the dropped-chunk estimate use, so one odd chunk (a single frame at
        the end of a file, a short read) does not turn the next ordinary gap into hundreds of
        dropped chunks."""
        if not self._durs:
            return 0
        return int(sorted(self._durs)[len(self._durs) // 2])

    def _tol_ns(self) -> int:
        tol = int(self.config.stamp_tolerance_s * _NS)
        typical = self.typical_dur_ns
        return min(tol, typical // 2) if typical else tol

    def _event(self, kind: str, level: str, message: str, count: int = 1,
               rejected: bool = False) -> None:
        self.counts[kind] += count
        self._events.append(Event(kind, level, message, count, rejected))

    def _take(self, segments: List[Segment]) -> PushResult:
        events, self._events = self._events, []
        return PushResult(segments, events)

    # ------------------------------------------------------------------ arrival
    def push(self, data, stamp_ns: int, arrival_ns: int = 0,
             clock_ns: Optional[int] = None) -> PushResult:
        """One chunk of interleaved PCM ``data`` stamped ``stamp_ns`` (0 = unstamped),
        received at ``arrival_ns`` (any monotonic clock; carried to the segment)."""
        out: List[Segment] = []
        self._check_clock(clock_ns)
        seg = self._decode(data, arrival_ns)
        if seg is None:
            return self._take(out)
        seg.stamp_ns = self._stamp(stamp_ns, clock_ns)
        if self._flush_next:
            seg.flush, self._flush_next = True, False
        self._insert(seg, out)
        return self._take(out)

    def drain(self) -> PushResult:
        """Release every held chunk (the stream paused or ended)."""
        out: List[Segment] = []
        while self._held:
            self._release(heapq.heappop(self._held)[2], out)
        return self._take(out)

    def _check_clock(self, clock_ns: Optional[int]) -> None:
        if clock_ns is None:
            return
        tol = int(self.config.stamp_tolerance_s * _NS)
        if self._last_clock_ns is not None and clock_ns < self._last_clock_ns - tol:
            self._event('clock_jumps', 'warn', f'ROS time jumped backwards by '
                        f'{(self._last_clock_ns - clock_ns) / 1e9:.3f} s (bag loop?): '
                        f'window flushed')
            self._flush_next = True
        self._last_clock_ns = clock_ns

    def _decode(self, data, arrival_ns: int) -> Optional[Segment]:
        cfg = self.config
        nbytes = len(data)
        n = nbytes // self.frame_bytes
        if n > cfg.max_chunk_s * self.rate:
            self._event('oversized_chunks', 'error', f'audio chunk of {nbytes} bytes '
                        f'({n / self.rate:.1f} s) refused: longer than max_chunk_s='
                        f'{cfg.max_chunk_s:g} s (live chunks are 10-100 ms; localise '
                        f'recordings with sbm-localize)', rejected=True)
            return Segment(0, n, None, self._dur_ns(n), arrival_ns, flush=True,
                           refused='oversized_chunks')
        rem = nbytes % self.frame_bytes
        if rem:
            self._event('partial_frames', 'warn', f'audio chunk of {nbytes} bytes is not a '
                        f'whole number of {self.frame_bytes}-byte frames ({self.channels} ch '
                        f'{self.sample_format}): dropped the trailing {rem} byte(s)')
        if n == 0:
            self._event('empty_chunks', 'warn', f'empty audio chunk ({nbytes} bytes) ignored',
                        rejected=True)
            return None
        x = pcm_bytes_to_float(data, self.channels, self.sample_format, strict=False)
        refused = self._check_content(x)
        if refused:
            return Segment(0, n, None, self._dur_ns(n), arrival_ns, flush=True, refused=refused)
        return Segment(0, n, x, self._dur_ns(n), arrival_ns)

    def _check_content(self, x: np.ndarray) -> str:
        """Counter key of the reason to refuse ``x``, or '' (warnings recorded as events)."""
        cfg = self.config
        finite = np.isfinite(x)
        if not finite.all():
            bad = int(x.size - finite.sum())
            self._event('nonfinite_chunks', 'warn', f'audio chunk with {bad} non-finite '
                        f'sample(s) (NaN/inf) dropped', rejected=True)
            return 'nonfinite_chunks'
        if not x.any():
            self._event('zero_chunks', 'info', 'digital silence (all-zero audio chunks): muted '
                        'input? publishing nothing', rejected=True)
            return 'zero_chunks'
        clipped = float(np.count_nonzero(np.abs(x) >= cfg.clip_level)) / x.size
        if clipped > cfg.clip_warn_fraction:
            self._event('clipped_chunks', 'warn', f'audio clipped: {100 * clipped:.1f}% of the '
                        f'samples of a chunk at full scale (lower the input gain); still '
                        f'localising')
        dbfs = 10 * math.log10(float(np.mean(x * x)))
        if dbfs <= cfg.loud_warn_dbfs:
            return ''
        if self.channels == 2 and x.shape[0] > 1 and cfg.min_coherence > 0:
            coh = interaural_coherence(x, int(round(cfg.max_itd_s * self.rate)))
            if coh < cfg.min_coherence:
                self._event('random_chunks', 'error', f'audio level implausibly high (RMS '
                            f'{dbfs:.1f} dBFS) with incoherent ears (max correlation '
                            f'{coh:.2f} < min_coherence={cfg.min_coherence:g}): random data, '
                            f'or a wrong sample_format/endianness (using '
                            f'{self.sample_format})? chunk refused', rejected=True)
                return 'random_chunks'
        self._event('loud_chunks', 'warn', f'audio level implausibly high (RMS {dbfs:.1f} '
                    f'dBFS): a wrong sample_format/endianness (using {self.sample_format})? '
                    f'still localising (the ears are coherent)')
        return ''

    def _stamp(self, stamp_ns: int, clock_ns: Optional[int]) -> int:
        if stamp_ns:
            return int(stamp_ns)
        self._event('unstamped_chunks', 'warn', 'audio chunk without stamp (0): stamping it by '
                    'sample count')
        ends = [s.end_ns for _, _, s in self._held]
        if self.cursor_ns is not None:
            ends.append(self.cursor_ns)
        return max(ends) if ends else int(clock_ns or 0)

    # ------------------------------------------------------------------ ordering
    def _insert(self, seg: Segment, out: List[Segment]) -> None:
        cfg = self.config
        window_ns = int(cfg.reorder_window_s * _NS)
        jump_ns = int(cfg.time_jump_s * _NS)
        if self.cursor_ns is not None and seg.stamp_ns < self.cursor_ns - self._tol_ns():
            if seg.stamp_ns < self.cursor_ns - window_ns:
                while self._held:             # a backward jump: the old stream ends first
                    self._release(heapq.heappop(self._held)[2], out)
            self._release(seg, out)           # (a late chunk is dropped there)
            return
        if self._held:
            newest = max(s.end_ns for _, _, s in self._held)
            if seg.stamp_ns > newest + jump_ns:       # a jump ahead: release what is held
                while self._held:
                    self._release(heapq.heappop(self._held)[2], out)
            else:
                self._drop_outliers(seg, jump_ns)
                if any(s.stamp_ns > seg.stamp_ns for _, _, s in self._held):
                    self._event('reordered_chunks', 'info', 'audio chunks arrived out of '
                                'stamp order: put back in order by the reorder buffer')
        heapq.heappush(self._held, (seg.stamp_ns, next(self._seq), seg))
        while self._held and (len(self._held) > cfg.reorder_chunks or self._held_span() >
                              window_ns or self._continues_cursor(self._held[0][0])):
            self._release(heapq.heappop(self._held)[2], out)

    def _continues_cursor(self, stamp_ns: int) -> bool:
        """A chunk stamped here follows the audio already released (no hole to wait for)."""
        return self.cursor_ns is not None and stamp_ns - self.cursor_ns <= self._tol_ns()

    def _held_span(self) -> int:
        return (max(s.end_ns for _, _, s in self._held) - self._held[0][0]) if self._held else 0

    def _drop_outliers(self, seg: Segment, jump_ns: int) -> None:
        """Held chunks stamped more than ``time_jump_s`` after ``seg``: a lone chunk far ahead
        of a stream that goes on as before."""
        keep = [h for h in self._held if h[0] <= seg.stamp_ns + jump_ns]
        for _, _, s in self._held:
            if s.stamp_ns > seg.stamp_ns + jump_ns:
                self._event('time_jumps', 'warn', f'dropped an audio chunk stamped '
                            f'{(s.stamp_ns - seg.stamp_ns) / 1e9:.3f} s ahead of the stream '
                            f'(time jump of a single chunk)', rejected=True)
        if len(keep) != len(self._held):
            self._held = keep
            heapq.heapify(self._held)

    def _release(self, seg: Segment, out: List[Segment]) -> None:
        if self.cursor_ns is not None and not self._continuity(seg):
            return
        self.cursor_ns = seg.end_ns
        self.last_dur_ns = seg.duration_ns
        self._durs.append(seg.duration_ns)
        out.append(seg)

    def _continuity(self, seg: Segment) -> bool:
        """Compare ``seg`` with the cursor; False when it is dropped as late."""
        err = seg.stamp_ns - self.cursor_ns
        tol = self._tol_ns()
        if err < -tol:
            if -err <= max(int(self.config.reorder_window_s * _NS), tol):
                self._event('late_chunks', 'warn', f'audio chunk {-err / 1e9:.3f} s older than'
                            f' the audio already processed (late or duplicate): dropped',
                            rejected=True)
                return False
            self._event('backward_jumps', 'warn', f'audio stamps went backwards by '
                        f'{-err / 1e9:.3f} s (bag loop or restarted publisher): window flushed')
            seg.flush = True
        elif err > int(self.config.time_jump_s * _NS):
            self._event('time_jumps', 'warn', f'audio stamps jumped {err / 1e9:.3f} s ahead '
                        f'(> time_jump_s={self.config.time_jump_s:g}; counted as one time '
                        f'jump, not as dropped chunks): window flushed')
            seg.flush = True
        elif err > tol:
            missing = max(1, int(round(err / max(self.typical_dur_ns, 1))))
            self.counts['dropped_chunks'] += missing
            self._event('gaps', 'warn', f'gap of {err / 1e9:.3f} s in the audio stamps '
                        f'(~{missing} chunk(s) missing): window flushed')
            seg.flush = True
        return True


@dataclass
class LoadStatus:
    busy_fraction: float        # wall time spent processing / wall time, recent
    cost: float                 # processing wall seconds per audio second, recent
    input_speed: float          # audio seconds received per wall second (1 = real time)
    lag_growth_s: float         # how much later than real time chunks are processed now
    behind: bool
    message: str
    lost: int = 0               # chunks found missing (gaps) within the horizon


class LoadMonitor:
    """Does the consumer keep up with the audio stream?

    The caller records, for every chunk, the steady time when it was handled, the wall time
    spent on it (decoding, features, estimate, publishing) and its audio duration and stamp.
    Over the last ``horizon_s`` seconds:

    * ``busy_fraction``: the share of wall time spent processing. Near 1 the consumer never
      waits for input: chunks queue up (and the middleware drops the oldest once its queue is
      full), whatever the input speed (e.g. a bag played at 40x). The executor's own work per
      message is not included: over DDS at 800 chunks/s chunks were already lost at a busy
      fraction of 0.75, hence ``busy_limit`` 0.6, and chunks lost (gaps) while busy more than
      half that limit also count as falling behind;
    * ``lag_growth_s``: by how much the delay between a chunk's stamp and its handling grew
      (handling time minus stamp, minus its minimum over the horizon). For a live stream this
      delay is constant unless chunks wait in a growing queue.

    ``behind`` is ``busy_fraction > busy_limit``, or ``lag_growth_s > lag_limit_s``, or chunks
    lost within the horizon while ``busy_fraction > busy_limit / 2``.
    :meth:`reset_lag` forgets the lag history (call it when the stream is flushed: stamps of a
    new stream are not comparable).
    """

    def __init__(self, horizon_s: float = 5.0, busy_limit: float = 0.6,
                 lag_limit_s: float = 0.5):
        self.horizon_s = float(horizon_s)
        self.busy_limit = float(busy_limit)
        self.lag_limit_s = float(lag_limit_s)
        self._rec: Deque[Tuple[float, float, float, int]] = deque()  # now, busy, audio, lost
        self._lag: Deque[Tuple[float, float]] = deque()            # (now, lag)

    def reset_lag(self) -> None:
        self._lag.clear()

    def record(self, now_s: float, busy_s: float, audio_s: float,
               lag_s: Optional[float] = None, lost: int = 0) -> None:
        """One chunk handled at ``now_s`` in ``busy_s``; ``lost``: chunks found missing."""
        self._rec.append((now_s, busy_s, audio_s, int(lost)))
        if lag_s is not None:
            self._lag.append((now_s, lag_s))
        self._trim(now_s)

    def _trim(self, now_s: float) -> None:
        for q in (self._rec, self._lag):
            while q and q[0][0] < now_s - self.horizon_s:
                q.popleft()

    def status(self, now_s: float) -> LoadStatus:
        self._trim(now_s)
        if len(self._rec) < 2:
            return LoadStatus(0.0, 0.0, 0.0, 0.0, False, 'idle', 0)
        first = self._rec[0]
        span = max(now_s - first[0] + first[1], 1e-9)      # from the start of the first one
        busy = sum(r[1] for r in self._rec)
        audio = sum(r[2] for r in self._rec)
        frac = min(busy / span, 1.0)
        cost = busy / audio if audio > 0 else 0.0
        speed = audio / span
        growth = (self._lag[-1][1] - min(v for _, v in self._lag)) if self._lag else 0.0
        lost = sum(r[3] for r in self._rec)
        behind = (frac > self.busy_limit or growth > self.lag_limit_s
                  or (lost > 0 and frac > self.busy_limit / 2))
        msg = 'keeping up'
        if behind:
            msg = (f'cannot keep up: busy {100 * frac:.0f}% of the time, {cost:.3f} s of '
                   f'processing per audio second, input at {speed:.1f}x real time, '
                   f'{lost} chunk(s) lost and chunks handled {growth:.2f} s later than real '
                   f'time in the last {self.horizon_s:g} s')
        return LoadStatus(frac, cost, speed, growth, behind, msg, lost)
