"""sbm-soak on a few seconds of audio: the report's fields and their sanity (real DDS)."""

import json
import os

import numpy as np
import pytest

pytest.importorskip('rclpy')

from rostest_utils import domain_id_for  # noqa: E402
from sbm_ros.apps import procstat, soak  # noqa: E402

DOMAIN = domain_id_for(__name__)


def test_procstat_reads_this_process():
    pid = os.getpid()
    c = procstat.cpu_seconds(pid)
    assert c is not None and c > 0
    assert procstat.rss_mb(pid) > 10
    assert procstat.cpu_seconds(2 ** 22 + 12345) is None
    assert procstat.slope([0, 1, 2, 3], [1, 3, 5, 7]) == pytest.approx(2.0)
    with procstat.ProcSampler({'me': pid}, 0.05) as s:
        sum(i * i for i in range(300000))
    assert len(s.series('me')) >= 2 and s.cpu_used('me') >= 0


def test_babble_has_syllables_and_pauses():
    x = soak.babble(16000 * 4, np.random.default_rng(0))
    frames = np.sqrt(np.mean(x[: 16000 * 4 // 160 * 160].reshape(-1, 160) ** 2, axis=1))
    assert 0.2 < np.mean(frames < 1e-3) < 0.8          # pauses and bursts


def test_tiny_soak(tmp_path):
    """A few seconds of audio through binaural_capture -> sbm_localizer, one-source mode, a
    two-speed sweep, a short real-time latency run and the fuzz stage."""
    models = tmp_path / 'models'
    out = tmp_path / 'report.json'
    docs = tmp_path / 'soak.md'
    import synth
    from sbm_ros.apps import cli
    ds = str(tmp_path / 'ds')
    synth.make_dataset(ds, np.linspace(-20, 20, 9), np.linspace(-10, 10, 5), duration=0.5)
    one = str(tmp_path / 'one.npz')
    assert cli.train_main([ds, '-o', one, '-K', '6', '-q']) == 0
    rc = soak.main(['--audio-s', '8', '--speed', '4', '--modes', 'one', '--sweep', '4,8',
                    '--sweep-s', '4', '--latency-s', '3', '--model', one,
                    '--models-dir', str(models), '--domain', str(DOMAIN),
                    '--log-dir', str(tmp_path / 'logs'), '--json', str(out),
                    '--write-docs', '--docs', str(docs)])
    assert rc == 0
    rep = json.loads(out.read_text())
    (s,) = rep['soak']
    for key in ('cpu_per_audio_s_localizer', 'cpu_per_audio_s_capture',
                'memory_slope_mb_per_audio_hour_localizer', 'estimates_received',
                'estimates_expected', 'dropped_chunks', 'chunks_published', 'chunks_received',
                'error_median_first_10pct', 'error_median_last_10pct'):
        assert key in s, key
    assert s['estimates_received'] > 0 and s['estimates_expected'] == 80
    assert s['chunks_received'] >= 0.9 * s['chunks_published'] > 0
    assert 0 < s['cpu_per_audio_s_localizer'] < 2
    assert s['localizer_alive_at_end']
    (sw,) = rep['sweep']
    assert [r['speed'] for r in sw['runs']] == [4.0, 8.0] and 'max_speed_kept_up' in sw
    (lat,) = rep['latency']
    assert lat['estimates'] > 0 and 0 < lat['stamp_to_received_median_s'] < 2.0
    fz = rep['fuzz']
    assert fz['localizer_alive'] and fz['estimates_after_fuzz'] > 0
    assert fz['tracebacks_in_log'] == 0
    text = docs.read_text()
    assert '## Soak' in text and '## Fuzz' in text and '## Speed sweep' in text
