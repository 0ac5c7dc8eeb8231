"""The overlay never fails on coordinates: non-finite or absurd positions are dropped (and
reported) or clipped, everything else is still drawn."""

import numpy as np
import pytest

from sbm_ros.av import image_io
from sbm_ros.av.fusion import Face, Sound
from sbm_ros.av.overlay import OverlayScene, drawable, render

pytest.importorskip('cv2')
H, W = 120, 160
BAD = [1e10, -1e10, np.nan, np.inf, -np.inf]


def img():
    return np.full((H, W, 3), 40, np.uint8)


@pytest.mark.parametrize('x', BAD)
@pytest.mark.filterwarnings('ignore:invalid value')
def test_draw_overlay_survives_absurd_coordinates(x):
    faces = [Face('a', x, 60, 30, 30), Face('b', 60, x, 30, 30), Face('c', 60, 60, x, 30),
             Face('d', 60, 60, 30, x), Face('ok', 100, 60, 30, 30)]
    sounds = [Sound('s', x, 50, np.eye(2) * 100), Sound('t', 50, x, np.eye(2) * 100),
              Sound('u', 50, 50, np.eye(2) * x), Sound('v', 50, 50, np.eye(2) * 100, x)]
    out = image_io.draw_overlay(img(), faces, sounds, scores={'ok': x}, speaking={'ok'},
                                mouth=[(x, 10), (10, x)])
    assert out.shape == (H, W, 3)
    assert np.all(out == image_io.COLOR_SPEAKING, axis=2).any()   # the good face is drawn
    assert np.all(out == image_io.COLOR_SOUND, axis=2).any()      # and the good sounds


@pytest.mark.parametrize('x', BAD)
def test_render_reports_what_it_drops(x):
    scene = OverlayScene([Face('far', x, 60, 30, 30), Face('ok', 80, 60, 30, 30)],
                         [Sound('s', 50, x, np.eye(2) * 100), Sound('ok', 50, 50)],
                         {'ok': 0.9}, {'ok'})
    out, bad = render(img(), scene)
    assert len(bad) == 2, bad
    assert "face 'far'" in bad[0] and "sound 's'" in bad[1]
    assert ('non-finite' in bad[0]) == (not np.isfinite(x))
    assert np.all(out == image_io.COLOR_SPEAKING, axis=2).any()


def test_drawable_keeps_what_is_near_the_image():
    scene = OverlayScene([Face('near', -100, 60, 30, 30), Face('huge', 80, 60, 1e10, 1e10)],
                         [Sound('s', W + 300, H + 300)])
    ok, bad = drawable(scene, W, H)
    assert bad == [] and len(ok.faces) == 2 and len(ok.sounds) == 1
    out, _ = render(img(), scene)            # a huge box is clipped, not an error
    assert out.shape == (H, W, 3)
