"""Atomic file writes shared by everything that saves data (models, WAVs, datasets, caches).

``atomic_write(path)`` yields a file object on a temporary file in the destination folder; when
the block completes, the data is flushed, ``fsync``-ed and the file renamed over ``path``
(``os.replace``, atomic on POSIX). If the block raises, the temporary file is removed and
``path`` is untouched. A reader therefore sees either the old file or the complete new one,
never a partial write, whatever happens mid-write (exception, kill, power loss after fsync).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from typing import Iterator, Optional


@contextlib.contextmanager
def atomic_write(path, mode: str = "wb", newline: Optional[str] = None,
                 perms: Optional[int] = None) -> Iterator:
    """Write ``path`` atomically; ``mode`` is ``"wb"`` or ``"w"`` (text, with ``newline``).

    ``perms``: permission bits of the final file; by default ``0o666`` minus the process umask,
    as ``open()`` would create it (``mkstemp``'s private 0o600 would hide models and datasets
    from the other users of a robot).
    """
    if perms is None:
        perms = 0o666 & ~_umask()
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp",
                               dir=folder)
    try:
        kwargs = {} if "b" in mode else {"newline": newline}
        with os.fdopen(fd, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, perms)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    """The process umask, read without changing it where possible (Linux /proc).

    ``os.umask`` can only be read by setting it, which briefly affects every other thread of
    the process; /proc/self/status has it read-only (Linux >= 4.7).
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
