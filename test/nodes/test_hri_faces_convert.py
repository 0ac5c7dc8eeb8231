"""ROS4HRI roi -> pixel faces (no DDS: plain message objects)."""

import math

import pytest

pytest.importorskip('rclpy')
pytest.importorskip('hri_msgs.msg', reason='needs hri_msgs (tools/setup.sh overlay)')

from hri_msgs.msg import NormalizedRegionOfInterest2D  # noqa: E402
from sensor_msgs.msg import RegionOfInterest  # noqa: E402

from sbm_ros.nodes.hri_faces import face_from_normalized, face_from_pixels  # noqa: E402


def test_normalized_roi_to_pixels_and_bad_rois():
    f = face_from_normalized('f1', NormalizedRegionOfInterest2D(
        xmin=0.25, ymin=0.5, xmax=0.5, ymax=1.0, c=0.8), 640, 480)
    assert (f.id, f.u, f.v, f.w, f.h) == ('f1', 240.0, 360.0, 160.0, 240.0)
    assert math.isclose(f.score, 0.8, rel_tol=1e-6)
    for box in ((0.5, 0.2, 1.6, 0.5), (-0.3, 0.2, 0.5, 0.5), (float('nan'), 0.1, 0.2, 0.3),
                (0.5, 0.5, 0.4, 0.6), (0.5, 0.5, 0.6, 0.5)):
        roi = NormalizedRegionOfInterest2D(xmin=box[0], ymin=box[1], xmax=box[2], ymax=box[3])
        assert face_from_normalized('x', roi, 640, 480) is None, box


def test_pixel_roi():
    f = face_from_pixels('f2', RegionOfInterest(x_offset=100, y_offset=50, width=80, height=60))
    assert (f.u, f.v, f.w, f.h) == (140.0, 80.0, 80.0, 60.0)
    assert face_from_pixels('f3', RegionOfInterest(x_offset=1, y_offset=1)) is None
