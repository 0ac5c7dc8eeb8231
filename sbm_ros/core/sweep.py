"""Sweep calibration: cut a continuous recording into training samples where the marker is still.

A calibration sweep is a loudspeaker playing white noise, carrying a visual marker, moved slowly
through the camera's view while the head records continuously. :class:`SweepSegmenter` turns the
two streams -- marker observations (one per camera frame: stamp and pixel position, or ``None``
when the marker was not found) and stamped audio blocks -- into training samples: stretches of
time during which the marker moved less than a tolerance for at least a minimum duration. Each
accepted stretch gives one :class:`SweepSample` (the audio of the stretch and the marker's mean
position over it); every rejected stretch is counted by reason (:data:`REASONS`).
:class:`CoverageGrid` says which cells of the image already hold enough samples.

Pure numpy, no ROS; the same class serves the offline check (:func:`segment_recording`,
``sbm_ros.apps.calibrate``) and a live node (push as messages arrive, ``poll()`` on a timer).

Segmentation rules (all times in seconds on one clock, the stamps of both streams)
-------------------------------------------------------------------------------------
* A **stretch** is a run of consecutive marker observations. It grows while the bounding box of
  its positions has a diagonal <= ``tolerance`` (in ``tolerance_unit``: ``"px"`` on the pixel
  positions, ``"deg"`` on the directions, which needs a camera). The observation that would
  exceed the tolerance closes the stretch and starts the next one, so a steady slow movement is
  cut into back-to-back stretches of ``tolerance / speed`` seconds.
* A stretch also closes when it reaches ``max_duration_s`` (a loudspeaker held still gives one
  sample every ``max_duration_s``) and when the marker has been lost for more than
  ``max_gap_s``. Shorter losses (detector flicker, a hand passing) are bridged: the stretch
  continues and the lost frames simply carry no position.
* The span of a stretch is from its first to its last observation stamp; its duration must be
  >= ``min_duration_s``, else it is rejected: ``"too_fast"`` when the tolerance closed it
  (consecutive too-fast stretches count once, as one rejected segment), ``"marker_lost"`` when
  a loss closed it (a loss longer than ``max_gap_s`` always counts once, with or without a
  short stretch before it), ``"too_short"`` when the recording ended (:meth:`flush`).
* Accepted stretches wait for their audio. Audio is kept from its stamps: a block's stamp is
  the time of its first sample; a block that does not continue the previous one within
  ``audio_jump_s`` starts a new run, and a stretch whose span is not inside one run is rejected
  as ``"audio_missing"`` (also when the audio it needs was already discarded).
  The slice's RMS level below ``min_rms_dbfs`` is ``"too_quiet"``; more than
  ``max_clipped_fraction`` of its samples at or above ``clip_level`` is ``"clipped"``.
* The sample's position is the mean of the observed positions (pixels; and the mean of the
  per-observation directions when a camera is given).

Typical use::

    seg = SweepSegmenter(SweepParams(tolerance=1.0, tolerance_unit="deg"), camera=cam)
    seg.push_marker(stamp, (u, v))        # or None when not detected
    seg.push_audio(stamp, block, rate)    # (n, 2) float, full scale 1.0
    for s in seg.poll():                  # accepted samples, as soon as their audio is in
        writer.append(s.audio, s.rate, s.direction_deg)
    seg.rejected                          # {"too_fast": 3, "marker_lost": 1, ...}
    seg.flush()                           # at the end: close the open stretch

``camera`` is a :class:`sbm_ros.core.geometry.PinholeCamera` (or anything with
``unproject((..., 2) px) -> (..., 2) deg``).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Deque, Dict, List, Optional, Sequence, Tuple

import numpy as np

__all__ = ["REASONS", "SweepParams", "SweepSample", "SweepSegmenter", "CoverageGrid",
           "segment_recording"]

#: Reasons a stretch of the recording is rejected (keys of :attr:`SweepSegmenter.rejected`).
REASONS = ("marker_lost", "too_fast", "too_short", "too_quiet", "clipped", "audio_missing")

#: Slack of the min-duration and tolerance comparisons: frame stamps are sums of floats (1.5 - 1.1
#: is 0.39999999999999997), and a stretch that meets a limit exactly must not be rejected.
_EPS_S = 1e-6
_EPS_REL = 1e-9


@dataclass(frozen=True)
class SweepParams:
    """Segmentation parameters (see the module docstring)."""
    tolerance: float = 1.0            # max bounding-box diagonal of a stretch
    tolerance_unit: str = "deg"       # "deg" (needs a camera) or "px"
    min_duration_s: float = 0.4
    max_duration_s: float = 1.0
    max_gap_s: float = 0.25           # losses up to this long are bridged
    min_rms_dbfs: float = -50.0
    clip_level: float = 0.999
    max_clipped_fraction: float = 1e-3
    audio_jump_s: float = 0.005       # stamp mismatch that breaks the audio run
    keep_audio_s: float = 10.0        # audio kept behind the newest block

    def __post_init__(self):
        if self.tolerance_unit not in ("deg", "px"):
            raise ValueError(f"tolerance_unit must be 'deg' or 'px', got "
                             f"{self.tolerance_unit!r}")
        for name in ("tolerance", "min_duration_s", "max_duration_s"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a positive number, got {v!r}")
        if self.max_duration_s < self.min_duration_s:
            raise ValueError(f"max_duration_s ({self.max_duration_s}) must be >= "
                             f"min_duration_s ({self.min_duration_s})")
        if not (self.max_gap_s >= 0):
            raise ValueError(f"max_gap_s must be >= 0, got {self.max_gap_s!r}")
        if self.keep_audio_s < 2 * self.max_duration_s:
            raise ValueError("keep_audio_s must be at least twice max_duration_s")


@dataclass
class SweepSample:
    """One accepted stretch: its audio and the marker's mean position over it."""
    t0: float
    t1: float
    audio: np.ndarray                 # (n, 2) float64
    rate: int
    pixel: Tuple[float, float]        # mean (u, v)
    direction_deg: Optional[Tuple[float, float]]   # mean (az, el), with a camera
    spread: float                     # bounding-box diagonal (tolerance unit)
    n_observations: int
    rms_dbfs: float

    @property
    def duration_s(self) -> float:
        return self.t1 - self.t0


