"""av_fusion over real DDS: speaking faces + overlay, training capture -> train -> hand-off to a
running sbm_localizer, refusals, bad inputs, and a SIGKILL in the middle of a capture.

The nodes run as subprocesses (``python -m sbm_ros.nodes.<node>``); this process is the camera,
the microphone (toy binaural renderer of test/synth.py, white noise from the direction of the
marker's pixel) and the face detector.
"""

import contextlib
import os
import re
import signal
import threading
import time

import numpy as np
import pytest

pytest.importorskip('rclpy')
pytest.importorskip('vision_msgs.msg')
pytest.importorskip('audio_common_msgs.msg')
cv2 = pytest.importorskip('cv2')

from rostest_utils import NodeProcess, RosTestNode, domain_id_for  # noqa: E402
import synth  # noqa: E402

from sbm_ros.av import image_io  # noqa: E402
from sbm_ros.core.audio_io import float_to_pcm_bytes  # noqa: E402
from sbm_ros.core.dataset import load_recordings, read_dataset  # noqa: E402
from sbm_ros.core.geometry import PinholeCamera  # noqa: E402
from sbm_ros.av.marker import render_marker  # noqa: E402

DOMAIN = domain_id_for(__name__)
W, H = 640, 480
CAM = PinholeCamera.from_fov(W, H, 60.0, 45.0, frame_id='cam')
RATE = synth.RATE
MARKER_ID, MARKER_SIDE = 7, 56


@pytest.fixture(scope='module')
def ros():
    node = RosTestNode(DOMAIN, 'fusion_test')
    yield node
    node.close()


