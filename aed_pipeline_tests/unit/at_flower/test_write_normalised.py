"""The flower sync's normalised tables (flower_types, flowers, bidding_flowers) on the real embedded
PostgreSQL, without Dagster: a day written with its types, flowers and grades, rewritten, corrected
or emptied, the top rows by quantity, and the volume history of the successful syncs."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest
import sqlalchemy as sa

from aed_pipeline.lib.at_flower.records import plain_valid_rows, validate_flower_rows
from aed_pipeline.lib.at_flower.source import AT_FLOWER
from aed_pipeline.lib.at_flower.tables import known_volumes, top_by_quantity
from aed_pipeline.lib.at_flower.write.normalised import write_bidding_day
from aed_pipeline.lib.core.sync_log import sync_run
from aed_pipeline.lib.core.warehouse import warehouse_engine

MONDAY = date(2026, 3, 9)


@pytest.fixture
def engine(fresh_database_url: str) -> sa.Engine:
    return warehouse_engine(fresh_database_url)


def served_rows(*rows: tuple) -> pd.DataFrame:
    """public_bidding_flowers rows as read back; each row: (gubn, 품목, 품종, 등급, min, avg, max, total, qty)."""
    records = []
    for n, (gubn, pum, good, grade, low, avg, high, total, quantity) in enumerate(rows, start=1):
        records.append(
            {
                "sale_date": MONDAY,
                "flower_gubn": gubn,
                "sale_date_raw": MONDAY.isoformat(),
                "flower_gubn_raw": {1: "절화", 2: "관엽", 3: "난", 4: "춘란"}[gubn],
                "pum_name": pum,
                "good_name": good,
                "lv_nm": grade,
                "max_amt": str(high),
                "min_amt": str(low),
                "avg_amt": str(avg),
                "tot_amt": str(total),
                "tot_qty": str(quantity),
                "page": 1,
                "row_in_page": n,
            }
        )
    return pd.DataFrame(records).astype(object)


def valid(*rows: tuple) -> pd.DataFrame:
    validation = validate_flower_rows(served_rows(*rows))
    assert validation.reasons == {}
    return plain_valid_rows(validation).reset_index(drop=True)


ROSE = (1, "장미", "메두사", "특1", 1000, 2000, 3000, 20000, 10)
LILY = (1, "백합", "메두사", "특2", 1800, 1800, 1800, 88200, 49)
MUM = (1, "국화", "샤로트", "상2", 1200, 1200, 1200, 48000, 40)


def bidding(engine: sa.Engine) -> list[tuple]:
    with engine.connect() as conn:
        return conn.execute(
            sa.text(
                "SELECT b.sale_date, t.name, f.name, b.grade, b.min_price, b.avg_price, b.max_price, b.total_amount, "
                "b.quantity FROM bidding_flowers b JOIN flowers f ON f.id = b.flower_id "
                "JOIN flower_types t ON t.id = f.flower_type_id ORDER BY 2, 3, 4"
            )
        ).all()


def write(engine: sa.Engine, rows: pd.DataFrame, sale_date: date = MONDAY):
    with engine.begin() as conn:
        return write_bidding_day(conn, sale_date, rows)


def test_a_day_is_written_with_its_types_flowers_grades_and_the_auction_date(engine) -> None:
    counts = write(engine, valid(ROSE, LILY, MUM))
    assert (counts.new_types, counts.new_flowers, counts.inserted, counts.rows) == (3, 3, 3, 3)
    assert bidding(engine) == [
        (MONDAY, "국화", "샤로트", "상2", 1200, 1200, 1200, 48000, 40),
        (MONDAY, "백합", "메두사", "특2", 1800, 1800, 1800, 88200, 49),
        (MONDAY, "장미", "메두사", "특1", 1000, 2000, 3000, 20000, 10),
    ]


def test_writing_the_same_day_again_changes_nothing(engine) -> None:
    write(engine, valid(ROSE, LILY, MUM))
    with engine.connect() as conn:
        before = conn.execute(sa.text("SELECT id, updated_at FROM bidding_flowers ORDER BY id")).all()
    counts = write(engine, valid(ROSE, LILY, MUM))
    assert (counts.inserted, counts.updated, counts.deleted, counts.unchanged, counts.new_flowers) == (0, 0, 0, 3, 0)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT id, updated_at FROM bidding_flowers ORDER BY id")).all() == before


def test_a_corrected_price_is_updated_and_a_vanished_row_deleted_but_no_flower_is_lost(engine) -> None:
    write(engine, valid(ROSE, LILY, MUM))
    corrected = (1, "장미", "메두사", "특1", 1000, 2100, 3000, 21000, 10)
    counts = write(engine, valid(corrected, LILY))
    assert (counts.inserted, counts.updated, counts.deleted, counts.unchanged) == (0, 1, 1, 1)
    assert [row[1:] for row in bidding(engine)] == [
        ("백합", "메두사", "특2", 1800, 1800, 1800, 88200, 49),
        ("장미", "메두사", "특1", 1000, 2100, 3000, 21000, 10),
    ]
    with engine.connect() as conn:  # 국화 샤로트 is no longer sold that day, but stays known
        assert conn.execute(sa.text("SELECT count(*) FROM flowers")).scalar_one() == 3


def test_a_variety_is_unique_per_name_and_type_and_other_dates_are_untouched(engine) -> None:
    write(engine, valid(ROSE, LILY))
    tuesday = date(2026, 3, 10)
    counts = write(engine, valid(ROSE), sale_date=tuesday)
    assert (counts.new_types, counts.new_flowers, counts.inserted) == (0, 0, 1)
    with engine.connect() as conn:
        flowers = conn.execute(
            sa.text("SELECT t.name, f.name FROM flowers f JOIN flower_types t ON t.id = f.flower_type_id ORDER BY 1")
        ).all()
        per_date = dict(
            conn.execute(sa.text("SELECT sale_date, count(*) FROM bidding_flowers GROUP BY sale_date")).all()
        )
    assert flowers == [("백합", "메두사"), ("장미", "메두사")]
    assert per_date == {MONDAY: 2, tuesday: 1}


def test_an_empty_day_empties_its_slice(engine) -> None:
    write(engine, valid(ROSE))
    counts = write(engine, valid(ROSE).iloc[0:0])
    assert (counts.deleted, counts.rows) == (1, 0)
    assert bidding(engine) == []


def test_the_top_rows_by_quantity_are_named() -> None:
    assert top_by_quantity(valid(ROSE, LILY, MUM), limit=2) == [
        ("백합", "메두사", "특2", 49, 1800, 88200),
        ("국화", "샤로트", "상2", 40, 1200, 48000),
    ]


def test_the_volume_history_holds_only_dates_whose_sync_succeeded(engine) -> None:
    for sale_date, rows in ((MONDAY, valid(ROSE, LILY)), (date(2026, 3, 2), valid(ROSE).iloc[0:0])):
        with (
            sync_run(
                engine,
                source=AT_FLOWER.name,
                table_name="bidding_flowers",
                partition_key=sale_date.isoformat(),
                run_id="test",
            ) as run,
            engine.begin() as conn,
        ):
            write_bidding_day(conn, sale_date, rows)
            run.mark_success(conn)
    write(engine, valid(MUM), sale_date=date(2026, 3, 16))  # written without a successful sync_runs row
    with engine.connect() as conn:
        volumes = known_volumes(conn, date(2026, 3, 1), date(2026, 3, 31))
    assert set(volumes) == {MONDAY, date(2026, 3, 2)}
    assert volumes[MONDAY][1].rows == 2 and volumes[MONDAY][1].quantity == 59
    assert volumes[date(2026, 3, 2)] == {}
