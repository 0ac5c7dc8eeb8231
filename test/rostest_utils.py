"""Helpers for node tests over real DDS: nodes as subprocesses, a test node in pytest.

* :class:`NodeProcess` starts ``python -m sbm_ros.nodes.<module> --ros-args ...`` in its own
  process group with stdout/stderr in files (no pipe can fill up), with ``ROS_DOMAIN_ID`` of the
  test module, colour-free unbuffered logging, and is always killed: ``stop()`` (SIGINT, then
  SIGKILL of the group), an ``atexit`` hook for anything still running, and
  ``PR_SET_PDEATHSIG`` (Linux) so a killed pytest does not leave nodes behind.
* :class:`RosTestNode` is an rclpy node in its own context (domain id given explicitly) with
  an executor to spin for a while or until a condition holds, and subscription helpers that
  collect messages into lists.
* :func:`domain_id_for` gives each test module its own DDS domain: consecutive ids, one per
  DDS test module, in a block placed by the checkout path and shifted by a ``ROS_DOMAIN_ID``
  set in the environment, so modules never share a domain, checkouts do not talk to each other,
  and two suites on one machine never share a domain: each id is claimed with a machine-wide
  lock file held until the test process exits (a taken id moves on to the next free one);
  across machines on one network, give the suites ``ROS_DOMAIN_ID`` values that differ by at
  least the number of DDS test modules.
"""

from __future__ import annotations

import atexit
import ctypes
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import zlib
from typing import Callable, Dict, Iterable, List, Optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_RUNNING: "set[NodeProcess]" = set()


_DOMAIN_LO, _DOMAIN_SPAN = 20, 82   # ids in [20, 101]: above 101 the DDS ports may collide
#                                    with the Linux ephemeral port range


def _dds_test_modules() -> List[str]:
    """The test modules (in ``test/`` and its sub-folders) that take a domain from
    :func:`domain_id_for`, sorted by name."""
    here = os.path.dirname(os.path.abspath(__file__))
    out = []
    for folder, dirs, files in os.walk(here):
        dirs[:] = [d for d in dirs if not d.startswith(('.', '__'))]
        for f in files:
            if f.startswith('test_') and f.endswith('.py'):
                try:
                    with open(os.path.join(folder, f), encoding='utf-8') as fh:
                        if 'domain_id_for(' in fh.read():
                            out.append(f[:-3])
                except OSError:
                    pass
    return sorted(out)


_CLAIMED: Dict[tuple, int] = {}   # (module name, base) -> domain id claimed by this process
_LOCKS: Dict[int, int] = {}       # domain id -> open lock file descriptor (held until exit)


def _claim(first: int) -> int:
    """The first domain id from ``first`` on (wrapping in the span) whose machine-wide lock
    file this process can take: two test suites on one machine (two checkouts, a CI job and a
    developer) then never share a DDS domain, whatever their paths and ``ROS_DOMAIN_ID``. The
    lock (``flock`` on ``$TMPDIR/sbm_ros-dds-domain-<id>.lock``) is released when the process
    exits, even when it is killed. Without ``fcntl`` (not Linux/macOS) ``first`` is used."""
    try:
        import fcntl
    except ImportError:
        return first
    lock_dir = tempfile.gettempdir()
    for k in range(_DOMAIN_SPAN):
        did = _DOMAIN_LO + (first - _DOMAIN_LO + k) % _DOMAIN_SPAN
        if did in _LOCKS:
            continue
        path = os.path.join(lock_dir, f'sbm_ros-dds-domain-{did}.lock')
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError:
            return first
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        _LOCKS[did] = fd
        return did
    return first


