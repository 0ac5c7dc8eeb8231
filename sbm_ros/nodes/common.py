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


def run(node_factory: Callable[[], Any], args=None, executor_factory=None) -> int:
    """Humble-safe main(): init, spin, clean shutdown on Ctrl-C or external shutdown."""
    rclpy.init(args=args)
    node = None
    try:
        node = node_factory()
        if executor_factory is None:
            rclpy.spin(node)
        else:
            ex = executor_factory()
            ex.add_node(node)
            ex.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        # Ctrl-C / SIGINT shuts the context down from the signal handler: an executor that is
        # building its wait set at that moment raises RCLError ('context is not valid')
        # instead of ExternalShutdownException. Not an error once the context is down.
        if rclpy.ok():
            raise
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0
