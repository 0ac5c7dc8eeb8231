"""Append training samples to a dataset folder one by one, crash-safe; check and repair a folder.

The folder is the ``sbm-train`` format (:mod:`sbm_ros.core.dataset`): ``targets.csv``, an
optional ``camera.json`` and the WAVs. :class:`SampleWriter` keeps one invariant whatever
happens (exception, full disk, ``kill -9``, power loss after the fsyncs)::

    every row of targets.csv names a complete WAV of the folder, and every WAV is in a row

except for the single sample being written at the moment of a kill, which :func:`repair_dataset`
settles on the next start (the writer runs it when it opens a folder).

Order of one :meth:`SampleWriter.append`:

1. the WAV is written to a temporary file, fsync-ed and renamed to its final name
   (:func:`sbm_ros.core.audio_io.write_wav`), then the folder is fsync-ed so the rename is on
   disk;
2. only then is the row appended to ``targets.csv`` (one ``write`` of one line, flush, fsync).
   If the append fails (full disk, I/O error), the CSV is truncated back to its previous length
   and the WAV removed, and :class:`DatasetWriteError` says why.

A kill between 1 and 2 leaves a WAV without a row; a kill during 2 can leave a partial last line.
A kill during 1 leaves a ``.*.tmp`` file. :func:`check_dataset` reports all of these, plus rows
whose WAV is missing or truncated (header longer than the file: written by something else, or a
file system that lost data); :func:`repair_dataset` removes the partial line and the rows without
a valid WAV (rewriting ``targets.csv`` atomically), moves WAVs without a row into
``unlisted/`` (their target is unknown; nothing is deleted) and deletes the temporary files.

Rows are never rewritten by :meth:`append` (O(1) per sample, unlike
:func:`sbm_ros.core.dataset.append_sample`, which rewrites the CSV for each sample).
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import struct
from dataclasses import dataclass, field
from typing import List, Optional, Sequence

import numpy as np

from .audio_io import write_wav
from .dataset import CAMERA_FILE, TARGETS_FILE, units_of
from .fileio import atomic_write

__all__ = ["DatasetWriteError", "SampleWriter", "DatasetCheck", "check_dataset",
           "repair_dataset", "wav_problem"]

UNLISTED_DIR = "unlisted"


class DatasetWriteError(Exception):
    """A sample could not be written; the message names the file and the reason."""


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def wav_problem(path: str) -> Optional[str]:
    """Why a WAV file is not complete (missing, not RIFF/WAVE, no fmt or data chunk, data chunk
    longer than the file), or None when it is."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as fh:
            head = fh.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return "not a RIFF/WAVE file"
            pos, fmt = 12, False
            while True:
                fh.seek(pos)
                ch = fh.read(8)
                if len(ch) < 8:
                    return "no data chunk" if fmt else "no fmt chunk"
                cid, n = ch[:4], struct.unpack("<I", ch[4:])[0]
                if cid == b"fmt ":
                    fmt = True
                elif cid == b"data":
                    if not fmt:
                        return "data chunk before the fmt chunk"
                    if pos + 8 + n > size:
                        return (f"truncated: the data chunk declares {n} bytes, the file holds "
                                f"{size - pos - 8}")
                    return None
                pos += 8 + n + (n & 1)
    except OSError as exc:
        return f"cannot read: {exc.strerror or exc}"


@dataclass
class DatasetCheck:
    """What :func:`check_dataset` found (or :func:`repair_dataset` fixed)."""
    root: str
    rows: int = 0                                          # good rows
    header: Optional[List[str]] = None
    partial_lines: List[int] = field(default_factory=list)   # line numbers
    missing_wav: List[str] = field(default_factory=list)     # rows naming no file
    bad_wav: List[str] = field(default_factory=list)         # rows naming an incomplete WAV
    unlisted_wav: List[str] = field(default_factory=list)    # WAVs no row names
    temp_files: List[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.partial_lines or self.missing_wav or self.bad_wav or self.unlisted_wav
                    or self.temp_files)

    def summary(self) -> str:
        if self.ok:
            return f"{self.root}: {self.rows} samples, consistent"
        parts = []
        for name, items in (("partial CSV line(s)", self.partial_lines),
                            ("row(s) without WAV", self.missing_wav),
                            ("row(s) with an incomplete WAV", self.bad_wav),
                            ("WAV(s) without row", self.unlisted_wav),
                            ("temporary file(s)", self.temp_files)):
            if items:
                parts.append(f"{len(items)} {name}")
        return f"{self.root}: {self.rows} good samples; " + ", ".join(parts)


def _scan(root: str):
    """(check, header, good rows, raw text) of a folder."""
    chk = DatasetCheck(root=os.path.abspath(root))
    csv_path = os.path.join(root, TARGETS_FILE)
    text = ""
    if os.path.exists(csv_path):
        with open(csv_path, newline="") as fh:
            text = fh.read()
    lines = text.split("\n")
    complete = lines[:-1]             # the text after the last newline is partial (or empty)
    if lines[-1]:
        chk.partial_lines.append(len(lines))
    header, good = None, []
    listed = set()
    for lineno, line in enumerate(complete, start=1):
        if not line.strip() or line.startswith("#"):
            continue
        row = next(csv.reader([line.rstrip("\r")]))
        if header is None:
            header = [h.strip() for h in row]
            continue
        if len(row) != len(header):
            chk.partial_lines.append(lineno)
            continue
        try:
            ok_vals = all(np.isfinite(float(v)) for v in row[1:])
        except ValueError:
            ok_vals = False
        if not ok_vals:
            chk.partial_lines.append(lineno)
            continue
        name = row[0].strip()
        listed.add(name)
        path = os.path.join(root, name)
        if not os.path.exists(path):
            chk.missing_wav.append(name)
            continue
        why = wav_problem(path)
        if why:
            chk.bad_wav.append(name)
            continue
        good.append(row)
    chk.header = header
    chk.rows = len(good)
    if os.path.isdir(root):
        for f in sorted(os.listdir(root)):
            if f.startswith(".") and f.endswith(".tmp"):
                chk.temp_files.append(f)
            elif f.lower().endswith(".wav") and f not in listed:
                chk.unlisted_wav.append(f)
    return chk, header, good