def domain_id_for(name: str, environ: Optional[Dict[str, str]] = None) -> int:
    """The DDS domain id in [20, 101] of a test module (``__name__``).

    ``20 + (base + crc32(checkout path) + index) % 82``: ``index`` is the module's position
    among the DDS test modules of this directory (distinct for each, so the modules of one
    suite never share a domain; another name gets a hash), the checkout path separates
    checkouts, and ``base`` is ``ROS_DOMAIN_ID`` from the environment when it is set (else 0):
    two suites run from the same path (CI jobs, containers on the host network) are apart when
    their ``ROS_DOMAIN_ID`` differ by at least the number of DDS test modules. On one machine
    the id is then claimed with a lock file (:func:`_claim`): when another process (another
    suite, another checkout) holds it, the next free id is used, so concurrent suites never
    share a domain. The same name always gets the same id within a process.
    """
    env = os.environ if environ is None else environ
    raw = str(env.get('ROS_DOMAIN_ID', '') or '').strip()
    try:
        base = int(raw) if raw else 0
    except ValueError:
        raise ValueError(f'ROS_DOMAIN_ID={raw!r} is not an integer') from None
    short = name.rsplit('.', 1)[-1]
    mods = _dds_test_modules()
    index = mods.index(short) if short in mods else len(mods) + zlib.crc32(short.encode())
    if (short, base) in _CLAIMED:
        return _CLAIMED[(short, base)]
    first = _DOMAIN_LO + (base + zlib.crc32(ROOT.encode()) + index) % _DOMAIN_SPAN
    _CLAIMED[(short, base)] = did = _claim(first)
    return did


def _param_text(value) -> str:
    """A value as ROS 2 command-line YAML."""
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return json.dumps(list(value))
    return json.dumps(str(value))      # double-quoted YAML string ('' and '1' stay strings)


def node_env(domain_id: int, extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    env = dict(os.environ)
    env.update({
        'ROS_DOMAIN_ID': str(domain_id),
        'PYTHONUNBUFFERED': '1',
        'RCUTILS_LOGGING_BUFFERED_STREAM': '0',
        'RCUTILS_COLORIZED_OUTPUT': '0',
        'RCUTILS_CONSOLE_OUTPUT_FORMAT': '[{severity}] [{name}]: {message}',
    })
    env.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    pp = env.get('PYTHONPATH', '')
    if ROOT not in pp.split(os.pathsep):
        env['PYTHONPATH'] = ROOT + (os.pathsep + pp if pp else '')
    if extra:
        env.update(extra)
    return env


def _die_with_parent():  # runs in the child between fork and exec
    try:
        ctypes.CDLL('libc.so.6', use_errno=True).prctl(1, int(signal.SIGKILL))  # PDEATHSIG
    except OSError:
        pass


class NodeProcess:
    """One node started as a subprocess; use as a context manager or call ``stop()``."""

    def __init__(self, module: str, domain_id: int, params: Optional[dict] = None,
                 remaps: Optional[dict] = None, name: Optional[str] = None,
                 env: Optional[Dict[str, str]] = None, log_dir: Optional[str] = None,
                 log_level: str = 'info'):
        self.module = module
        self.name = name or module
        args = [sys.executable, '-m', f'sbm_ros.nodes.{module}', '--ros-args',
                '--log-level', log_level]
        if name:
            args += ['-r', f'__node:={name}']
        for k, v in (params or {}).items():
            args += ['-p', f'{k}:={_param_text(v)}']
        for k, v in (remaps or {}).items():
            args += ['-r', f'{k}:={v}']
        self.args = args
        self.env = node_env(domain_id, env)
        self._dir = log_dir or tempfile.mkdtemp(prefix=f'sbm_{self.name}_')
        self.env.setdefault('ROS_LOG_DIR', os.path.join(self._dir, 'ros_log'))
        self.out_path = os.path.join(self._dir, f'{self.name}.out')
        self.proc: Optional[subprocess.Popen] = None

    def start(self) -> 'NodeProcess':
        self._out = open(self.out_path, 'wb')
        kw = {'preexec_fn': _die_with_parent} if sys.platform.startswith('linux') else {}
        self.proc = subprocess.Popen(self.args, env=self.env, stdout=self._out,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True, cwd=ROOT, **kw)
        _RUNNING.add(self)
        return self

    def __enter__(self):
        return self.start() if self.proc is None else self

    def __exit__(self, *exc):
        self.stop()
        return False

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def text(self) -> str:
        """Everything the node printed so far (stdout and stderr, i.e. its log)."""
        try:
            with open(self.out_path, 'rb') as fh:
                return fh.read().decode('utf-8', 'replace')
        except OSError:
            return ''

    def count(self, pattern: str) -> int:
        return len(re.findall(pattern, self.text()))

    def wait_for(self, pattern: str, timeout: float = 10.0, spin: Optional[Callable] = None,
                 start: int = 0) -> str:
        """Wait until ``pattern`` (regex) appears in the output after character ``start``;
        ``spin(dt)`` is called while waiting (to keep a test node responsive)."""
        deadline = time.monotonic() + timeout
        rx = re.compile(pattern)
        while True:
            txt = self.text()
            m = rx.search(txt, start)
            if m:
                return m.group(0)
            if not self.alive:
                raise AssertionError(f'{self.name} exited (code {self.proc.returncode}) before '
                                     f'printing {pattern!r}; output:\n{txt[-4000:]}')
            if time.monotonic() > deadline:
                raise AssertionError(f'{self.name}: no {pattern!r} within {timeout} s; '
                                     f'output:\n{txt[-4000:]}')
            if spin is not None:
                spin(0.05)
            else:
                time.sleep(0.05)

    def stop(self, timeout: float = 5.0) -> Optional[int]:
        """SIGINT (clean shutdown), then SIGKILL of the whole process group."""
        p = self.proc
        if p is None:
            return None
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGINT)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(p.pid, signal.SIGKILL)     # stragglers of the group, if any
        except (ProcessLookupError, PermissionError):
            pass
        try:
            p.wait(2.0)
        except subprocess.TimeoutExpired:
            pass
        _RUNNING.discard(self)
        try:
            self._out.close()
        except (AttributeError, OSError):
            pass
        return p.returncode


