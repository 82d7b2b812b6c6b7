"""Alerting test parts: a real HTTP server standing in for Slack, and a sensor ticked like the daemon does."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator

import dagster as dg
import pytest

from aed_pipeline.defs.shared.alerting import AlertSinkResource

UI = "http://dagster.test:3000"
HOOK_SECRET = "MARKERHOOK0123456789abcdef"


# --------------------------------------------------------------------------- the stand-in for Slack


class FakeSlack:
    """A real HTTP server on 127.0.0.1 recording every JSON body posted to it."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        self.paths: list[str] = []
        self.status = 200
        slack = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if slack.status == 200:
                    slack.bodies.append(json.loads(body))
                    slack.paths.append(self.path)
                answer = b"ok" if slack.status == 200 else b"invalid_payload"
                self.send_response(slack.status)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/services/T000/B000/{HOOK_SECRET}"

    def take(self) -> list[dict]:
        bodies, self.bodies = self.bodies, []
        return bodies


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    fake = FakeSlack()
    yield fake
    fake.server.shutdown()


@pytest.fixture
def sink(slack: FakeSlack) -> AlertSinkResource:
    return AlertSinkResource(webhook_url=slack.url, ui_url=UI)


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as test_instance:
        yield test_instance


class Sensor:
    """Evaluates a sensor tick after tick, carrying its cursor like the daemon does."""

    def __init__(self, sensor: dg.SensorDefinition, instance: dg.DagsterInstance, sink: AlertSinkResource):
        self.sensor, self.instance, self.sink, self.cursor = sensor, instance, sink, None

    def tick(self) -> None:
        context = dg.build_sensor_context(
            instance=self.instance, cursor=self.cursor, resources={"alert_sink": self.sink}
        )
        result = self.sensor(context)
        self.cursor = result.cursor


def fields(payload: dict) -> dict[str, str]:
    """The name → value fields of a critical alert's message."""
    return {
        field["text"].split("\n", 1)[0].strip("*"): field["text"].split("\n", 1)[1]
        for block in payload["blocks"]
        for field in block.get("fields", [])
    }


def header(payload: dict) -> str:
    return payload["blocks"][0]["text"]["text"]
