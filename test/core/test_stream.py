"""StreamGate (bytes + stamps -> audio in stamp order + events) and LoadMonitor."""

import numpy as np
import pytest

from sbm_ros.core.audio_io import float_to_pcm_bytes
from sbm_ros.core.stream import LoadMonitor, StreamConfig, StreamGate, interaural_coherence

import synth

RATE = synth.RATE
CHUNK = 800                       # 50 ms
DUR = CHUNK * 1_000_000_000 // RATE
T0 = 1_000 * 1_000_000_000


def talker(n, seed=0, gain=1.0, az=8.0):
    x = synth.render(synth.babble(n, seed), az, 4.0) * gain
    return x + 1e-4 * np.random.default_rng(seed).normal(size=x.shape)


def pcm(x, fmt='S16LE'):
    return float_to_pcm_bytes(x, fmt)


def gate(**cfg):
    return StreamGate(RATE, 2, 'S16LE', StreamConfig(**cfg))


def feed(g, stamps, seed=0):
    """Push one 50 ms chunk per stamp; returns (segments, events)."""
    segs, events = [], []
    for k, t in enumerate(stamps):
        r = g.push(pcm(talker(CHUNK, seed + k)), t, arrival_ns=k)
        segs += r.segments
        events += r.events
    return segs, events


def kinds(events):
    return [e.kind for e in events]


def test_in_order_stream_is_released_at_once_without_events():
    """Only the first chunk (no cursor yet) waits for the next one; every later chunk that
    continues the stream is released by its own push (no chunk of latency)."""
    g = gate()
    stamps = [T0 + k * DUR for k in range(6)]
    r = g.push(pcm(talker(CHUNK)), stamps[0], arrival_ns=0)
    assert r.segments == [] and g.held == 1
    for k in range(1, 6):
        r = g.push(pcm(talker(CHUNK, k)), stamps[k] + (k % 2) * 2_000_000, arrival_ns=k)
        jittered = stamps[k] + (k % 2) * 2_000_000                       # 2 ms jitter
        assert [s.stamp_ns for s in r.segments] == ([stamps[0]] if k == 1 else []) + [jittered]
        assert r.events == [] and g.held == 0
    segs, events = feed(gate(), stamps)
    assert events == [] and [s.stamp_ns for s in segs] == stamps
    assert not any(s.flush for s in segs) and [s.arrival_ns for s in segs] == list(range(6))
    assert segs[0].samples.shape == (CHUNK, 2)
    assert g.drain().segments == []


def test_a_hole_holds_the_next_chunk_until_it_is_filled():
    g = gate()
    feed(g, [T0, T0 + DUR])
    r = g.push(pcm(talker(CHUNK, 5)), T0 + 3 * DUR)        # chunk 2 missing so far: held
    assert r.segments == [] and g.held == 1
    r = g.push(pcm(talker(CHUNK, 6)), T0 + 2 * DUR)        # the hole filled: both, in order
    assert [s.stamp_ns for s in r.segments] == [T0 + 2 * DUR, T0 + 3 * DUR]
    assert kinds(r.events) == ['reordered_chunks'] and not any(s.flush for s in r.segments)
    assert g.held == 0


def test_reorder_disabled_releases_immediately():
    g = gate(reorder_chunks=0)
    r = g.push(pcm(talker(CHUNK)), T0)
    assert len(r.segments) == 1 and g.held == 0


def test_swapped_pairs_are_put_back_in_order():
    g = gate()
    order = []
    for k in range(0, 20, 2):                   # 1, 0, 3, 2, 5, 4, ...
        order += [k + 1, k]
    segs, events = feed(g, [T0 + k * DUR for k in order])
    segs += g.drain().segments
    assert [s.stamp_ns for s in segs] == [T0 + k * DUR for k in range(20)]
    assert not any(s.flush for s in segs)
    assert set(kinds(events)) == {'reordered_chunks'} and g.counts['reordered_chunks'] == 10


