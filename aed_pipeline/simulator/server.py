"""A real threaded HTTP server on localhost around :meth:`Simulator.handle`."""

from __future__ import annotations

import contextlib
import datetime as dt
import socket
import threading
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .core import Simulator


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body leave in two sends; without TCP_NODELAY each response waits ~40 ms for the
    # client's delayed ACK (3.8 s instead of 0.4 s for 80 requests).
    disable_nagle_algorithm = True
    server_version = "SimulatorHTTP"  # only used when a response names no Server header

    def log_message(self, format: str, *args) -> None:
        pass

    def _serve(self) -> None:
        srv: _Server = self.server  # type: ignore[assignment]
        resp = srv.sim.handle(self.command, self.path, {k: v for k, v in self.headers.items()})
        if resp.action in ("timeout", "reset"):
            if resp.action == "timeout":
                srv.stopping.wait(resp.delay)
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.send_response_only(resp.status)
        headers = dict(resp.headers)
        headers.setdefault("Date", formatdate(usegmt=True))
        headers["Content-Length"] = str(len(resp.body))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(resp.body)

    do_GET = _serve
    do_HEAD = _serve
    do_POST = _serve


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr, sim: Simulator):
        super().__init__(addr, _Handler)
        self.sim = sim
        self.stopping = threading.Event()


class SimulatorServer:
    """Serve ``sim`` on ``host:port`` (0 = a free port) from a background thread.

    >>> with SimulatorServer(Simulator()) as srv:  # doctest: +SKIP
    ...     httpx.get(srv.egen_base_url + "/getAedFullDown", params=..., headers={"User-Agent": "Mozilla/5.0"})
    """

    def __init__(self, sim: Simulator, host: str = "127.0.0.1", port: int = 0):
        self.sim = sim
        self.host = host
        self._requested_port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("server not started")
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return (
            f"http://127.0.0.1:{self.port}"
            if self.host in ("0.0.0.0", "127.0.0.1", "")
            else f"http://{self.host}:{self.port}"
        )

    @property
    def egen_base_url(self) -> str:
        return f"{self.base_url}/B552657/AEDInfoInqireService"

    @property
    def at_base_url(self) -> str:
        return f"{self.base_url}/api/returnData.api"

    def start(self) -> SimulatorServer:
        if self._server is not None:
            return self
        self._server = _Server((self.host, self._requested_port), self.sim)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"simulator-server-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def serve_forever(self, announce: bool = False) -> None:
        """Blocking: bind, optionally print both base URLs, serve in the calling thread until Ctrl-C."""
        self._server = _Server((self.host, self._requested_port), self.sim)
        if announce:
            print(f"e-gen AED base URL: {self.egen_base_url}", flush=True)
            print(f"aT flower base URL: {self.at_base_url}", flush=True)
        try:
            self._server.serve_forever(poll_interval=0.2)
        except KeyboardInterrupt:
            pass
        finally:
            self._server.stopping.set()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> SimulatorServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def serve_forever(host: str, port: int, sim: Simulator) -> None:
    """Serve ``sim`` on host:port until KeyboardInterrupt, printing the two base URLs first."""
    SimulatorServer(sim, host, port).serve_forever(announce=True)


def run_server(
    host: str = "127.0.0.1",
    port: int = 8765,
    seed: int = 20260101,
    aed_count: int = 81464,
    today: dt.date | None = None,
) -> None:
    """Entry point for ``aed-pipeline simulator serve``: print both base URLs, serve until Ctrl-C.

    ``today`` pins the simulated date (None: the current KST date)."""
    serve_forever(host, port, Simulator(seed=seed, aed_count=aed_count, today=today))
