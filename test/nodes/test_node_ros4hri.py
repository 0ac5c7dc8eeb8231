"""ROS4HRI (REP 155) output over real DDS: sbm_localizer's voices, av_fusion's candidate matches.

sbm_localizer is fed synthetic binaural speech-like audio (test/synth.py, the toy head, a model
trained on it in a second, as in test_node_localizer.py); this process is the microphone, the
camera and the face detector (vision_msgs faces and ROS4HRI faces). Checked: the types of the new
topics, per-voice topics that appear with a voice and disappear when it dies, the voice's TF
frame, the voice id in sound_sources, the ros4hri switch (at start, at runtime, and without
hri_msgs), VOICE <-> FACE matches with both kinds of faces, and bad input (NaN face boxes, rois
outside [0, 1], a flood of face ids and of voice-carrying sound messages).
"""

import math
import os

import numpy as np
import pytest

pytest.importorskip('rclpy', reason='needs ROS 2 (source .dev/env.sh or a ROS install)')
pytest.importorskip('audio_common_msgs.msg', reason='needs audio_common_msgs')
pytest.importorskip('vision_msgs.msg', reason='needs vision_msgs')
pytest.importorskip('hri_msgs.msg', reason='needs hri_msgs (tools/setup.sh overlay)')
pytest.importorskip('tf2_msgs.msg', reason='needs tf2_msgs (tools/setup.sh overlay)')

from audio_common_msgs.msg import AudioData  # noqa: E402
from hri_msgs.msg import IdsList, IdsMatch, NormalizedRegionOfInterest2D  # noqa: E402
from sensor_msgs.msg import CameraInfo  # noqa: E402
from std_msgs.msg import Bool  # noqa: E402
from tf2_msgs.msg import TFMessage  # noqa: E402
from vision_msgs.msg import (Detection2D, Detection2DArray,  # noqa: E402
                             ObjectHypothesisWithPose)

import synth  # noqa: E402
from rostest_utils import NodeProcess, RosTestNode, domain_id_for  # noqa: E402
from sbm_ros.apps import cli  # noqa: E402
from sbm_ros.core.geometry import PinholeCamera, vector_to_direction  # noqa: E402
from sbm_ros.nodes.common import stream_qos  # noqa: E402

from test_node_localizer import Feeder  # noqa: E402

DOMAIN = domain_id_for(__name__)
RATE = synth.RATE
AZ, EL = 8.0, 4.0
W, H = 640, 480
CAM = PinholeCamera.from_fov(W, H, 60.0, 47.0, frame_id='head_camera')
QOS = stream_qos('reliable', 100)


@pytest.fixture(scope='module')
def ros():
    node = RosTestNode(DOMAIN, 'sbm_test_ros4hri')
    yield node
    node.close()


@pytest.fixture(scope='module')
def model(tmp_path_factory):
    root = tmp_path_factory.mktemp('hri')
    ds = str(root / 'ds')
    synth.make_dataset(ds, np.linspace(-20, 20, 9), np.linspace(-10, 10, 5), duration=0.5)
    path = str(root / 'deg.npz')
    assert cli.train_main([ds, '-o', path, '-K', '6', '-q']) == 0
    return path


def topics(ros, prefix='/humans/'):
    return {n: t for n, t in ros.node.get_topic_names_and_types() if n.startswith(prefix)}


def voice_topics(ros, vid):
    """Topics of voice ``vid`` that still have a publisher (a destroyed publisher's topic may
    linger in the graph cache while a subscriber of ours is left on it)."""
    out = {}
    for suffix in ('is_speaking', 'audio'):
        name = f'/humans/voices/{vid}/{suffix}'
        if ros.node.get_publishers_info_by_topic(name):
            out[name] = topics(ros).get(name)
    return out


def quiet(seconds, seed=5):
    return 1e-4 * np.random.default_rng(seed).normal(size=(int(seconds * RATE), 2))


def talker(seconds, seed):
    x = synth.render(synth.babble(int(seconds * RATE), seed), AZ, EL)
    return x + 1e-4 * np.random.default_rng(seed).normal(size=x.shape)