@atexit.register
def _kill_all():
    for p in list(_RUNNING):
        try:
            p.stop(timeout=1.0)
        except Exception:  # noqa: BLE001
            pass


class RosTestNode:
    """A node in the pytest process, in its own rclpy context on ``domain_id``."""

    def __init__(self, domain_id: int, name: str = 'sbm_test'):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        self.rclpy = rclpy
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=int(domain_id))
        self.node = rclpy.create_node(f'{name}_{os.getpid()}', context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

    def spin_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return
            self.executor.spin_once(timeout_sec=min(left, 0.05))

    def spin_until(self, predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
        end = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > end:
                return False
            self.executor.spin_once(timeout_sec=0.05)
        return True

    def collect(self, msg_type, topic: str, qos=10) -> List:
        """Subscribe ``topic`` and return the list the messages are appended to."""
        out: List = []
        self.node.create_subscription(msg_type, topic, out.append, qos)
        return out

    def wait_for_subscribers(self, publisher, n: int = 1, timeout: float = 10.0) -> bool:
        return self.spin_until(lambda: publisher.get_subscription_count() >= n, timeout)

    def set_parameters(self, node_name: str, params: Dict[str, object],
                       timeout: float = 10.0):
        """SetParametersAtomically on ``node_name``; returns the SetParametersResult."""
        from rcl_interfaces.msg import Parameter as ParamMsg
        from rcl_interfaces.srv import SetParametersAtomically
        from rclpy.parameter import Parameter
        cli = self.node.create_client(SetParametersAtomically,
                                      f'/{node_name.lstrip("/")}/set_parameters_atomically')
        try:
            if not cli.wait_for_service(timeout_sec=timeout):
                raise AssertionError(f'no parameter service on {node_name}')
            req = SetParametersAtomically.Request()
            req.parameters = [Parameter(k, value=v).to_parameter_msg()
                              for k, v in params.items()]
            assert all(isinstance(p, ParamMsg) for p in req.parameters)
            fut = cli.call_async(req)
            if not self.spin_until(fut.done, timeout):
                raise AssertionError(f'set_parameters on {node_name} timed out')
            return fut.result().result
        finally:
            self.node.destroy_client(cli)

    def close(self) -> None:
        try:
            self.executor.shutdown()
            self.node.destroy_node()
        finally:
            self.rclpy.try_shutdown(context=self.context)


def stop_all(procs: Iterable[NodeProcess]) -> None:
    for p in procs:
        if p is not None:
            p.stop()
