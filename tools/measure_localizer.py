"""Measure the localiser's CPU cost and memory, and the two-source training time (issue 13).
Run from the checkout:

    PYTHONPATH=. python tools/measure_localizer.py cpu [--ref REV] [--repeat 3] [--modes one,auto]
    PYTHONPATH=. python tools/measure_localizer.py memory   # node RSS around 3 x 10 MiB chunks
    PYTHONPATH=. python tools/measure_localizer.py inproc [--ref REV] [--repeat 5]
    PYTHONPATH=. python tools/measure_localizer.py train [--ref REV] [--repeat 1]

``inproc`` pushes 60 s of two-talker audio (toy head of the tests) through ``SBMLocalizer`` in
this process, in chunks of binaural_capture's default ``block_size`` (100 ms) with an estimate
every 100 ms (10 per second, as the node), BLAS
on one thread as in the node, and prints the CPU seconds per audio second of the one-source
localiser (K=32) and of the automatic one/two-source mode (K=32 + K=100). ``train`` fits GLLiM
on the paper's two-source size (N = 20,000 pairs of the virtual head's 24 x 18 white-noise
grid, K = 100, D = 1536, L = 4, at most 100 EM iterations, the ``tol_gain`` of two-source
training) with the BLAS threads as they are
and prints the wall and CPU time. With ``--ref REV`` (e.g. ``--ref main``) the same
measurement also runs on that git revision's ``sbm_ros`` (``git archive`` into a temporary
folder), interleaved with this checkout's runs, and the outputs are compared: the largest
difference of the estimates (same audio) or of the fitted parameters (same seed). Each figure
is the median over ``--repeat`` runs; the machine may be shared, so repeat and read CPU times.

``cpu`` trains a one-source (K=32) and a two-source (K=100) model on the toy head of the tests,
starts the sbm_localizer node in each of ``--modes`` (``auto0``: automatic mode with
blas_threads 0 = OpenBLAS' automatic threads; ``auto``: automatic, blas_threads 1; ``one``: the
one-source model alone, blas_threads 1); each time it publishes 3 s of audio (warm-up: the
first chunks build the posterior engines), then ``--seconds`` (15) s of audio in
``--chunk-ms`` ms chunks (default: binaural_capture's default ``block_size``, 100 ms) at
real-time pace over DDS and prints the node process's CPU
seconds (all threads: OpenBLAS workers spin-wait between the calls) per audio second, the
median over ``--repeat`` runs. With ``--ref REV`` the node also runs from that revision's
``sbm_ros`` (interleaved with this checkout's runs) and the ratio is printed. ``memory``
starts the sbm_localizer node, publishes three 10 MiB chunks over DDS and prints the node's
resident memory before, at its peak and after.
"""

import os
import sys
import tempfile
import time

SECONDS = 15
WARMUP_S = 3.0      # audio published before the CPU time is measured (cpu)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# (a worker, '_inproc' / '_train', imports sbm_ros from the PYTHONPATH it was given)
sys.path[:0] = ([] if sys.argv[1:2] and sys.argv[1].startswith('_') else [ROOT]) + [
    os.path.join(ROOT, 'test')]


def _models(root):
    import numpy as np
    import synth
    from sbm_ros.apps import cli
    # K = 32 as the paper's one-source model (sbm-train would choose K = 1 on this toy head)
    one, two = os.path.join(root, 'one_k32.npz'), os.path.join(root, 'two.npz')
    if not os.path.exists(one) or not os.path.exists(two):
        ds = os.path.join(root, 'ds')
        if not os.path.isdir(ds):
            synth.make_dataset(ds, np.linspace(-20, 20, 9), np.linspace(-10, 10, 5),
                               duration=0.5)
        assert cli.train_main([ds, '-o', one, '-q', '--max-iter', '20', '-K', '32']) == 0
        assert cli.train_main([ds, '-o', two, '--sources', '2', '--pairs', '3000', '-q',
                               '--max-iter', '10']) == 0
    return one, two


def _default_block():
    """binaural_capture's default ``block_size`` (samples per chunk)."""
    from sbm_ros.nodes.binaural_capture import PARAMS
    return next(int(p.default) for p in PARAMS if p.name == 'block_size')


def _cpu_s(pid):
    from sbm_ros.apps.procstat import cpu_seconds
    return cpu_seconds(pid)


CPU_MODES = {     # name: (automatic?, blas_threads)
    'one': (False, 1), 'auto': (True, 1), 'auto0': (True, 0)}


