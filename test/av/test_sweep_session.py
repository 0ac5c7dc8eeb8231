"""SweepSession: segmenter + coverage + crash-safe writer, without ROS."""

import os

import numpy as np
import pytest

from sbm_ros.av.sweep_session import SessionConfig, SweepSession, count_rows, draw_overlay
from sbm_ros.core.geometry import PinholeCamera
from sbm_ros.core.sweep import SweepParams
from sbm_ros.core.sweep_writer import DatasetWriteError, check_dataset

RATE = 16000
FPS = 15.0


@pytest.fixture
def cam():
    return PinholeCamera.from_fov(640, 480, 28.0, 21.0)


def feed(sess, path, t0=0.0, level=0.1, seed=0, now=0.0, block=800):
    """Stream a marker path [(u, v) or None per frame] and white noise through the session in
    time order; returns the last stamp."""
    rng = np.random.default_rng(seed)
    n_frames = len(path)
    dur = n_frames / FPS
    n = int(dur * RATE)
    i = 0
    for j, pix in enumerate(path):
        t = t0 + j / FPS
        while i < n and t0 + i / RATE <= t:
            x = level * rng.standard_normal((block, 2))
            sess.push_audio(t0 + i / RATE, x, RATE)
            i += block
        sess.push_marker(t, pix)
        sess.process(now + t)
    while i < n:
        sess.push_audio(t0 + i / RATE, level * rng.standard_normal((block, 2)), RATE)
        i += block
    sess.process(now + t0 + dur)
    return t0 + dur


def line(u0, u1, v, seconds):
    k = int(seconds * FPS)
    return [(float(u), float(v)) for u in np.linspace(u0, u1, k)]


def test_a_slow_pass_writes_samples_and_covers_its_row(tmp_path, cam):
    sess = SweepSession(str(tmp_path / "ds"), cam, SweepParams(),
                        camera_json=cam.to_dict())
    feed(sess, line(30, 610, 240, 30.0))          # ~0.9 deg/s across the image
    sess.finish(100.0)
    st = sess.status()
    assert st["samples"] == st["samples_this_sweep"] == sess.written > 20
    assert count_rows(sess.root) == sess.written
    assert check_dataset(sess.root).ok
    row = np.asarray(st["grid"]["counts"])[4]
    assert np.all(row > 0) and np.asarray(st["grid"]["counts"]).sum() == sess.written
    assert 0 < st["coverage"] < 0.2 and not st["complete"]
    assert st["unsaved"] == 0 and st["write_error"] is None
    assert os.path.exists(os.path.join(sess.root, "camera.json"))


def test_too_fast_and_lost_marker_are_rejected_and_counted(tmp_path, cam):
    sess = SweepSession(str(tmp_path / "ds"), cam)
    path = line(30, 610, 100, 2.0) + [None] * 15 + line(300, 310, 300, 3.0)
    feed(sess, path)
    sess.finish(50.0)
    rej = sess.status()["rejected"]
    assert rej["too_fast"] >= 1 and rej["marker_lost"] >= 1
    assert sess.written >= 2


def test_samples_held_while_the_folder_is_unwritable_then_written(tmp_path, cam, monkeypatch):
    sess = SweepSession(str(tmp_path / "ds"), cam, config=SessionConfig(retry_s=1.0))
    real = sess.writer.append

    def full(*a, **k):
        raise DatasetWriteError("cannot write x.wav: No space left on device")
    monkeypatch.setattr(sess.writer, "append", full)
    feed(sess, line(30, 330, 240, 15.0))
    st = sess.status()
    assert st["unsaved"] > 5 and st["samples_this_sweep"] == 0
    assert "No space left" in st["write_error"]
    (key, text), = [n for n in sess.notices() if n[0] == "write"]
    assert "free disk space" in text and str(st["unsaved"]) in text
    held = [s.pixel for s in sess.unsaved]
    monkeypatch.setattr(sess.writer, "append", real)
    out = sess.process(1000.0)
    assert out["recovered"] == len(held) and sess.status()["unsaved"] == 0
    assert sess.write_error is None and not [n for n in sess.notices() if n[0] == "write"]
    assert count_rows(sess.root) == sess.written == len(held)
    assert check_dataset(sess.root).ok


def test_memory_bound_drops_the_oldest_and_says_so(tmp_path, cam, monkeypatch):
    sess = SweepSession(str(tmp_path / "ds"), cam, config=SessionConfig(max_unsaved=3))
    monkeypatch.setattr(sess.writer, "append",
                        lambda *a, **k: (_ for _ in ()).throw(DatasetWriteError("EFBIG")))
    feed(sess, line(30, 330, 240, 15.0))
    st = sess.status()
    assert st["unsaved"] == 3 and st["dropped"] > 0


def test_reopening_after_a_kill_repairs_and_keeps_the_samples(tmp_path, cam):
    root = str(tmp_path / "ds")
    sess = SweepSession(root, cam)
    feed(sess, line(30, 610, 240, 20.0))
    sess.finish(100.0)
    n = sess.written
    # what a kill -9 can leave: a WAV without its row, a partial last line, a temp file
    with open(os.path.join(root, "sweep_99999.wav"), "wb") as fh:
        fh.write(b"RIFF")
    with open(os.path.join(root, "targets.csv"), "a") as fh:
        fh.write("sweep_99998.wav,1.0")
    with open(os.path.join(root, ".sweep_x.wav.tmp"), "wb") as fh:
        fh.write(b"x")
    assert not check_dataset(root).ok
    again = SweepSession(root, cam)
    st = again.status()
    assert st["samples"] == st["samples_before"] == n and st["repaired"]
    assert check_dataset(root).ok
    assert np.asarray(st["grid"]["counts"]).sum() == n      # coverage from the folder
    feed(again, line(30, 610, 400, 20.0), t0=500.0)
    again.finish(900.0)
    assert count_rows(root) == n + again.written and check_dataset(root).ok


