"""A model fitted on a dataset folder in a separate process (the ``~/train`` of ``av_fusion``
and ``sbm_calibrator``).

:class:`TrainingRun` starts ``python -m sbm_ros.apps.cli DATASET -o MODEL ...`` (``sbm-train``,
one- or two-source)
with its output in ``MODEL.log``, is polled without blocking, and reports the outcome from the
exit code and the log. The subprocess is run by module name: nothing of ``apps`` is imported
here. The package's own folder is put first on the child's PYTHONPATH, so the child trains with
the same ``sbm_ros`` as the node.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import List, Optional

#: the folder holding the ``sbm_ros`` package this module belongs to
PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def default_model_path(root: str) -> str:
    """A new file name under ``<root>/models`` each call (time, pid and milliseconds)."""
    stamp = time.strftime('%Y%m%d_%H%M%S')
    return os.path.join(root, 'models', f'model_{stamp}_{os.getpid()}_'
                        f'{int(time.time() * 1000) % 1000:03d}.npz')


def two_source_path(one_source_path: str) -> str:
    """The two-source model file that goes with a one-source one: ``<stem>_2src.npz``."""
    stem = one_source_path[:-4] if one_source_path.endswith('.npz') else one_source_path
    return stem + '_2src.npz'


def train_command(root: str, out: str, max_iter: int, components: int = 0, sources: int = 1,
                  pairs: int = 0) -> List[str]:
    """``sbm-train`` command line: ``components`` K, or automatic when 0; ``sources`` 2 fits a
    two-source model on ``pairs`` mixtures of the recordings (sbm-train's default when 0)."""
    cmd = [sys.executable, '-m', 'sbm_ros.apps.cli', root, '-o', out,
           '--max-iter', str(int(max_iter))]
    if int(sources) != 1:
        cmd += ['--sources', str(int(sources))]
        if pairs > 0:
            cmd += ['--pairs', str(int(pairs))]
    return cmd + (['-K', str(int(components))] if components > 0 else ['--auto-components'])


def child_env(environ=None) -> dict:
    """The environment with this package's parent first on PYTHONPATH."""
    env = dict(os.environ if environ is None else environ)
    rest = [p for p in env.get('PYTHONPATH', '').split(os.pathsep) if p]
    env['PYTHONPATH'] = os.pathsep.join([PACKAGE_PARENT] + rest)
    return env


@dataclass
class TrainingOutcome:
    ok: bool
    seconds: float
    message: str          # last useful log line: 'wrote ...' or the error
    model: str
    log: str


class TrainingRun:
    """One training subprocess: ``start()`` (raises OSError), ``poll()`` -> None while it runs,
    then its :class:`TrainingOutcome` (once); ``stop()`` terminates it."""

    def __init__(self, root: str, out: str, max_iter: int = 100, components: int = 0,
                 sources: int = 1, pairs: int = 0):
        self.root, self.out, self.sources = root, out, int(sources)
        self.log = out + '.log'
        self.cmd = train_command(root, out, max_iter, components, sources, pairs)
        self.proc: Optional[subprocess.Popen] = None
        self.t0 = 0.0

    @property
    def pid(self) -> Optional[int]:
        return self.proc.pid if self.proc is not None else None

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def start(self) -> 'TrainingRun':
        os.makedirs(os.path.dirname(self.out) or '.', exist_ok=True)
        with open(self.log, 'w') as logf:
            self.proc = subprocess.Popen(self.cmd, stdout=logf, stderr=subprocess.STDOUT,
                                         env=child_env())
        self.t0 = time.monotonic()
        return self

    def poll(self) -> Optional[TrainingOutcome]:
        if self.proc is None or self.proc.poll() is None:
            return None
        rc, dt = self.proc.returncode, self.elapsed()
        self.proc = None
        try:
            with open(self.log) as fh:
                lines = [ln.strip() for ln in fh if ln.strip()]
        except OSError:
            lines = []
        if rc != 0 or not os.path.exists(self.out):
            return TrainingOutcome(False, dt, lines[-1] if lines else f'exit code {rc}',
                                   self.out, self.log)
        summary = next((ln for ln in reversed(lines) if 'wrote' in ln), f'wrote {self.out}')
        return TrainingOutcome(True, dt, summary, self.out, self.log)

    def stop(self, timeout: float = 3.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
