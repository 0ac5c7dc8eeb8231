"""Pure tests of the audio-visual fusion core and the image conversions (no ROS)."""

import array

import numpy as np
import pytest

from sbm_ros.av import image_io
from sbm_ros.av.fusion import (Face, FaceIdAssigner, MatchConfig, Sound, SpeakingScores,
                               TimedBuffer, check_faces_in_image, covariance_from_flat,
                               match_sources, pair_statistics)

CFG = MatchConfig()


def sound(u, v, sigma=15.0, conf=0.9, sid='s'):
    return Sound(sid, u, v, np.eye(2) * sigma ** 2, conf)


def face(fid, u, v, size=80.0):
    return Face(fid, u, v, size, size * 1.2)


# ----------------------------------------------------------------------------- matching
def test_one_source_picks_the_face_at_its_mouth():
    faces = [face('alice', 150, 200), face('bob', 400, 210), face('carol', 560, 190)]
    mouth_bob = faces[1].mouth(CFG.mouth_offset)
    m = match_sources([sound(*(mouth_bob + [6, -4]))], faces, CFG)
    assert [mt.face.id for mt in m] == ['bob']
    assert m[0].d2 < 1.0


def test_two_sources_get_their_own_faces():
    faces = [face('alice', 150, 200), face('bob', 400, 210)]
    s1 = sound(*faces[1].mouth(0.25) + [-10, 5], sid='s0')
    s2 = sound(*faces[0].mouth(0.25) + [8, 0], sid='s1')
    m = match_sources([s1, s2], faces, CFG)
    assert [(mt.sound.id, mt.face.id) for mt in m] == [('s0', 'bob'), ('s1', 'alice')]


def test_two_sources_near_one_face_share_it_one_to_one():
    # Both sources are closest to bob, but alice is admissible for the second: one-to-one.
    faces = [face('alice', 250, 200), face('bob', 340, 200)]
    s1 = sound(*faces[1].mouth(0.25), sigma=40, sid='a')
    s2 = sound(300, 230, sigma=40, sid='b')
    m = match_sources([s1, s2], faces, CFG)
    assert sorted(mt.face.id for mt in m) == ['alice', 'bob']
    assert {mt.sound.id: mt.face.id for mt in m}['a'] == 'bob'


def test_gate_rejects_far_faces():
    faces = [face('far', 500, 100)]
    assert match_sources([sound(100, 300)], faces, CFG) == []
    # ... but a very uncertain estimate may reach it
    assert len(match_sources([sound(100, 300, sigma=300)], faces, CFG)) == 1


def test_gate_scales_with_covariance_and_face_size():
    f_small, f_big = face('small', 300, 200, 40), face('big', 300, 200, 200)
    s = sound(360, 230, sigma=10)
    d_small, _ = pair_statistics(s, f_small, CFG)
    d_big, _ = pair_statistics(s, f_big, CFG)
    assert d_big < d_small   # a bigger face tolerates a larger offset
    assert match_sources([s], [f_small], CFG) == []
    assert len(match_sources([s], [f_big], CFG)) == 1


def test_low_confidence_and_non_finite_sources_are_ignored():
    faces = [face('a', 100, 100)]
    cfg = MatchConfig(min_confidence=0.5)
    assert match_sources([sound(100, 125, conf=0.2)], faces, cfg) == []
    assert match_sources([sound(np.nan, 100)], faces, cfg) == []
    s = Sound('x', 100, 125, np.full((2, 2), np.nan), 1.0)   # bad covariance matches nothing
    assert match_sources([s], faces, cfg) == []


def test_no_inputs_no_matches():
    assert match_sources([], [face('a', 1, 1)]) == []
    assert match_sources([sound(1, 1)], []) == []


def test_match_config_validation():
    with pytest.raises(ValueError, match='gate'):
        MatchConfig(gate=0).validate()
    with pytest.raises(ValueError, match='mouth_offset'):
        MatchConfig(mouth_offset=0.9).validate()


