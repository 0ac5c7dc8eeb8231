"""Helpers shared by the sbm_ros nodes: parameters, QoS, stamps, audio format, main().

Everything here runs unchanged on ROS 2 Humble, Jazzy and Kilted: no ``with rclpy.init()``, no
pre/post set-parameter callbacks (Iron+), ``ExternalShutdownException`` handled in ``run``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, Optional

import rclpy
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.executors import ExternalShutdownException
from rclpy.qos import (DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy)

# Sample formats the nodes understand (audio_common_msgs/AudioInfo.sample_format strings).
SAMPLE_FORMATS = ('S16LE', 'S24LE', 'S32LE', 'F32LE')


@dataclass
class Param:
    """One declared parameter: name, default (its type is the parameter's), description,
    and an optional validator returning an error string (or None when the value is fine)."""

    name: str
    default: Any
    description: str
    validate: Optional[Callable[[Any], Optional[str]]] = None
    read_only: bool = False


def declare_parameters(node, params: Iterable[Param]) -> Dict[str, Any]:
    """Declare every parameter with a description; returns {name: current value}.

    Registers one ``add_on_set_parameters_callback`` that runs the validators, so invalid
    runtime changes (``ros2 param set``) are refused with the validator's message.
    """
    specs = {p.name: p for p in params}
    values = {}
    for p in specs.values():
        desc = ParameterDescriptor(description=p.description, read_only=p.read_only)
        values[p.name] = node.declare_parameter(p.name, p.default, desc).value
        err = p.validate(values[p.name]) if p.validate else None
        if err:
            raise ValueError(f"parameter '{p.name}'={values[p.name]!r}: {err}")

    def _on_set(changes):
        for ch in changes:
            spec = specs.get(ch.name)
            if spec is None or spec.validate is None:
                continue
            err = spec.validate(ch.value)
            if err:
                return SetParametersResult(successful=False,
                                           reason=f"{ch.name}={ch.value!r}: {err}")
        return SetParametersResult(successful=True)

    node.add_on_set_parameters_callback(_on_set)
    return values


def positive(v) -> Optional[str]:
    return None if v > 0 else 'must be > 0'


def non_negative(v) -> Optional[str]:
    return None if v >= 0 else 'must be >= 0'


def fraction(v) -> Optional[str]:
    return None if 0.0 <= v <= 1.0 else 'must be within [0, 1]'


def one_of(*choices) -> Callable[[Any], Optional[str]]:
    def check(v):
        return None if v in choices else f'must be one of {list(choices)}'
    return check


def reliability(name: str) -> ReliabilityPolicy:
    name = str(name).lower().replace('-', '_')
    if name in ('reliable',):
        return ReliabilityPolicy.RELIABLE
    if name in ('best_effort', 'besteffort'):
        return ReliabilityPolicy.BEST_EFFORT
    raise ValueError(f"QoS reliability must be 'reliable' or 'best_effort', got {name!r}")


def stream_qos(reliable: str = 'reliable', depth: int = 50) -> QoSProfile:
    """QoS for data streams (audio chunks, detections, images): keep-last ``depth``."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=int(depth),
                      reliability=reliability(reliable), durability=DurabilityPolicy.VOLATILE)


