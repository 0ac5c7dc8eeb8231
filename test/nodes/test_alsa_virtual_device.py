"""The virtual ALSA capture device of sbm_ros.testing.alsa, through PortAudio/sounddevice."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from sbm_ros.testing.alsa import (AlsaFilePcm, alsa_config_text, read_raw_s16le,
                                  refresh_portaudio, write_raw_s16le)

RATE = 16000


def _sounddevice():
    try:
        import sounddevice
    except OSError as exc:  # libportaudio2 missing
        pytest.skip('PortAudio library not available: %s' % exc)
    return sounddevice


@pytest.fixture
def raw_file(tmp_path):
    """1.5 s of distinct, easily checked samples on both ears (left ramp, right noise)."""
    n = int(1.5 * RATE)
    rng = np.random.default_rng(7)
    x = np.empty((n, 2), np.int16)
    x[:, 0] = (np.arange(n) % 65536 - 32768).astype(np.int16)
    x[:, 1] = rng.integers(-32768, 32767, n, dtype=np.int16)
    path = tmp_path / 'ears.raw'
    write_raw_s16le(path, x)
    return path, x


def test_config_text_names_device_and_file(tmp_path):
    text = alsa_config_text(tmp_path / 'a.raw', 'my_ears', rate=48000, channels=2)
    assert 'pcm.my_ears {' in text and 'pcm.my_ears_raw {' in text
    assert 'rate 48000' in text and str(tmp_path / 'a.raw') in text
    with pytest.raises(ValueError):
        alsa_config_text(tmp_path / 'a.raw', 'bad name')


def test_rejects_partial_frames(tmp_path):
    path = tmp_path / 'odd.raw'
    path.write_bytes(b'\x00' * 6)  # 1.5 stereo frames
    with pytest.raises(ValueError):
        AlsaFilePcm(path)


def test_raw_roundtrip_and_float_scaling(tmp_path):
    path = tmp_path / 'f.raw'
    n = write_raw_s16le(path, np.array([[0.5, -1.0], [1.0, 0.0]]), pad_frames=3)
    assert n == 5
    y = read_raw_s16le(path)
    assert y.tolist() == [[16384, -32768], [32767, 0], [0, 0], [0, 0], [0, 0]]


def test_capture_equals_file_in_process(raw_file):
    path, x = raw_file
    sd = _sounddevice()
    try:
        with AlsaFilePcm(path, rate=RATE) as pcm:
            refresh_portaudio()
            names = [d['name'] for d in sd.query_devices()]
            assert pcm.device_name in names
            got = sd.rec(RATE, samplerate=RATE, channels=2, dtype='int16',
                         device=pcm.device_name, blocking=True)
    finally:
        refresh_portaudio()  # forget the temporary device
    np.testing.assert_array_equal(got, x[:RATE])


def test_capture_equals_file_in_subprocess_with_input_stream(raw_file, tmp_path):
    """As a capture node would: a fresh process, InputStream callbacks, the helper's env."""
    _sounddevice()
    path, x = raw_file
    out = tmp_path / 'captured.npy'
    script = textwrap.dedent('''
        import queue, sys
        import numpy as np, sounddevice as sd
        n, blocks = int(sys.argv[2]), queue.Queue()
        def callback(indata, frames, time_info, status):
            blocks.put(indata.copy())
        got, total = [], 0
        with sd.InputStream(device=sys.argv[1], samplerate=16000, channels=2,
                            dtype='int16', blocksize=256, callback=callback):
            while total < n:
                b = blocks.get(timeout=10)
                got.append(b)
                total += len(b)
        np.save(sys.argv[3], np.concatenate(got)[:n])
    ''')
    n = len(x)
    with AlsaFilePcm(path, rate=RATE, device_name='sbm_test_ears') as pcm:
        proc = subprocess.run([sys.executable, '-c', script, pcm.device_name, str(n), str(out)],
                              env=pcm.env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_array_equal(np.load(out), x)


def test_reading_past_end_of_padded_file_gives_padding(tmp_path):
    """Past the end of the file ALSA repeats stale buffer contents: pad files with silence."""
    sd = _sounddevice()
    x = np.full((4000, 2), 1000, np.int16)
    path = tmp_path / 'short.raw'
    write_raw_s16le(path, x, pad_frames=RATE)
    before = os.environ.get('ALSA_CONFIG_PATH')
    try:
        with AlsaFilePcm(path, rate=RATE) as pcm:
            refresh_portaudio()
            got = sd.rec(len(x) + RATE // 2, samplerate=RATE, channels=2, dtype='int16',
                         device=pcm.device_name, blocking=True)
    finally:
        refresh_portaudio()
    np.testing.assert_array_equal(got[:len(x)], x)
    assert not np.any(got[len(x):])
    assert os.environ.get('ALSA_CONFIG_PATH') == before  # restored on exit


def test_cli_writes_persistent_config(raw_file, capsys):
    from sbm_ros.testing.alsa import main
    path, _ = raw_file
    assert main([str(path), '--name', 'cli_ears', '--rate', '16000']) == 0
    out = capsys.readouterr().out
    assert out.startswith('export ALSA_CONFIG_PATH=')
    assert 'pcm.cli_ears {' in open(str(path) + '.asoundrc').read()
