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

    ``perms``: permission bits of the final file (``mkstemp`` creates it 0o600).
    """
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
        if perms is not None:
            os.chmod(tmp, perms)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
