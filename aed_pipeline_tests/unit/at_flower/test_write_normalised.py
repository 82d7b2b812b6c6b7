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
from aed_pipeline.lib.at_flower.write.normalised import PostWriteChecksFailed, write_bidding_day
from aed_pipeline.lib.core.sync_log import sync_run
from aed_pipeline.lib.core.warehouse import downgrade_schema, upgrade_schema, warehouse_engine

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


# --------------------------------------------------------------------------- the versions kept


def write_as(engine: sa.Engine, rows: pd.DataFrame, run_id: str, sale_date: date = MONDAY, after_write=None):
    with engine.begin() as conn:
        return write_bidding_day(conn, sale_date, rows, run_id=run_id, after_write=after_write)


def versions(engine: sa.Engine) -> list[tuple]:
    with engine.connect() as conn:
        return conn.execute(
            sa.text(
                "SELECT t.name, f.name, v.grade, v.avg_price, v.total_amount, v.version, v.is_current, "
                "v.end_reason, v.published_run_id, v.replaced_run_id FROM bidding_flowers_versions v "
                "JOIN flowers f ON f.id = v.flower_id JOIN flower_types t ON t.id = f.flower_type_id "
                "ORDER BY 1, 2, 3, v.version"
            )
        ).all()


def test_a_correction_and_a_withdrawal_keep_the_replaced_values_as_versions(engine) -> None:
    write_as(engine, valid(ROSE, LILY, MUM), "run-1")
    corrected = (1, "장미", "메두사", "특1", 1000, 2100, 3000, 21000, 10)
    counts = write_as(engine, valid(corrected, LILY), "run-2")
    assert (counts.corrected, counts.withdrawn, counts.replaced) == (1, 1, 2)
    assert versions(engine) == [
        ("국화", "샤로트", "상2", 1200, 48000, 1, False, "withdrawn", "run-1", "run-2"),
        ("백합", "메두사", "특2", 1800, 88200, 1, True, None, "run-1", None),
        ("장미", "메두사", "특1", 2000, 20000, 1, False, "corrected", "run-1", "run-2"),
        ("장미", "메두사", "특1", 2100, 21000, 2, True, None, "run-2", None),
    ]
    by_name = {(c.pum_name, c.end_reason): c for c in counts.corrections}
    assert by_name[("장미", "corrected")].before == (1000, 2000, 3000, 20000, 10)
    assert by_name[("장미", "corrected")].after == (1000, 2100, 3000, 21000, 10)
    assert by_name[("국화", "withdrawn")].after is None
    with engine.connect() as conn:  # a version ends when the next one is published
        gaps = conn.execute(
            sa.text(
                "SELECT count(*) FROM bidding_flowers_history h JOIN bidding_flowers b USING "
                "(sale_date, flower_gubn, flower_id, grade) WHERE h.replaced_at <> b.updated_at"
            )
        ).scalar_one()
    assert gaps == 0


def test_an_unchanged_rerun_writes_no_version(engine) -> None:
    write_as(engine, valid(ROSE, LILY), "run-1")
    counts = write_as(engine, valid(ROSE, LILY), "run-2")
    assert (counts.replaced, counts.corrections, counts.updated) == (0, (), 0)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM bidding_flowers_history")).scalar_one() == 0
        assert set(conn.execute(sa.text("SELECT run_id FROM bidding_flowers")).scalars()) == {"run-1"}


def test_a_violation_after_the_write_fails_the_checks_and_rolls_the_date_back(engine) -> None:
    write_as(engine, valid(ROSE, LILY), "run-1")
    before = bidding(engine)

    def tamper(conn) -> None:  # as if the write had got a price wrong, and lost a replaced version
        conn.execute(sa.text("UPDATE bidding_flowers SET total_amount = total_amount + 10 WHERE grade = '특2'"))
        conn.execute(sa.text("DELETE FROM bidding_flowers_history"))

    corrected = (1, "장미", "메두사", "특1", 1000, 2100, 3000, 21000, 10)
    with pytest.raises(PostWriteChecksFailed) as failed:
        write_as(engine, valid(corrected, LILY), "run-2", after_write=tamper)
    verdicts = {check.name: check.passed for check in failed.value.checks}
    assert verdicts == {
        "slice_matches_validated": False,
        "keys_unique_in_slice": True,
        "prices_ordered_in_slice": True,
        "replaced_versions_kept": False,
    }
    [mismatch] = [c for c in failed.value.checks if c.name == "slice_matches_validated"]
    assert mismatch.examples == (
        "validated, not in the table as validated: 백합 메두사 특2 (1800/1800/1800/88200/49)",
        "in the table, not validated: 백합 메두사 특2 (1800/1800/1800/88210/49)",
    )
    assert "rolled back" in str(failed.value) and "bidding_flowers 2026-03-09" in str(failed.value)
    assert bidding(engine) == before
    assert versions(engine)[0][-2:] == ("run-1", None)


def current_prices(engine: sa.Engine) -> list[tuple]:
    with engine.connect() as conn:
        return conn.execute(
            sa.text(
                "SELECT id, sale_date, flower_gubn, flower_id, grade, min_price, avg_price, max_price, total_amount, "
                "quantity, created_at, updated_at FROM bidding_flowers ORDER BY id"
            )
        ).all()


def test_the_migration_down_keeps_the_current_prices_and_up_makes_them_first_versions(engine) -> None:
    write_as(engine, valid(ROSE, LILY, MUM), "run-1")
    write_as(engine, valid((1, "장미", "메두사", "특1", 1000, 2100, 3000, 21000, 10), LILY), "run-2")
    prices = current_prices(engine)
    downgrade_schema(engine, "0004")
    inspector = sa.inspect(engine)
    assert "bidding_flowers_versions" not in inspector.get_view_names()
    assert "bidding_flowers_history" not in inspector.get_table_names()
    assert "run_id" not in {c["name"] for c in inspector.get_columns("bidding_flowers")}
    assert current_prices(engine) == prices
    upgrade_schema(engine)
    assert current_prices(engine) == prices
    # The rows kept become each key's first and current version (their run unknown); syncs go on.
    assert [row[5:] for row in versions(engine)] == [(1, True, None, None, None), (1, True, None, None, None)]
    counts = write_as(engine, valid((1, "장미", "메두사", "특1", 1000, 2200, 3000, 22000, 10), LILY), "run-3")
    assert counts.corrected == 1
    assert [row[3:] for row in versions(engine) if row[0] == "장미"] == [
        (2100, 21000, 1, False, "corrected", None, "run-3"),
        (2200, 22000, 2, True, None, "run-3", None),
    ]
