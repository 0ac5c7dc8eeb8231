import os
import wave

import numpy as np
import pytest
from scipy.io import wavfile

from sbm_ros.core.audio_io import (
    PcmStreamDecoder,
    float_to_pcm_bytes,
    pcm_bytes_to_float,
    read_wav,
    resample,
    write_wav,
)


def _sig(n=4000, seed=0):
    return np.random.default_rng(seed).uniform(-0.9, 0.9, (n, 2))


def test_write_read_round_trip_pcm16(tmp_path):
    x = _sig()
    p = tmp_path / "a.wav"
    write_wav(p, x, 16000)
    y, fs = read_wav(p)
    assert fs == 16000 and y.shape == x.shape and y.dtype == np.float64
    np.testing.assert_allclose(y, x, atol=0.5 / 32768 + 1e-12)
    assert [f for f in os.listdir(tmp_path)] == ["a.wav"]  # no temp files left
    with wave.open(str(p)) as w:
        assert w.getsampwidth() == 2 and w.getnchannels() == 2


def test_write_clips(tmp_path):
    p = tmp_path / "c.wav"
    write_wav(p, np.array([[2.0, -2.0], [np.nan, 0.5]]), 8000)
    y, _ = read_wav(p)
    np.testing.assert_allclose(y, [[32767 / 32768, -1.0], [0.0, 0.5]])


@pytest.mark.parametrize("dtype,scale",
                         [(np.int16, 32767), (np.int32, 2**31 - 1), (np.float32, 1.0)])
def test_read_formats(tmp_path, dtype, scale):
    x = _sig(1000)
    data = (x * scale).astype(dtype)
    p = tmp_path / "f.wav"
    wavfile.write(p, 22050, data)
    y, fs = read_wav(p)
    assert fs == 22050
    np.testing.assert_allclose(y, x, atol=2.0 / 32768)


