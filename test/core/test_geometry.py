import numpy as np
import pytest

from sbm_ros.core.geometry import (
    PinholeCamera,
    angular_distance_deg,
    direction_from_quaternion,
    direction_to_vector,
    quaternion_from_direction,
    rotate_vector,
    vector_to_direction,
)


def rot_z(deg):
    a = np.radians(deg)
    return np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1.0]])


def test_direction_vector_round_trip_and_rep103():
    np.testing.assert_allclose(direction_to_vector(0, 0), [1, 0, 0], atol=1e-15)
    np.testing.assert_allclose(direction_to_vector(90, 0), [0, 1, 0], atol=1e-15)  # left
    np.testing.assert_allclose(direction_to_vector(0, 90), [0, 0, 1], atol=1e-15)  # up
    rng = np.random.default_rng(0)
    d = np.stack([rng.uniform(-179, 179, 100), rng.uniform(-89, 89, 100)], axis=1)
    np.testing.assert_allclose(vector_to_direction(
        direction_to_vector(d[:, 0], d[:, 1])), d, atol=1e-9)
    assert angular_distance_deg([10, 0], [-10, 0]) == pytest.approx(20.0)


def test_paper_cameras_fov():
    c1 = PinholeCamera.from_fov(640, 480, 28, 21)
    c2 = PinholeCamera.from_fov(1600, 1200, 62, 48)
    assert c1.hfov_deg == pytest.approx(28) and c1.vfov_deg == pytest.approx(21)
    assert c2.hfov_deg == pytest.approx(62) and c2.vfov_deg == pytest.approx(48)
    # image corners map to half the fields of view
    d = c1.unproject([[0.0, 240.0], [320.0, 0.0]])
    np.testing.assert_allclose(d[0], [14.0, 0.0], atol=1e-9)  # left edge: azimuth +14
    np.testing.assert_allclose(d[1], [0.0, 10.5], atol=1e-9)  # top edge: elevation +10.5


def test_rep103_signs_and_behind_camera():
    cam = PinholeCamera.from_fov(640, 480, 28, 21)
    uv, ok = cam.project([5.0, 3.0])  # left and up
    assert ok and uv[0] < cam.cx and uv[1] < cam.cy
    uv, ok = cam.project([-5.0, -3.0])
    assert ok and uv[0] > cam.cx and uv[1] > cam.cy
    uv, ok = cam.project(np.array([[0.0, 0.0], [180.0, 0.0], [95.0, 0.0], [0.0, 91.0]]))
    np.testing.assert_array_equal(ok, [True, False, False, False])
    assert np.isnan(uv[1:]).all()
    np.testing.assert_allclose(uv[0], [320, 240])
    assert cam.project_direction(170.0) is None
    assert cam.in_image([[10, 10], [700, 10], [np.nan, 1]]).tolist() == [True, False, False]


def test_project_unproject_round_trip_with_extrinsic():
    for R in (None, rot_z(30.0)):
        cam = PinholeCamera.from_K([[500, 0, 310], [0, 510, 250], [
                                   0, 0, 1]], 640, 480, R_head_cam=R)
        rng = np.random.default_rng(1)
        uv = np.stack([rng.uniform(0, 640, 50), rng.uniform(0, 480, 50)], axis=1)
        d = cam.unproject(uv)
        uv2, ok = cam.project(d)
        assert ok.all()
        np.testing.assert_allclose(uv2, uv, atol=1e-8)
    cam = PinholeCamera.from_fov(640, 480, 28, 21, R_head_cam=rot_z(30.0))
    np.testing.assert_allclose(cam.project([30.0, 0.0])[0], [320, 240], atol=1e-9)


def test_camera_info_dict():
    cam = PinholeCamera.from_camera_info_dict(
        {"width": 640, "height": 480, "k": [400, 0, 320, 0, 410, 240, 0, 0, 1],
         "header": {"frame_id": "cam"}})
    assert (cam.fx, cam.fy, cam.cx, cam.cy, cam.frame_id) == (400, 410, 320, 240, "cam")
    cam2 = PinholeCamera.from_camera_info_dict(cam.to_dict())
    assert cam2 == cam
    cam3 = PinholeCamera.from_camera_info_dict(
        {"width": 10, "height": 8, "fx": 5, "fy": 5, "cx": 5, "cy": 4})
    assert cam3.cx == 5
    with pytest.raises(ValueError):
        PinholeCamera.from_camera_info_dict({"width": 10, "height": 8, "fx": 5})
    with pytest.raises(ValueError):
        PinholeCamera(-1, 1, 0, 0, 10, 10)


def test_covariance_propagation_vs_finite_differences():
    cam = PinholeCamera.from_fov(1600, 1200, 62, 48, R_head_cam=rot_z(10.0))
    d0 = np.array([18.0, -12.0])
    J = cam.jacobian_deg_to_px(d0)
    h = 1e-5
    Jn = np.zeros((2, 2))
    for j in range(2):
        e = np.zeros(2)
        e[j] = h
        Jn[:, j] = (cam.project(d0 + e)[0] - cam.project(d0 - e)[0]) / (2 * h)
    np.testing.assert_allclose(J, Jn, rtol=1e-6, atol=1e-6)
    C = np.array([[4.0, 1.0], [1.0, 2.0]])
    Cpx = cam.cov_deg_to_px(d0, C)
    np.testing.assert_allclose(Cpx, Jn @ C @ Jn.T, rtol=1e-5)
    uv = cam.project(d0)[0]
    np.testing.assert_allclose(cam.cov_px_to_deg(uv, Cpx), C, rtol=1e-9)
    # Monte-Carlo check for a small covariance
    rng = np.random.default_rng(0)
    Cs = C * 1e-2
    samples = rng.multivariate_normal(d0, Cs, 20000)
    emp = np.cov(cam.project(samples)[0].T)
    np.testing.assert_allclose(emp, cam.cov_deg_to_px(d0, Cs), rtol=0.05)
    # batched
    Jb = cam.jacobian_deg_to_px(np.array([d0, [0.0, 0.0]]))
    assert Jb.shape == (2, 2, 2)
    assert np.isnan(cam.jacobian_deg_to_px([180.0, 0.0])).all()


def test_quaternion_points_x_axis_at_direction():
    for az, el in [(0, 0), (30, 0), (-45, 20), (120, -60), (10, 89)]:
        q = quaternion_from_direction(az, el)
        assert len(q) == 4 and np.isclose(np.linalg.norm(q), 1.0)
        np.testing.assert_allclose(rotate_vector(
            q, [1, 0, 0]), direction_to_vector(az, el), atol=1e-12)
        np.testing.assert_allclose(direction_from_quaternion(q), [az, el], atol=1e-9)
        # no roll: the rotated y axis stays horizontal
        assert abs(rotate_vector(q, [0, 1, 0])[2]) < 1e-12
    assert quaternion_from_direction(0, 0) == (0.0, 0.0, 0.0, 1.0)