def test_covariance_from_flat():
    c = [0.0] * 36
    assert covariance_from_flat(c) is None
    c[0], c[1], c[6], c[7] = 4.0, 1.0, 1.0, 9.0
    np.testing.assert_array_equal(covariance_from_flat(c), [[4, 1], [1, 9]])


# ----------------------------------------------------------------------------- scores
def test_scores_rise_fast_and_survive_short_pauses():
    sc = SpeakingScores(attack_s=0.1, release_s=1.0, on_threshold=0.5, off_threshold=0.3)
    t = 0.0
    for _ in range(5):          # 0.5 s of speech at 10 Hz
        sc.update(t, {'a': 1.0}, ['a', 'b'])
        t += 0.1
    assert sc.is_speaking('a', t) and sc.score('a', t) > 0.8
    assert not sc.is_speaking('b', t) and sc.score('b', t) == 0.0
    for _ in range(5):          # 0.5 s pause: still speaking (hysteresis + slow release)
        sc.update(t, {}, ['a', 'b'])
        t += 0.1
    assert sc.is_speaking('a', t), sc.score('a', t)
    for _ in range(20):         # 2 s silence: stops
        sc.update(t, {}, ['a', 'b'])
        t += 0.1
    assert not sc.is_speaking('a', t)


def test_single_spurious_match_does_not_flip_to_speaking():
    sc = SpeakingScores(attack_s=0.3, release_s=1.0)
    sc.update(0.0, {}, ['a'])
    sc.update(0.1, {'a': 1.0}, ['a'])
    assert 0 < sc.score('a') < 0.5 and not sc.is_speaking('a')


def test_score_decays_between_updates_without_state_change():
    sc = SpeakingScores(attack_s=0.05, release_s=0.5)
    for k in range(10):
        sc.update(0.1 * k, {'a': 1.0}, ['a'])
    s0 = sc.score('a', 0.9)
    assert sc.score('a', 1.4) == pytest.approx(s0 * np.exp(-1.0), rel=1e-6)
    assert sc.score('a', 0.9) == s0
    assert not sc.is_speaking('a', 10.0)


def test_forget_old_faces_and_validation():
    sc = SpeakingScores(forget_s=1.0)
    sc.update(0.0, {'a': 1.0}, ['a'])
    sc.update(5.0, {}, ['b'])
    assert sc.ids == ['b']
    with pytest.raises(ValueError):
        SpeakingScores(on_threshold=0.2, off_threshold=0.4)


# ----------------------------------------------------------------------------- time alignment
def test_timed_buffer_closest_within_tolerance():
    b = TimedBuffer(history_s=1.0)
    for k in range(20):
        b.add(10.0 + 0.1 * k, k)
    assert len(b) == 11                      # the last 1 s only
    assert b.closest(11.52, 0.1) == (pytest.approx(11.5), 15)
    assert b.closest(11.56, 0.1)[1] == 16
    assert b.closest(13.0, 0.1) is None
    assert b.closest(10.5, 0.1) is None      # forgotten
    b.add(11.05, 'late')                     # out of order insertion is sorted
    assert b.closest(11.06, 0.02)[1] == 'late'
    assert b.add(2.0, 'jump') is True and len(b) == 1   # backward jump clears


def test_face_ids_follow_overlap():
    a = FaceIdAssigner()
    f1 = a.assign([Face('', 100, 100, 50, 60), Face('', 300, 100, 50, 60)])
    assert [f.id for f in f1] == ['face_0', 'face_1']
    f2 = a.assign([Face('', 305, 102, 50, 60), Face('', 98, 99, 50, 60),
                   Face('given', 500, 100, 10, 10)])
    assert [f.id for f in f2] == ['face_1', 'face_0', 'given']
    f3 = a.assign([Face('', 600, 400, 50, 60)])
    assert f3[0].id == 'face_2'
    assert a.assign([]) == []                          # a frame without faces ...
    f4 = a.assign([Face('', 302, 101, 50, 60)])
    assert f4[0].id == 'face_1'                        # ... does not renumber them
    b = FaceIdAssigner(max_age=2)
    b.assign([Face('', 100, 100, 50, 60)])
    for _ in range(3):
        b.assign([])
    assert b.assign([Face('', 100, 100, 50, 60)])[0].id == 'face_1'   # forgotten


