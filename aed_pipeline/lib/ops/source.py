"""What a source tells the operations code (alerting, freshness, metrics) about itself.

The operations code never names a source: it iterates over the registry in ``lib/sources.py``, one
:class:`Source` per API. Adding a third API adds one entry there (see ``CONTRIBUTING.md``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, time
from typing import Literal

from sqlalchemy.engine import Connection


@dataclass(frozen=True)
class Gauge:
    """One gauge a source reads from its own tables at every metrics scrape.

    ``values`` maps label values (in ``labels`` order; ``()`` when unlabelled) to the value. A
    ``counter`` is a reading that only grows (rows of an append-only table): it is served as a
    Prometheus counter, ``<name>_total``, so that ``increase()`` charts it.
    """

    name: str
    documentation: str
    values: Mapping[tuple[str, ...], float] = field(default_factory=dict)
    labels: tuple[str, ...] = ()
    kind: Literal["gauge", "counter"] = "gauge"


def _always_expected(_: date) -> str | None:
    return None


def _no_gauges(_: Connection) -> Sequence[Gauge]:
    return ()


@dataclass(frozen=True)
class Source:
    """One API source of the platform, as operations sees it.

    ``name`` is its key in ``sync_runs.source`` and ``rejected_records.source``; ``synced_tables``
    the ``table_name`` values its syncs log there. ``validated_asset`` reports the rows its
    validation rejected (metadata ``rejected_rows``). ``fresh_asset`` must hold the partition of
    every expected KST date by ``deadline`` (KST; overridden by the variable ``deadline_env`` when
    set), where ``not_expected_because`` tells the dates without data (e.g. no auction).
    """

    name: str
    title: str
    group: str
    job: str
    validated_asset: str
    synced_tables: tuple[str, ...]
    metrics_prefix: str
    fresh_asset: str
    deadline: time
    deadline_env: str | None = None
    not_expected_because: Callable[[date], str | None] = _always_expected
    warehouse_gauges: Callable[[Connection], Sequence[Gauge]] = _no_gauges
