"""CPU time and memory of processes from ``/proc`` (Linux), for the soak run and the
measurement tool.

* :func:`cpu_seconds` -- user + system CPU seconds of a process (all its threads);
* :func:`rss_mb` -- resident memory (``VmRSS``) or another ``/proc/<pid>/status`` field in MB;
* :class:`ProcSampler` -- a background thread sampling (time, CPU s, RSS MB) of some processes
  every ``period_s``; :meth:`ProcSampler.series` gives the samples and :func:`slope` the least
  squares slope of RSS over time (e.g. MB per hour of audio).

No ROS, no third-party imports: a missing process (it exited) reads as ``None``.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Dict, List, Optional, Sequence, Tuple

__all__ = ["cpu_seconds", "rss_mb", "ProcSampler", "slope"]

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pid: int) -> Optional[float]:
    """User + system CPU seconds of process ``pid`` (all threads), or None if it is gone."""
    try:
        with open(f"/proc/{int(pid)}/stat") as fh:
            f = fh.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(f[11]) + int(f[12])) / _TICK          # utime + stime (fields 14, 15)


def rss_mb(pid: int, key: str = "VmRSS") -> Optional[float]:
    """``/proc/<pid>/status`` field ``key`` (VmRSS, VmHWM, ...) in MB, or None."""
    try:
        with open(f"/proc/{int(pid)}/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        return None
    return None


def slope(t: Sequence[float], y: Sequence[float]) -> float:
    """Least-squares slope dy/dt (NaN with fewer than 2 distinct times)."""
    pts = [(a, b) for a, b in zip(t, y) if a is not None and b is not None]
    n = len(pts)
    if n < 2:
        return float("nan")
    mt = sum(a for a, _ in pts) / n
    my = sum(b for _, b in pts) / n
    var = sum((a - mt) ** 2 for a, _ in pts)
    if var <= 0:
        return float("nan")
    return sum((a - mt) * (b - my) for a, b in pts) / var


class ProcSampler:
    """Samples (monotonic time, CPU s, RSS MB) of named processes every ``period_s`` in a
    daemon thread; use as a context manager or call :meth:`start` / :meth:`stop`."""

    def __init__(self, pids: Dict[str, int], period_s: float = 1.0):
        self.pids = dict(pids)
        self.period_s = float(period_s)
        self._samples: Dict[str, List[Tuple[float, Optional[float], Optional[float]]]] = {
            k: [] for k in self.pids}
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._lock = threading.Lock()

    def sample(self) -> None:
        now = time.monotonic()
        with self._lock:
            for name, pid in self.pids.items():
                self._samples[name].append((now, cpu_seconds(pid), rss_mb(pid)))

    def _loop(self) -> None:
        while not self._stop.wait(self.period_s):
            self.sample()

    def start(self) -> "ProcSampler":
        self.sample()
        self._thread = threading.Thread(target=self._loop, name="procstat", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2 * self.period_s + 1)
        self.sample()

    def __enter__(self) -> "ProcSampler":
        return self.start()

    def __exit__(self, *exc) -> bool:
        self.stop()
        return False

    def series(self, name: str) -> List[Tuple[float, Optional[float], Optional[float]]]:
        """The samples of ``name``: (monotonic s, CPU s, RSS MB)."""
        with self._lock:
            return list(self._samples[name])

    def cpu_used(self, name: str) -> float:
        """CPU seconds used by ``name`` between the first and last valid samples."""
        cs = [c for _, c, _ in self.series(name) if c is not None]
        return (cs[-1] - cs[0]) if len(cs) >= 2 else float("nan")

    def peak_rss(self, name: str) -> float:
        rs = [r for _, _, r in self.series(name) if r is not None]
        return max(rs) if rs else float("nan")
