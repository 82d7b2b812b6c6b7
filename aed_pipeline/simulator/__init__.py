"""Offline simulator of the two outside APIs (e-gen AED via data.go.kr, aT flower f001).

It stands for the outside world: it shares no code with ``aed_pipeline.lib`` (clients/parsers).

Public API::

    sim = Simulator(seed=20260101, today=None, aed_count=81464, egen_service_keys=None, at_service_keys=None)
    sim.today = datetime.date(...)      # move the clock
    sim.faults.<knob> = ...             # see Faults; sim.reset_faults()
    sim.request_log                     # [LoggedRequest(api, path, params_without_key), ...]
    sim.handle(method, url, headers) -> SimResponse(status, headers, body)
    simulator_transport(sim) -> httpx.BaseTransport          # in-process
    SimulatorServer(sim, host="127.0.0.1", port=0)           # real HTTP server (.start/.stop/with)
    run_server(host, port, seed, aed_count)                  # blocking, for the CLI
"""

from .core import AT_PATH, EGEN_PREFIX, Faults, LoggedRequest, SimResponse, Simulator
from .server import SimulatorServer, run_server, serve_forever
from .transport import simulator_transport

__all__ = [
    "AT_PATH",
    "EGEN_PREFIX",
    "Faults",
    "LoggedRequest",
    "SimResponse",
    "Simulator",
    "SimulatorServer",
    "run_server",
    "serve_forever",
    "simulator_transport",
]