def test_read_pcm24(tmp_path):
    x = _sig(500)
    p = tmp_path / "p24.wav"
    with wave.open(str(p), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(3)
        w.setframerate(16000)
        w.writeframes(float_to_pcm_bytes(x, "S24LE"))
    y, fs = read_wav(p)
    np.testing.assert_allclose(y, x, atol=1.0 / 2**23)


def test_mono_and_multichannel_rejected(tmp_path):
    p = tmp_path / "m.wav"
    write_wav(p, np.zeros(100), 16000)
    with pytest.raises(ValueError, match="mono"):
        read_wav(p)
    y, _ = read_wav(p, allow_mono=True)
    assert y.shape == (100, 1)
    p3 = tmp_path / "t.wav"
    write_wav(p3, np.zeros((100, 3)), 16000)
    with pytest.raises(ValueError, match="3 channels"):
        read_wav(p3)
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not a wav file at all")
    with pytest.raises(ValueError):
        read_wav(bad)


@pytest.mark.parametrize("fs_in", [44100, 48000, 8000])
def test_resampling(tmp_path, fs_in):
    t = np.arange(fs_in) / fs_in  # 1 s
    tone = 0.5 * np.sin(2 * np.pi * 1000 * t)
    p = tmp_path / "r.wav"
    write_wav(p, np.stack([tone, -tone], 1), fs_in)
    y, fs = read_wav(p, target_rate=16000)
    assert fs == 16000 and y.shape == (16000, 2)
    spec = np.abs(np.fft.rfft(y[2000:14000, 0] * np.hanning(12000)))
    f_peak = np.argmax(spec) * 16000 / 12000
    assert abs(f_peak - 1000) < 2
    np.testing.assert_allclose(y[:, 0], -y[:, 1], atol=1e-4)
    # large-term ratio approximated
    assert resample(np.zeros((16001, 2)), 16001, 16000).shape[1] == 2


@pytest.mark.parametrize("fmt,tol", [("S16LE", 0.5 / 32768), ("S24LE", 0.5 / 2**23),
                                     ("S32LE", 1e-9), ("F32LE", 1e-7)])
def test_pcm_bytes_round_trip(fmt, tol):
    x = _sig(300)
    b = float_to_pcm_bytes(x, fmt)
    assert len(b) == 300 * 2 * {"S16LE": 2, "S24LE": 3, "S32LE": 4, "F32LE": 4}[fmt]
    y = pcm_bytes_to_float(b, 2, fmt)
    assert y.shape == (300, 2)
    np.testing.assert_allclose(y, x, atol=tol + 1e-12)


def test_pcm_s16_exact_values_and_clipping():
    b = float_to_pcm_bytes(np.array([[1.0, -1.0], [0.5, 3.0]]), "S16LE")
    assert np.frombuffer(b, "<i2").tolist() == [32767, -32768, 16384, 32767]
    assert pcm_bytes_to_float(b, 2).tolist() == [[32767 / 32768, -1.0], [0.5, 32767 / 32768]]


def test_odd_byte_counts():
    b = float_to_pcm_bytes(_sig(10), "S16LE")
    with pytest.raises(ValueError, match="multiple of the frame size"):
        pcm_bytes_to_float(b + b"\x01", 2, "S16LE")
    y = pcm_bytes_to_float(b + b"\x01\x02\x03", 2, "S16LE", strict=False)
    assert y.shape == (10, 2)
    with pytest.raises(ValueError):
        pcm_bytes_to_float(b, 2, "U8")
    # stream decoder carries partial frames across chunk boundaries
    x = _sig(50)
    data = float_to_pcm_bytes(x, "S32LE")
    dec = PcmStreamDecoder(2, "S32LE")
    cuts = [0, 3, 7, 8, 101, 250, len(data)]
    parts = [dec.decode(data[a:b]) for a, b in zip(cuts[:-1], cuts[1:])]
    assert dec.pending_bytes == 0
    np.testing.assert_allclose(np.concatenate(parts), x, atol=1e-9)


@pytest.mark.parametrize('rate,subtype', [(44100, 'PCM_16'), (48000, 'FLOAT'), (22050, 'PCM_24'),
                                          (16000, 'PCM_16'), (8000, 'PCM_16')])
@pytest.mark.parametrize('block_s', [0.05, 1.0])
@pytest.mark.filterwarnings('ignore:Chunk .non-data. not understood')   # scipy, float WAV
def test_wav_block_reader_equals_the_whole_file_path(tmp_path, rate, subtype, block_s):
    sf = pytest.importorskip('soundfile')
    from sbm_ros.core.audio_io import WavBlockReader
    n = int(2.3 * rate) + 7
    rng = np.random.default_rng(rate)
    x = 0.3 * np.stack([np.sin(2 * np.pi * 440 * np.arange(n) / rate), rng.normal(size=n) / 4],
                       axis=1)
    path = str(tmp_path / 'a.wav')
    sf.write(path, x, rate, subtype=subtype)
    whole, _ = read_wav(path, target_rate=16000)
    reader = WavBlockReader(path, target_rate=16000, block_s=block_s)
    for _ in range(2):                           # a second pass (loop) gives the same samples
        got = np.concatenate(list(reader.blocks()))
        assert got.shape == whole.shape == (reader.frames, 2)
        np.testing.assert_allclose(got, whole, rtol=0, atol=1e-9)


def test_wav_block_reader_refuses_mono_and_garbage(tmp_path):
    pytest.importorskip('soundfile')
    from sbm_ros.core.audio_io import WavBlockReader
    mono = str(tmp_path / 'm.wav')
    write_wav(mono, np.zeros(100), 16000)
    with pytest.raises(ValueError, match='mono WAV file'):
        WavBlockReader(mono)
    bad = str(tmp_path / 'b.wav')
    open(bad, 'wb').write(b'RIFF not really')
    with pytest.raises(ValueError, match='cannot read WAV file'):
        WavBlockReader(bad)


def test_wav_block_reader_without_resampling_does_not_import_scipy_signal(tmp_path):
    """The file player paces the blocks: the first one must not wait for a slow import."""
    import subprocess
    import sys
    from sbm_ros.core.audio_io import write_wav
    path = str(tmp_path / 'x.wav')
    write_wav(path, np.zeros((1600, 2)), 16000)
    code = ('import sys; from sbm_ros.core.audio_io import WavBlockReader; '
            f'r = WavBlockReader({path!r}, target_rate=16000); next(iter(r.blocks())); '
            'print("scipy.signal" in sys.modules)')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == 'False'