def test_late_and_duplicate_chunks_are_dropped_without_flush():
    g = gate()
    segs, events = feed(g, [T0 + k * DUR for k in (0, 1, 2, 3, 1, 4, 5)])
    assert kinds(events) == ['late_chunks'] and events[0].rejected
    assert g.counts['late_chunks'] == 1
    assert [s.stamp_ns for s in segs] == [T0 + k * DUR for k in range(6)]
    assert not any(s.flush for s in segs)


def test_gap_counts_dropped_chunks_and_flushes():
    g = gate()
    segs, events = feed(g, [T0 + k * DUR for k in (0, 1, 2, 6, 7, 8)])
    assert kinds(events) == ['gaps']
    assert 'gap of 0.150 s in the audio stamps (~3 chunk(s) missing)' in events[0].message
    assert g.counts['dropped_chunks'] == 3 and g.counts['gaps'] == 1
    # chunk 6 waits for the hole to be filled until chunk 7 arrives: then the gap is told
    assert [s.flush for s in segs] == [False, False, False, True, False, False]


def test_gap_after_a_one_frame_chunk_counts_typical_chunks():
    """Soak bug: after a chunk of one sample, an ordinary 50 ms gap was divided by that chunk's
    duration (800 'dropped chunks'); the median of the recent chunk durations is used."""
    g = gate()
    t = T0
    segs, events = [], []
    for k in range(6):
        r = g.push(pcm(talker(CHUNK, k)), t)
        segs += r.segments
        events += r.events
        t += DUR
    r = g.push(pcm(talker(1, 9)), t)                 # a single frame
    t += 1_000_000_000 // RATE
    segs += r.segments
    events += r.events
    for k in range(3):                                 # one 50 ms chunk missing, then ordinary
        r = g.push(pcm(talker(CHUNK, 20 + k)), t + (k + 1) * DUR)
        segs += r.segments
        events += r.events
    segs += g.drain().segments
    assert kinds(events) == ['gaps']
    assert '~1 chunk(s) missing' in events[0].message
    assert g.counts['dropped_chunks'] == 1 and g.counts['gaps'] == 1
    assert g.typical_dur_ns == DUR


def test_short_chunk_does_not_shrink_the_stamp_tolerance():
    """After a one-sample chunk the tolerance is half the typical chunk (capped), not 31 us: a
    few ms of stamp jitter is no gap."""
    g = gate()
    t = T0
    events = []
    for k in range(6):
        events += g.push(pcm(talker(CHUNK, k)), t).events
        t += DUR
    events += g.push(pcm(talker(1, 9)), t).events
    t += 1_000_000_000 // RATE
    for k in range(3):
        events += g.push(pcm(talker(CHUNK, 20 + k)), t + 2_000_000 + k * DUR).events   # +2 ms
    events += g.drain().events
    assert events == [] and g.counts['dropped_chunks'] == 0


def test_time_jump_is_one_event_not_millions_of_dropped_chunks():
    g = gate()
    jump = 10**6 * 1_000_000_000
    stamps = [T0 + k * DUR for k in range(4)] + [T0 + jump + k * DUR for k in range(4, 8)]
    segs, events = feed(g, stamps)
    assert kinds(events) == ['time_jumps']
    assert 'jumped 1000000.000 s ahead' in events[0].message
    assert g.counts['time_jumps'] == 1 and g.counts['dropped_chunks'] == 0
    assert [s.flush for s in segs] == [False] * 4 + [True, False, False, False]


def test_single_chunk_stamped_far_ahead_is_dropped_as_an_outlier():
    g = gate()
    stamps = [T0 + k * DUR for k in range(4)] + [T0 + 10**15] + [T0 + k * DUR
                                                                 for k in range(4, 8)]
    segs, events = feed(g, stamps)
    segs += g.drain().segments
    assert kinds(events) == ['time_jumps'] and events[0].rejected
    assert [s.stamp_ns for s in segs] == [T0 + k * DUR for k in range(8)]
    assert not any(s.flush for s in segs)