def _cpu_run(ros, pub, got, domain, models, x, mode, tree, seconds, chunk):
    """One node run: publish ``seconds`` of ``x`` in ``chunk``-sample chunks at real-time pace;
    returns (node CPU s per audio s, sound_directions messages received)."""
    import synth
    from audio_common_msgs.msg import AudioDataStamped
    from rostest_utils import NodeProcess
    from sbm_ros.core.audio_io import float_to_pcm_bytes
    from sbm_ros.nodes.common import ns_to_stamp
    one, two = models
    auto, threads = CPU_MODES[mode]
    params = {'model_path': one, 'blas_threads': threads}
    if auto:
        params.update(model_path_two=two, n_sources=0)
    env = {'PYTHONPATH': os.pathsep.join([tree, os.environ.get('PYTHONPATH', '')])}
    node = NodeProcess('sbm_localizer', domain, params=params, env=env)
    # 'python -m' would put the working directory (this checkout) first on sys.path: the
    # node runs from ``tree`` explicitly, and says which sbm_ros it imported
    assert node.args[1:3] == ['-m', 'sbm_ros.nodes.sbm_localizer'], node.args
    node.args[1:3] = ['-c', f'import sys; sys.path.insert(0, {tree!r}); import sbm_ros; '
                      f'print("sbm_ros from", sbm_ros.__file__, flush=True); '
                      f'from sbm_ros.nodes.sbm_localizer import main; sys.exit(main())']
    with node:
        node.wait_for(r'two-source model' if auto else r'model .*one_k32\.npz',
                      timeout=60, spin=ros.spin_for)
        assert f'sbm_ros from {os.path.join(tree, "sbm_ros")}' in node.text(), node.text()[:300]
        assert ros.wait_for_subscribers(pub)
        ros.spin_for(1.0)
        stamp = 1000 * 10**9
        dt = chunk / synth.RATE
        n_warm = int(WARMUP_S * synth.RATE) // chunk * chunk
        n = min(x.shape[0], n_warm + int(seconds * synth.RATE))

        def play(i0, i1):
            t0 = time.perf_counter()
            for k, i in enumerate(range(i0, i1, chunk)):
                msg = AudioDataStamped()
                msg.header.stamp = ns_to_stamp(stamp + i * 10**9 // synth.RATE)
                msg.audio.data = float_to_pcm_bytes(x[i:i + chunk])
                pub.publish(msg)
                ros.spin_for(max(0.0, t0 + (k + 1) * dt - time.perf_counter()))
        # warm-up: the first chunks build the posterior engines (and numpy's first calls):
        # a one-off cost that would weigh on a 15 s figure but not on an hour
        play(0, n_warm)
        ros.spin_for(0.5)
        del got[:]
        c0 = _cpu_s(node.proc.pid)
        play(n_warm, n)
        ros.spin_for(0.5)
        cpu = _cpu_s(node.proc.pid) - c0
        n -= n_warm
    return cpu / (n / synth.RATE), len(got)


def cpu(argv=()):
    """CPU s per audio s of the node process, per mode (see --modes), optionally with a
    reference revision's sbm_ros run interleaved (--ref) and the ratios printed."""
    import argparse
    import numpy as np
    import synth
    from audio_common_msgs.msg import AudioDataStamped
    from geometry_msgs.msg import PoseArray
    from rostest_utils import RosTestNode
    from sbm_ros.nodes.common import stream_qos
    ap = argparse.ArgumentParser(prog='measure_localizer.py cpu')
    ap.add_argument('--ref', help='git revision measured in the same run (e.g. main)')
    ap.add_argument('--repeat', type=int, default=1, help='runs per mode and tree (median)')
    ap.add_argument('--modes', default='auto0,auto,one',
                    help='comma-separated: one (one-source, blas 1), auto (automatic, blas 1),'
                         ' auto0 (automatic, OpenBLAS automatic threads)')
    ap.add_argument('--seconds', type=float, default=SECONDS, help='audio seconds per run')
    ap.add_argument('--chunk-ms', type=float, default=None,
                    help="chunk length (ms); default: binaural_capture's default block_size")
    a = ap.parse_args(list(argv))
    modes = [m.strip() for m in a.modes.split(',') if m.strip()]
    for m in modes:
        if m not in CPU_MODES:
            ap.error(f'unknown mode {m!r} (one of {", ".join(CPU_MODES)})')
    root = os.path.join(tempfile.gettempdir(), 'sbm_measure_models')
    os.makedirs(root, exist_ok=True)
    models = _models(root)
    x = synth.render(synth.babble(int((a.seconds + WARMUP_S) * synth.RATE), 1), 8.0, 4.0)
    x += 1e-4 * np.random.default_rng(1).normal(size=x.shape)
    if a.chunk_ms is None:
        chunk = _default_block()
    else:
        chunk = max(1, int(round(a.chunk_ms * synth.RATE / 1000)))
    domain = 96
    ros = RosTestNode(domain, 'sbm_measure')
    pub = ros.node.create_publisher(AudioDataStamped, '/audio/audio_stamped',
                                    stream_qos('reliable', 100))
    got = ros.collect(PoseArray, '/sound_directions')
    with tempfile.TemporaryDirectory() as tmp:
        trees = [('this checkout', ROOT)]
        if a.ref:
            trees.append((f'ref {a.ref}', _checkout_of(a.ref, tmp)))
        res = {(m, name): [] for m in modes for name, _ in trees}
        for _ in range(a.repeat):
            for m in modes:
                for name, tree in trees:
                    res[m, name].append(_cpu_run(ros, pub, got, domain, models, x, m, tree,
                                                 a.seconds, chunk))
    ros.close()
    for m in modes:
        med = {}
        for name, _ in trees:
            rs = res[m, name]
            med[name] = float(np.median([r[0] for r in rs]))
            print(f'sbm_localizer node, mode {m} (automatic={CPU_MODES[m][0]}, blas_threads='
                  f'{CPU_MODES[m][1]}), {name}: {med[name]:.4f} CPU s per audio second (runs: '
                  f'{" ".join(f"{r[0]:.4f}" for r in rs)}; sound_directions received: '
                  f'{" ".join(str(r[1]) for r in rs)}; chunks of {chunk} samples)')
        if a.ref:
            print(f'  mode {m}: this checkout / ref = '
                  f'{med["this checkout"] / med[trees[1][0]]:.3f}')


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
        node.wait_for(r'model .*one_k32\.npz: 1 source', timeout=30, spin=ros.spin_for)
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


# ----------------------------------------------------------------- in-process figures

def _inproc_worker(out):
    """One in-process run of this interpreter's sbm_ros: CPU s per audio s and estimates."""
    import numpy as np
    import synth
    from threadpoolctl import threadpool_limits
    from sbm_ros.core.localizer import SBMLocalizer
    from sbm_ros.core.model import SBMModel
    root = os.path.join(tempfile.gettempdir(), 'sbm_measure_models')
    os.makedirs(root, exist_ok=True)
    one, two = _models(root)
    m1, m2 = SBMModel.load(one), SBMModel.load(two)
    block = _default_block()
    sec = 60
    x = (synth.render(synth.babble(sec * synth.RATE, 1), 8.0, 4.0)
         + synth.render(np.roll(synth.babble(sec * synth.RATE, 2), 4000), -12.0, -4.0))
    x += 1e-4 * np.random.default_rng(1).normal(size=x.shape)
    res = {}
    with threadpool_limits(1, user_api='blas'):
        for mode in ('one', 'auto'):
            loc = (SBMLocalizer(m1, model_two=m2, n_sources=0) if mode == 'auto'
                   else SBMLocalizer(m1))
            est = []
            c0 = time.process_time()
            since = 0
            for i in range(0, x.shape[0], block):
                loc.push_audio(x[i:i + block])
                since += x[i:i + block].shape[0]
                if since >= synth.RATE // 10:                      # 10 estimates per second
                    since = 0
                    e = loc.estimate()
                    est.append(np.full(4, np.nan) if e is None else np.concatenate(
                        [s.position for s in e.sources] + [np.full(2, np.nan)] * (2 - len(
                            e.sources))))
            res[mode + '_cpu'] = (time.process_time() - c0) / sec
            res[mode + '_est'] = np.array(est)
    np.savez(out, **res)


def _train_data():
    """(X, Y) of the paper's two-source size, cached in the temporary folder."""
    import numpy as np
    path = os.path.join(tempfile.gettempdir(), 'sbm_measure_models', 'two_source_20k.npz')
    if not os.path.exists(path):
        from sbm_ros.core.dataset import load_recordings, read_dataset, two_source_set
        from sbm_ros.core.features import FeatureConfig
        from sbm_ros.sim import VirtualHead, make_training_set
        from sbm_ros.sim.camera import VirtualCamera
        with tempfile.TemporaryDirectory() as tmp:
            ds = read_dataset(make_training_set(os.path.join(tmp, 'ds'), VirtualHead(),
                                                VirtualCamera.narrow()))
            X, Y = two_source_set(load_recordings(ds, 16000), ds.targets, FeatureConfig(),
                                  n_pairs=20000, seed=0)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        np.savez(path, X=X, Y=Y)
    with np.load(path) as z:
        return z['X'], z['Y']


def _train_worker(out):
    import numpy as np
    from sbm_ros.core import gllim
    X, Y = _train_data()
    # the stopping rule of two-source training (a revision without it: EM to max_iter)
    kw = ({'tol_gain': gllim.TWO_SOURCE_TOL_GAIN} if hasattr(gllim, 'TWO_SOURCE_TOL_GAIN')
          else {})
    c0, w0 = time.process_time(), time.perf_counter()
    g = gllim.GLLiM(n_components=100, max_iter=100, random_state=0, **kw).fit(X, Y)
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    p = g.params_
    np.savez(out, wall=wall, cpu=cpu, n_iter=g.n_iter_, ll=g.lower_bound_, pi=p.pi, c=p.c,
             Gamma=p.Gamma, A=p.A, b=p.b, sigma2=p.sigma2)


def _run_worker(kind, pythonpath):
    """Run a worker in a fresh interpreter with ``pythonpath`` first; returns its npz."""
    import subprocess
    import numpy as np
    fd, out = tempfile.mkstemp(suffix='.npz')
    os.close(fd)
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join([pythonpath, os.path.join(ROOT, 'test')]
                                        + [p for p in [env.get('PYTHONPATH')] if p])
    subprocess.run([sys.executable, os.path.abspath(__file__), '_' + kind, out], env=env,
                   check=True)
    with np.load(out) as z:
        res = {k: z[k] for k in z.files}
    os.remove(out)
    return res


def _checkout_of(rev, tmp):
    import subprocess
    dest = os.path.join(tmp, 'ref')
    os.makedirs(dest)
    arc = subprocess.run(['git', '-C', ROOT, 'archive', rev, 'sbm_ros'], check=True,
                         capture_output=True).stdout
    subprocess.run(['tar', '-x', '-C', dest], input=arc, check=True)
    return dest


def _compare(kind, argv):
    import argparse
    import numpy as np
    ap = argparse.ArgumentParser(prog=f'measure_localizer.py {kind}')
    ap.add_argument('--ref', help='git revision to measure in the same run (e.g. main)')
    ap.add_argument('--repeat', type=int, default=5 if kind == 'inproc' else 1)
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        trees = [('this checkout', ROOT)]
        if a.ref:
            trees.append((f'ref {a.ref}', _checkout_of(a.ref, tmp)))
        if kind == 'train':
            _train_data()
        runs = {name: [] for name, _ in trees}
        for _ in range(a.repeat):
            for name, path in trees:
                runs[name].append(_run_worker(kind, path))
    keys = (('one_cpu', 'one-source CPU s / audio s'), ('auto_cpu', 'automatic CPU s / audio s')
            ) if kind == 'inproc' else (('wall', 'training wall s'), ('cpu', 'training CPU s'))
    for name, rs in runs.items():
        figs = ', '.join(f'{label} {np.median([r[k] for r in rs]):.4f} '
                         f'(runs: {" ".join(f"{r[k]:.4f}" for r in rs)})' for k, label in keys)
        extra = (f', {int(rs[0]["n_iter"])} EM iterations, mean log-lik {float(rs[0]["ll"]):.6f}'
                 if kind == 'train' else '')
        print(f'{name}: {figs}{extra}')
    if a.ref:
        new, ref = runs['this checkout'][0], runs[f'ref {a.ref}'][0]
        if kind == 'inproc':
            for mode in ('one', 'auto'):
                e1, e2 = new[mode + '_est'], ref[mode + '_est']
                same_nan = np.array_equal(np.isnan(e1), np.isnan(e2))
                d = np.nanmax(np.abs(e1 - e2)) if same_nan else np.inf
                print(f'{mode}: {len(e1)} windows, same windows without estimate / with two '
                      f'sources: {same_nan}; max |difference| of the estimates: {d:.3g}')
        else:
            for k in ('pi', 'c', 'Gamma', 'A', 'b', 'sigma2'):
                if new[k].shape != ref[k].shape:
                    print(f'{k}: shapes differ {new[k].shape} vs {ref[k].shape}')
                    continue
                d = np.abs(new[k] - ref[k])
                print(f'{k}: max |difference| {d.max():.3g} (relative to max |{k}| '
                      f'{d.max() / np.abs(ref[k]).max():.3g})')


if __name__ == '__main__':
    cmd = sys.argv[1]
    if cmd in ('_inproc', '_train'):
        (_inproc_worker if cmd == '_inproc' else _train_worker)(sys.argv[2])
    elif cmd in ('inproc', 'train'):
        _compare(cmd, sys.argv[2:])
    else:
        {'cpu': lambda: cpu(sys.argv[2:]), 'memory': memory}[cmd]()
