"""Audio I/O: WAV read/write with resampling, raw PCM bytes <-> float arrays.

Numerical choices
-----------------
* Float full scale is 1.0. Integer PCM is scaled by ``2**-(bits-1)``: S16 / 32768,
  S24 / 8388608, S32 / 2147483648; unsigned 8-bit as ``(x - 128) / 128``.
* Float -> integer: multiply by ``2**(bits-1)``, round half to even (``np.rint``), clip to
  the integer range (so +1.0 maps to the largest code, ``32767`` for S16). Non-finite values
  are mapped to 0 before conversion.
* Resampling: ``scipy.signal.resample_poly`` with ``up/down = target_rate/rate`` reduced
  exactly; if the reduced fraction has a term above 1000 (unusual rates), it is replaced by the
  closest fraction with denominator <= 1000 (``fractions.Fraction.limit_denominator``), a rate
  error below ~1e-6 relative for common rates; the returned rate is the requested target.
  Default Kaiser (beta 5) anti-aliasing filter of scipy.
* WAV reading uses ``scipy.io.wavfile`` (PCM 8/16/24/32, IEEE float 32/64,
  WAVE_FORMAT_EXTENSIBLE). :class:`WavBlockReader` streams a file from disk instead
  (``soundfile``), resampling block by block with the same polyphase filter: each block is
  resampled with enough neighbouring input samples on both sides (more than the filter's
  half-length) and cut on the output grid, so the samples equal those of :func:`read_wav`
  with ``target_rate`` (to float rounding) while memory stays at one block.
* WAV writing is PCM16 via the stdlib ``wave`` module, atomically (temporary file in the
  destination directory, then ``os.replace``).
* Raw PCM (``pcm_bytes_to_float``): interleaved little-endian frames, formats ``S16LE``,
  ``S24LE`` (packed 3 bytes), ``S32LE``, ``F32LE``. A byte count that is not a whole number of
  frames raises ``ValueError`` by default; with ``strict=False`` the trailing partial frame is
  dropped (the caller can warn and continue). :class:`PcmStreamDecoder` instead carries the
  partial frame over to the next chunk.
"""

from __future__ import annotations

import os
import wave
from fractions import Fraction
from typing import Optional, Tuple

import numpy as np

from .fileio import atomic_write

__all__ = [
    "SAMPLE_FORMATS",
    "bytes_per_sample",
    "read_wav",
    "write_wav",
    "resample",
    "pcm_bytes_to_float",
    "float_to_pcm_bytes",
    "PcmStreamDecoder",
    "WavBlockReader",
]

#: bytes per sample of each supported raw format
SAMPLE_FORMATS = {"S16LE": 2, "S24LE": 3, "S32LE": 4, "F32LE": 4}
_MAX_RATIO_TERM = 1000


def bytes_per_sample(sample_format: str) -> int:
    """Bytes per single-channel sample of ``sample_format``."""
    fmt = _norm_fmt(sample_format)
    return SAMPLE_FORMATS[fmt]


def _norm_fmt(sample_format: str) -> str:
    fmt = str(sample_format).upper()
    if fmt not in SAMPLE_FORMATS:
        raise ValueError(
            f"unsupported sample format {sample_format!r}; use one of {sorted(SAMPLE_FORMATS)}")
    return fmt


def _int_to_float(data: np.ndarray) -> np.ndarray:
    dt = data.dtype
    if dt == np.uint8:
        return (data.astype(np.float64) - 128.0) / 128.0
    if dt == np.int16:
        return data.astype(np.float64) / 32768.0
    if dt == np.int32:  # scipy returns 24-bit PCM left-justified in int32
        return data.astype(np.float64) / 2147483648.0
    if dt == np.int64:
        return data.astype(np.float64) / 9223372036854775808.0
    if dt.kind == "f":
        return data.astype(np.float64)
    raise ValueError(f"unsupported WAV sample type {dt}")


def _ratio(rate: int, target_rate: int) -> Fraction:
    """target_rate / rate as used for resampling (see module doc)."""
    fr = Fraction(int(target_rate), int(rate))
    if max(fr.numerator, fr.denominator) > _MAX_RATIO_TERM:
        fr = fr.limit_denominator(_MAX_RATIO_TERM)
        if fr == 0:
            raise ValueError(f"cannot approximate resampling ratio {target_rate}/{rate}")
    return fr


def resample(x: np.ndarray, rate: int, target_rate: int) -> np.ndarray:
    """Resample ``x`` (n, ...) along axis 0 from ``rate`` to ``target_rate`` Hz (see module
    doc)."""
    rate, target_rate = int(rate), int(target_rate)
    if rate <= 0 or target_rate <= 0:
        raise ValueError(f"sample rates must be > 0, got {rate} -> {target_rate}")
    if rate == target_rate:
        return np.asarray(x, dtype=np.float64)
    from scipy.signal import resample_poly

    fr = _ratio(rate, target_rate)
    return resample_poly(np.asarray(x, dtype=np.float64), fr.numerator, fr.denominator, axis=0)


