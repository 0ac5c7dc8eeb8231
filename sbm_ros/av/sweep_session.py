"""One calibration sweep as a live session: segmenter + coverage grid + dataset writer.

:class:`SweepSession` is the state ``sbm_calibrator`` holds while the loudspeaker is swept: the
marker observations and the audio go into a :class:`sbm_ros.core.sweep.SweepSegmenter`; every
accepted segment is written at once to the dataset folder by a crash-safe
:class:`sbm_ros.core.sweep_writer.SampleWriter` (``sbm-train`` format, degree targets,
``camera.json``) and counted in a :class:`sbm_ros.core.sweep.CoverageGrid` of the image.
No ROS here: the node converts messages and calls :meth:`push_marker`, :meth:`push_audio` and,
on a timer, :meth:`process`; this module is tested with plain pytest.

Robustness (nothing already captured is lost, the session keeps going):

* a sample that cannot be written (full disk, file size limit, folder gone or unwritable) stays
  in memory (``max_unsaved`` samples at most, the oldest dropped beyond) and is written again
  every ``retry_s`` seconds; the notice says what to do. Written samples are never rewritten.
* opening a folder repairs it first (:func:`sbm_ros.core.sweep_writer.repair_dataset`: after a
  ``kill -9`` every CSV row has its WAV and vice versa); samples already in the folder stay and
  count for the coverage (their directions are projected with the camera).
* :meth:`notices` turns the counters into warnings that say what to do: the loudspeaker silent,
  not moving, moving too fast, the marker lost.

Coverage ``complete``: at least ``coverage_complete`` (a fraction, default 0.95) of the grid's
cells hold ``min_samples`` samples each. Requiring every cell would never be met by a sweep
that keeps the marker whole in the image (the corner cells are half outside its reach); the
missing cells are listed in :meth:`status`, so a user who wants them can go back there.

:func:`draw_overlay` draws the live coverage (covered cells green, missing ones red, the marker
and the open segment) on a camera image.
"""

from __future__ import annotations

import csv
import math
import os
from collections import deque
from dataclasses import dataclass
from typing import Deque, Dict, List, Optional, Sequence, Tuple

import numpy as np

from sbm_ros.core.dataset import TARGETS_FILE
from sbm_ros.core.sweep import CoverageGrid, SweepParams, SweepSample, SweepSegmenter
from sbm_ros.core.sweep_writer import DatasetWriteError, SampleWriter

__all__ = ["SessionConfig", "SweepSession", "draw_overlay", "count_rows"]


@dataclass(frozen=True)
class SessionConfig:
    """What a session needs besides the segmentation parameters."""
    grid_cols: int = 12
    grid_rows: int = 9
    min_samples: int = 1               # per cell, for the cell to be covered
    coverage_complete: float = 0.95    # fraction of covered cells that makes the sweep complete
    max_unsaved: int = 300             # samples held in memory while the folder is unwritable
    retry_s: float = 2.0               # retry writing held samples this often
    still_warn_s: float = 10.0         # the marker still for this long: a notice
    quiet_warn: int = 3                # this many too-quiet segments in a row: a notice

    def __post_init__(self):
        if self.grid_cols < 1 or self.grid_rows < 1 or self.min_samples < 1:
            raise ValueError("grid_cols, grid_rows and min_samples must be >= 1")
        if not 0.0 < self.coverage_complete <= 1.0:
            raise ValueError(f"coverage_complete must be within (0, 1], got "
                             f"{self.coverage_complete!r}")
        if self.max_unsaved < 1:
            raise ValueError("max_unsaved must be >= 1")


def count_rows(root: str) -> int:
    """Rows of a dataset folder's ``targets.csv`` (0 when there is none)."""
    try:
        with open(os.path.join(root, TARGETS_FILE), newline="") as fh:
            rows = [r for r in csv.reader(fh) if r and not r[0].startswith("#")]
    except OSError:
        return 0
    return max(0, len(rows) - 1)


