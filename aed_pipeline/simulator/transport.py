"""In-process httpx transport around :meth:`Simulator.handle`."""

from __future__ import annotations

import httpx

from .core import Simulator


def simulator_transport(sim: Simulator) -> httpx.BaseTransport:
    """An ``httpx.MockTransport`` serving ``sim``.

    Timeout faults raise ``httpx.ReadTimeout`` at once (no waiting); connection resets raise
    ``httpx.RemoteProtocolError`` ("Server disconnected without sending a response.").
    """

    def handler(request: httpx.Request) -> httpx.Response:
        resp = sim.handle(request.method, str(request.url), dict(request.headers))
        if resp.action == "timeout":
            raise httpx.ReadTimeout("simulated read timeout", request=request)
        if resp.action == "reset":
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.", request=request)
        return httpx.Response(resp.status, headers=resp.headers, content=resp.body, request=request)

    return httpx.MockTransport(handler)
