"""Hand a freshly trained model to a running ``sbm_localizer`` (shared by the nodes that train).

:class:`ModelHandoff` sets ``model_path`` on ``<localizer_node>`` by an asynchronous
``SetParameters`` call (``<localizer_node>/set_parameters``): never waited on in a callback, the
result arrives in a future callback; while the service is not available yet it retries every
0.5 s up to ``timeout`` seconds, then says how to set the model by hand. Every outcome is
reported through ``report(text, error)`` (the node logs it and publishes it on its status
topic) and, when given, ``on_done(ok, text)``.

Used by ``av_fusion`` (``~/train``) and ``sbm_calibrator`` (``~/train`` after a sweep).
"""

from __future__ import annotations

import time
from typing import Callable, Optional

__all__ = ['ModelHandoff']


class ModelHandoff:
    """Sends ``model_path`` to a localizer node for ``node`` (timers and the client in
    ``callback_group``)."""

    def __init__(self, node, callback_group, report: Callable[[str, bool], None]):
        self.node = node
        self.group = callback_group
        self.report = report
        self.client = None
        self.client_name = ''

    def send(self, path: str, localizer_node: str, timeout: float,
             on_done: Optional[Callable[[bool, str], None]] = None,
             t0: Optional[float] = None) -> None:
        """Start handing ``path`` over (returns at once)."""
        t0 = time.monotonic() if t0 is None else t0
        node = self.node

        def finish(ok, text):
            self.report(text, not ok)
            if on_done is not None:
                on_done(ok, text)
        name = str(localizer_node).strip().rstrip('/')
        if not name:
            finish(True, f'model {path} ready; localizer_node is empty, not handed over')
            return
        srv = f'{name}/set_parameters'
        from rcl_interfaces.srv import SetParameters
        if self.client is None or self.client_name != srv:
            if self.client is not None:
                node.destroy_client(self.client)
            self.client = node.create_client(SetParameters, srv, callback_group=self.group)
            self.client_name = srv
        cli = self.client
        full = node.resolve_service_name(srv)
        target = full[:-len('/set_parameters')]
        if not cli.service_is_ready():
            if time.monotonic() - t0 > timeout:
                finish(False, f'localizer service {full!r} not available after {timeout} s: '
                       f'set model_path:={path} by hand')
                return
            timer = None

            def retry():
                node.destroy_timer(timer)
                self.send(path, localizer_node, timeout, on_done, t0)
            timer = node.create_timer(0.5, retry, callback_group=self.group)
            return
        from rclpy.parameter import Parameter
        req = SetParameters.Request(
            parameters=[Parameter('model_path', Parameter.Type.STRING, path)
                        .to_parameter_msg()])
        fut = cli.call_async(req)   # never waited on: the result arrives in the callback

        def done(f):
            try:
                res = f.result().results[0]
            except Exception as exc:  # noqa: BLE001 - reported, the node keeps running
                finish(False, f'setting model_path on {target} failed: {exc}')
                return
            if res.successful:
                finish(True, f'model handed to {target}: model_path={path}')
            else:
                finish(False, f'{target} refused model_path={path}: {res.reason}')
        fut.add_done_callback(done)
