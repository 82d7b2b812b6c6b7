"""The resources both sources use: the warehouse and the two API clients.

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
import httpx
from sqlalchemy.engine import Engine

from aed_pipeline.defs.shared.alerting import build_alert_sink
from aed_pipeline.defs.shared.io import PartitionedPickleIOManager
from aed_pipeline.lib.at_flower.client import AtFlowerClient
from aed_pipeline.lib.core import settings
from aed_pipeline.lib.core.archive import RawArchive
from aed_pipeline.lib.core.http import HttpOptions, RetryPolicy
from aed_pipeline.lib.core.warehouse import redact_database_url, resolve_database_url, warehouse_engine
from aed_pipeline.lib.egen_aed.client import EgenClient

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


class EgenApiResource(dg.ConfigurableResource):
    """The e-gen AED API (data.go.kr AEDInfoInqireService), or the simulator without a key."""

    service_key: str | None = None
    base_url: str = settings.DEFAULT_EGEN_BASE_URL
    num_of_rows: int = 5000
    response_type: Literal["xml", "json"] = "xml"
    read_timeout_seconds: float = 120.0
    max_attempts: int = 5
    retry_base_delay_seconds: float = 1.0  # first backoff ceiling; doubles per attempt (lib/core/http.py)

    @property
    def source(self) -> Literal["live", "simulator"]:
        return "live" if self.service_key else "simulator"

    def client(self) -> EgenClient:
        """A client for one run; close it (it is a context manager) when done."""
        key, base_url, transport = _endpoint(
            self.service_key, self.base_url, settings.EGEN_SERVICE_KEY_ENV, "the e-gen AED API"
        )
        return EgenClient(
            key,
            base_url,
            num_of_rows=self.num_of_rows,
            response_type=self.response_type,
            http=HttpOptions(
                transport=transport,
                read_timeout=self.read_timeout_seconds,
                retry=RetryPolicy(max_attempts=self.max_attempts, base_delay=self.retry_base_delay_seconds),
            ),
        )


class AtFlowerApiResource(dg.ConfigurableResource):
    """The aT flower auction API (화훼유통정보 f001), or the simulator without a key."""

    service_key: str | None = None
    base_url: str = settings.DEFAULT_AT_FLOWER_BASE_URL
    count_per_page: int = 1000
    data_type: Literal["json", "xml"] = "json"
    read_timeout_seconds: float = 60.0
    max_attempts: int = 5
    retry_base_delay_seconds: float = 1.0  # first backoff ceiling; doubles per attempt (lib/core/http.py)

    @property
    def source(self) -> Literal["live", "simulator"]:
        return "live" if self.service_key else "simulator"

    def client(self) -> AtFlowerClient:
        """A client for one run; close it (it is a context manager) when done."""
        key, base_url, transport = _endpoint(
            self.service_key, self.base_url, settings.AT_FLOWER_SERVICE_KEY_ENV, "the aT flower API"
        )
        return AtFlowerClient(
            key,
            base_url,
            count_per_page=self.count_per_page,
            data_type=self.data_type,
            http=HttpOptions(
                transport=transport,
                read_timeout=self.read_timeout_seconds,
                retry=RetryPolicy(max_attempts=self.max_attempts, base_delay=self.retry_base_delay_seconds),
            ),
        )


def _endpoint(
    service_key: str | None, base_url: str, key_variable: str, api: str
) -> tuple[str, str, httpx.BaseTransport | None]:
    """Key, URL and transport for a client: the configured API, or the in-process simulator."""
    if service_key:
        return service_key, base_url, None
    logger.warning("%s is not set: %s is served by the built-in simulator", key_variable, api)
    return SIMULATOR_KEY, base_url, _simulator_transport()


def _secret(name: str) -> dg.EnvVar | None:
    """The variable as a Dagster EnvVar when set (its value never enters config), else None."""
    return dg.EnvVar(name) if settings.env_or_none(name) else None


def _plain(name: str, default: str) -> str:
    return settings.env_or_none(name) or default


def build_resources() -> dict[str, dg.ConfigurableResource | dg.ConfigurableIOManager]:
    """The resources as configured by the environment (see the README's table of variables)."""
    return {
        "warehouse": WarehouseResource(
            database_url=_secret(settings.DATABASE_URL_ENV),
            home=os.environ.get(settings.HOME_ENV) or None,
        ),
        "raw_archive": RawArchiveResource(url=settings.env_or_none(settings.ARCHIVE_URL_ENV)),
        "io_manager": PartitionedPickleIOManager(),
        "egen_api": EgenApiResource(
            service_key=_secret(settings.EGEN_SERVICE_KEY_ENV),
            base_url=_plain(settings.EGEN_BASE_URL_ENV, settings.DEFAULT_EGEN_BASE_URL),
        ),
        "at_flower_api": AtFlowerApiResource(
            service_key=_secret(settings.AT_FLOWER_SERVICE_KEY_ENV),
            base_url=_plain(settings.AT_FLOWER_BASE_URL_ENV, settings.DEFAULT_AT_FLOWER_BASE_URL),
        ),
        "alert_sink": build_alert_sink(),
    }


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources=build_resources())
