"""sbm-bag: write small ROS 2 bags with rosbags (sqlite3 and mcap), localise offline, check."""

import csv
import os
import shutil

import numpy as np
import pytest

rosbags = pytest.importorskip("rosbags")

from sbm_ros.apps.bag_offline import main as bag_main, typestore  # noqa: E402
from sbm_ros.sim import (Room, VirtualCamera, VirtualHead, espeak_available,  # noqa
                         make_training_set, speech, white_noise)

TRUTH = (4.0, 2.0)          # az, el of the talker (deg)
RATE = 16000


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from sbm_ros.core.training import train_model
    d = tmp_path_factory.mktemp("bag")
    head = VirtualHead(room=Room(t60=0.3, distance=2.0), snr_db=30.0)
    cam = VirtualCamera.narrow(frame_id="camera_optical")
    ds = make_training_set(d / "ds", head, cam, n_az=12, n_el=9, duration_s=1.0)
    model = str(d / "m1.npz")
    train_model(str(ds), model, n_sources=1, n_components=12)
    if espeak_available():
        s = speech("one, two, three, four, five, six", voice="en", rate=RATE)
    else:
        s = white_noise(2.5, RATE, seed=3)
    x = head.render(np.concatenate([np.zeros(RATE // 2), s, np.zeros(RATE // 4)]), *TRUTH,
                    noise_seed=5)
    return {"dir": d, "model": model, "audio": x, "camera": cam}


def _write_bag(path, x, cam, storage, with_images=True):
    from rosbags.rosbag2 import StoragePlugin, Writer
    from sbm_ros.core.audio_io import float_to_pcm_bytes
    ts = typestore()
    T = ts.types
    Time = T["builtin_interfaces/msg/Time"]
    Header = T["std_msgs/msg/Header"]

    def hdr(ns, frame):
        return Header(stamp=Time(sec=ns // 10 ** 9, nanosec=ns % 10 ** 9), frame_id=frame)

    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    t0 = 1_700_000_000 * 10 ** 9
    with Writer(path, version=8, storage_plugin=plugin) as w:
        ca = w.add_connection("/audio/audio_stamped", "audio_common_msgs/msg/AudioDataStamped",
                              typestore=ts)
        ci = w.add_connection("/audio/audio_info", "audio_common_msgs/msg/AudioInfo",
                              typestore=ts)
        info = T["audio_common_msgs/msg/AudioInfo"](channels=2, sample_rate=RATE,
                                                    sample_format="S16LE", bitrate=RATE * 32,
                                                    coding_format="wave")
        w.write(ci, t0, ts.serialize_cdr(info, "audio_common_msgs/msg/AudioInfo"))
        if with_images:
            cc = w.add_connection("/camera_info", "sensor_msgs/msg/CameraInfo", typestore=ts)
            cimg = w.add_connection("/image", "sensor_msgs/msg/Image", typestore=ts)
        pcm = float_to_pcm_bytes(x, "S16LE")
        n = 1024
        for k in range(0, x.shape[0] // n):
            st = t0 + k * n * 10 ** 9 // RATE
            msg = T["audio_common_msgs/msg/AudioDataStamped"](
                header=hdr(st, "head"), audio=T["audio_common_msgs/msg/AudioData"](
                    data=np.frombuffer(pcm[4 * k * n:4 * (k + 1) * n], np.uint8)))
            w.write(ca, st + (n * 10 ** 9 // RATE),
                    ts.serialize_cdr(msg, "audio_common_msgs/msg/AudioDataStamped"))
        if with_images:
            d = cam.camera_info_dict()
            for j in range(int(x.shape[0] / RATE * 5)):          # 5 fps
                st = t0 + j * 200_000_000
                h = hdr(st, "camera_optical")
                w.write(cc, st, ts.serialize_cdr(T["sensor_msgs/msg/CameraInfo"](
                    header=h, height=480, width=640, distortion_model="plumb_bob",
                    d=np.zeros(5), k=np.asarray(d["k"]), r=np.asarray(d["r"]),
                    p=np.asarray(d["p"]), binning_x=0, binning_y=0,
                    roi=T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0,
                                                              width=0, do_rectify=False)),
                    "sensor_msgs/msg/CameraInfo"))
                img = np.full((480, 640, 3), 120, np.uint8)
                w.write(cimg, st, ts.serialize_cdr(T["sensor_msgs/msg/Image"](
                    header=h, height=480, width=640, encoding="bgr8", is_bigendian=0,
                    step=640 * 3, data=img.reshape(-1)), "sensor_msgs/msg/Image"))


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_bag_estimates_near_truth(setup, storage, capsys):
    bag = str(setup["dir"] / f"bag_{storage}")
    shutil.rmtree(bag, ignore_errors=True)
    _write_bag(bag, setup["audio"], setup["camera"], storage)
    out = str(setup["dir"] / f"out_{storage}")
    rc = bag_main([bag, "--model", setup["model"], "-o", out])
    err = capsys.readouterr().err
    assert rc == 0, err
    with open(os.path.join(out, "estimates.csv")) as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) >= 10
    az = np.array([float(r["azimuth_deg"]) for r in rows])
    el = np.array([float(r["elevation_deg"]) for r in rows])
    assert np.median(az) == pytest.approx(TRUTH[0], abs=2.0)
    assert np.median(el) == pytest.approx(TRUTH[1], abs=2.5)
    u, v = setup["camera"].direction_to_pixel(*TRUTH)
    assert np.median([float(r["u_px"]) for r in rows]) == pytest.approx(float(u), abs=50)
    assert os.path.getsize(os.path.join(out, "estimates.jsonl")) > 0
    if shutil.which("ffmpeg"):
        assert os.path.getsize(os.path.join(out, "overlay.mp4")) > 1000
    assert "faster than real time" in err
    speed = float(err.split("faster than real time")[0].rsplit(":", 1)[1].strip().rstrip("x"))
    assert speed > 1.0


def test_bag_without_audio_is_a_clear_error(setup, capsys):
    from rosbags.rosbag2 import Writer
    bag = str(setup["dir"] / "empty_bag")
    shutil.rmtree(bag, ignore_errors=True)
    ts = typestore()
    with Writer(bag, version=8) as w:
        c = w.add_connection("/chatter", "std_msgs/msg/String", typestore=ts)
        w.write(c, 1, ts.serialize_cdr(ts.types["std_msgs/msg/String"](data="hi"),
                                       "std_msgs/msg/String"))
    rc = bag_main([bag, "--model", setup["model"], "-o", str(setup["dir"] / "o2")])
    assert rc == 2
    assert "no audio_common_msgs/msg/AudioDataStamped topic" in capsys.readouterr().err
