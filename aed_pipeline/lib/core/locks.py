"""Every PostgreSQL advisory lock of the platform, in one place, so that no two uses share an id.

An advisory lock is a named mutex in the warehouse: whoever holds it, in any process, makes the
others wait. PostgreSQL has two key spaces: one ``bigint`` (a single lock) and two ``integer``s (a
class of locks, one per second key, e.g. one per sale date). The ids below are arbitrary
constants; changing one would let a new process and an old one run side by side during an upgrade.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection


@dataclass(frozen=True)
class AdvisoryLock:
    """One advisory lock (``keyed=False``: the one-key ``bigint`` space) or a class of them, one per
    key (``keyed=True``: the two-key space, the key being e.g. a row id or a date's ordinal)."""

    id: int
    purpose: str
    keyed: bool = False


SCHEMA_MIGRATION = AdvisoryLock(7_310_052_617, "one schema migration at a time")
AED_SYNC = AdvisoryLock(7_310_052_618, "one AED apply at a time: a second run of a partition finds nothing to do")
SYNC_RUN = AdvisoryLock(7310, "held by the live owner of a running sync_runs row (key: the row's id)", keyed=True)
FLOWER_SERVED_SLICE = AdvisoryLock(7311, "one write of a sale date's public_bidding_flowers slice", keyed=True)
FLOWER_NORMALISED_DAY = AdvisoryLock(7312, "one write of a sale date's normalised flower tables", keyed=True)

#: PostgreSQL's two-key form takes two ``integer``s: a larger key (a bigint row id) is folded into range.
KEY_RANGE = 2_147_483_647


def lock_key(key: int) -> int:
    """``key`` folded into the ``integer`` range of the two-key form."""
    return key % KEY_RANGE


def hold_for_transaction(conn: Connection, lock: AdvisoryLock, key: int | None = None) -> None:
    """Wait for ``lock`` (with ``key`` for a keyed class) and hold it until the transaction ends."""
    if lock.keyed:
        if key is None:
            raise ValueError(f"the advisory lock for {lock.purpose!r} takes a key")
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:lock, :key)"), {"lock": lock.id, "key": lock_key(key)})
    else:
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:lock)"), {"lock": lock.id})
