"""Measure the localiser's CPU cost and memory (issue 13). Run from the checkout:

    PYTHONPATH=. python tools/measure_localizer.py cpu      # CPU s per audio s, auto mode
    PYTHONPATH=. python tools/measure_localizer.py memory   # node RSS around 3 x 10 MiB chunks

``cpu`` trains a one-source (K=32) and a two-source (K=100) model on the toy head of the tests,
starts the sbm_localizer node in automatic mode (blas_threads 0 = OpenBLAS' automatic threads,
then 1), publishes 15 s of audio in 50 ms chunks at real-time pace over DDS and prints the node
process's CPU seconds (all threads: OpenBLAS workers spin-wait between the calls) per audio
second. ``memory`` starts the sbm_localizer node, publishes three 10 MiB chunks over DDS and
prints the node's resident memory before, at its peak and after.
"""

import os
import sys
import tempfile
import time

SECONDS = 15
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, 'test')]


def _models(root):
    import numpy as np
    import synth
    from sbm_ros.apps import cli
    one, two = os.path.join(root, 'one.npz'), os.path.join(root, 'two.npz')
    if not os.path.exists(two):
        ds = os.path.join(root, 'ds')
        synth.make_dataset(ds, np.linspace(-20, 20, 9), np.linspace(-10, 10, 5), duration=0.5)
        assert cli.train_main([ds, '-o', one, '-q', '--max-iter', '20']) == 0
        assert cli.train_main([ds, '-o', two, '--sources', '2', '--pairs', '3000', '-q',
                               '--max-iter', '10']) == 0
    return one, two


def _cpu_s(pid):
    with open(f'/proc/{pid}/stat') as fh:
        f = fh.read().rsplit(')', 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf('SC_CLK_TCK')      # utime + stime


def cpu():
    """CPU s per audio s of the node process in automatic mode, blas_threads 0 and 1."""
    import numpy as np
    import synth
    from audio_common_msgs.msg import AudioDataStamped
    from rostest_utils import NodeProcess, RosTestNode
    from sbm_ros.core.audio_io import float_to_pcm_bytes
    from sbm_ros.nodes.common import ns_to_stamp, stream_qos
    root = os.path.join(tempfile.gettempdir(), 'sbm_measure_models')
    os.makedirs(root, exist_ok=True)
    one, two = _models(root)
    x = synth.render(synth.babble(SECONDS * synth.RATE, 1), 8.0, 4.0)
    x += 1e-4 * np.random.default_rng(1).normal(size=x.shape)
    domain = 96
    ros = RosTestNode(domain, 'sbm_measure')
    pub = ros.node.create_publisher(AudioDataStamped, '/audio/audio_stamped',
                                    stream_qos('reliable', 100))
    for threads in (0, 1):
        node = NodeProcess('sbm_localizer', domain, params={
            'model_path': one, 'model_path_two': two, 'n_sources': 0, 'blas_threads': threads})
        with node:
            node.wait_for(r'two-source model', timeout=30, spin=ros.spin_for)
            assert ros.wait_for_subscribers(pub)
            ros.spin_for(1.0)
            c0, t0 = _cpu_s(node.proc.pid), time.perf_counter()
            stamp = 1000 * 10**9
            for k, i in enumerate(range(0, x.shape[0], 800)):
                msg = AudioDataStamped()
                msg.header.stamp = ns_to_stamp(stamp + i * 10**9 // synth.RATE)
                msg.audio.data = float_to_pcm_bytes(x[i:i + 800])
                pub.publish(msg)
                ros.spin_for(max(0.0, t0 + (k + 1) * 0.05 - time.perf_counter()))
            ros.spin_for(0.5)
            cpu = _cpu_s(node.proc.pid) - c0
            print(f'sbm_localizer node, automatic mode, blas_threads={threads}: '
                  f'{cpu / SECONDS:.3f} CPU s per audio second')
    ros.close()


def _rss(pid, key='VmRSS'):
    with open(f'/proc/{pid}/status') as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith(key)) / 1024


def memory():
    from audio_common_msgs.msg import AudioDataStamped
    from rostest_utils import NodeProcess, RosTestNode
    from sbm_ros.nodes.common import ns_to_stamp, stream_qos
    root = os.path.join(tempfile.gettempdir(), 'sbm_measure_models')
    os.makedirs(root, exist_ok=True)
    one, _ = _models(root)
    domain = 97
    ros = RosTestNode(domain, 'sbm_measure')
    pub = ros.node.create_publisher(AudioDataStamped, '/audio/audio_stamped',
                                    stream_qos('reliable', 100))
    node = NodeProcess('sbm_localizer', domain, params={'model_path': one})
    with node:
        node.wait_for(r'model .*one\.npz: 1 source', timeout=30, spin=ros.spin_for)
        assert ros.wait_for_subscribers(pub)
        ros.spin_for(2.0)
        before = _rss(node.proc.pid)
        import synth
        from sbm_ros.core.audio_io import float_to_pcm_bytes
        x = synth.render(synth.babble(synth.RATE * 4, 1), 8.0, 4.0)     # speech-like, 4 s
        payload = (float_to_pcm_bytes(x) * 41)[:10 * 2**20]             # 10 MiB, 164 s
        t = 1000 * 10**9
        for _ in range(3):
            msg = AudioDataStamped()
            msg.header.stamp = ns_to_stamp(t)
            msg.audio.data = payload
            pub.publish(msg)
            t += 10 * 2**20 // 4 * 10**9 // 16000
            ros.spin_for(5.0)
        ros.spin_for(15.0)
        print(f'sbm_localizer RSS: {before:.0f} MB before, peak {_rss(node.proc.pid, "VmHWM"):.0f}'
              f' MB, {_rss(node.proc.pid):.0f} MB after three 10 MiB chunks')
    ros.close()


if __name__ == '__main__':
    {'cpu': cpu, 'memory': memory}[sys.argv[1]]()