# ------------------------------------------------------------------------------ localiser
def test_voice_topics_appear_and_disappear_with_the_track(ros, model):
    loc = NodeProcess('sbm_localizer', DOMAIN, name='sbm_localizer', params={
        'model_path': model, 'n_sources': 1, 'ros4hri': True, 'voice_vad': 'none',
        'voice_death_timeout_s': 1.0, 'log_throttle_s': 0.0, 'head_frame_id': 'head'})
    tracked = ros.collect(IdsList, '/humans/voices/tracked', QOS)
    tf = ros.collect(TFMessage, '/tf', QOS)
    srcs = ros.collect(Detection2DArray, '/sound_sources', QOS)
    with loc:
        loc.wait_for('ROS4HRI output on', 15, spin=ros.spin_for)
        feeder = Feeder(ros)
        feeder.info()
        feeder.camera(CAM)
        assert ros.spin_until(lambda: '/humans/voices/tracked' in topics(ros), 10)
        assert topics(ros)['/humans/voices/tracked'] == ['hri_msgs/msg/IdsList']
        assert not [t for t in topics(ros) if t.count('/') > 3]     # no voice yet
        feeder.camera(CAM)
        feeder.send(talker(2.0, 1))
        assert ros.spin_until(lambda: any(m.ids for m in tracked), 5), loc.text()[-3000:]
        vid = next(m.ids[0] for m in tracked if m.ids)
        assert vid == 'v1', [list(m.ids) for m in tracked if m.ids]
        assert ros.spin_until(lambda: len(voice_topics(ros, vid)) == 2, 5)
        assert voice_topics(ros, vid) == {
            f'/humans/voices/{vid}/is_speaking': ['std_msgs/msg/Bool'],
            f'/humans/voices/{vid}/audio': ['audio_common_msgs/msg/AudioData']}
        speaking = ros.collect(Bool, f'/humans/voices/{vid}/is_speaking', QOS)
        audio = ros.collect(AudioData, f'/humans/voices/{vid}/audio', QOS)
        ros.spin_for(0.5)
        feeder.camera(CAM)
        feeder.send(talker(1.0, 2))
        assert ros.spin_until(lambda: any(m.data for m in speaking) and audio, 5)
        # the ear mix of one estimate period: 1600 samples of 16-bit mono at 10 estimates/s
        assert {len(a.data) for a in audio} == {2 * RATE // 10}, {len(a.data) for a in audio}
        ros.spin_for(0.3)
        peak = max(int(np.abs(np.frombuffer(bytes(a.data), '<i2').astype(int)).max())
                   for a in audio)
        assert peak > 300, peak                   # speech, not the noise floor
        # TF: voice_v1 in the head frame, along the talker's direction, at 1 m
        frames = [t for m in tf for t in m.transforms if t.child_frame_id == f'voice_{vid}']
        assert frames and frames[-1].header.frame_id == 'head'
        tr = frames[-1].transform.translation
        assert math.isclose(math.hypot(tr.x, tr.y, tr.z), 1.0, rel_tol=1e-6)
        az, el = vector_to_direction([tr.x, tr.y, tr.z])
        assert abs(az - AZ) < 2.5 and abs(el - EL) < 3.5, (az, el)
        # the voice id rides along in sound_sources (results[0] unchanged)
        hyps = [d.results for m in srcs for d in m.detections]
        assert all(r[0].hypothesis.class_id == 'sound_source' for r in hyps)
        assert any(len(r) > 1 and r[1].hypothesis.class_id == f"voice:{vid}" for r in hyps), \
            (len(srcs), [[h.hypothesis.class_id for h in r] for r in hyps][-5:])
        # silence (noise floor only) for longer than the death timeout: the voice ends
        n_speaking = len(speaking)
        feeder.send(quiet(1.8), speed=6.0)
        assert ros.spin_until(lambda: tracked and not tracked[-1].ids, 5), \
            [list(m.ids) for m in tracked[-5:]]
        assert not speaking[-1].data or len(speaking) == n_speaking
        assert ros.spin_until(lambda: not voice_topics(ros, vid), 5), voice_topics(ros, vid)
        # a new talk gets a new voice id
        feeder.send(talker(1.5, 3))
        assert ros.spin_until(lambda: tracked and 'v2' in tracked[-1].ids, 5), \
            [list(m.ids) for m in tracked[-5:]]
        assert 'Traceback' not in loc.text()


def test_ros4hri_switch_at_runtime(ros, model):
    loc = NodeProcess('sbm_localizer', DOMAIN, name='sbm_localizer_sw', params={
        'model_path': model, 'n_sources': 1, 'voice_vad': 'own'})
    with loc:
        loc.wait_for('model .*deg\\.npz', 15, spin=ros.spin_for)
        ros.spin_for(1.0)
        pubs = ros.node.get_publishers_info_by_topic('/humans/voices/tracked')
        assert not [p for p in pubs if p.node_name == 'sbm_localizer_sw']     # off by default
        assert 'ROS4HRI' not in loc.text()
        assert ros.set_parameters('sbm_localizer_sw', {'ros4hri': True}).successful
        loc.wait_for('ROS4HRI output on', 5, spin=ros.spin_for)
        assert ros.spin_until(lambda: any(
            p.node_name == 'sbm_localizer_sw'
            for p in ros.node.get_publishers_info_by_topic('/humans/voices/tracked')), 5)
        assert ros.set_parameters('sbm_localizer_sw', {'voice_vad': 'bogus'}).successful is False
        assert ros.set_parameters('sbm_localizer_sw', {'ros4hri': False}).successful
        assert ros.spin_until(lambda: not any(
            p.node_name == 'sbm_localizer_sw'
            for p in ros.node.get_publishers_info_by_topic('/humans/voices/tracked')), 5)


def test_without_hri_msgs_the_output_is_off_and_says_why(ros, model, tmp_path):
    hide = tmp_path / 'hide' / 'hri_msgs'
    hide.mkdir(parents=True)
    (hide / '__init__.py').write_text("raise ImportError('hri_msgs hidden by the test')\n")
    env = {'PYTHONPATH': f"{tmp_path / 'hide'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    loc = NodeProcess('sbm_localizer', DOMAIN, name='sbm_localizer_nohri', env=env, params={
        'model_path': model, 'n_sources': 1, 'ros4hri': True})
    with loc:
        loc.wait_for('ROS4HRI output is OFF although ros4hri is true: hri_msgs not installed',
                     15, spin=ros.spin_for)
        loc.wait_for('model .*deg\\.npz', 5, spin=ros.spin_for)
        ros.spin_for(0.5)
        assert loc.alive and loc.count('ROS4HRI output is OFF') == 1