class _Unprojector:
    """A :class:`~sbm_ros.core.geometry.PinholeCamera` as the segmenter's camera."""

    def __init__(self, cam):
        self.cam = cam

    def unproject(self, uv):
        return self.cam.unproject(np.asarray(uv, float))


class SweepSession:
    """A sweep into the dataset folder ``root`` (see the module docstring).

    ``camera``: a :class:`~sbm_ros.core.geometry.PinholeCamera` (pixels <-> degrees; image size
    of the grid); ``camera_json``: the ``camera.json`` record written to the folder.
    Raises :class:`~sbm_ros.core.sweep_writer.DatasetWriteError` when the folder cannot be
    prepared (the message names it and why)."""

    def __init__(self, root: str, camera, params: SweepParams = SweepParams(),
                 config: SessionConfig = SessionConfig(), camera_json: Optional[dict] = None):
        self.root = os.path.abspath(os.path.expanduser(os.fspath(root)))
        self.camera = camera
        self.params = params
        self.config = config
        self.segmenter = SweepSegmenter(params, _Unprojector(camera))
        self.grid = CoverageGrid(camera.width, camera.height, config.grid_cols,
                                 config.grid_rows, config.min_samples)
        self.writer = SampleWriter(self.root, camera=camera_json)
        self.repaired = self.writer.repaired
        self.existing = self.writer.count
        self._seed_coverage()
        self.written = 0                   # samples of this session written to the folder
        self.unsaved: Deque[SweepSample] = deque()
        self.dropped = 0                   # held samples dropped (memory bound reached)
        self.write_error: Optional[str] = None
        self._next_retry = -math.inf
        self.last_files: List[str] = []
        self._quiet_latched = 0            # a quiet run that reached quiet_warn, not yet told
        self._still_since: Optional[float] = None
        self._still_pos: Optional[Tuple[float, float]] = None
        self.last_marker_stamp: Optional[float] = None
        self.finished = False

    # ------------------------------------------------------------------ coverage
    def _seed_coverage(self) -> None:
        """Samples already in the folder count for the coverage."""
        path = os.path.join(self.root, TARGETS_FILE)
        try:
            with open(path, newline="") as fh:
                rows = list(csv.reader(fh))
        except OSError:
            return
        if not rows or [h.strip() for h in rows[0][1:3]] != ["azimuth_deg", "elevation_deg"]:
            return
        for r in rows[1:]:
            try:
                az, el = float(r[1]), float(r[2])
            except (IndexError, ValueError):
                continue
            uv, ok = self.camera.project([az, el])
            if ok and np.all(np.isfinite(uv)):
                self.grid.add(float(uv[0]), float(uv[1]))

    @property
    def coverage(self) -> float:
        return self.grid.fraction

    @property
    def complete(self) -> bool:
        return self.grid.fraction >= self.config.coverage_complete - 1e-9

    # ------------------------------------------------------------------ inputs
    def push_marker(self, stamp: float, pixel: Optional[Sequence[float]]) -> None:
        """One camera frame: the marker's pixel (u, v) or None (not detected)."""
        if self.finished:
            return
        self.segmenter.push_marker(stamp, pixel)
        self.last_marker_stamp = float(stamp)
        if pixel is None:
            return
        p = (float(pixel[0]), float(pixel[1]))
        tol_px = max(4.0, 0.5 * self.camera.fx * math.radians(self.params.tolerance)
                     if self.params.tolerance_unit == "deg" else 0.5 * self.params.tolerance)
        if self._still_pos is None or math.hypot(p[0] - self._still_pos[0],
                                                 p[1] - self._still_pos[1]) > tol_px:
            self._still_pos, self._still_since = p, float(stamp)

    def push_audio(self, stamp: float, x: np.ndarray, rate: int) -> None:
        """One audio block (n, 2), full scale 1.0, first sample at ``stamp``."""
        if not self.finished:
            self.segmenter.push_audio(stamp, x, rate)

    # ------------------------------------------------------------------ samples
    def _write(self, s: SweepSample) -> None:
        name = self.writer.append(s.audio, s.rate, s.direction_deg)
        self.written += 1
        self.last_files = (self.last_files + [name])[-5:]
        self.grid.add(*s.pixel)

    def _hold(self, s: SweepSample) -> None:
        if len(self.unsaved) >= self.config.max_unsaved:
            self.unsaved.popleft()
            self.dropped += 1
        self.unsaved.append(s)

    def _flush_unsaved(self, now: float, force: bool = False) -> int:
        """Write held samples (oldest first); stops at the first failure."""
        if not self.unsaved or (not force and now < self._next_retry):
            return 0
        n = 0
        while self.unsaved:
            try:
                self._write(self.unsaved[0])
            except DatasetWriteError as exc:
                self.write_error = str(exc)
                self._next_retry = now + self.config.retry_s
                return n
            self.unsaved.popleft()
            n += 1
        self.write_error = None
        return n

    def process(self, now: float) -> Dict:
        """Take the finished segments, write them (``now``: a monotonic time for the retry
        schedule). Returns ``{"written": n, "recovered": n, "error": str or None}``."""
        recovered = self._flush_unsaved(now)
        new = self.segmenter.poll()
        return self._store(new, now, recovered)

    def finish(self, now: float) -> Dict:
        """End of the sweep: close the open segment and write what is left (held samples are
        tried once more and kept in memory if the folder is still unwritable)."""
        if self.finished:
            return {"written": 0, "recovered": self._flush_unsaved(now, force=True),
                    "error": self.write_error}
        recovered = self._flush_unsaved(now, force=True)
        new = self.segmenter.flush()
        self.finished = True
        return self._store(new, now, recovered)

    def retry(self, now: float) -> int:
        """Try writing held samples now (after the user freed space); how many were written."""
        return self._flush_unsaved(now, force=True)

    def _store(self, new: List[SweepSample], now: float, recovered: int) -> Dict:
        written, error = 0, None
        for s in new:
            if self.unsaved:               # keep the order: behind the held ones
                self._hold(s)
                continue
            try:
                self._write(s)
                written += 1
            except DatasetWriteError as exc:
                error = self.write_error = str(exc)
                self._next_retry = now + self.config.retry_s
                self._hold(s)
        self._update_quiet()
        return {"written": written, "recovered": recovered, "error": error or self.write_error}

    def _update_quiet(self) -> None:
        """Latch a run of too-quiet segments that reached ``quiet_warn``. The segmenter counts
        the run in the order the segments were judged (only an accepted sample ends it: a lost
        marker or a too-fast stretch says nothing about the loudspeaker). The latch keeps a run
        that began and ended within one processing pass (audio arriving in a burst) until the
        node has told the user: both hid the warning in fresh-clone CI runs."""
        peak = self.segmenter.take_quiet_peak()
        if peak >= self.config.quiet_warn:
            self._quiet_latched = max(self._quiet_latched, peak)

    # ------------------------------------------------------------------ reports
    def notices(self, consume: bool = False) -> List[Tuple[str, str]]:
        """(key, text) of what the user should act on now; empty when all is well.

        ``consume``: the caller tells the user now (the node's log). It also gets a too-quiet
        run that ended since its last call (once); without it (status reports) only the run
        going on now counts."""
        out = []
        if self.write_error:
            out.append(("write", f"cannot write to the dataset folder {self.root}: "
                        f"{self.write_error}. {len(self.unsaved)} sample(s) held in memory "
                        f"(at most {self.config.max_unsaved}; {self.dropped} dropped): free "
                        "disk space / make the folder writable, they are written as soon as "
                        "it works (or call ~/stop_sweep, which tries once more)"))
        run = self.segmenter.quiet_run
        if consume:
            run = max(run, self._quiet_latched)
            self._quiet_latched = 0
        if run >= self.config.quiet_warn:
            out.append(("quiet", f"{run} segments in a row too quiet (below "
                        f"{self.params.min_rms_dbfs} dBFS): is the loudspeaker playing white "
                        "noise? Turn it on or up (or lower min_rms_dbfs)"))
        if (self._still_since is not None and self.last_marker_stamp is not None
                and self.last_marker_stamp - self._still_since >= self.config.still_warn_s):
            out.append(("still", f"the loudspeaker has not moved for "
                        f"{self.last_marker_stamp - self._still_since:.0f} s: keep sweeping "
                        f"slowly towards the missing (red) cells"))
        return out

    def status(self) -> Dict:
        seg = self.segmenter.status()
        st = self.segmenter.current_stretch()
        return {
            "dataset_dir": self.root,
            "samples": self.existing + self.written,
            "samples_this_sweep": self.written,
            "samples_before": self.existing,
            "accepted": seg["accepted"],
            "unsaved": len(self.unsaved),
            "dropped": self.dropped,
            "write_error": self.write_error,
            "rejected": seg["rejected"],
            "rejected_total": seg["rejected_total"],
            "pending": seg["pending"],
            "coverage": round(self.grid.fraction, 4),
            "coverage_complete": self.config.coverage_complete,
            "complete": self.complete,
            "all_cells": self.grid.complete,
            "missing_cells": [list(c) for c in self.grid.missing()],
            "grid": self.grid.to_dict(),
            "marker": (list(self.segmenter.last_position)
                       if self.segmenter.last_position is not None else None),
            "segment": None if st is None else {
                "t0": st["t0"], "t1": st["t1"], "pixel": [float(a) for a in st["pixel"]],
                "spread": float(st["spread"])},
            "repaired": None if self.repaired is None or self.repaired.ok
            else self.repaired.summary(),
            "finished": self.finished,
        }