def read_wav(path, target_rate: Optional[int] = None,
             allow_mono: bool = False) -> Tuple[np.ndarray, int]:
    """Read a stereo WAV file as float64 ``(n, 2)`` (column 0 = left, 1 = right).

    Parameters
    ----------
    path : str or path-like
    target_rate : int, optional
        Resample to this rate (Hz) if it differs from the file's rate.
    allow_mono : bool
        If True, mono files are returned as ``(n, 1)``; otherwise they raise ``ValueError``.

    Returns
    -------
    x : ndarray (n, 2) float64, full scale 1.0
    rate : int
        ``target_rate`` if given, else the file's rate.

    Raises
    ------
    ValueError
        Unreadable / unsupported file, mono (unless ``allow_mono``) or more than 2 channels.
    """
    from scipy.io import wavfile

    try:
        rate, data = wavfile.read(os.fspath(path), mmap=False)
    except (ValueError, EOFError) as e:
        raise ValueError(f"cannot read WAV file {path}: {e}") from e
    x = _int_to_float(np.asarray(data))
    if x.ndim == 1:
        x = x[:, None]
    nch = x.shape[1]
    if nch == 1 and not allow_mono:
        raise ValueError(
            f"{path}: mono WAV file; binaural processing needs 2 channels "
            "(0 = left ear, 1 = right ear)"
        )
    if nch > 2:
        raise ValueError(
            f"{path}: {nch} channels; expected a 2-channel (left, right) binaural WAV")
    rate = int(rate)
    if target_rate is not None and int(target_rate) != rate:
        x = resample(x, rate, int(target_rate))
        rate = int(target_rate)
    return np.ascontiguousarray(x, dtype=np.float64), rate


