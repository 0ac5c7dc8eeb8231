"""Crash-safe dataset appends (sbm_ros.core.sweep_writer): every CSV row has its WAV and vice
versa, after exceptions, simulated crashes and a real kill -9 of a writing process."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from sbm_ros.core.dataset import read_dataset
from sbm_ros.core.sweep_writer import (DatasetWriteError, SampleWriter, check_dataset,
                                       repair_dataset, wav_problem)

RATE = 16000
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def audio(seed=0, n=4000):
    return 0.1 * np.random.default_rng(seed).standard_normal((n, 2))


def test_append_gives_a_dataset_sbm_train_reads(tmp_path):
    cam = {"width": 640, "height": 480, "fx": 1.0, "fy": 1.0, "cx": 320, "cy": 240}
    w = SampleWriter(tmp_path / "ds", camera=cam)
    names = [w.append(audio(i), RATE, (i * 0.5, -i * 0.25)) for i in range(5)]
    assert names == [f"sweep_{i:05d}.wav" for i in range(5)] and w.count == 5
    ds = read_dataset(str(tmp_path / "ds"))
    assert len(ds) == 5 and ds.units == "degrees" and ds.camera["width"] == 640
    np.testing.assert_allclose(ds.targets[3], [1.5, -0.75])
    assert check_dataset(tmp_path / "ds").ok
    # reopening continues after the existing samples
    w2 = SampleWriter(tmp_path / "ds")
    assert w2.count == 5 and w2.append(audio(9), RATE, (0, 0)) == "sweep_00005.wav"
    assert len(read_dataset(str(tmp_path / "ds"))) == 6


def test_bad_targets_and_other_columns_are_refused(tmp_path):
    w = SampleWriter(tmp_path / "ds")
    with pytest.raises(DatasetWriteError, match="does not match"):
        w.append(audio(), RATE, (1.0,))
    with pytest.raises(DatasetWriteError, match="does not match"):
        w.append(audio(), RATE, (1.0, float("nan")))
    with pytest.raises(DatasetWriteError, match="other|columns"):
        SampleWriter(tmp_path / "ds", target_names=("u_px", "v_px"))
    assert check_dataset(tmp_path / "ds").ok


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="root ignores directory permissions")
def test_unwritable_folder_gives_a_clear_error(tmp_path):
    w = SampleWriter(tmp_path / "ds")
    os.chmod(tmp_path / "ds", 0o500)
    try:
        with pytest.raises(DatasetWriteError, match="cannot write"):
            w.append(audio(), RATE, (0.0, 0.0))
    finally:
        os.chmod(tmp_path / "ds", 0o755)
    assert check_dataset(tmp_path / "ds").ok


def test_failed_csv_append_removes_the_wav(tmp_path, monkeypatch):
    w = SampleWriter(tmp_path / "ds")
    w.append(audio(0), RATE, (0.0, 0.0))
    real_fsync = os.fsync

    def full_disk(fd):
        if os.path.basename(os.readlink(f"/proc/self/fd/{fd}")) == "targets.csv":
            raise OSError(28, "No space left on device")
        return real_fsync(fd)
    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(DatasetWriteError, match="No space left"):
        w.append(audio(1), RATE, (1.0, 1.0))
    monkeypatch.setattr(os, "fsync", real_fsync)
    chk = check_dataset(tmp_path / "ds")
    assert chk.ok and chk.rows == 1


def _write_truncated_wav(path):
    with open(path, "wb") as fh:                 # header claims 64000 bytes, 100 present
        fh.write(b"RIFF" + (64036).to_bytes(4, "little") + b"WAVE")
        fh.write(b"fmt " + (16).to_bytes(4, "little") + (1).to_bytes(2, "little")
                 + (2).to_bytes(2, "little") + RATE.to_bytes(4, "little")
                 + (RATE * 4).to_bytes(4, "little") + (4).to_bytes(2, "little")
                 + (16).to_bytes(2, "little"))
        fh.write(b"data" + (64000).to_bytes(4, "little") + bytes(100))


def test_repair_after_a_simulated_crash(tmp_path):
    root = tmp_path / "ds"
    w = SampleWriter(root)
    for i in range(4):
        w.append(audio(i), RATE, (i, i))
    # crash damage of every kind
    _write_truncated_wav(root / "sweep_00001.wav")           # truncated WAV with a row
    os.unlink(root / "sweep_00002.wav")                      # row without WAV
    w.append(audio(7), RATE, (7, 7))
    (root / "sweep_00009.wav").write_bytes((root / "sweep_00000.wav").read_bytes())  # no row
    with open(root / "targets.csv", "a") as fh:              # partial last line
        fh.write("sweep_0001")
    (root / ".sweep_00010.wav.abc.tmp").write_bytes(b"partial")
    assert "truncated" in wav_problem(str(root / "sweep_00001.wav"))
    chk = check_dataset(root)
    assert not chk.ok
    assert chk.bad_wav == ["sweep_00001.wav"] and chk.missing_wav == ["sweep_00002.wav"]
    assert chk.unlisted_wav == ["sweep_00009.wav"] and len(chk.partial_lines) == 1
    assert chk.temp_files == [".sweep_00010.wav.abc.tmp"]
    assert "row(s) without WAV" in chk.summary()
    with pytest.raises(Exception):
        read_dataset(str(root))                              # sbm-train would refuse it
    repair_dataset(root)
    after = check_dataset(root)
    assert after.ok and after.rows == 3
    ds = read_dataset(str(root))
    assert sorted(os.path.basename(f) for f in ds.files) == ["sweep_00000.wav",
                                                             "sweep_00003.wav",
                                                             "sweep_00004.wav"]
    assert sorted(os.listdir(root / "unlisted")) == ["sweep_00001.wav", "sweep_00009.wav"]
    # a new writer never reuses a name, even of a moved file
    assert SampleWriter(root).append(audio(8), RATE, (8, 8)) == "sweep_00010.wav"


def test_crlf_csv_of_the_grid_writer_is_appended_to(tmp_path):
    from sbm_ros.sim.datasets import write_dataset
    root = write_dataset(tmp_path / "ds", [audio(0), audio(1)], np.zeros((2, 2)))
    w = SampleWriter(root)
    assert w.count == 2
    w.append(audio(2), RATE, (1.0, 2.0))
    assert len(read_dataset(str(root))) == 3 and check_dataset(root).ok


WRITER = """
import sys, numpy as np
from sbm_ros.core.sweep_writer import SampleWriter
w = SampleWriter(sys.argv[1])
x = 0.1 * np.random.default_rng(0).standard_normal((16000, 2))
for i in range(100000):
    w.append(x, 16000, (i % 30, i % 20))
"""


def test_kill_9_mid_sweep_leaves_a_repairable_folder(tmp_path):
    root = tmp_path / "ds"
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for round_ in range(3):
        p = subprocess.Popen([sys.executable, "-c", WRITER, str(root)], env=env)
        try:
            target = 5 * (round_ + 1)
            while True:                              # wait until it has written some samples
                n = len([f for f in os.listdir(root)]) if root.exists() else 0
                if n >= target + 3 or p.poll() is not None:
                    break
                time.sleep(0.01)
        finally:
            p.send_signal(signal.SIGKILL)
            p.wait()
        chk = check_dataset(root)
        # at most the one sample being written is incomplete
        assert len(chk.unlisted_wav) + len(chk.partial_lines) + len(chk.temp_files) <= 2
        assert chk.missing_wav == [] and chk.bad_wav == []
        repair_dataset(root)
        after = check_dataset(root)
        assert after.ok
        ds = read_dataset(str(root))
        assert len(ds) == after.rows >= target
