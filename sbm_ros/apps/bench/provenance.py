"""Provenance of a benchmark run: the machine it ran on and the code's git commit."""

from __future__ import annotations

import os
import platform
import subprocess

import numpy as np


def _machine() -> dict:
    """CPU, cores, OS, Python, numpy, scipy, BLAS and its threads."""
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    blas = "?"
    try:
        cfgd = np.__config__.CONFIG["Build Dependencies"]["blas"]
        blas = f"{cfgd.get('name')} {cfgd.get('version')}"
    except Exception:
        pass
    try:
        from threadpoolctl import threadpool_info
        info = threadpool_info()
        thr = ", ".join(f"{i.get('internal_api')} {i.get('num_threads')} threads" for i in info)
    except Exception:
        nthr = (os.environ.get('OPENBLAS_NUM_THREADS') or os.environ.get('OMP_NUM_THREADS')
                or 'unset (all cores)')
        thr = f"OMP/OPENBLAS_NUM_THREADS={nthr}"
    import scipy
    return dict(cpu=cpu, cores=os.cpu_count(), python=platform.python_version(),
                numpy=np.__version__, scipy=scipy.__version__, blas=blas, threads=thr,
                os=f"{platform.system()} {platform.release()}")


def _git() -> str:
    """The checkout's commit, flagged when tracked files have uncommitted changes."""
    root = os.path.dirname(os.path.abspath(__file__))   # any folder of the checkout
    try:
        h = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True,
                           text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain",
                                "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        if not h:
            return "unknown (not a git checkout)"
        return h + (" (with uncommitted changes to tracked files)" if dirty else "")
    except Exception:
        return "unknown"