def write_wav(path, x, rate: int) -> None:
    """Write ``x`` ((n,) or (n, channels), full scale 1.0) as a PCM16 WAV, atomically.

    Values are clipped to the 16-bit range; NaN/inf become 0. The file appears at ``path``
    only when complete (temporary file in the same directory + ``os.replace``).
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[1] < 1:
        raise ValueError(f"audio must be (n,) or (n, channels), got {x.shape}")
    rate = int(rate)
    if rate <= 0:
        raise ValueError(f"rate must be > 0, got {rate}")
    payload = float_to_pcm_bytes(x, "S16LE")
    with atomic_write(path) as f:
        with wave.open(f, "wb") as w:
            w.setnchannels(x.shape[1])
            w.setsampwidth(2)
            w.setframerate(rate)
            w.writeframes(payload)


def pcm_bytes_to_float(data: bytes, channels: int, sample_format: str = "S16LE",
                       strict: bool = True) -> np.ndarray:
    """Decode interleaved little-endian PCM bytes to float64 ``(n, channels)``.

    Parameters
    ----------
    data : bytes-like
    channels : int
    sample_format : {"S16LE", "S24LE", "S32LE", "F32LE"}
    strict : bool
        If True (default), a byte count that is not a multiple of ``channels * bytes/sample``
        raises ``ValueError``; if False the trailing partial frame is silently dropped (use
        ``len(data) % (channels * bytes_per_sample(fmt))`` to report it).

    Returns
    -------
    x : ndarray (n, channels) float64 (F32LE values are passed through, including non-finite).
    """
    fmt = _norm_fmt(sample_format)
    channels = int(channels)
    if channels < 1:
        raise ValueError(f"channels must be >= 1, got {channels}")
    buf = memoryview(data).cast("B")
    bps = SAMPLE_FORMATS[fmt]
    frame = bps * channels
    rem = len(buf) % frame
    if rem:
        if strict:
            raise ValueError(
                f"PCM byte count {len(buf)} is not a multiple of the frame size {frame} "
                f"({channels} channels x {bps} bytes, {fmt}); {rem} trailing bytes"
            )
        buf = buf[: len(buf) - rem]
    n = len(buf) // frame
    if fmt == "S16LE":
        x = np.frombuffer(buf, dtype="<i2").astype(np.float64) / 32768.0
    elif fmt == "S32LE":
        x = np.frombuffer(buf, dtype="<i4").astype(np.float64) / 2147483648.0
    elif fmt == "F32LE":
        x = np.frombuffer(buf, dtype="<f4").astype(np.float64)
    else:  # S24LE packed
        b = np.frombuffer(buf, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        v = np.where(v >= 1 << 23, v - (1 << 24), v)
        x = v.astype(np.float64) / 8388608.0
    return x.reshape(n, channels)


def float_to_pcm_bytes(x, sample_format: str = "S16LE") -> bytes:
    """Encode float audio ((n,) or (n, channels), full scale 1.0) as interleaved little-endian PCM.

    Integer formats: round-to-nearest (``np.rint``) after scaling by ``2**(bits-1)``, clipped
    to the integer range; NaN/inf -> 0. ``F32LE``: cast to float32 (no clipping).
    """
    fmt = _norm_fmt(sample_format)
    x = np.asarray(x, dtype=np.float64)
    if fmt == "F32LE":
        return np.ascontiguousarray(x, dtype="<f4").tobytes()
    x = np.where(np.isfinite(x), x, 0.0)
    bits = {"S16LE": 16, "S24LE": 24, "S32LE": 32}[fmt]
    full = float(1 << (bits - 1))
    q = np.clip(np.rint(x * full), -full, full - 1).astype(np.int64)
    if fmt == "S16LE":
        return np.ascontiguousarray(q, dtype="<i2").tobytes()
    if fmt == "S32LE":
        return np.ascontiguousarray(q, dtype="<i4").tobytes()
    u = (q.reshape(-1) & 0xFFFFFF).astype("<u4")
    return np.ascontiguousarray(u.view(np.uint8).reshape(-1, 4)[:, :3]).tobytes()


class PcmStreamDecoder:
    """Decode a stream of PCM byte chunks whose boundaries need not align with frames.

    A partial frame at the end of a chunk is kept and prepended to the next one, so no sample
    is lost or misaligned. ``decode`` returns ``(n, channels)`` float64 (possibly n = 0).
    """

    def __init__(self, channels: int, sample_format: str = "S16LE") -> None:
        self.sample_format = _norm_fmt(sample_format)
        self.channels = int(channels)
        if self.channels < 1:
            raise ValueError(f"channels must be >= 1, got {channels}")
        self.frame_bytes = SAMPLE_FORMATS[self.sample_format] * self.channels
        self._rest = b""

    @property
    def pending_bytes(self) -> int:
        """Bytes of an incomplete frame carried over."""
        return len(self._rest)

    def reset(self) -> None:
        self._rest = b""

    def decode(self, data: bytes) -> np.ndarray:
        buf = self._rest + bytes(data) if self._rest else bytes(data)
        rem = len(buf) % self.frame_bytes
        self._rest = buf[len(buf) - rem:] if rem else b""
        return pcm_bytes_to_float(buf[: len(buf) - rem], self.channels, self.sample_format)


class WavBlockReader:
    """A stereo WAV file read from disk block by block, resampled to ``target_rate``.

    ``blocks()`` yields float64 ``(m, 2)`` arrays that, concatenated, equal
    ``read_wav(path, target_rate)`` (to float rounding; see module doc) while holding about
    ``block_s`` seconds of the file in memory. Every call of ``blocks()`` starts again from
    the beginning (looping). Raises ``ValueError`` like :func:`read_wav` for an unreadable,
    mono or multi-channel file.
    """

    def __init__(self, path, target_rate: Optional[int] = None, block_s: float = 1.0):
        import soundfile as sf

        self.path = os.fspath(path)
        try:
            info = sf.info(self.path)
        except (RuntimeError, sf.LibsndfileError) as e:
            raise ValueError(f"cannot read WAV file {path}: {e}") from e
        if info.channels == 1:
            raise ValueError(f"{path}: mono WAV file; binaural processing needs 2 channels "
                             "(0 = left ear, 1 = right ear)")
        if info.channels > 2:
            raise ValueError(f"{path}: {info.channels} channels; expected a 2-channel (left, "
                             "right) binaural WAV")
        self.file_rate = int(info.samplerate)
        self.rate = int(target_rate) if target_rate else self.file_rate
        self.n_in = int(info.frames)
        fr = _ratio(self.file_rate, self.rate) if self.rate != self.file_rate else Fraction(1)
        self.up, self.down = fr.numerator, fr.denominator
        #: samples per channel at ``rate`` (resample_poly's output length)
        self.frames = -(-self.n_in * self.up // self.down)
        half_in = 10 * max(self.up, self.down) // self.up + 2     # filter half-length, input
        self._pad = -(-half_in // self.down) * self.down if fr != 1 else 0
        step = max(1, int(block_s * self.file_rate))
        self._step = -(-step // self.down) * self.down

    def blocks(self):
        import soundfile as sf

        if self.up != self.down:
            # only when resampling: importing scipy.signal costs seconds on a busy machine, and
            # a player pacing the blocks would then burst to catch up
            from scipy.signal import resample_poly
        with sf.SoundFile(self.path) as f:
            for s in range(0, self.n_in, self._step):
                e = min(s + self._step, self.n_in)
                lo, hi = max(0, s - self._pad), min(self.n_in, e + self._pad)
                f.seek(lo)
                x = f.read(hi - lo, dtype="float64", always_2d=True)
                if self.up == self.down:
                    yield np.ascontiguousarray(x)
                    continue
                y = resample_poly(x, self.up, self.down, axis=0)
                o0 = lo * self.up // self.down
                o_end = self.frames if e == self.n_in else e * self.up // self.down
                yield np.ascontiguousarray(y[s * self.up // self.down - o0:o_end - o0])