@dataclass
class _Stretch:
    t0: float
    t1: float
    pix: List[Tuple[float, float]] = field(default_factory=list)
    tol: List[Tuple[float, float]] = field(default_factory=list)   # positions in tolerance unit
    lo: Optional[np.ndarray] = None
    hi: Optional[np.ndarray] = None

    def spread_with(self, p) -> float:
        lo = np.minimum(self.lo, p)
        hi = np.maximum(self.hi, p)
        return float(np.hypot(*(hi - lo)))

    def add(self, t: float, pix, p) -> None:
        self.t1 = t
        self.pix.append(pix)
        self.tol.append(tuple(p))
        p = np.asarray(p, float)
        self.lo = p.copy() if self.lo is None else np.minimum(self.lo, p)
        self.hi = p.copy() if self.hi is None else np.maximum(self.hi, p)

    @property
    def spread(self) -> float:
        return 0.0 if self.lo is None else float(np.hypot(*(self.hi - self.lo)))


class _AudioStore:
    """Stamped audio blocks in runs of contiguous samples; slices by time."""

    def __init__(self, keep_s: float, jump_s: float):
        self.keep_s = keep_s
        self.jump_s = jump_s
        self.rate: Optional[int] = None
        self.runs: Deque[list] = deque()     # [t_start, list of blocks, n_samples]

    def push(self, stamp: float, x: np.ndarray, rate: int) -> None:
        if self.rate is not None and rate != self.rate:
            self.runs.clear()                # a rate change starts over
        self.rate = rate
        if self.runs:
            run = self.runs[-1]
            expected = run[0] + run[2] / rate
            if abs(stamp - expected) <= self.jump_s:
                run[1].append(x)
                run[2] += x.shape[0]
                self._trim()
                return
        self.runs.append([stamp, [x], x.shape[0]])
        self._trim()

    @property
    def end(self) -> float:
        if not self.runs:
            return -math.inf
        t, _, n = self.runs[-1]
        return t + n / self.rate

    def _trim(self) -> None:
        horizon = self.end - self.keep_s
        while self.runs and self.runs[0][0] + self.runs[0][2] / self.rate < horizon:
            self.runs.popleft()
        if self.runs and self.runs[0][0] < horizon:
            run = self.runs[0]
            drop = int((horizon - run[0]) * self.rate)
            blocks, k = run[1], 0
            while blocks and k + blocks[0].shape[0] <= drop:
                k += blocks.pop(0).shape[0]
            run[0] += k / self.rate
            run[2] -= k

    def slice(self, t0: float, t1: float) -> Optional[np.ndarray]:
        """Samples in [t0, t1) if one run holds all of them, else None."""
        for t, blocks, n in self.runs:
            if t - 0.5 / self.rate <= t0 and t1 <= t + n / self.rate + 0.5 / self.rate:
                i0 = int(round((t0 - t) * self.rate))
                i1 = min(n, int(round((t1 - t) * self.rate)))
                if len(blocks) > 1:
                    blocks[:] = [np.concatenate(blocks, axis=0)]
                return blocks[0][max(0, i0):i1]
        return None