# ------------------------------------------------------------------------------ av_fusion
def camera_info():
    m = CameraInfo(width=W, height=H)
    m.header.frame_id = 'cam'
    m.k = [float(v) for v in CAM.K.reshape(-1)]
    return m


def sounds_msg(stamp, items):
    """items: (u, v, voice id or None)"""
    arr = Detection2DArray()
    arr.header.stamp, arr.header.frame_id = stamp, 'cam'
    for k, (u, v, vid) in enumerate(items):
        d = Detection2D(id=f'source_{k}')
        d.bbox.center.position.x, d.bbox.center.position.y = float(u), float(v)
        d.bbox.size_x = d.bbox.size_y = 40.0
        h = ObjectHypothesisWithPose()
        h.hypothesis.class_id, h.hypothesis.score = 'sound_source', 0.9
        cov = [0.0] * 36
        cov[0] = cov[7] = 100.0
        h.pose.covariance = cov
        d.results.append(h)
        if vid:
            h2 = ObjectHypothesisWithPose()
            h2.hypothesis.class_id, h2.hypothesis.score = f'voice:{vid}', 1.0
            d.results.append(h2)
        arr.detections.append(d)
    return arr


def faces_msg(stamp, boxes):
    arr = Detection2DArray()
    arr.header.stamp, arr.header.frame_id = stamp, 'cam'
    for fid, u, v, w, h in boxes:
        d = Detection2D(id=fid)
        d.bbox.center.position.x, d.bbox.center.position.y = float(u), float(v)
        d.bbox.size_x, d.bbox.size_y = float(w), float(h)
        arr.detections.append(d)
    return arr


def mouth(u, v, h):
    return u, v + 0.25 * h


@pytest.fixture(scope='module')
def fusion(ros, tmp_path_factory):
    p = NodeProcess('av_fusion', DOMAIN, name='av_fusion_hri', params={
        'ros4hri': True, 'log_throttle_s': 0.0,
        'dataset_dir': str(tmp_path_factory.mktemp('fds')), 'max_faces': 20})
    n = ros.node
    pubs = {
        'ci': n.create_publisher(CameraInfo, 'camera_info', 5),
        'faces': n.create_publisher(Detection2DArray, 'faces', 10),
        'sounds': n.create_publisher(Detection2DArray, 'sound_sources', 100),
        'tracked': n.create_publisher(IdsList, '/humans/faces/tracked', 10),
    }
    matches = ros.collect(IdsMatch, '/humans/candidate_matches', QOS)
    with p:
        p.wait_for('ROS4HRI on', 15, spin=ros.spin_for)
        for pub in pubs.values():
            assert ros.wait_for_subscribers(pub), pub.topic_name
        pubs['ci'].publish(camera_info())
        ros.spin_for(0.2)
        yield p, pubs, matches