def check_dataset(root: str) -> DatasetCheck:
    """Check the folder's invariant (nothing is changed); see the module docstring."""
    return _scan(os.fspath(root))[0]


def repair_dataset(root: str) -> DatasetCheck:
    """Restore the invariant (see the module docstring); returns what was found and fixed."""
    root = os.fspath(root)
    chk, header, good = _scan(root)
    if chk.ok:
        return chk
    if chk.partial_lines or chk.missing_wav or chk.bad_wav:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        if header is not None:
            w.writerow(header)
            w.writerows(good)
        with atomic_write(os.path.join(root, TARGETS_FILE), "w", newline="") as fh:
            fh.write(buf.getvalue())
    move = list(chk.unlisted_wav) + list(chk.bad_wav)
    if move:
        dest = os.path.join(root, UNLISTED_DIR)
        os.makedirs(dest, exist_ok=True)
        for f in move:
            src = os.path.join(root, f)
            if os.path.exists(src):
                shutil.move(src, os.path.join(dest, os.path.basename(f)))
    for f in chk.temp_files:
        try:
            os.unlink(os.path.join(root, f))
        except OSError:
            pass
    _fsync_dir(root)
    return chk


class SampleWriter:
    """Appends samples to a dataset folder (see the module docstring).

    ``target_names``: ``["azimuth_deg", "elevation_deg"]`` (default), ``["u_px", "v_px"]``...
    ``camera``: a ``camera.json`` dict, written (atomically) when the writer opens the folder.
    Opening repairs the folder first (``repaired`` holds what was found) and refuses a folder
    whose ``targets.csv`` has other columns.
    """

    def __init__(self, root: str, target_names: Sequence[str] = ("azimuth_deg",
                                                                 "elevation_deg"),
                 camera: Optional[dict] = None, prefix: str = "sweep"):
        self.root = os.path.abspath(os.fspath(root))
        self.names = list(target_names)
        units_of(self.names)
        if not re.fullmatch(r"[A-Za-z0-9_-]+", prefix):
            raise ValueError(f"prefix must be letters, digits, '_' or '-', got {prefix!r}")
        self.prefix = prefix
        self.csv_path = os.path.join(self.root, TARGETS_FILE)
        try:
            os.makedirs(self.root, exist_ok=True)
            self.repaired = repair_dataset(self.root)
            if self.repaired.header is not None and self.repaired.header[1:] != self.names:
                raise DatasetWriteError(
                    f"{self.csv_path} has columns {self.repaired.header[1:]}, cannot append "
                    f"{self.names}: use another folder")
            if self.repaired.header is None:
                with atomic_write(self.csv_path, "w", newline="") as fh:
                    fh.write(",".join(["file"] + self.names) + "\n")
            if camera is not None:
                with atomic_write(os.path.join(self.root, CAMERA_FILE), "w") as fh:
                    json.dump(camera, fh, indent=1)
            _fsync_dir(self.root)
        except OSError as exc:
            raise DatasetWriteError(f"cannot prepare dataset folder {self.root}: "
                                    f"{exc.strerror or exc}") from None
        self.count = self.repaired.rows
        pat = re.compile(re.escape(prefix) + r"_(\d+)\.wav$")
        used = [int(m.group(1)) for f in os.listdir(self.root) for m in [pat.match(f)] if m]
        used += [int(m.group(1)) for f in os.listdir(os.path.join(self.root, UNLISTED_DIR))
                 for m in [pat.match(f)] if m] if os.path.isdir(
                     os.path.join(self.root, UNLISTED_DIR)) else []
        self._next = max(used, default=-1) + 1

    def append(self, x: np.ndarray, rate: int, target: Sequence[float]) -> str:
        """Write one sample; returns its file name. Raises :class:`DatasetWriteError`."""
        t = [float(v) for v in target]
        if len(t) != len(self.names) or not all(np.isfinite(t)):
            raise DatasetWriteError(f"target {list(target)} does not match the columns "
                                    f"{self.names} (finite numbers expected)")
        name = f"{self.prefix}_{self._next:05d}.wav"
        path = os.path.join(self.root, name)
        try:
            write_wav(path, x, rate)
            _fsync_dir(self.root)
        except OSError as exc:
            raise DatasetWriteError(f"cannot write {path}: {exc.strerror or exc}") from None
        except ValueError as exc:
            raise DatasetWriteError(f"cannot write {path}: {exc}") from None
        self._next += 1
        line = ",".join([name] + [f"{v:.6f}" for v in t]) + "\n"
        try:
            size = os.path.getsize(self.csv_path)
        except OSError:
            size = None
        try:
            with open(self.csv_path, "a", newline="") as fh:
                fh.write(line)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            try:                              # undo: the row (partly written?) and the WAV
                if size is not None:
                    os.truncate(self.csv_path, size)
                os.unlink(path)
            except OSError:
                pass                          # repair_dataset settles it on the next start
            raise DatasetWriteError(f"cannot append to {self.csv_path}: "
                                    f"{exc.strerror or exc}") from None
        self.count += 1
        return name