# ----------------------------------------------------------------------------- helpers
def camera_info_msg(stamp):
    from sensor_msgs.msg import CameraInfo
    m = CameraInfo()
    m.header.stamp, m.header.frame_id = stamp, 'cam'
    m.width, m.height = W, H
    m.k = CAM.K.reshape(-1).tolist()
    m.p = [CAM.fx, 0.0, CAM.cx, 0.0, 0.0, CAM.fy, CAM.cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    m.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    m.distortion_model = 'plumb_bob'
    m.d = [0.0] * 5
    return m


def background(seed=0):
    rng = np.random.default_rng(seed)
    small = rng.integers(60, 200, size=(H // 16 + 1, W // 16 + 1)).astype(np.uint8)
    return cv2.resize(small, (W, H), interpolation=cv2.INTER_LINEAR)


MARKER = render_marker('DICT_4X4_50', MARKER_ID, MARKER_SIDE)


def scene_with_marker(u, v, bg):
    """The background with the marker whose centre is at integer (u, v) (OpenCV convention);
    returns (image, exact centre)."""
    img = bg.copy()
    x0 = int(round(u - (MARKER_SIDE - 1) / 2))
    y0 = int(round(v - (MARKER_SIDE - 1) / 2))
    q = MARKER_SIDE // 4
    img[y0 - q:y0 + MARKER_SIDE + q, x0 - q:x0 + MARKER_SIDE + q] = 255
    img[y0:y0 + MARKER_SIDE, x0:x0 + MARKER_SIDE] = MARKER
    return img, (x0 + (MARKER_SIDE - 1) / 2, y0 + (MARKER_SIDE - 1) / 2)


def image_msg(arr, enc, stamp, frame='cam'):
    from sensor_msgs.msg import Image
    m = Image()
    m.header.stamp, m.header.frame_id = stamp, frame
    return image_io.fill_msg(m, arr, enc)


def detections(stamp, boxes, frame='cam', cov=None, score=0.9):
    """Detection2DArray from [(id, u, v, w, h)]; with ``cov`` (2x2) a sound-source layout."""
    from vision_msgs.msg import Detection2D, Detection2DArray, ObjectHypothesisWithPose
    out = Detection2DArray()
    out.header.stamp, out.header.frame_id = stamp, frame
    for (i, u, v, w, h) in boxes:
        d = Detection2D(id=i)
        d.header = out.header
        d.bbox.center.position.x, d.bbox.center.position.y = float(u), float(v)
        d.bbox.size_x, d.bbox.size_y = float(w), float(h)
        hyp = ObjectHypothesisWithPose()
        hyp.hypothesis.class_id = 'sound_source' if cov is not None else 'face'
        hyp.hypothesis.score = score
        if cov is not None:
            c = [0.0] * 36
            c[0], c[1], c[6], c[7] = cov[0][0], cov[0][1], cov[1][0], cov[1][1]
            hyp.pose.covariance = c
        d.results.append(hyp)
        out.detections.append(d)
    return out


@contextlib.contextmanager
def logs_on_failure(*procs):
    """Print the nodes' output when the block fails (pytest shows it with the failure)."""
    try:
        yield
    except BaseException:
        for p in procs:
            print(f'----- {p.name} output -----\n{p.text()[-6000:]}')
        raise


def call(ros, client, timeout=20.0):
    from std_srvs.srv import Trigger
    assert client.wait_for_service(timeout_sec=10.0), client.srv_name
    fut = client.call_async(Trigger.Request())
    assert ros.spin_until(fut.done, timeout), f'{client.srv_name} timed out'
    return fut.result()


class Rig:
    """Camera + binaural microphone + camera_info publishers.

    Like a real driver, a thread of its own publishes paced audio (50 ms chunks) and video
    (10 fps), whatever the test node's executor is doing. ``audio_offset`` (s) is added to the
    audio stamps (a driver whose clock leads or lags the node's); while ``audio_held`` is set
    the audio chunks are kept back, and published in a burst when it is cleared.
    """

    def __init__(self, ros, gain=1.0, audio_offset=0.0):
        from audio_common_msgs.msg import AudioDataStamped, AudioInfo
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CameraInfo, Image
        n = ros.node
        self.ros, self.node = ros, n
        self.pub_img = n.create_publisher(Image, 'image', 5)
        self.pub_ci = n.create_publisher(CameraInfo, 'camera_info', 5)
        self.pub_audio = n.create_publisher(AudioDataStamped, 'audio/audio_stamped', 100)
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.pub_info = n.create_publisher(AudioInfo, 'audio/audio_info', latched)
        self.pub_info.publish(AudioInfo(channels=2, sample_rate=RATE, sample_format='S16LE',
                                        bitrate=RATE * 32, coding_format='wave'))
        self.AudioDataStamped = AudioDataStamped
        self.bg = background()
        self.gain = gain
        self.camera_k = None                       # set: camera_info carries this K instead
        self.img = None
        self.buf = np.zeros((RATE, 2))
        self.pos = 0
        self.sent = 0
        self.t0 = time.monotonic()
        self.t0_ns = n.get_clock().now().nanoseconds + int(round(audio_offset * 1e9))
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.video_paused = threading.Event()      # set: the camera stalls (audio goes on)
        self.audio_held = threading.Event()        # set: audio is kept back (a driver burst)
        self._held = []
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        next_video = time.monotonic()
        while not self._stop.wait(0.01):
            self._audio_tick()
            if time.monotonic() >= next_video:
                next_video += 0.1
                if not self.video_paused.is_set():
                    self._video()

    def place(self, u, v, marker=True, seed=0):
        """Put the loudspeaker (marker + white noise) at pixel (u, v); returns the true centre."""
        if marker:
            self.img, centre = scene_with_marker(u, v, self.bg)
        else:
            self.img, centre = self.bg.copy(), (u, v)
        az, el = CAM.unproject(np.array([centre]))[0]
        buf = synth.render(synth.white(2 * RATE, seed), az, el)   # circular: loops cleanly
        with self._lock:
            self.buf, self.pos = buf, 0
        self._video()
        return centre

    def _video(self):
        with self._lock:
            img = self.img
        stamp = self.node.get_clock().now().to_msg()
        ci = camera_info_msg(stamp)
        if self.camera_k is not None:
            ci.k = list(self.camera_k)
        self.pub_ci.publish(ci)
        if img is not None:
            self.pub_img.publish(image_msg(img, 'mono8', stamp))

    def _audio_tick(self):
        if self._held and not self.audio_held.is_set():
            for m in self._held:
                self.pub_audio.publish(m)
            self._held = []
        due = int((time.monotonic() - self.t0) * RATE)
        while due - self.sent >= 800:          # 50 ms chunks, paced to real time
            with self._lock:
                idx = (self.pos + np.arange(800)) % len(self.buf)
                self.pos = (self.pos + 800) % len(self.buf)
                chunk = self.gain * self.buf[idx]
            m = self.AudioDataStamped()
            ns = self.t0_ns + self.sent * 1_000_000_000 // RATE   # first sample's time
            m.header.stamp.sec, m.header.stamp.nanosec = ns // 10 ** 9, ns % 10 ** 9
            m.header.frame_id = 'head'
            m.audio.data = float_to_pcm_bytes(np.clip(chunk, -1, 1))
            if self.audio_held.is_set():
                self._held.append(m)
            else:
                self.pub_audio.publish(m)
            self.sent += 800

    def close(self):
        self._stop.set()
        self._thread.join(timeout=2.0)
        for p in (self.pub_img, self.pub_ci, self.pub_audio, self.pub_info):
            self.node.destroy_publisher(p)


# ----------------------------------------------------------------------------- fusion
def test_speaking_face_and_overlay(ros, tmp_path):
    from sensor_msgs.msg import CameraInfo, Image
    from vision_msgs.msg import Detection2DArray
    n = ros.node
    fusion = NodeProcess('av_fusion', DOMAIN, name='av_fusion',
                         params={'overlay_rate': 0.0, 'release': 0.3,
                                 'image_reliability': 'reliable',
                                 'dataset_dir': str(tmp_path / 'ds')})
    with fusion, logs_on_failure(fusion):
        speaking = ros.collect(Detection2DArray, 'speaking_faces')
        overlays = ros.collect(Image, 'overlay')
        pub_faces = n.create_publisher(Detection2DArray, 'faces', 10)
        pub_sounds = n.create_publisher(Detection2DArray, 'sound_sources', 10)
        pub_img = n.create_publisher(Image, 'image', 5)
        pub_ci = n.create_publisher(CameraInfo, 'camera_info', 5)
        fusion.wait_for('av_fusion ready', 15, spin=ros.spin_for)
        for pub in (pub_faces, pub_sounds, pub_img, pub_ci):
            assert ros.wait_for_subscribers(pub), pub.topic_name
        faces = [('', 200, 220, 90, 110), ('', 450, 230, 90, 110)]
        img = np.full((H, W, 3), 40, np.uint8)
        stamps = []

        def frame(source_uv, bad_image=None, faces_=faces, sound_frame='cam'):
            stamp = n.get_clock().now().to_msg()
            stamps.append(stamp)
            pub_ci.publish(camera_info_msg(stamp))
            pub_img.publish(bad_image or image_msg(img, 'bgr8', stamp))
            src = [('source_0', *source_uv, 60, 60)] if source_uv else []
            pub_sounds.publish(detections(stamp, src, frame=sound_frame,
                                          cov=[[225.0, 0.0], [0.0, 225.0]]))
            pub_faces.publish(detections(stamp, faces_))
            ros.spin_for(0.1)

        def last_state():
            return {round(x.bbox.center.position.x): (x.results[0].hypothesis.class_id,
                                                      x.results[0].hypothesis.score, x.id)
                    for x in speaking[-1].detections}

        def frames_until(source_uv, cond, n_max):
            for k in range(n_max):
                frame(source_uv)
                # the newest answer may still be to an earlier message (e.g. the empty faces
                # list below) on a loaded machine: only an answer with both faces counts
                if k >= 4 and speaking and {200, 450} <= set(last_state()) \
                        and cond(last_state()):
                    return k
            return n_max

        # the sound is at the right face's mouth (lower part of its box)
        k = frames_until((455, 255), lambda st: st[450][0] == 'speaking', 30)
        assert k < 15, k
        frame((455, 255))
        st = last_state()
        assert st[450][0] == 'speaking' and st[450][1] > 0.6, st
        assert st[200][0] == 'silent' and st[200][1] < 0.05, st
        assert st[200][2] != st[450][2] and st[450][2].startswith('face_')
        right_id = st[450][2]
        # original face results are kept after the speaking hypothesis
        assert speaking[-1].detections[1].results[1].hypothesis.class_id == 'face'
        # overlay: camera header kept, the speaking face drawn in green
        # one overlay per input image: keep the camera running while waiting (the overlay
        # subscription may still be being discovered on a freshly started machine)
        deadline = time.monotonic() + 20.0
        while len(overlays) < 5 and time.monotonic() < deadline:
            frame((455, 255))
        assert len(overlays) >= 5, fusion.text()[-3000:]
        ov = overlays[-1]
        assert ov.header.frame_id == 'cam'
        stamp_ns = {(s.sec, s.nanosec) for s in stamps}
        assert (ov.header.stamp.sec, ov.header.stamp.nanosec) in stamp_ns, (ov.header, stamps[-3:])
        assert (ov.width, ov.height, ov.encoding) == (W, H, 'bgr8')
        arr = image_io.msg_to_array(ov)
        green = np.all(arr == image_io.COLOR_SPEAKING, axis=2)
        ys, xs = np.nonzero(green)
        assert xs.size > 100 and 390 <= np.median(xs) <= 510, (xs.size, np.median(xs))
        assert np.all(arr == image_io.COLOR_SOUND, axis=2).any()

        # bad inputs: unknown encoding, wrong data size, faces from a bigger image, a sound in
        # another frame, empty faces: warnings, and the node keeps serving
        bad = image_msg(img, 'bgr8', stamps[-1])
        bad.encoding = 'yuv422_weird'
        # The node keeps only the newest image (by design), so each bad input is checked
        # before the next frame can replace it.
        frame((455, 255), bad_image=bad)
        fusion.wait_for(r"unsupported image encoding 'yuv422_weird'", 15, spin=ros.spin_for)
        short = image_msg(img, 'bgr8', stamps[-1])
        short.data = short.data[:1000]
        frame((455, 255), bad_image=short)
        fusion.wait_for(r'image data has 1000 bytes', 15, spin=ros.spin_for)
        frame((455, 255), faces_=[('', 1500, 900, 90, 110)] + faces)
        fusion.wait_for(r'outside the 640x480 image', 15, spin=ros.spin_for)
        frame((455, 255), sound_frame='other_camera')
        fusion.wait_for(r"frame 'other_camera' differs", 15, spin=ros.spin_for)
        # absurd coordinates (issue 13): a face box of 1e10 px is clipped when drawn, a sound
        # at 1e10 px is not drawn (a warning says so), a face with a NaN box is ignored; the
        # node keeps publishing overlays
        n_ov = len(overlays)
        # The overlay timer (20 ms) may draw a frame's image before that frame's sounds have
        # been taken (they are published after the image): the sound then shows on the next
        # image, as with a running camera. One frame alone can therefore miss the warning (1
        # clean-clone run in 6 did): keep the camera running until it comes.
        not_drawn = r"overlay: 1 item\(s\) not drawn: sound 'source_0'"
        deadline = time.monotonic() + 20.0
        while not fusion.count(not_drawn) and time.monotonic() < deadline:
            frame((1e10, -1e10), faces_=[('', 200, 220, 1e10, 1e10)] + faces[1:])
            ros.spin_for(0.2)
        assert fusion.count(not_drawn), fusion.text()[-3000:]
        # (the warning about ignored faces is throttled: 5 s after the one above)
        deadline = time.monotonic() + 20.0
        while not fusion.count(r'non-finite box') and time.monotonic() < deadline:
            frame((455, 255), faces_=[('', float('nan'), 220, 90, 110)] + faces)
            ros.spin_for(0.2)
        assert fusion.count(r"ignored 1 detection\(s\) of the 640x480 image: face: "
                            r'non-finite box \(nan, 220\.0, 90\.0, 110\.0\)'), fusion.text()
        deadline = time.monotonic() + 20.0
        while len(overlays) < n_ov + 3 and time.monotonic() < deadline:
            frame((455, 255))
        assert len(overlays) >= n_ov + 3 and fusion.alive
        frame(None, faces_=[])

        # the talker changes: left face speaks, right face stops (release 0.3 s)
        k = frames_until((205, 240), lambda st: st[200][0] == 'speaking'
                         and st[450][0] == 'silent', 40)
        assert k < 25, k
        st = last_state()
        assert st[200][0] == 'speaking' and st[450][0] == 'silent', st
        assert st[450][2] == right_id     # ids stay stable across frames (IoU tracking)
        # a sound far from every face is gated out: nobody speaks after the release
        k = frames_until((600, 40), lambda st: all(v[0] == 'silent' for v in st.values()), 40)
        assert k < 25, k
        st = last_state()
        assert all(v[0] == 'silent' for v in st.values()), st
        assert fusion.alive
        assert 'Traceback' not in fusion.text()
        for p in (pub_faces, pub_sounds, pub_img, pub_ci):
            n.destroy_publisher(p)


# ----------------------------------------------------------------------------- capture + train
def _get_param(ros, node_name, name):
    from rcl_interfaces.srv import GetParameters
    cli = ros.node.create_client(GetParameters, f'/{node_name}/get_parameters')
    try:
        assert cli.wait_for_service(timeout_sec=10)
        fut = cli.call_async(GetParameters.Request(names=[name]))
        assert ros.spin_until(fut.done, 10)
        return fut.result().values[0].string_value
    finally:
        ros.node.destroy_client(cli)


def test_capture_train_handoff(ros, tmp_path):
    from std_msgs.msg import String
    from std_srvs.srv import Trigger
    from vision_msgs.msg import Detection2DArray
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from sbm_ros.apps import cli
    # an initial (degree) model for the localiser, on the toy head
    init_ds = str(tmp_path / 'init_ds')
    synth.make_dataset(init_ds, np.linspace(-25, 25, 6), [-10, 10], duration=0.3)
    init_model = str(tmp_path / 'init.npz')
    assert cli.train_main([init_ds, '-o', init_model, '-K', '3', '-q']) == 0

    ds = str(tmp_path / 'ds')
    rig = Rig(ros)
    procs = [
        NodeProcess('sbm_localizer', DOMAIN, name='sbm_localizer',
                    params={'model_path': init_model, 'estimate_rate': 5.0}),
        NodeProcess('av_fusion', DOMAIN, name='av_fusion',
                    params={'dataset_dir': ds, 'capture_duration': 0.5,
                            'marker_dictionary': 'DICT_4X4_50', 'marker_id': MARKER_ID,
                            'localizer_node': 'sbm_localizer', 'min_rms_dbfs': -40.0,
                            'image_reliability': 'reliable'}),
    ]
    try:
        for p in procs:
            p.start()
        fusion = procs[1]
        status = []
        latched = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        ros.node.create_subscription(String, '/av_fusion/training_status',
                                     lambda m: status.append(m.data), latched)
        sources = ros.collect(Detection2DArray, 'sound_sources')
        capture = ros.node.create_client(Trigger, '/av_fusion/capture_sample')
        train = ros.node.create_client(Trigger, '/av_fusion/train')
        fusion.wait_for('av_fusion ready', 15, spin=ros.spin_for)
        procs[0].wait_for(r'model .*init\.npz', 15, spin=ros.spin_for)

        # refusal before anything is seen is fast and clear
        res = call(ros, capture)
        assert not res.success and ('no image' in res.message or 'no camera_info' in res.message
                                    or 'audio' in res.message), res.message

        truth = []
        grid = [(u, v) for v in np.linspace(90, 390, 5) for u in np.linspace(90, 550, 5)]
        t_cap = time.monotonic()
        for k, (u, v) in enumerate(grid):
            centre = rig.place(u, v, seed=k)
            ros.spin_for(0.25)
            res = call(ros, capture)
            assert res.success, res.message
            truth.append(centre)
        t_cap = time.monotonic() - t_cap

        # refusals: marker not visible, audio too quiet; nothing appended
        rig.place(300, 240, marker=False)
        ros.spin_for(0.25)
        res = call(ros, capture)
        assert not res.success and 'not visible' in res.message, res.message
        rig.place(300, 240)
        rig.gain = 1e-3
        ros.spin_for(0.25)
        res = call(ros, capture)
        assert not res.success and 'too quiet' in res.message, res.message
        rig.gain = 1.0

        d = read_dataset(ds)
        assert len(d) == len(grid) and d.units == 'pixels'
        assert d.target_names == ['u_px', 'v_px']
        err = np.hypot(*(d.targets - np.array(truth)).T)
        assert err.max() < 1.0, err
        assert d.camera['width'] == W and d.camera['frame_id'] == 'cam'
        np.testing.assert_allclose(d.camera['K'], CAM.K.reshape(-1))
        recs = load_recordings(d, RATE)
        assert all(r.shape == (RATE // 2, 2) for r in recs)

        # train: answered at once, model handed to the running localiser. Two requests sent
        # back to back: whichever the node takes first starts training, the other is refused
        # as 'already running' (training takes seconds). Answer times are not compared with the
        # training time: a DDS repair of a lost request/response can take the 3 s heartbeat
        # period of Fast DDS on a loaded machine (seen once each for ~/train and a capture).
        assert train.wait_for_service(timeout_sec=10.0)
        t0 = time.monotonic()
        futs = [train.call_async(Trigger.Request()) for _ in range(2)]
        assert ros.spin_until(lambda: all(f.done() for f in futs), 20), 'train timed out'
        assert time.monotonic() - t0 < 8.0
        answers = sorted((f.result().success, f.result().message) for f in futs)
        assert [ok for ok, _ in answers] == [False, True], answers
        assert 'already running' in answers[0][1] and 'training started' in answers[1][1], \
            answers
        # the bound is liveness, not speed: sbm-train chooses K by cross-validation over the
        # 25 positions (a few seconds on a quiet machine), and with the load average at 4-5
        # it was still choosing K after 40 s (failed that way in two helper runs)
        assert ros.spin_until(lambda: any('model handed to' in s or 'failed' in s
                                          for s in status), 150), status
        assert any('model handed to' in s for s in status), status
        new_path = _get_param(ros, 'sbm_localizer', 'model_path')
        assert new_path.startswith(os.path.join(ds, 'models')) and os.path.exists(new_path)
        procs[0].wait_for(r'model .*models/model_.*pixels', 5, spin=ros.spin_for)

        # the localiser now reports pixels near the loudspeaker
        centre = rig.place(262, 202, seed=99)     # between the grid positions
        sources.clear()
        ros.spin_until(lambda: len([s for s in sources if s.detections]) >= 6, 10)
        est = np.array([[s.detections[0].bbox.center.position.x,
                         s.detections[0].bbox.center.position.y]
                        for s in sources[-3:] if s.detections])
        assert len(est), 'no sound_sources from the new model'
        err = np.hypot(*(np.median(est, axis=0) - np.array(centre)))
        print(f'new model: estimate {np.median(est, axis=0)} for the loudspeaker at {centre} '
              f'(error {err:.1f} px); capture of {len(grid)} samples took {t_cap:.1f} s; '
              f'status: {status}')
        assert err < 30.0, (est, centre)
        # (capture time is printed above: a figure, not a timed assertion)
        assert 'Traceback' not in fusion.text()
    finally:
        rig.close()
        for p in procs:
            p.stop()


def test_capture_waits_out_a_camera_stall_and_refuses_a_dead_camera(ros, tmp_path):
    from std_srvs.srv import Trigger
    ds = str(tmp_path / 'ds')
    rig = Rig(ros)
    fusion = NodeProcess('av_fusion', DOMAIN, name='av_fusion_stall',
                         params={'dataset_dir': ds, 'capture_duration': 0.3,
                                 'marker_id': MARKER_ID, 'max_image_age': 1.0})
    try:
        fusion.start()
        capture = ros.node.create_client(Trigger, '/av_fusion_stall/capture_sample')
        fusion.wait_for('av_fusion ready', 15, spin=ros.spin_for)
        rig.place(200, 200, seed=1)
        ros.spin_for(0.25)
        res = call(ros, capture)
        deadline = time.monotonic() + 15.0        # discovery may lag on a loaded machine
        while not res.success and 'received' in res.message and time.monotonic() < deadline:
            ros.spin_for(0.5)
            res = call(ros, capture)
        assert res.success, res.message
        # the camera stalls for 1.6 s; the capture is requested 1.3 s into the stall, when the
        # newest frame is already older than max_image_age: it waits for the next frame
        rig.video_paused.set()
        ros.spin_for(1.3)
        threading.Timer(0.3, rig.video_paused.clear).start()
        res = call(ros, capture)
        assert res.success, res.message
        # a camera that stays dead: refused, with the reason, after the extra wait
        rig.video_paused.set()
        ros.spin_for(1.3)
        t0 = time.monotonic()
        res = call(ros, capture)
        assert not res.success and 'is the camera running?' in res.message, res.message
        assert time.monotonic() - t0 >= 0.9       # it did wait for a fresh frame first
        rig.video_paused.clear()
    finally:
        rig.close()
        fusion.stop()
    assert len(read_dataset(ds)) == 2             # both good captures kept, nothing else


@pytest.mark.parametrize('offset', [3.0, -3.0])
def test_capture_with_an_offset_audio_clock(ros, tmp_path, offset):
    """Audio stamps `offset` s ahead of / behind the node's clock (a driver with its own clock,
    audio from another machine): a capture neither fails nor records audio from before the
    request, even when chunks from before it arrive after it (a burst from the driver)."""
    from std_srvs.srv import Trigger
    ds = str(tmp_path / 'ds')
    rig = Rig(ros, audio_offset=offset)
    fusion = NodeProcess('av_fusion', DOMAIN, name='av_fusion_offset',
                         params={'dataset_dir': ds, 'capture_duration': 0.5,
                                 'marker_id': MARKER_ID, 'min_rms_dbfs': -40.0})
    try:
        fusion.start()
        capture = ros.node.create_client(Trigger, '/av_fusion_offset/capture_sample')
        fusion.wait_for('av_fusion ready', 15, spin=ros.spin_for)
        rig.place(200, 200, seed=3)
        ros.spin_for(0.25)
        res = call(ros, capture)
        deadline = time.monotonic() + 15.0        # discovery may lag on a loaded machine
        while not res.success and 'received' in res.message and time.monotonic() < deadline:
            ros.spin_for(0.5)
            res = call(ros, capture)
        assert res.success, res.message
        res = call(ros, capture)
        assert res.success, res.message
        messages = [res.message]
        # 1 s of silence is kept back by the driver; the loudspeaker starts, the capture is
        # requested, and only then the silence arrives, in a burst: it must not be recorded
        rig.gain = 0.0
        rig.audio_held.set()
        ros.spin_for(1.0)
        rig.gain = 1.0
        fut = capture.call_async(Trigger.Request())
        threading.Timer(0.15, rig.audio_held.clear).start()
        assert ros.spin_until(fut.done, 20), 'capture timed out'
        res = fut.result()
        assert res.success, res.message
        messages.append(res.message)
        assert 'Traceback' not in fusion.text()
    except BaseException:
        print(f'----- {fusion.name} output -----\n{fusion.text()[-6000:]}')
        raise
    finally:
        rig.close()
        fusion.stop()
    # recorded from the request on, not |offset| s later: the node reports the first recorded
    # sample's time after the request (a wall-clock bound would also count DDS retransmission
    # delays of the request / response, up to the 3 s heartbeat period of Fast DDS)
    for m in messages:
        found = re.search(r'from (-?[0-9.]+) s after the request', m)
        assert found and 0.0 <= float(found.group(1)) < 0.2, m
    recs = load_recordings(read_dataset(ds), RATE)
    assert len(recs) == 3
    for r in recs:
        assert r.shape == (RATE // 2, 2)
        silent = np.all(r == 0, axis=1)           # the held-back chunks are digital silence
        assert silent.sum() <= RATE // 50, silent.sum()   # at most the delivery latency


def test_sigkill_during_capture_keeps_the_dataset(ros, tmp_path):
    from std_srvs.srv import Trigger
    ds = str(tmp_path / 'ds')
    rig = Rig(ros)
    fusion = NodeProcess('av_fusion', DOMAIN, name='av_fusion_kill',
                         params={'dataset_dir': ds, 'capture_duration': 0.3,
                                 'marker_id': MARKER_ID})
    try:
        fusion.start()
        capture = ros.node.create_client(Trigger, '/av_fusion_kill/capture_sample')
        fusion.wait_for('av_fusion ready', 15, spin=ros.spin_for)
        for k, (u, v) in enumerate([(150, 150), (400, 300), (500, 120)]):
            rig.place(u, v, seed=k)
            ros.spin_for(0.25)
            res = call(ros, capture)
            # Discovery can lag on a loaded machine: until the node has received the rig's
            # camera_info / image / audio it refuses with 'no ... received yet'; wait for them.
            deadline = time.monotonic() + 15.0
            while (not res.success and 'received' in res.message
                   and time.monotonic() < deadline):
                ros.spin_for(0.5)
                res = call(ros, capture)
            assert res.success, res.message
        before = read_dataset(ds)
        # a long capture, killed while it records
        rig.place(320, 240, seed=7)
        ros.spin_for(0.25)
        assert ros.set_parameters('av_fusion_kill', {'capture_duration': 3.0}).successful
        fut = capture.call_async(Trigger.Request())
        ros.spin_for(0.8)
        assert not fut.done()          # still recording
        os.killpg(fusion.proc.pid, signal.SIGKILL)
        fusion.proc.wait(5)
    finally:
        rig.close()
        fusion.stop()
    after = read_dataset(ds)
    assert after.files == before.files
    np.testing.assert_array_equal(after.targets, before.targets)
    assert all(r.shape == (int(0.3 * RATE), 2) for r in load_recordings(after, RATE))
    leftovers = [f for f in os.listdir(ds) if f.startswith('.') or f.endswith('.tmp')]
    assert leftovers == []


def test_bad_camera_info_refused_and_concurrent_captures_all_answered(ros, tmp_path):
    """Issue 13: camera_info with fx = 0 is refused (nothing written to camera.json); more
    than 10 concurrent ~/capture_sample calls all get an answer: one capture runs, the others
    are refused at once."""
    from std_srvs.srv import Trigger
    ds = str(tmp_path / 'ds')
    rig = Rig(ros)
    rig.camera_k = [0.0] + CAM.K.reshape(-1).tolist()[1:]
    # The images over reliable QoS here: this test is about camera_info and concurrent
    # calls, and once (full suite, fresh-clone CI) no 640x480 image reached the node over
    # best-effort QoS for over 15 s while camera_info did (the default best-effort path is
    # covered by the other tests of this file)
    fusion = NodeProcess('av_fusion', DOMAIN, name='av_fusion_busy',
                         params={'dataset_dir': ds, 'capture_duration': 0.5,
                                 'marker_id': MARKER_ID, 'image_reliability': 'reliable'})
    try:
        fusion.start()
        capture = ros.node.create_client(Trigger, '/av_fusion_busy/capture_sample')
        fusion.wait_for('av_fusion ready', 15, spin=ros.spin_for)
        rig.place(250, 200, seed=5)
        fusion.wait_for(r"'camera_info' refused: focal lengths fx = 0", 15, spin=ros.spin_for)
        res = call(ros, capture)
        assert not res.success and 'fx = 0' in res.message, res.message
        assert not os.path.exists(os.path.join(ds, 'camera.json'))
        rig.camera_k = None                           # a calibrated camera again
        res = call(ros, capture)
        deadline = time.monotonic() + 15.0            # discovery may lag on a loaded machine
        while not res.success and time.monotonic() < deadline:
            ros.spin_for(0.5)
            res = call(ros, capture)
        assert res.success, res.message
        # 14 callers at once: every one is answered (separate clients, as 14 users would be).
        # Each caller's response queue deeper than the default 10: under load, with default
        # clients, 2-3 of the 14 answers were lost in 3 of 8 runs although the node's log
        # showed all 14 sent (the other callers' answers reach every caller's response reader
        # and push its own out of a queue of 10); 10 of 10 runs passed with a depth of 100.
        from sbm_ros.nodes.common import stream_qos
        callers = [ros.node.create_client(Trigger, '/av_fusion_busy/capture_sample',
                                          qos_profile=stream_qos('reliable', 100))
                   for _ in range(14)]
        assert all(c.wait_for_service(timeout_sec=10.0) for c in callers)
        ros.spin_for(0.5)                             # the responses' way back discovered too
        futs = [c.call_async(Trigger.Request()) for c in callers]
        assert ros.spin_until(lambda: all(f.done() for f in futs), 30), \
            f'{sum(f.done() for f in futs)} of 14 answered'
        answers = [(f.result().success, f.result().message) for f in futs]
        ok = [m for good, m in answers if good]
        busy = [m for good, m in answers if not good and 'a capture is already running' in m]
        assert ok and len(ok) + len(busy) == 14, answers
        assert fusion.count(r'capture refused: a capture is already running') == len(busy)
        assert 'Traceback' not in fusion.text()
        for c in callers:
            ros.node.destroy_client(c)
    except BaseException:
        print(f'----- {fusion.name} output -----\n{fusion.text()[-6000:]}')
        raise
    finally:
        rig.close()
        fusion.stop()
    assert len(read_dataset(ds)) == 1 + len(ok)
