"""Sweep segmentation (sbm_ros.core.sweep): marker stream + stamped audio -> samples, rejections
by reason, coverage. Synthetic streams: a 15 fps marker track and white noise in 0.1 s blocks."""

import numpy as np
import pytest

from sbm_ros.core.geometry import PinholeCamera
from sbm_ros.core.sweep import (REASONS, CoverageGrid, SweepParams, SweepSegmenter,
                                segment_recording)

RATE = 16000
FPS = 15.0


def noise(duration, level=0.1, seed=0):
    return level * np.random.default_rng(seed).standard_normal((int(round(duration * RATE)), 2))


def track(segments, t0=0.0):
    """[(t, (u, v) or None)] at FPS from pieces (duration_s, (u0, v0), (u1, v1) or None)."""
    out, t = [], t0
    for dur, a, b in segments:
        n = int(round(dur * FPS))
        for k in range(n):
            if a is None:
                out.append((t, None))
            else:
                s = k / n
                out.append((t, (a[0] + s * (b[0] - a[0]), a[1] + s * (b[1] - a[1]))))
            t += 1.0 / FPS
    return out


def px_params(**kw):
    base = dict(tolerance=10.0, tolerance_unit="px", min_duration_s=0.4, max_duration_s=1.0)
    base.update(kw)
    return SweepParams(**base)


def run(markers, audio, params, camera=None):
    return segment_recording(markers, audio, RATE, 0.0, params, camera)


def test_slow_steady_motion_gives_back_to_back_samples_with_mean_positions():
    # 12 px/s, tolerance 10 px: stretches of ~0.8 s, each one accepted
    m = track([(10.0, (100.0, 200.0), (220.0, 200.0))])
    samples, seg = run(m, noise(10.5), px_params())
    assert sum(seg.rejected.values()) <= 1           # at most the last stretch (too short)
    assert len(samples) >= 10
    for s in samples:
        assert 0.4 - 1e-6 <= s.duration_s <= 1.0          # stamps are float sums
        assert s.spread <= 10.0
        # mean pixel is the middle of the stretch on a linear track
        mid = 100.0 + 12.0 * 0.5 * (s.t0 + s.t1)
        assert s.pixel[0] == pytest.approx(mid, abs=0.5)
        assert s.pixel[1] == pytest.approx(200.0)
        assert abs(s.audio.shape[0] - s.duration_s * RATE) <= 1
        assert s.direction_deg is None                  # no camera
    starts = [s.t0 for s in samples]
    assert np.all(np.diff(starts) > 0)


def test_still_loudspeaker_gives_one_sample_per_max_duration():
    m = track([(3.5, (300.0, 240.0), (300.0, 240.0))])
    samples, seg = run(m, noise(4.0), px_params())
    assert len(samples) == 3
    assert all(s.duration_s <= 1.0 for s in samples)
    assert seg.rejected["too_short"] == 1             # the last 0.2 s at the end


def test_flicker_is_bridged():
    clean = track([(6.0, (100.0, 100.0), (160.0, 100.0))])
    flick = [(t, None if k % 7 == 3 else p) for k, (t, p) in enumerate(clean)]
    a, _ = run(clean, noise(6.5), px_params())
    b, seg = run(flick, noise(6.5), px_params())
    assert seg.rejected["marker_lost"] == 0
    assert len(b) == len(a)
    for x, y in zip(a, b):
        assert y.pixel[0] == pytest.approx(x.pixel[0], abs=1.0)
        assert y.n_observations < x.n_observations or y.n_observations == x.n_observations


def test_occlusion_is_one_marker_lost_rejection_and_samples_resume():
    m = track([(2.0, (100.0, 100.0), (100.0, 100.0)), (1.0, None, None),
               (2.05, (400.0, 300.0), (400.0, 300.0))])
    samples, seg = run(m, noise(5.5), px_params())
    assert seg.rejected["marker_lost"] == 1
    before = [s for s in samples if s.t1 <= 2.0]
    after = [s for s in samples if s.t0 >= 3.0]
    assert len(before) == 2 and len(after) == 2
    assert all(s.pixel == pytest.approx((100.0, 100.0)) for s in before)
    assert all(s.pixel == pytest.approx((400.0, 300.0)) for s in after)


