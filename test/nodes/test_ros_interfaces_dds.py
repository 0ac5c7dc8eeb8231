"""Smoke test of the ROS 2 environment: two processes exchange the interface types we use.

On a machine without ROS this exercises tools/setup.sh's environment (pip-wheel rclpy, Fast DDS,
and the development-only audio_common_msgs / vision_msgs overlay); on a ROS install, the real
packages.  Skipped when rclpy or the message packages cannot be imported.
"""

import os
import subprocess
import sys
import textwrap
import uuid

import pytest

PUBLISHER = textwrap.dedent('''
    import sys, time
    import rclpy
    from audio_common_msgs.msg import AudioDataStamped
    from vision_msgs.msg import Detection2D, Detection2DArray, ObjectHypothesisWithPose
    prefix, seconds = sys.argv[1], float(sys.argv[2])
    rclpy.init()
    node = rclpy.create_node('sbm_smoke_pub')
    pa = node.create_publisher(AudioDataStamped, prefix + '/audio', 10)
    pd = node.create_publisher(Detection2DArray, prefix + '/detections', 10)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        a = AudioDataStamped()
        a.header.frame_id = 'head'
        a.audio.data = bytes(range(16))
        d = Detection2DArray()
        det = Detection2D(id='face_1')
        det.bbox.center.position.x = 320.5
        det.bbox.size_x = 40.0
        hyp = ObjectHypothesisWithPose()
        hyp.hypothesis.class_id = 'face'
        hyp.hypothesis.score = 0.75
        hyp.pose.pose.position.z = 2.0
        det.results.append(hyp)
        d.detections.append(det)
        pa.publish(a)
        pd.publish(d)
        rclpy.spin_once(node, timeout_sec=0.05)
    node.destroy_node()
    rclpy.try_shutdown()
''')

SUBSCRIBER = textwrap.dedent('''
    import sys, time
    import rclpy
    from audio_common_msgs.msg import AudioDataStamped
    from vision_msgs.msg import Detection2DArray
    prefix = sys.argv[1]
    rclpy.init()
    node = rclpy.create_node('sbm_smoke_sub')
    got = {}
    node.create_subscription(AudioDataStamped, prefix + '/audio',
                             lambda m: got.setdefault('audio', m), 10)
    node.create_subscription(Detection2DArray, prefix + '/detections',
                             lambda m: got.setdefault('det', m), 10)
    end = time.monotonic() + 20.0
    while time.monotonic() < end and len(got) < 2:
        rclpy.spin_once(node, timeout_sec=0.1)
    a, d = got['audio'], got['det']
    det = d.detections[0]
    hyp = det.results[0]
    print(bytes(a.audio.data).hex(), a.header.frame_id, det.id, det.bbox.center.position.x,
          det.bbox.size_x, hyp.hypothesis.class_id, hyp.hypothesis.score,
          hyp.pose.pose.position.z)
    node.destroy_node()
    rclpy.try_shutdown()
''')


def test_two_processes_exchange_audio_and_detections():
    check = subprocess.run(
        [sys.executable, '-c',
         'import rclpy, audio_common_msgs.msg, vision_msgs.msg'],
        capture_output=True, text=True, timeout=60)
    if check.returncode != 0:
        pytest.skip('ROS 2 environment not available (source .dev/env.sh or a ROS install): '
                    + check.stderr.strip().splitlines()[-1])
    prefix = '/sbm_smoke_' + uuid.uuid4().hex[:8]
    env = dict(os.environ)
    sub = subprocess.Popen([sys.executable, '-c', SUBSCRIBER, prefix], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pub = subprocess.Popen([sys.executable, '-c', PUBLISHER, prefix, '25'], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = sub.communicate(timeout=30)
    finally:
        pub.kill()
        pub.communicate()
        if sub.poll() is None:
            sub.kill()
    assert sub.returncode == 0, err
    assert out.split() == [bytes(range(16)).hex(), 'head', 'face_1', '320.5', '40.0', 'face',
                           '0.75', '2.0']