def test_backward_jump_flushes_once_and_goes_on():
    g = gate()
    back = T0 - 5 * 1_000_000_000
    stamps = [T0 + k * DUR for k in range(5)] + [back + k * DUR for k in range(5)]
    segs, events = feed(g, stamps)
    assert kinds(events) == ['backward_jumps']
    assert 'audio stamps went backwards by 5.2' in events[0].message
    assert [s.stamp_ns for s in segs] == stamps
    assert [s.flush for s in segs] == [False] * 5 + [True, False, False, False, False]


def test_clock_jumping_backwards_flushes():
    g = gate()
    g.push(pcm(talker(CHUNK)), T0, clock_ns=50 * 10**9)
    r = g.push(pcm(talker(CHUNK)), T0 + DUR, clock_ns=10 * 10**9)
    assert kinds(r.events) == ['clock_jumps']
    assert [s.flush for s in r.segments] == [False, True]    # the chunk after the jump
    r = g.push(pcm(talker(CHUNK)), T0 + 2 * DUR, clock_ns=10 * 10**9)
    assert [s.flush for s in r.segments] == [False]


def test_unstamped_chunks_are_stamped_by_sample_count():
    g = gate()
    feed(g, [T0, T0 + DUR])
    r = g.push(pcm(talker(CHUNK)), 0)
    assert kinds(r.events) == ['unstamped_chunks']
    assert [s.stamp_ns for s in r.segments] == [T0 + 2 * DUR] and not r.segments[0].flush


def test_partial_frames_are_trimmed():
    g = gate(reorder_chunks=0)
    data = pcm(talker(CHUNK)) + b'\x01\x02\x03'
    r = g.push(data, T0)
    assert kinds(r.events) == ['partial_frames']
    assert '3203 bytes is not a whole number of 4-byte frames' in r.events[0].message
    assert r.segments[0].samples.shape == (CHUNK, 2)
    r = g.push(b'\x01' * 3, T0 + DUR)
    assert kinds(r.events) == ['partial_frames', 'empty_chunks'] and not r.segments


def test_nonfinite_chunk_is_refused_and_leaves_no_gap():
    g = StreamGate(RATE, 2, 'F32LE', StreamConfig(reorder_chunks=0))
    x = talker(CHUNK)
    bad = x.copy()
    bad[10, 1] = np.nan
    bad[20, 0] = np.inf
    segs = []
    events = []
    for k, y in enumerate((x, bad, x)):
        r = g.push(pcm(y, 'F32LE'), T0 + k * DUR)
        segs += r.segments
        events += r.events
    assert kinds(events) == ['nonfinite_chunks'] and events[0].rejected
    assert '2 non-finite sample(s) (NaN/inf) dropped' in events[0].message
    assert segs[1].samples is None and segs[1].refused == 'nonfinite_chunks' and segs[1].flush
    assert not segs[2].flush and g.counts['dropped_chunks'] == 0


def test_digital_silence_is_refused():
    g = gate(reorder_chunks=0)
    r = g.push(bytes(CHUNK * 4), T0)
    assert kinds(r.events) == ['zero_chunks']
    assert r.segments[0].refused == 'zero_chunks' and r.segments[0].samples is None


def test_clipping_warns_but_is_localised():
    g = gate(reorder_chunks=0)
    x = np.clip(talker(CHUNK, gain=6.0), -1.0, 1.0)
    r = g.push(pcm(x), T0)
    assert 'clipped_chunks' in kinds(r.events) and 'random_chunks' not in kinds(r.events)
    assert r.segments[0].samples is not None


@pytest.mark.parametrize('az', [-20.0, 0.0, 20.0])
def test_loud_speech_is_kept_random_bytes_are_refused(az):
    g = gate(reorder_chunks=0)
    x = talker(CHUNK, seed=3, gain=1.0, az=az)
    x = 0.9 * x / np.max(np.abs(x))
    x = np.clip(4 * x, -1, 1)                     # very loud, clipped: well above -8 dBFS
    r = g.push(pcm(x), T0)
    assert 'loud_chunks' in kinds(r.events) and r.segments[0].samples is not None
    rnd = np.random.default_rng(3).bytes(CHUNK * 4)
    r = g.push(rnd, T0 + DUR)
    (ev,) = [e for e in r.events if e.kind == 'random_chunks']
    assert 'audio level implausibly high' in ev.message and ev.rejected
    assert r.segments[0].refused == 'random_chunks'
    r = g.push(rnd, T0 + 2 * DUR)                 # also with the check disabled: only a warning
    g.config.min_coherence = 0.0
    r = g.push(rnd, T0 + 3 * DUR)
    assert 'loud_chunks' in kinds(r.events) and r.segments[0].samples is not None