def test_short_stretch_before_an_occlusion_counts_once_as_marker_lost():
    m = track([(0.2, (100.0, 100.0), (100.0, 100.0)), (1.0, None, None)])
    samples, seg = run(m, noise(1.5), px_params())
    assert samples == [] and seg.rejected["marker_lost"] == 1
    assert sum(seg.rejected.values()) == 1


def test_camera_stall_closes_the_stretch_as_marker_lost():
    m = track([(0.3, (100.0, 100.0), (100.0, 100.0))])
    m += [(t + 1.3, p) for t, p in track([(1.2, (100.0, 100.0), (100.0, 100.0))])]
    samples, seg = run(m, noise(3.0), px_params())
    assert seg.rejected["marker_lost"] == 1
    assert len(samples) == 1 and samples[0].t0 >= 1.3


def test_loudspeaker_stopping_mid_sweep():
    # fast (60 px/s: too fast), stop 2.1 s, fast again
    m = track([(2.0, (50.0, 200.0), (170.0, 200.0)), (2.1, (170.0, 200.0), (170.0, 200.0)),
               (2.0, (170.0, 200.0), (290.0, 200.0))])
    samples, seg = run(m, noise(6.5), px_params())
    assert seg.rejected["too_fast"] == 2                  # one per fast run, not per frame
    assert len(samples) == 2
    for s in samples:
        assert s.pixel[0] == pytest.approx(170.0, abs=4.0)
        assert 2.0 - 1e-9 <= s.t0 and s.t1 <= 4.1 + 1e-9


def test_quiet_and_clipped_audio_are_rejected():
    m = track([(2.05, (300.0, 240.0), (300.0, 240.0))])
    quiet = noise(2.5, level=1e-4)
    samples, seg = run(m, quiet, px_params())
    assert samples == [] and seg.rejected["too_quiet"] == 2
    loud = np.clip(noise(2.5, level=0.8), -1.0, 1.0)
    samples, seg = run(m, loud, px_params())
    assert samples == [] and seg.rejected["clipped"] == 2
    # a silent first second, then noise: one of each
    mixed = noise(2.5)
    mixed[:RATE] = 0.0
    samples, seg = run(m, mixed, px_params())
    assert len(samples) == 1 and seg.rejected["too_quiet"] == 1


def test_audio_gap_rejects_the_segments_it_touches():
    m = track([(3.05, (300.0, 240.0), (300.0, 240.0))])
    seg = SweepSegmenter(px_params())
    x = noise(4.0)
    for i in range(0, x.shape[0], 1600):
        t = i / RATE
        if 1.2 <= t < 1.5:
            continue                                     # 0.3 s of audio never arrives
        seg.push_audio(t, x[i:i + 1600], RATE)
    for t, p in m:
        seg.push_marker(t, p)
    out = seg.poll() + seg.flush()
    assert seg.rejected["audio_missing"] == 1
    assert len(out) == 2


def test_samples_wait_for_late_audio_and_status_counts():
    m = track([(2.05, (300.0, 240.0), (300.0, 240.0))])
    seg = SweepSegmenter(px_params())
    for t, p in m:
        seg.push_marker(t, p)
    assert seg.poll() == [] and seg.pending == 1         # the second is still open
    assert seg.current_stretch()["pixel"] == pytest.approx((300.0, 240.0))
    x = noise(2.5)
    seg.push_audio(0.0, x, RATE)
    got = seg.poll()
    assert len(got) == 1
    got += seg.flush()
    assert len(got) == 2
    st = seg.status()
    assert st["accepted"] == 2 and st["rejected_total"] == 0 and st["pending"] == 0


def test_flush_without_audio_counts_audio_missing():
    seg = SweepSegmenter(px_params())
    for t, p in track([(1.1, (300.0, 240.0), (300.0, 240.0))]):
        seg.push_marker(t, p)
    assert seg.flush() == []
    assert seg.rejected["audio_missing"] == 1