def test_faces_outside_the_image_are_reported():
    kept, bad = check_faces_in_image([Face('a', 10, 10, 5, 5), Face('b', 900, 10, 5, 5),
                                      Face('c', 10, 10, 0, 5), Face('d', np.nan, 1, 1, 1)],
                                     640, 480)
    assert [f.id for f in kept] == ['a']
    assert len(bad) == 3 and 'outside the 640x480 image' in bad[0]


# ----------------------------------------------------------------------------- image io
class FakeImage:
    """Field-compatible stand-in for sensor_msgs/Image."""

    def __init__(self):
        self.height = self.width = self.step = 0
        self.encoding = ''
        self.is_bigendian = False
        self.data = b''


def _random(enc, h=7, w=5, seed=0):
    rng = np.random.default_rng(seed)
    ch, dt = image_io.ENCODINGS[enc]
    hi = 65535 if dt == np.uint16 else 255
    shape = (h, w) if ch == 1 else (h, w, ch)
    return rng.integers(0, hi + 1, size=shape).astype(dt)


@pytest.mark.parametrize('enc', sorted(image_io.ENCODINGS))
def test_image_round_trip(enc):
    a = _random(enc)
    msg = image_io.fill_msg(FakeImage(), a, enc)
    assert isinstance(msg.data, array.array)
    assert msg.step == a.shape[1] * a.itemsize * (a.shape[2] if a.ndim == 3 else 1)
    b = image_io.msg_to_array(msg)
    assert b.dtype == a.dtype and b.shape == a.shape
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize('enc', sorted(image_io.ENCODINGS))
def test_padded_rows_are_handled(enc):
    a = _random(enc, seed=1)
    h, w, step, big, data = image_io.encode_image(a, enc)
    pad = 6
    padded = b''.join(data[r * step:(r + 1) * step] + b'\xee' * pad for r in range(h))
    b = image_io.decode_image(enc, h, w, step + pad, padded, big)
    np.testing.assert_array_equal(a, b)


def test_mono16_big_endian():
    a = np.array([[1, 256], [4660, 65535]], np.uint16)
    b = image_io.decode_image('mono16', 2, 2, 4, a.astype('>u2').tobytes(), True)
    np.testing.assert_array_equal(a, b)
    assert b.dtype == np.uint16


def test_color_conversions_agree():
    rgb = _random('rgb8', seed=2)
    bgr = rgb[:, :, ::-1]
    np.testing.assert_array_equal(image_io.to_bgr8(rgb, 'rgb8'), bgr)
    rgba = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 9, np.uint8)], axis=2)
    np.testing.assert_array_equal(image_io.to_bgr8(rgba, 'rgba8'), bgr)
    bgra = np.concatenate([bgr, np.full(rgb.shape[:2] + (1,), 9, np.uint8)], axis=2)
    np.testing.assert_array_equal(image_io.to_bgr8(bgra, 'bgra8'), bgr)
    g = image_io.to_gray8(rgb, 'rgb8')
    assert g.shape == rgb.shape[:2] and g.dtype == np.uint8
    m16 = np.array([[0, 65535]], np.uint16)
    np.testing.assert_array_equal(image_io.to_bgr8(m16, 'mono16')[0, 1], [255, 255, 255])