class SweepSegmenter:
    """Incremental segmentation of a calibration sweep (rules in the module docstring).

    ``rejected`` counts rejected segments per reason (:data:`REASONS`); ``accepted`` counts the
    samples handed out by :meth:`poll`; ``last_position`` / ``current_stretch()`` describe the
    marker and the open stretch (for a live overlay).
    """

    def __init__(self, params: SweepParams = SweepParams(), camera=None):
        if params.tolerance_unit == "deg" and camera is None:
            raise ValueError("tolerance_unit 'deg' needs a camera (or use 'px')")
        self.params = params
        self.camera = camera
        self.rejected: Dict[str, int] = {r: 0 for r in REASONS}
        self.accepted = 0
        # too-quiet segments in a row, in the order their audio was judged (only an accepted
        # sample ends the run), and the longest run since :meth:`take_quiet_peak`
        self.quiet_run = 0
        self._quiet_peak = 0
        self._cur: Optional[_Stretch] = None
        self._last_seen: Optional[float] = None
        self._last_stamp: Optional[float] = None
        self._lost_counted = False
        self._fast_run = False
        self._pending: List[_Stretch] = []
        self._audio = _AudioStore(params.keep_audio_s, params.audio_jump_s)
        self.last_position: Optional[Tuple[float, float]] = None
        self.out_of_order = 0

    # ------------------------------------------------------------------ inputs
    def _direction(self, pix) -> Tuple[float, float]:
        d = np.asarray(self.camera.unproject(np.asarray(pix, float)), float).reshape(2)
        return float(d[0]), float(d[1])

    def push_marker(self, stamp: float, pixel: Optional[Sequence[float]]) -> None:
        """One camera frame: the marker's pixel (u, v), or None when it was not found.

        Stamps must not decrease; an out-of-order observation is ignored (and counted in
        ``out_of_order``)."""
        stamp = float(stamp)
        if self._last_stamp is not None and stamp < self._last_stamp:
            self.out_of_order += 1
            return
        self._last_stamp = stamp
        if pixel is None or not np.all(np.isfinite(np.asarray(pixel, float))):
            self.last_position = None
            seen = self._last_seen
            if seen is not None and stamp - seen > self.params.max_gap_s:
                if self._cur is not None:
                    self._close(self._cur, "marker_lost")
                    self._cur = None
                if not self._lost_counted:
                    self.rejected["marker_lost"] += 1
                    self._lost_counted = True
                self._fast_run = False
            return
        u, v = (float(a) for a in pixel)
        self.last_position = (u, v)
        p = (u, v) if self.params.tolerance_unit == "px" else self._direction((u, v))
        gap = None if self._last_seen is None else stamp - self._last_seen
        self._last_seen = stamp
        cur = self._cur
        if cur is not None and gap is not None and gap > self.params.max_gap_s:
            # no frame at all for a while (camera stall): a loss like an undetected marker
            self._lost_counted = False
            self._close(cur, "marker_lost")
            if not self._lost_counted:
                self.rejected["marker_lost"] += 1
            self._fast_run = False
            cur = None
        self._lost_counted = False
        if cur is not None:
            if cur.spread_with(np.asarray(p)) > self.params.tolerance * (1.0 + _EPS_REL):
                self._close(cur, "too_fast")
                cur = None
            elif stamp - cur.t0 > self.params.max_duration_s:
                self._close(cur, None)
                cur = None
        if cur is None:
            cur = _Stretch(stamp, stamp)
        cur.add(stamp, (u, v), p)
        self._cur = cur

    def push_audio(self, stamp: float, x: np.ndarray, rate: int) -> None:
        """One audio block ``(n, 2)`` (full scale 1.0) whose first sample is at ``stamp``."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != 2:
            raise ValueError(f"audio block must have shape (n, 2), got {x.shape}")
        if int(rate) <= 0:
            raise ValueError(f"rate must be > 0, got {rate}")
        if x.shape[0]:
            self._audio.push(float(stamp), x, int(rate))

    # ------------------------------------------------------------------ stretches
    def _close(self, st: _Stretch, why: Optional[str]) -> None:
        """A stretch ended; ``why``: what ended it ("too_fast", "marker_lost", "too_short" or
        None for max_duration)."""
        if st.t1 - st.t0 >= self.params.min_duration_s - _EPS_S:
            self._pending.append(st)
            self._fast_run = False
            return
        if why == "too_fast":
            if not self._fast_run:
                self.rejected["too_fast"] += 1
            self._fast_run = True
        elif why == "marker_lost":
            self.rejected["marker_lost"] += 1
            self._lost_counted = True
        else:
            self.rejected["too_short"] += 1

    def current_stretch(self) -> Optional[Dict]:
        """The open stretch: ``{t0, t1, pixel (mean), spread}`` or None."""
        st = self._cur
        if st is None:
            return None
        return {"t0": st.t0, "t1": st.t1, "pixel": tuple(np.mean(st.pix, axis=0)),
                "spread": st.spread}

    def poll(self) -> List[SweepSample]:
        """Accepted samples whose audio has arrived (rejections are counted meanwhile)."""
        out, keep = [], []
        end = self._audio.end
        for st in self._pending:
            if st.t1 > end:                  # its audio has not arrived yet
                keep.append(st)
                continue
            s = self._finish(st)
            if s is not None:
                out.append(s)
        self._pending = keep
        return out

    def flush(self) -> List[SweepSample]:
        """End of recording: close the open stretch and return what :meth:`poll` can give;
        stretches still waiting for audio are rejected as ``audio_missing``."""
        if self._cur is not None:
            self._close(self._cur, "too_short")
            self._cur = None
        out = self.poll()
        for _ in self._pending:
            self.rejected["audio_missing"] += 1
        self._pending = []
        return out

    def take_quiet_peak(self) -> int:
        """The longest run of too-quiet segments since the last call (then forgotten): a run
        that began and ended between two calls is still seen."""
        peak, self._quiet_peak = self._quiet_peak, self.quiet_run
        return peak

    @property
    def pending(self) -> int:
        return len(self._pending)

    def _finish(self, st: _Stretch) -> Optional[SweepSample]:
        p = self.params
        x = self._audio.slice(st.t0, st.t1)
        rate = self._audio.rate
        if x is None or rate is None or x.shape[0] < int((st.t1 - st.t0) * rate) - 1:
            self.rejected["audio_missing"] += 1
            return None
        rms = float(np.sqrt(np.mean(x ** 2))) if x.size else 0.0
        dbfs = 20.0 * math.log10(rms) if rms > 0 else -math.inf
        if dbfs < p.min_rms_dbfs:
            self.rejected["too_quiet"] += 1
            self.quiet_run += 1
            self._quiet_peak = max(self._quiet_peak, self.quiet_run)
            return None
        if np.mean(np.abs(x) >= p.clip_level) > p.max_clipped_fraction:
            self.rejected["clipped"] += 1
            return None
        pix = np.mean(np.asarray(st.pix, float), axis=0)
        direction = None
        if self.camera is not None:
            if p.tolerance_unit == "deg":
                d = np.mean(np.asarray(st.tol, float), axis=0)
            else:
                d = np.mean([self._direction(q) for q in st.pix], axis=0)
            direction = (float(d[0]), float(d[1]))
        self.accepted += 1
        self.quiet_run = 0
        return SweepSample(st.t0, st.t1, x.copy(), int(rate), (float(pix[0]), float(pix[1])),
                           direction, st.spread, len(st.pix), dbfs)

    def status(self) -> Dict:
        """Counts for a status message: accepted, rejected per reason, pending."""
        return {"accepted": self.accepted, "rejected": dict(self.rejected),
                "rejected_total": int(sum(self.rejected.values())), "pending": self.pending}


class CoverageGrid:
    """The image divided into ``cols`` x ``rows`` cells; a cell is covered with ``>= min_samples``
    samples whose mean pixel falls in it. ``counts[row, col]``; row 0 at the top."""

    def __init__(self, width: int, height: int, cols: int = 12, rows: int = 9,
                 min_samples: int = 1):
        if width <= 0 or height <= 0 or cols < 1 or rows < 1 or min_samples < 1:
            raise ValueError("coverage grid needs a positive image size, >= 1 column and row "
                             "and min_samples >= 1")
        self.width, self.height = int(width), int(height)
        self.cols, self.rows = int(cols), int(rows)
        self.min_samples = int(min_samples)
        self.counts = np.zeros((self.rows, self.cols), dtype=int)
        self.outside = 0

    def cell_of(self, u: float, v: float) -> Optional[Tuple[int, int]]:
        """(row, col) of a pixel, or None outside the image."""
        if not (0.0 <= u < self.width and 0.0 <= v < self.height):
            return None
        return int(v * self.rows / self.height), int(u * self.cols / self.width)

    def add(self, u: float, v: float) -> Optional[Tuple[int, int]]:
        cell = self.cell_of(u, v)
        if cell is None:
            self.outside += 1
        else:
            self.counts[cell] += 1
        return cell

    def cell_box(self, row: int, col: int) -> Tuple[float, float, float, float]:
        """(u0, v0, u1, v1) of a cell in pixels."""
        w, h = self.width / self.cols, self.height / self.rows
        return col * w, row * h, (col + 1) * w, (row + 1) * h

    @property
    def covered(self) -> np.ndarray:
        return self.counts >= self.min_samples

    @property
    def fraction(self) -> float:
        return float(np.mean(self.covered))

    @property
    def complete(self) -> bool:
        return bool(np.all(self.covered))

    def missing(self) -> List[Tuple[int, int]]:
        return [tuple(int(a) for a in rc) for rc in np.argwhere(~self.covered)]

    def to_dict(self) -> Dict:
        return {"cols": self.cols, "rows": self.rows, "min_samples": self.min_samples,
                "coverage": round(self.fraction, 4), "complete": self.complete,
                "counts": self.counts.tolist(), "outside": self.outside}


def segment_recording(markers: Sequence[Tuple[float, Optional[Sequence[float]]]],
                      audio: np.ndarray, rate: int, audio_start: float = 0.0,
                      params: SweepParams = SweepParams(), camera=None,
                      block: int = 1600) -> Tuple[List[SweepSample], SweepSegmenter]:
    """Offline: segment a whole recording. ``markers``: [(stamp, (u, v) or None)] in stamp
    order; ``audio`` (n, 2) starting at ``audio_start``. Streams both through a
    :class:`SweepSegmenter` in time order (blocks of ``block`` samples), as a node would.
    Returns (samples, segmenter)."""
    seg = SweepSegmenter(params, camera)
    audio = np.asarray(audio, float)
    out: List[SweepSample] = []
    i = 0
    n = audio.shape[0]
    for stamp, pix in markers:
        while i < n and audio_start + i / rate <= stamp:
            seg.push_audio(audio_start + i / rate, audio[i:i + block], rate)
            i += block
        seg.push_marker(stamp, pix)
        out.extend(seg.poll())
    while i < n:
        seg.push_audio(audio_start + i / rate, audio[i:i + block], rate)
        i += block
    out.extend(seg.flush())
    return out, seg
