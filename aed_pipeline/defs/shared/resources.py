"""The resources both sources use: the warehouse, the raw archive, the IO manager, the alert sink,
and :class:`ApiResource`, the base of each source's API resource (in the source's own folder).

Secrets (service keys, a database URL with a password) reach Dagster only as ``dg.EnvVar``, so the
UI shows the variable's name and never its value. With no service key set, an API resource talks
to the built-in simulator through an in-process transport and says so in the log; ``source`` tells
the assets which one they got, for their metadata.
"""

from __future__ import annotations

import logging
import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

import dagster as dg
from sqlalchemy.engine import Engine

from aed_pipeline.defs.shared.alerting import build_alert_sink
from aed_pipeline.defs.shared.io import PartitionedPickleIOManager
from aed_pipeline.lib.core import settings
from aed_pipeline.lib.core.archive import RawArchive
from aed_pipeline.lib.core.http import HttpOptions, RetryPolicy
from aed_pipeline.lib.core.warehouse import (
    normalize_database_url,
    redact_database_url,
    resolve_database_url,
    warehouse_engine,
)

logger = logging.getLogger(__name__)

SIMULATOR_KEY = "simulator-key"


class WarehouseResource(dg.ConfigurableResource):
    """The PostgreSQL warehouse; the embedded server under ``home`` when no URL is configured."""

    database_url: str | None = None
    home: str | None = None

    def resolved_url(self) -> str:
        home = Path(self.home).expanduser().resolve() if self.home else settings.pipeline_home()
        return resolve_database_url(self.database_url, home)

    def engine(self) -> Engine:
        """The process-wide engine for this database, schema migrated to the newest revision."""
        return warehouse_engine(self.resolved_url())

    def redacted_url(self) -> str:
        return redact_database_url(self.resolved_url())

    def described(self) -> str:
        """The warehouse for a failure's sentence, password redacted; unlike :meth:`redacted_url` it
        starts nothing (the embedded server is named by its data directory)."""
        if self.database_url:
            return redact_database_url(normalize_database_url(self.database_url))
        home = Path(self.home).expanduser().resolve() if self.home else settings.pipeline_home()
        return f"(the embedded PostgreSQL in {home / 'pgdata'})"


class RawArchiveResource(dg.ConfigurableResource):
    """The raw archive of API pages: a folder, or any fsspec/UPath URL (``s3://…``, ``gs://…``)."""

    url: str | None = None

    def archive(self) -> RawArchive:
        return RawArchive(self.url or settings.archive_url())


@lru_cache(maxsize=1)
def _shared_simulator():
    """One simulator per process, so that every client of a run sees the same evolving world."""
    # The simulator is the outside world's stand-in: only this wiring layer may know about it.
    from aed_pipeline.simulator import Simulator

    return Simulator()


def _simulator_transport():
    from aed_pipeline.simulator import simulator_transport

    return simulator_transport(_shared_simulator())


class ApiResource(dg.ConfigurableResource):
    """What every source API resource is configured with; the simulator serves it without a key.

    A subclass gives ``base_url`` and ``read_timeout_seconds`` their defaults, adds its own
    settings and builds its client from :meth:`_endpoint`.
    """

    service_key: str | None = None
    base_url: str
    read_timeout_seconds: float
    max_attempts: int = 5
    retry_base_delay_seconds: float = 1.0  # first backoff ceiling; doubles per attempt (lib/core/http.py)

    @property
    def source(self) -> Literal["live", "simulator"]:
        return "live" if self.service_key else "simulator"

    def _endpoint(self, key_variable: str, api: str) -> tuple[str, HttpOptions]:
        """Key and HTTP options for a client: the configured API, or the in-process simulator.

        ``key_variable`` and ``api`` name the service key's variable and the API in the warning
        logged when the simulator stands in.
        """
        if self.service_key:
            key, transport = self.service_key, None
        else:
            logger.warning("%s is not set: %s is served by the built-in simulator", key_variable, api)
            key, transport = SIMULATOR_KEY, _simulator_transport()
        return key, HttpOptions(
            transport=transport,
            read_timeout=self.read_timeout_seconds,
            retry=RetryPolicy(max_attempts=self.max_attempts, base_delay=self.retry_base_delay_seconds),
        )


def env_secret(name: str) -> dg.EnvVar | None:
    """The variable as a Dagster EnvVar when set (its value never enters config), else None."""
    return dg.EnvVar(name) if settings.env_or_none(name) else None


def env_setting(name: str, default: str) -> str:
    """The variable's value, or ``default`` when it is unset or empty."""
    return settings.env_or_none(name) or default


def build_resources() -> dict[str, dg.ConfigurableResource | dg.ConfigurableIOManager]:
    """The shared resources as configured by the environment (see the README's table of variables).

    Each source's API resource is registered by its own folder; ``aed_pipeline.definitions.
    environment_resources`` gives them all.
    """
    return {
        "warehouse": WarehouseResource(
            database_url=env_secret(settings.DATABASE_URL_ENV),
            home=os.environ.get(settings.HOME_ENV) or None,
        ),
        "raw_archive": RawArchiveResource(url=settings.env_or_none(settings.ARCHIVE_URL_ENV)),
        "io_manager": PartitionedPickleIOManager(),
        "alert_sink": build_alert_sink(),
    }


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources=build_resources())