@pytest.mark.parametrize('kwargs, msg', [
    (dict(encoding='yuv422'), 'unsupported image encoding'),
    (dict(step=10), 'step 10 <'),
    (dict(data=b'\x00' * 100), 'image data has 100 bytes, expected'),
    (dict(height=0), 'is empty'),
])
def test_bad_images_are_named(kwargs, msg):
    fields = dict(encoding='rgb8', height=4, width=5, step=15, data=b'\x00' * 60,
                  is_bigendian=False)
    fields.update(kwargs)
    with pytest.raises(image_io.ImageError, match=msg):
        image_io.decode_image(**fields)


def test_encode_rejects_wrong_shapes():
    with pytest.raises(image_io.ImageError, match='cannot be encoded as rgb8'):
        image_io.encode_image(np.zeros((4, 4), np.uint8), 'rgb8')
    with pytest.raises(image_io.ImageError, match='dtype'):
        image_io.encode_image(np.zeros((4, 4), np.float32), 'mono8')


def test_draw_overlay_marks_faces_and_sounds():
    pytest.importorskip('cv2')
    img = np.zeros((240, 320, 3), np.uint8)
    faces = [Face('a', 80, 100, 60, 72), Face('b', 240, 100, 60, 72)]
    sounds = [Sound('s', 240, 120, np.diag([400.0, 100.0]), 0.8)]
    out = image_io.draw_overlay(img, faces, sounds, scores={'b': 0.9}, speaking={'b'})
    assert out.shape == img.shape and not np.shares_memory(out, img)
    assert img.max() == 0
    # speaking face box drawn in green, silent one in grey, the sound ellipse in orange
    assert (out[:, :, 1] == image_io.COLOR_SPEAKING[1]).any()
    assert (np.all(out == image_io.COLOR_FACE, axis=2)).any()
    assert (np.all(out == image_io.COLOR_SOUND, axis=2)).any()
    a, b, ang = image_io.ellipse_axes(np.diag([400.0, 100.0]))
    assert (a, b) == pytest.approx((40.0, 20.0)) and abs(ang) % 180 == pytest.approx(0.0)


def test_draw_overlay_labels_a_sound_with_its_voice_id():
    pytest.importorskip('cv2')
    img = np.zeros((240, 320, 3), np.uint8)
    plain = Sound('source_0', 160, 120, np.diag([100.0, 100.0]), 0.8)
    voiced = Sound('v3', 160, 120, np.diag([100.0, 100.0]), 0.8, voice='v3')
    a = image_io.draw_overlay(img, [], [plain])
    b = image_io.draw_overlay(img, [], [voiced])
    # the label 'v3 0.80' is longer than '0.80': it reaches further right of the cross
    drawn_a, drawn_b = a.any(axis=2), b.any(axis=2)
    assert drawn_b.sum() > drawn_a.sum()
    assert np.nonzero(drawn_b)[1].max() > np.nonzero(drawn_a)[1].max() + 10
    assert Sound('x', 1, 2).voice == ''


def test_overlay_labels_of_close_faces_do_not_overlap():
    pytest.importorskip('cv2')
    placed = []
    # two faces side by side, 20 px apart: their labels (wider than the gap) must not collide
    for x0 in (100, 120):
        image_io._label_origin(placed, x0, 100, 160, 70, 10, 3, 640, 480)
    (a, b) = placed
    assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], placed
    assert all(0 <= r[0] and r[2] <= 640 and 0 <= r[1] and r[3] <= 480 for r in placed)
    # a label at the image top edge stays inside the image
    image_io._label_origin(placed, 600, 0, 40, 70, 10, 3, 640, 480)
    assert placed[-1][1] >= 0 and placed[-1][2] <= 640
    img = np.zeros((240, 320, 3), np.uint8)
    faces = [Face('alice', 100, 100, 60, 72), Face('bob', 115, 105, 60, 72)]
    out = image_io.draw_overlay(img, faces, [], scores={'alice': 0.9}, speaking={'alice'})
    assert out.shape == img.shape
