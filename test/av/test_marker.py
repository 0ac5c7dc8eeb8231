"""ArUco marker detection on synthetic scenes (pure: OpenCV, no ROS)."""

import numpy as np
import pytest

cv2 = pytest.importorskip('cv2')
if not hasattr(cv2, 'aruco'):  # pragma: no cover
    pytest.skip('OpenCV without the aruco module', allow_module_level=True)

from sbm_ros.av.marker import (MarkerDetector, MarkerError, quad_centre,  # noqa: E402
                               render_marker)


def scene(h=480, w=640, seed=0):
    """A textured grey background (smooth noise) like a room, not a flat colour."""
    rng = np.random.default_rng(seed)
    small = rng.integers(60, 200, size=(h // 16 + 1, w // 16 + 1)).astype(np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def paste(img, marker, x0, y0, quiet=None):
    """Paste a marker with a white quiet zone; the marker occupies pixels [x0, x0+s)."""
    s = marker.shape[0]
    q = s // 4 if quiet is None else quiet
    img[y0 - q:y0 + s + q, x0 - q:x0 + s + q] = 255
    img[y0:y0 + s, x0:x0 + s] = marker
    return img


@pytest.mark.parametrize('x0, y0, side', [(100, 80, 60), (401, 277, 48), (250, 300, 90)])
def test_centre_of_an_axis_aligned_marker_within_1px(x0, y0, side):
    img = paste(scene(), render_marker('DICT_4X4_50', 7, side), x0, y0)
    det = MarkerDetector('DICT_4X4_50', marker_id=7).detect(img)
    assert det is not None
    # OpenCV convention: pixel centres at integers -> the square [x0, x0+s) has centre x0+(s-1)/2
    true = np.array([x0 + (side - 1) / 2, y0 + (side - 1) / 2])
    assert np.hypot(*(np.array(det.centre) - true)) < 1.0, (det.centre, true)
    assert det.side_px == pytest.approx(side, abs=2.0)


def test_centre_of_a_rotated_and_perspective_marker_within_1px():
    side = 120
    m = render_marker('DICT_5X5_100', 3, side)
    canvas = np.full((side * 2, side * 2), 255, np.uint8)
    canvas[side // 2:side // 2 + side, side // 2:side // 2 + side] = m
    src = np.float32([[side / 2, side / 2], [side * 1.5, side / 2], [side * 1.5, side * 1.5],
                      [side / 2, side * 1.5]]) - 0.5   # outer corners of the marker (px edges)
    dst = np.float32([[300, 200], [390, 215], [380, 300], [290, 285]])
    H = cv2.getPerspectiveTransform(src, dst)
    img = scene(seed=3)
    warped = cv2.warpPerspective(canvas, H, (640, 480), flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    mask = cv2.warpPerspective(np.full_like(canvas, 255), H, (640, 480)) > 127
    img[mask] = warped[mask]
    det = MarkerDetector('5X5_100', marker_id=3).detect(img)
    assert det is not None
    # true centre: the image of the marker's centre under the homography
    c = np.array([side - 0.5, side - 0.5, 1.0])
    p = H @ c
    true = p[:2] / p[2]
    assert np.hypot(*(np.array(det.centre) - true)) < 1.0, (det.centre, true)


def test_wrong_id_or_no_marker_gives_none():
    img = paste(scene(), render_marker('DICT_4X4_50', 7, 60), 100, 100)
    assert MarkerDetector('DICT_4X4_50', marker_id=8).detect(img) is None
    assert MarkerDetector('DICT_4X4_50', marker_id=7).detect(scene(seed=5)) is None
    hits = MarkerDetector('DICT_4X4_50', marker_id=8).detect_all(img)
    assert [h.marker_id for h in hits] == [7]


def test_colour_input_is_accepted():
    img = paste(scene(), render_marker('DICT_4X4_50', 0, 64), 300, 200)
    bgr = np.repeat(img[:, :, None], 3, axis=2)
    det = MarkerDetector().detect(bgr)
    assert det is not None and abs(det.u - (300 + 31.5)) < 1


def test_bad_dictionary_or_id_is_named():
    with pytest.raises(MarkerError, match='unknown ArUco dictionary'):
        MarkerDetector('DICT_9X9_1')
    with pytest.raises(MarkerError, match='marker_id 50 is not in'):
        MarkerDetector('DICT_4X4_50', marker_id=50)


def test_quad_centre_is_the_diagonal_intersection():
    q = np.array([[0, 0], [10, 0], [12, 8], [0, 10]], float)
    c = quad_centre(q)
    # on both diagonals
    for a, b in ((q[0], q[2]), (q[1], q[3])):
        d = b - a
        r = c - a
        assert abs(d[0] * r[1] - d[1] * r[0]) < 1e-9
