"""Hand freshly trained models to a running ``sbm_localizer`` (shared by the nodes that train).

:class:`ModelHandoff` sets ``model_path`` on ``<localizer_node>`` and, when a two-source model
comes with it, ``model_path_two`` and ``n_sources: 0`` (automatic one/two-source mode) in the
same call, by an asynchronous ``SetParametersAtomically`` request
(``<localizer_node>/set_parameters_atomically``): the localizer takes all of them or none, so
it never runs with one new and one old model. ``one_source`` (a two-source model was meant to
come along but could not be trained) sets ``n_sources: 1`` and clears ``model_path_two``
instead, so an older two-source model does not stay in use next to the new one. The request
is never waited on in a callback, the result arrives in a future callback; while the service
is not available yet it retries every 0.5 s up to ``timeout`` seconds, then says how to set the
models by hand. Every outcome is
reported through ``report(text, error)`` (the node logs it and publishes it on its status
topic) and, when given, ``on_done(ok, text)``.

Used by ``av_fusion`` (``~/train``, one-source) and ``sbm_calibrator`` (``~/train`` after a
sweep, one- and two-source).
"""

from __future__ import annotations

import time
from typing import Callable, List, Optional, Tuple

__all__ = ['ModelHandoff', 'handoff_parameters']


def handoff_parameters(path: str, path_two: Optional[str] = None,
                       one_source: bool = False) -> List[Tuple[str, object]]:
    """The (name, value) pairs the hand-over sets: ``model_path``; with a two-source model
    ``model_path_two`` and ``n_sources`` 0; with ``one_source`` (and no ``path_two``)
    ``model_path_two`` '' and ``n_sources`` 1."""
    params: List[Tuple[str, object]] = [('model_path', str(path))]
    if path_two:
        params += [('model_path_two', str(path_two)), ('n_sources', 0)]
    elif one_source:
        params += [('model_path_two', ''), ('n_sources', 1)]
    return params


class ModelHandoff:
    """Sends the model paths to a localizer node for ``node`` (timers and the client in
    ``callback_group``)."""

    def __init__(self, node, callback_group, report: Callable[[str, bool], None]):
        self.node = node
        self.group = callback_group
        self.report = report
        self.client = None
        self.client_name = ''

    def send(self, path: str, localizer_node: str, timeout: float,
             on_done: Optional[Callable[[bool, str], None]] = None,
             t0: Optional[float] = None, path_two: Optional[str] = None,
             one_source: bool = False) -> None:
        """Start handing ``path`` (and ``path_two``, a two-source model) over (returns at
        once); ``one_source``: see the module docstring."""
        t0 = time.monotonic() if t0 is None else t0
        node = self.node
        params = handoff_parameters(path, path_two, one_source)
        shown = [(n, repr(v) if v == '' else str(v)) for n, v in params]
        what = ', '.join(f'{n}={v}' for n, v in shown)
        noun = 'models' if path_two else 'model'

        def finish(ok, text):
            self.report(text, not ok)
            if on_done is not None:
                on_done(ok, text)
        name = str(localizer_node).strip().rstrip('/')
        if not name:
            finish(True, f"{noun} {' and '.join(p for p in (path, path_two) if p)} ready; "
                   'localizer_node is empty, not handed over')
            return
        srv = f'{name}/set_parameters_atomically'
        from rcl_interfaces.srv import SetParametersAtomically
        if self.client is None or self.client_name != srv:
            if self.client is not None:
                node.destroy_client(self.client)
            self.client = node.create_client(SetParametersAtomically, srv,
                                             callback_group=self.group)
            self.client_name = srv
        cli = self.client
        full = node.resolve_service_name(srv)
        target = full[:-len('/set_parameters_atomically')]
        if not cli.service_is_ready():
            if time.monotonic() - t0 > timeout:
                finish(False, f'localizer service {full!r} not available after {timeout} s: '
                       f"set {' '.join(f'{n}:={v}' for n, v in shown)} by hand")
                return
            timer = None

            def retry():
                node.destroy_timer(timer)
                self.send(path, localizer_node, timeout, on_done, t0, path_two, one_source)
            timer = node.create_timer(0.5, retry, callback_group=self.group)
            return
        from rclpy.parameter import Parameter
        req = SetParametersAtomically.Request(
            parameters=[Parameter(n, value=v).to_parameter_msg() for n, v in params])
        fut = cli.call_async(req)   # never waited on: the result arrives in the callback

        def done(f):
            try:
                res = f.result().result
            except Exception as exc:  # noqa: BLE001 - reported, the node keeps running
                finish(False, f'setting {what} on {target} failed: {exc}')
                return
            if res.successful:
                finish(True, f'{noun} handed to {target}: {what}')
            else:
                finish(False, f'{target} refused {what}: {res.reason}')
        fut.add_done_callback(done)