def test_candidate_matches_with_vision_msgs_faces(ros, fusion):
    p, pubs, matches = fusion
    assert topics(ros)['/humans/candidate_matches'] == ['hri_msgs/msg/IdsMatch']
    faces = [('alice', 200, 220, 90, 110), ('bob', 450, 230, 90, 110)]
    del matches[:]
    for _ in range(5):
        stamp = ros.node.get_clock().now().to_msg()
        pubs['ci'].publish(camera_info())
        pubs['faces'].publish(faces_msg(stamp, faces))
        ros.spin_for(0.05)
        pubs['sounds'].publish(sounds_msg(stamp, [(*mouth(450, 230, 110), 'v7'),
                                                  (*mouth(200, 220, 110), None)]))
        ros.spin_for(0.1)
    assert ros.spin_until(lambda: len(matches) >= 3, 5), p.text()[-2000:]
    assert {(m.id1, m.id1_type, m.id2, m.id2_type) for m in matches} == {
        ('v7', IdsMatch.VOICE, 'bob', IdsMatch.FACE)}       # no voice id: no candidate match
    assert all(0.8 < m.confidence <= 0.9 + 1e-6 for m in matches), [m.confidence for m in matches]
    # NaN face boxes: refused with a warning, the others still matched
    del matches[:]
    stamp = ros.node.get_clock().now().to_msg()
    pubs['faces'].publish(faces_msg(stamp, [('nan', float('nan'), 200, 80, 80)] + faces))
    ros.spin_for(0.05)
    pubs['sounds'].publish(sounds_msg(stamp, [(*mouth(200, 220, 110), 'v8')]))
    p.wait_for('non-finite box', 5, spin=ros.spin_for)
    assert ros.spin_until(lambda: matches, 5)
    assert (matches[-1].id1, matches[-1].id2) == ('v8', 'alice')


def roi(stamp, box, c=0.9):
    xmin, ymin, xmax, ymax = box
    m = NormalizedRegionOfInterest2D(xmin=xmin, ymin=ymin, xmax=xmax, ymax=ymax, c=c)
    m.header.stamp, m.header.frame_id = stamp, 'cam'
    return m


def test_candidate_matches_with_ros4hri_faces_and_bad_rois(ros, fusion):
    p, pubs, matches = fusion
    n = ros.node
    # face 'f1' at pixels (150..250, 160..280), 'f2' with a roi outside [0, 1], 'f3' NaN
    boxes = {'f1': (150 / W, 160 / H, 250 / W, 280 / H), 'f2': (0.5, 0.2, 1.6, 0.5),
             'f3': (float('nan'), 0.1, 0.2, 0.3)}
    roi_pubs = {f: n.create_publisher(NormalizedRegionOfInterest2D, f'/humans/faces/{f}/roi',
                                      10) for f in boxes}
    stamp = n.get_clock().now().to_msg()
    pubs['tracked'].publish(IdsList(ids=list(boxes), header=pubs_header(stamp)))
    for f, pub in roi_pubs.items():
        assert ros.wait_for_subscribers(pub), f      # the node follows every tracked face
    del matches[:]
    for _ in range(5):
        stamp = n.get_clock().now().to_msg()
        pubs['ci'].publish(camera_info())
        for f, pub in roi_pubs.items():
            pub.publish(roi(stamp, boxes[f]))
        ros.spin_for(0.05)
        pubs['tracked'].publish(IdsList(ids=list(boxes), header=pubs_header(stamp)))
        ros.spin_for(0.05)
        pubs['sounds'].publish(sounds_msg(stamp, [(*mouth(200, 220, 120), 'v3'),
                                                  (0.8 * W, 0.35 * H, 'v4')]))
        ros.spin_for(0.1)
    assert ros.spin_until(lambda: len(matches) >= 3, 5), p.text()[-2000:]
    assert {(m.id1, m.id2) for m in matches} == {('v3', 'f1')}
    p.wait_for(r"ignored the roi of \['f2', 'f3'\]", 5, spin=ros.spin_for)
    # a face that leaves 'tracked' loses its roi subscription
    pubs['tracked'].publish(IdsList(ids=['f1'], header=pubs_header(stamp)))
    assert ros.spin_until(lambda: roi_pubs['f2'].get_subscription_count() == 0, 5)
    assert roi_pubs['f1'].get_subscription_count() == 1
    # a flood of face ids: at most max_faces (20) are followed, the node stays responsive
    pubs['tracked'].publish(IdsList(ids=[f'g{i}' for i in range(3000)],
                                    header=pubs_header(stamp)))
    p.wait_for(r'3000 face ids, only the first 20 are followed', 5, spin=ros.spin_for)
    # a flood of sound messages with ever new voice ids, then a normal exchange still works
    for i in range(300):
        pubs['sounds'].publish(sounds_msg(n.get_clock().now().to_msg(),
                                          [(320.0, 240.0, f'x{i}')]))
    ros.spin_for(0.5)
    del matches[:]
    faces = [('alice', 200, 220, 90, 110)]
    for _ in range(3):
        stamp = n.get_clock().now().to_msg()
        pubs['faces'].publish(faces_msg(stamp, faces))
        ros.spin_for(0.05)
        pubs['sounds'].publish(sounds_msg(stamp, [(*mouth(200, 220, 110), 'v9')]))
        ros.spin_for(0.1)
    assert ros.spin_until(lambda: any(m.id1 == 'v9' and m.id2 == 'alice' for m in matches), 5)
    assert p.alive and 'Traceback' not in p.text()


def pubs_header(stamp):
    from std_msgs.msg import Header
    return Header(stamp=stamp, frame_id='cam')