def test_silent_loudspeaker_and_still_marker_give_notices(tmp_path, cam):
    sess = SweepSession(str(tmp_path / "ds"), cam,
                        config=SessionConfig(quiet_warn=3, still_warn_s=5.0))
    feed(sess, line(100, 101, 240, 8.0), level=1e-5)
    keys = dict(sess.notices())
    assert "quiet" in keys and "loudspeaker playing" in keys["quiet"]
    assert "still" in keys and "keep sweeping" in keys["still"]
    assert sess.status()["rejected"]["too_quiet"] >= 3
    feed(sess, line(100, 400, 240, 10.0), t0=20.0, level=0.1)
    assert "quiet" not in dict(sess.notices()) and "still" not in dict(sess.notices())


def test_complete_at_the_configured_fraction(tmp_path, cam):
    sess = SweepSession(str(tmp_path / "ds"), cam,
                        config=SessionConfig(grid_cols=2, grid_rows=2, coverage_complete=0.75))
    for u, v in ((100, 100), (500, 100), (100, 400)):
        sess.grid.add(u, v)
    st = sess.status()
    assert st["complete"] and not st["all_cells"] and st["missing_cells"] == [[1, 1]]


def test_bad_config_and_unwritable_folder_are_refused(tmp_path, cam):
    with pytest.raises(ValueError, match="coverage_complete"):
        SessionConfig(coverage_complete=0.0)
    with pytest.raises(ValueError, match="tolerance"):
        SweepParams(tolerance=0.0)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(DatasetWriteError, match="cannot prepare"):
        SweepSession(str(blocker / "ds"), cam)


def test_overlay_draws_grid_marker_and_segment(tmp_path, cam):
    sess = SweepSession(str(tmp_path / "ds"), cam)
    sess.grid.add(20, 20)
    img = np.full((480, 640, 3), 128, np.uint8)
    out = draw_overlay(img, sess.grid, (320, 240), {"pixel": (320, 240)}, "coverage 1 %")
    assert out.shape == img.shape and not np.shares_memory(out, img)
    assert out[20, 20, 1] > out[20, 20, 2]            # covered cell: green tint
    assert out[300, 500, 2] > out[300, 500, 1]        # missing cell: red tint
    assert tuple(out[240, 320]) == (255, 255, 255)    # the marker


def test_quiet_segments_broken_by_marker_losses_still_warn(tmp_path, cam):
    # a silent loudspeaker while the marker keeps disappearing (a camera stall, occlusions):
    # the lost-marker stretches say nothing about the audio, so the too-quiet run goes on and
    # the notice comes (they reset it before, and the warning never showed: fresh-clone CI)
    sess = SweepSession(str(tmp_path / "ds"), cam, config=SessionConfig(quiet_warn=3))
    path = []
    for k in range(4):
        path += line(100 + 40 * k, 100 + 40 * k, 240, 1.2)     # one quiet segment
        path += [None] * int(0.6 * FPS)                         # marker lost
    feed(sess, path, level=1e-5)
    st = sess.status()
    assert st["rejected"]["too_quiet"] >= 3 and st["rejected"]["marker_lost"] >= 3, st
    assert "loudspeaker playing" in dict(sess.notices()).get("quiet", "")


class _NoPasses:
    """The session with its processing passes held back (audio and markers only queued): what
    a node sees when a burst of input arrives between two of its timer ticks."""

    def __init__(self, sess):
        self.sess = sess

    def push_audio(self, *a):
        self.sess.push_audio(*a)

    def push_marker(self, *a):
        self.sess.push_marker(*a)

    def process(self, now):
        pass


def test_a_quiet_run_ended_within_one_pass_is_told_once(tmp_path, cam):
    # a silent stretch and the loud one after it, judged in one pass: the run was over by the
    # time the node looked, and the warning never came (a fresh-clone CI run). The run is
    # latched until the node's log takes it, once; status reports see only a run going on
    sess = SweepSession(str(tmp_path / "ds"), cam, config=SessionConfig(quiet_warn=3))
    end = feed(_NoPasses(sess), line(100, 300, 240, 6.0), level=1e-5)
    feed(_NoPasses(sess), line(300, 600, 240, 6.0), t0=end, level=0.1, seed=1)
    sess.process(100.0)
    st = sess.status()
    assert st["rejected"]["too_quiet"] >= 3 and st["accepted"] >= 1, st
    assert sess.segmenter.quiet_run == 0
    assert "quiet" not in dict(sess.notices())            # a status report: not going on now
    told = dict(sess.notices(consume=True))
    assert "loudspeaker playing" in told.get("quiet", ""), told
    assert f"{st['rejected']['too_quiet']} segments in a row" in told["quiet"]
    assert "quiet" not in dict(sess.notices(consume=True))   # told once