def draw_overlay(img: np.ndarray, grid: CoverageGrid, marker: Optional[Sequence[float]],
                 segment: Optional[Dict], text: str = "") -> np.ndarray:
    """BGR image with the coverage grid (covered cells green, missing red, tinted), the marker
    (a circle) and the open segment (its mean position, a yellow ring) and ``text``."""
    import cv2
    out = np.ascontiguousarray(img, dtype=np.uint8).copy()
    h, w = out.shape[:2]
    sx, sy = w / grid.width, h / grid.height
    tint = out.copy()
    covered = grid.covered
    for r in range(grid.rows):
        for c in range(grid.cols):
            u0, v0, u1, v1 = grid.cell_box(r, c)
            p0 = (int(round(u0 * sx)), int(round(v0 * sy)))
            p1 = (int(round(u1 * sx)) - 1, int(round(v1 * sy)) - 1)
            color = (60, 200, 60) if covered[r, c] else (60, 60, 220)
            cv2.rectangle(tint, p0, p1, color, -1)
    out = cv2.addWeighted(tint, 0.25, out, 0.75, 0.0)
    for r in range(grid.rows):
        for c in range(grid.cols):
            u0, v0, u1, v1 = grid.cell_box(r, c)
            cv2.rectangle(out, (int(round(u0 * sx)), int(round(v0 * sy))),
                          (int(round(u1 * sx)) - 1, int(round(v1 * sy)) - 1),
                          (60, 200, 60) if covered[r, c] else (60, 60, 220), 1)
    if segment is not None:
        u, v = segment["pixel"]
        cv2.circle(out, (int(round(u * sx)), int(round(v * sy))), 14, (0, 220, 255), 2)
    if marker is not None:
        u, v = marker
        cv2.circle(out, (int(round(u * sx)), int(round(v * sy))), 6, (255, 255, 255), -1)
        cv2.circle(out, (int(round(u * sx)), int(round(v * sy))), 6, (0, 0, 0), 1)
    if text:
        cv2.putText(out, text, (8, h - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3,
                    cv2.LINE_AA)
        cv2.putText(out, text, (8, h - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1,
                    cv2.LINE_AA)
    return out