def latched_qos(depth: int = 1) -> QoSProfile:
    """Transient-local, reliable: for AudioInfo and other 'latched' descriptions."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=int(depth),
                      reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL)


def describe_qos(qos: QoSProfile) -> str:
    rel = 'reliable' if qos.reliability == ReliabilityPolicy.RELIABLE else 'best_effort'
    dur = ('transient_local' if qos.durability == DurabilityPolicy.TRANSIENT_LOCAL
           else 'volatile')
    return f'{rel}/{dur}/depth={qos.depth}'


def stamp_to_ns(stamp) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def ns_to_stamp(ns: int):
    from builtin_interfaces.msg import Time
    ns = int(ns)
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


class LogThrottle:
    """Per-key log throttling: a message of kind ``key`` is logged at most once per
    ``period`` seconds; the number of suppressed repeats is appended to the next one."""

    def __init__(self, logger):
        self._logger = logger
        self._last = {}

    def __call__(self, level: str, key: str, msg: str, period: float) -> None:
        import time
        now = time.monotonic()
        last = self._last.get(key)
        if last is None or now - last[0] >= period:
            extra = f' ({last[1]} similar message(s) suppressed)' if last and last[1] else ''
            # one call site per severity: rclpy refuses two severities from the same line
            if level == 'error':
                self._logger.error(msg + extra)
            elif level == 'warn':
                self._logger.warning(msg + extra)
            else:
                self._logger.info(msg + extra)
            self._last[key] = [now, 0]
        else:
            last[1] += 1


class _Shutdown:
    """Process-wide shutdown state of :func:`run` (one node per process)."""

    signalled = False       # a SIGINT has arrived
    spinning = False        # the node is built and spinning: a SIGINT is only noted
    cleaning = False        # run() is destroying the node: a SIGINT is only noted


def _on_sigint(signum, frame):
    """Python-level SIGINT handler; rclpy's own handler (which shuts the ROS context down)
    chains to it.

    While the node is being built, a SIGINT interrupts the main thread with KeyboardInterrupt,
    as Python's default handler does (e.g. virtual_head rendering its scene). Once it spins, a
    SIGINT is only noted: rclpy's handler has shut the context down and the executor returns
    (ExternalShutdownException) after the callback at hand, instead of a KeyboardInterrupt
    raised anywhere (inside a message being converted: ``RuntimeError: Unable to convert call
    argument``, inside a ``__del__``: "Exception ignored"). During the cleanup, too: a
    terminal's Ctrl-C reaches every process of its foreground group and ``ros2 launch``
    forwards one more to each node, and that second one must not land in ``destroy_node()``
    (a KeyboardInterrupt traceback, exit code -2). The cleanup is bounded (thread joins with
    timeouts) and launch escalates to SIGTERM / SIGKILL if a node ever hangs.
    """
    _Shutdown.signalled = True
    if not (_Shutdown.spinning or _Shutdown.cleaning):
        raise KeyboardInterrupt


def install_sigint_handler() -> bool:
    """Install :func:`_on_sigint`; call it BEFORE ``rclpy.init()``, which saves the handler it
    finds and calls it after its own (installing a Python handler later would replace rclpy's).
    A process started with SIGINT ignored keeps it ignored. False when not possible here (not
    the main thread)."""
    import signal
    import threading
    if threading.current_thread() is not threading.main_thread():
        return False
    if signal.getsignal(signal.SIGINT) in (signal.SIG_IGN, _on_sigint):
        return signal.getsignal(signal.SIGINT) is _on_sigint
    signal.signal(signal.SIGINT, _on_sigint)
    return True


def shutdown_began(context=None, wait_s: float = 0.0) -> bool:
    """True once a SIGINT arrived or the ROS context is down.

    With ``wait_s`` > 0, waits up to that long for it: rclpy shuts the context down from its
    signal thread, a moment after the signal, so an error raised by the executor in between
    (e.g. ``RuntimeError: Unable to convert call argument '0' to Python object`` when the
    KeyboardInterrupt hits a message being converted) is still recognised as part of the
    shutdown.
    """
    import time
    end = time.monotonic() + wait_s
    while True:
        if _Shutdown.signalled or not rclpy.ok(context=context):
            return True
        if time.monotonic() >= end:
            return False
        time.sleep(0.02)


def finish(node) -> None:
    """Destroy ``node`` (when not None) and shut rclpy down; a SIGINT from now on is only noted.

    A KeyboardInterrupt that was already on its way (signal received before this call) is
    absorbed and the destruction resumed: rclpy's ``destroy_node`` removes entities one by one,
    so calling it again finishes the job.
    """
    _Shutdown.cleaning = True
    for _ in range(3):
        try:
            if node is not None:
                node.destroy_node()
            break
        except KeyboardInterrupt:
            continue
    for _ in range(3):
        try:
            rclpy.try_shutdown()
            break
        except KeyboardInterrupt:
            continue
    _ignore_sigint_until_exit()


def _ignore_sigint_until_exit() -> None:
    """SIG_IGN for the rest of the process, when :func:`run` is its main.

    At exit the interpreter resets every signal that has a Python handler to SIG_DFL, so the
    SIGINT forwarded by launch, when it comes that late, would kill the finished node with exit
    code -2. An ignored signal is left ignored.
    """
    import signal
    import threading
    if (threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGINT) is _on_sigint):
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def run(node_factory: Callable[[], Any], args=None, executor_factory=None,
        spin: Optional[Callable[[Any], int]] = None,
        on_error: Optional[Callable[[BaseException], int]] = None) -> int:
    """Humble-safe main(): init, spin, clean shutdown on Ctrl-C or external shutdown.

    ``spin(node)`` replaces the default spinning (``rclpy.spin`` or an executor made by
    ``executor_factory``) and returns the exit code. An exception raised after the shutdown
    began (SIGINT, context down) is part of the shutdown: exit code 0. Any other one is passed
    to ``on_error`` (which returns the exit code) or, without it, re-raised after the cleanup.
    SIGINT: see :func:`_on_sigint` (a KeyboardInterrupt only while the node is being built;
    a second one during the cleanup is ignored).
    """
    try:
        return _run(node_factory, args, executor_factory, spin, on_error)
    except KeyboardInterrupt:
        # a SIGINT that landed between the end of spinning and the cleanup (which has run)
        return 0


def _run(node_factory, args, executor_factory, spin, on_error) -> int:
    install_sigint_handler()
    rclpy.init(args=args)
    node = None
    rc = 0
    try:
        try:
            node = node_factory()
            _Shutdown.spinning = True
            if spin is not None:
                rc = spin(node)
            elif executor_factory is None:
                rclpy.spin(node)
            else:
                ex = executor_factory()
                ex.add_node(node)
                ex.spin()
        finally:
            _Shutdown.cleaning = True
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception as exc:
        # Ctrl-C / SIGINT shuts the context down from the signal handler: an executor that is
        # building its wait set at that moment raises RCLError ('context is not valid'), one
        # taking a message may raise RuntimeError ('Unable to convert call argument ...')
        # instead of ExternalShutdownException. Not an error once the shutdown has begun.
        if shutdown_began(wait_s=0.5):
            if node is not None:
                node.get_logger().debug(
                    f'ignored during shutdown: {type(exc).__name__}: {exc}')
        elif on_error is not None:
            rc = on_error(exc)
        else:
            raise
    finally:
        finish(node)
    return rc