def test_interaural_coherence():
    rng = np.random.default_rng(0)
    s = rng.normal(size=4000)
    x = np.stack([s, np.roll(s, 5)], axis=1)
    assert interaural_coherence(x, 16) > 0.99
    assert interaural_coherence(x, 2) < 0.2
    assert interaural_coherence(rng.normal(size=(4000, 2)), 16) < 0.1
    assert interaural_coherence(np.ones((10, 2)), 4) == 0.0


def test_huge_chunk_is_refused_before_decoding():
    g = gate(max_chunk_s=2.0)
    feed(g, [T0, T0 + DUR])
    huge = memoryview(bytearray(10 * 2**20))        # 10 MiB, 164 s at 16 kHz S16 stereo
    r = g.push(huge, T0 + 2 * DUR)
    assert kinds(r.events) == ['oversized_chunks'] and r.events[0].rejected
    assert 'refused: longer than max_chunk_s=2 s' in r.events[0].message
    assert '(163.8 s)' in r.events[0].message
    segs, events = feed(g, [T0 + 2 * DUR + 2621440 * 10**9 // RATE + k * DUR for k in range(3)])
    segs = r.segments + segs
    refused = [s for s in segs if s.refused]
    assert len(refused) == 1 and refused[0].samples is None and refused[0].flush
    assert events == [] and g.counts['dropped_chunks'] == 0     # no gap after it


def test_format_sizes():
    g = StreamGate(RATE, 2, 'S24LE', StreamConfig(reorder_chunks=0))
    r = g.push(pcm(talker(CHUNK), 'S24LE'), T0)
    assert r.segments[0].samples.shape == (CHUNK, 2) and r.segments[0].duration_ns == DUR


def test_load_monitor_keeping_up_and_falling_behind():
    m = LoadMonitor(horizon_s=5.0)
    for k in range(50):                           # real time, 10% busy
        m.record(k * 0.05, 0.005, 0.05, lag_s=0.01)
    st = m.status(50 * 0.05)
    assert not st.behind and st.busy_fraction == pytest.approx(0.1, abs=0.02)
    assert st.input_speed == pytest.approx(1.0, abs=0.05)
    m = LoadMonitor(horizon_s=5.0)
    for k in range(50):                           # 40x input, always busy
        m.record(k * 0.06, 0.06, 2.0, lag_s=-k * 1.94)
    st = m.status(50 * 0.06)
    assert st.behind and 'cannot keep up' in st.message and st.input_speed > 30
    m = LoadMonitor(horizon_s=5.0)
    for k in range(50):                           # live stream, queue growing
        m.record(k * 0.05, 0.02, 0.05, lag_s=0.02 * k)
    st = m.status(50 * 0.05)
    assert st.behind and st.lag_growth_s == pytest.approx(0.98)
    m.reset_lag()
    m.record(2.6, 0.01, 0.05, lag_s=3.0)
    assert m.status(2.6).lag_growth_s == 0.0
    m = LoadMonitor(horizon_s=5.0)
    for k in range(50):                           # 40% busy and chunks lost: behind
        m.record(k * 0.05, 0.02, 0.5, lost=int(k == 30))
    st = m.status(50 * 0.05)
    assert st.behind and st.lost == 1 and '1 chunk(s) lost' in st.message
    m = LoadMonitor(horizon_s=5.0)
    for k in range(50):                           # lost chunks on an idle node: upstream
        m.record(k * 0.05, 0.002, 0.05, lost=int(k == 30))
    assert not m.status(50 * 0.05).behind