def test_degree_tolerance_with_a_camera():
    cam = PinholeCamera.from_fov(640, 480, 28.0, 21.0)
    deg_per_px = 28.0 / 640
    # 1.5 deg/s horizontally: tolerance 1 deg closes stretches of ~0.67 s
    speed_px = 1.5 / deg_per_px
    m = track([(8.0, (100.0, 240.0), (100.0 + 8.0 * speed_px, 240.0))])
    samples, seg = run(m, noise(8.5), SweepParams(tolerance=1.0, tolerance_unit="deg"), cam)
    assert len(samples) >= 9
    for s in samples:
        assert s.spread <= 1.0
        assert 0.4 <= s.duration_s <= 0.75
        az, el = cam.unproject(np.array(s.pixel))
        assert s.direction_deg[0] == pytest.approx(az, abs=0.02)
        assert s.direction_deg[1] == pytest.approx(el, abs=0.02)


def test_bad_inputs_are_refused_with_a_message():
    with pytest.raises(ValueError, match="tolerance_unit"):
        SweepParams(tolerance_unit="m")
    with pytest.raises(ValueError, match="min_duration_s"):
        SweepParams(min_duration_s=0.0)
    with pytest.raises(ValueError, match="max_duration_s"):
        SweepParams(min_duration_s=2.0, max_duration_s=1.0)
    with pytest.raises(ValueError, match="needs a camera"):
        SweepSegmenter(SweepParams(tolerance_unit="deg"))
    seg = SweepSegmenter(px_params())
    with pytest.raises(ValueError, match=r"shape \(n, 2\)"):
        seg.push_audio(0.0, np.zeros(10), RATE)
    seg.push_marker(1.0, (1.0, 2.0))
    seg.push_marker(0.5, (1.0, 2.0))                     # out of order: ignored, counted
    seg.push_marker(1.1, (float("nan"), 2.0))            # NaN: as lost
    assert seg.out_of_order == 1
    assert set(seg.rejected) == set(REASONS)


def test_coverage_grid():
    g = CoverageGrid(640, 480, cols=12, rows=9, min_samples=2)
    assert g.cell_of(0.0, 0.0) == (0, 0) and g.cell_of(639.9, 479.9) == (8, 11)
    assert g.cell_of(640.0, 10.0) is None
    g.add(10.0, 10.0)
    assert not g.covered[0, 0]
    g.add(20.0, 30.0)
    assert g.covered[0, 0] and g.fraction == pytest.approx(1 / 108)
    g.add(-5.0, 10.0)
    assert g.outside == 1
    for r in range(9):
        for c in range(12):
            u0, v0, u1, v1 = g.cell_box(r, c)
            g.add(0.5 * (u0 + u1), 0.5 * (v0 + v1))
            g.add(u0 + 1.0, v0 + 1.0)
    assert g.complete and g.missing() == [] and g.to_dict()["coverage"] == 1.0
    with pytest.raises(ValueError):
        CoverageGrid(640, 480, cols=0)


def test_limits_met_exactly_with_float_stamps_are_accepted():
    # 10 fps stamps built as sums (1.1, 1.2, ... carry rounding error: 1.5 - 1.1 < 0.4) and a
    # marker that moves exactly the tolerance in min_duration: every stretch lasts exactly
    # min_duration and is accepted, back to back (it was rejected as too_fast before)
    m, t, u = [], 1.1, 100.0
    for k in range(60):
        m.append((t, (u, 200.0)))
        t += 0.1
        u += 2.5                                         # 25 px/s: 10 px in 0.4 s
    samples, seg = run(m, noise(8.0), px_params(min_duration_s=0.4))
    assert seg.rejected["too_fast"] == 0
    assert len(samples) >= 10
    gaps = np.diff([s.t0 for s in samples])
    assert gaps.max() <= 0.5 + 1e-9                      # no sample lost between neighbours
