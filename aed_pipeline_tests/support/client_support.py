"""The simulator world both clients are tested against over real sockets: keys, dates, fast retries,
and the module fixtures (one simulator and one server per test module, faults reset per test)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

import pytest

from aed_pipeline.lib.core.http import HttpOptions, RetryPolicy
from aed_pipeline.simulator import Simulator, SimulatorServer

# A decoded data.go.kr-style key with the characters that make encoding matter.
EGEN_KEY = "MARKERkey+abc/def=="
AT_KEY = "MARKERAT0123456789ABCDEF01234567"
MONDAY = date(2026, 11, 23)
FAST_RETRIES = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05)
FAST_HTTP = HttpOptions(retry=FAST_RETRIES)


@pytest.fixture(scope="module")
def sim() -> Simulator:
    return Simulator(seed=7, today=MONDAY, aed_count=3000, egen_service_keys={EGEN_KEY}, at_service_keys={AT_KEY})


@pytest.fixture(scope="module")
def server(sim: Simulator) -> Iterator[SimulatorServer]:
    with SimulatorServer(sim) as running:
        yield running


@pytest.fixture(autouse=True)
def clean_simulator(sim: Simulator) -> Iterator[None]:
    sim.reset_faults()
    sim.reset_counters()
    sim.today = MONDAY
    yield
    sim.reset_faults()


def requests_to(sim: Simulator, api: str) -> int:
    """How many requests the simulator received for ``api`` (``egen`` or ``at``)."""
    return sum(1 for entry in sim.request_log if entry.api == api)
