"""The browser smoke test: a person in Korea clicking through the Dagster UI in Chromium, against
`dg dev` started as README command (a) says.

Playwright (the pip package) drives Debian's own Chromium (``/usr/bin/chromium``, which ``.ci/run``
installs with apt-get); Playwright's browser download is never used. The UI gets its own
``DAGSTER_HOME``, ``AED_PIPELINE_HOME``, database and the simulator server as both APIs, through
``support/ui_support.py``, as ``integration/test_ui_launches.py`` does.

In the browser: the lineage of both asset groups, one AED partition and a range of flower sale dates
launched through the *Materialize* dialog (typed into its partition field, as a person picks a date
outside the dialog's default window), both runs followed on their pages until they show *Success*,
then the asset pages: the row counts and the check results. Every step leaves a screenshot in
``AED_PIPELINE_UI_SCREENSHOTS`` (default ``ui-screenshots/`` at the repository root, emptied when
the test starts), numbered in order, and ``NN_failed.png`` when a step fails.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from aed_pipeline.defs.shared.resources import WarehouseResource
from aed_pipeline.simulator import Simulator, SimulatorServer
from aed_pipeline_tests.support.ui_support import (
    REPO_ROOT,
    DagsterDev,
    Ui,
    start_dagster_dev,
    tags_of,
    ui_database,
    ui_environment,
)

try:
    from playwright.sync_api import Locator, Page, expect, sync_playwright
except ImportError:  # pragma: no cover - the dev extra installs it
    pytest.fail(
        "the browser smoke test needs the Playwright pip package: `.venv/bin/pip install -e '.[dev]'`",
        pytrace=False,
    )

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS_ENV = "AED_PIPELINE_UI_SCREENSHOTS"
LOCATION = "aed_pipeline"

AED_COUNT = 300
AED_DAY = "2026-03-12"  # the simulator's today: the one date the e-gen API serves
AED_GROUP, AED_ASSETS = "aed", ["aed_raw_snapshot", "aed_validated", "aed_data"]
FLOWER_GROUP = "flowers"
FLOWER_ASSETS = [
    "flower_auction_raw",
    "public_bidding_flowers",
    "flower_auction_validated",
    "flower_types",
    "flowers",
    "bidding_flowers",
]
# Sale dates at least two days before the simulator's today carry their final settlement.
FLOWER_RANGE = ["2026-03-04", "2026-03-05", "2026-03-06"]

# Generous: two cores shared with other test processes, and the UI loads lazily.
UI_TIMEOUT_MS = 60_000
RUN_TIMEOUT_MS = 420_000
expect.set_options(timeout=UI_TIMEOUT_MS)


def screenshot_dir() -> Path:
    folder = Path(os.environ.get(SCREENSHOTS_ENV) or REPO_ROOT / "ui-screenshots")
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


@pytest.fixture(scope="module")
def chromium() -> Path:
    """Debian's Chromium, checked before anything starts: missing, the test fails and says how to install it."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"Chromium is not installed at {CHROMIUM}: the browser smoke test drives Debian's own Chromium. "
            "Install it with `apt-get update && apt-get install -y --no-install-recommends chromium fonts-nanum` "
            "(as root; `.ci/run` does this), and never `playwright install`.",
            pytrace=False,
        )
    return CHROMIUM


# --------------------------------------------------------------------------- the world and the UI


@pytest.fixture(scope="module")
def world() -> Iterator[tuple[Simulator, SimulatorServer]]:
    sim = Simulator(today=dt.date.fromisoformat(AED_DAY), aed_count=AED_COUNT)
    with SimulatorServer(sim) as server:
        yield sim, server


@pytest.fixture(scope="module")
def warehouse_url(embedded_pg) -> Iterator[str]:
    with ui_database(embedded_pg) as url:
        yield url


@pytest.fixture(scope="module")
def dev(world, warehouse_url, tmp_path_factory) -> Iterator[DagsterDev]:
    _, server = world
    home = tmp_path_factory.mktemp("browser_aed_home")
    running = start_dagster_dev(
        tmp_path_factory.mktemp("browser_dev"),
        ui_environment(home, warehouse_url, server.egen_base_url, server.at_base_url),
    )
    yield running
    running.stop()


class Person:
    """One browser tab on the UI; every step saves a screenshot, and a failing step saves one too."""

    def __init__(self, page: Page, url: str, shots: Path) -> None:
        self.page, self.url, self.shots = page, url, shots
        self.taken: list[Path] = []

    def shot(self, name: str) -> Path:
        self.page.wait_for_timeout(1000)  # the page has what the step waited for; let it finish drawing
        path = self.shots / f"{len(self.taken) + 1:02d}_{name}.png"
        self.page.screenshot(path=str(path))
        self.taken.append(path)
        return path

    def open(self, path: str) -> None:
        self.page.goto(f"{self.url}{path}", wait_until="domcontentloaded")


def materialize_dialog(person: Person, group: str, asset_count: int, partitions: str) -> Locator:
    """The group's *Materialize all* → its dialog with ``partitions`` typed into the partition field."""
    page = person.page
    page.get_by_role("button", name=re.compile(r"Materialize all")).click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_text(f"Launch runs to materialize {asset_count} assets")).to_be_visible()
    # The dialog opens on the last 90 days of the real calendar; the simulator's world is March 2026.
    dialog.get_by_role("button", name="Show all partitions").click()
    field = dialog.get_by_role("textbox").first
    field.fill(partitions)
    field.press("Enter")
    return dialog


def wait_for_run_success(person: Person, run_id: str) -> None:
    """The run's page, until its status tag reads *Success* (a failure shows *Failure*, and stops)."""
    person.open(f"/runs/{run_id}")
    status = person.page.get_by_text(re.compile(r"^(Success|Failure|Canceled)$")).first
    expect(status).to_be_visible(timeout=RUN_TIMEOUT_MS)
    expect(status).to_have_text("Success")
    # The step panel beside the timeline: every step succeeded, none errored.
    expect(person.page.get_by_text("Errored (0)", exact=True)).to_be_visible()
    expect(person.page.get_by_text(re.compile(r"^Succeeded \([1-9]\d*\)$"))).to_be_visible()


def launched_id(person: Person, toast_text: re.Pattern[str], href: re.Pattern[str]) -> str:
    """The run or backfill id in the toast the launch leaves, from its *View* link."""
    toast = person.page.get_by_role("listitem").filter(has_text=toast_text)
    expect(toast).to_be_visible(timeout=UI_TIMEOUT_MS)
    link = toast.get_by_role("link", name="View")
    expect(link).to_be_visible()
    person.page.wait_for_timeout(500)  # the toast slides in: let the screenshot show it whole
    match = href.search(link.get_attribute("href") or "")
    assert match, link.get_attribute("href")
    return match.group(1)


def assert_row_count(person: Person, expected: int) -> None:
    """The asset page's *Row count* (``dagster/row_count`` of the latest materialisation)."""
    status = person.page.get_by_text("Row count", exact=True).locator("xpath=..")
    expect(status).to_contain_text(re.compile(rf"(^|\D){expected:,}($|\D)"), timeout=UI_TIMEOUT_MS)


def assert_checks_passed(person: Person, asset: str, checks: int) -> None:
    person.open(f"/assets/{asset}?view=checks")
    page = person.page
    expect(page.get_by_text(f"Checks ({checks})")).to_be_visible(timeout=UI_TIMEOUT_MS)
    expect(page.get_by_text("Succeeded", exact=True)).to_have_count(checks, timeout=UI_TIMEOUT_MS)
    expect(page.get_by_text("Passed", exact=True).first).to_be_visible()
    person.shot(f"{asset}_checks_passed")


def table_count(engine: sa.Engine, statement: str, **params: object) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text(statement), params).scalar_one()


# --------------------------------------------------------------------------- the steps


def click_through(person: Person, ui: Ui, engine: sa.Engine) -> None:
    """What the person does and sees, step by step."""
    # 1. The lineage of both groups, every asset drawn with its partitions.
    for group, assets in ((AED_GROUP, AED_ASSETS), (FLOWER_GROUP, FLOWER_ASSETS)):
        person.open(f"/locations/{LOCATION}/asset-groups/{group}/lineage")
        expect(person.page.get_by_role("tab", name="Lineage", selected=True)).to_be_visible()
        graph = person.page.locator("svg foreignObject")  # the nodes of the graph, drawn in its SVG
        for asset in assets:
            expect(graph.get_by_text(asset, exact=True)).to_be_visible()
        expect(person.page.get_by_role("link", name=re.compile(r"^[\d,]+ partitions$"))).to_have_count(len(assets))
        person.shot(f"lineage_{group}")

    # 2. One AED partition: the simulator's today, typed into the dialog.
    person.open(f"/locations/{LOCATION}/asset-groups/{AED_GROUP}/lineage")
    dialog = materialize_dialog(person, AED_GROUP, len(AED_ASSETS), AED_DAY)
    expect(dialog.get_by_text("1 partition", exact=True)).to_be_visible()
    person.shot("aed_materialize_dialog")
    dialog.get_by_role("button", name="Launch 1 run").click()
    aed_run = launched_id(person, re.compile("Launched run"), re.compile(r"/runs/([0-9a-f-]{36})"))
    person.shot("aed_run_launched")

    # 3. A range of flower sale dates: one backfill, one run for the range.
    person.open(f"/locations/{LOCATION}/asset-groups/{FLOWER_GROUP}/lineage")
    dialog = materialize_dialog(person, FLOWER_GROUP, len(FLOWER_ASSETS), f"[{FLOWER_RANGE[0]}...{FLOWER_RANGE[-1]}]")
    expect(dialog.get_by_text(f"{len(FLOWER_RANGE)} partitions", exact=True)).to_be_visible()
    person.shot("flower_materialize_dialog")
    dialog.get_by_role("button", name="Launch backfill").click()
    backfill = launched_id(person, re.compile("Created backfill"), re.compile(r"/runs/b/(\w+)"))
    person.shot("flower_backfill_launched")

    # 4. Both runs succeed, as their pages show.
    wait_for_run_success(person, aed_run)
    person.shot("aed_run_success")
    assert ui.wait_run(aed_run)["status"] == "SUCCESS"
    assert tags_of(ui.run(aed_run))["dagster/partition"] == AED_DAY

    person.open(f"/runs/b/{backfill}")
    # The status beside the header's Created, Duration and Partition selection (the table below has
    # a column "Succeeded" too).
    status = person.page.get_by_text("Status", exact=True).locator("xpath=..")
    expect(status).to_contain_text(re.compile(r"Succeeded|Completed|Failed|Canceled"), timeout=RUN_TIMEOUT_MS)
    expect(status).to_contain_text("Succeeded")
    expect(person.page.get_by_text("Partition selection", exact=True).locator("xpath=..")).to_contain_text(
        re.compile(rf"{FLOWER_RANGE[0]}\s*(…|\.\.\.)\s*{FLOWER_RANGE[-1]}")
    )
    person.shot("flower_backfill_succeeded")
    done = ui.wait_backfill(backfill)
    assert done["status"] == "COMPLETED_SUCCESS", done
    [flower_run] = done["runs"]
    tags = tags_of(flower_run)
    assert (tags["dagster/asset_partition_range_start"], tags["dagster/asset_partition_range_end"]) == (
        FLOWER_RANGE[0],
        FLOWER_RANGE[-1],
    )
    wait_for_run_success(person, flower_run["id"])
    person.shot("flower_run_success")

    # 5. The asset pages: the row counts the runs wrote, and every check passed.
    active_devices = table_count(engine, "SELECT count(*) FROM aed_data WHERE deleted_at IS NULL")
    assert active_devices > 0
    person.open("/assets/aed_data")
    expect(person.page.get_by_text(AED_DAY, exact=True).first).to_be_visible()
    assert_row_count(person, active_devices)
    person.shot("aed_data_row_count")
    assert_checks_passed(person, "aed_validated", 6)
    assert_checks_passed(person, "aed_data", 3)

    prices = table_count(engine, "SELECT count(*) FROM bidding_flowers")
    newest = table_count(
        engine,
        "SELECT count(*) FROM bidding_flowers WHERE sale_date = :day",
        day=dt.date.fromisoformat(FLOWER_RANGE[-1]),
    )
    assert 0 < newest < prices
    person.open("/assets/bidding_flowers")
    expect(person.page.get_by_text(FLOWER_RANGE[-1], exact=True).first).to_be_visible()
    assert_row_count(person, prices)
    person.shot("bidding_flowers_row_count")
    # The newest date's slice, under the partition's own key, in the materialisation's metadata.
    person.page.get_by_placeholder("Filter metadata keys").fill("row_count")
    key = person.page.get_by_text("dagster/partition_row_count", exact=True)
    key.scroll_into_view_if_needed()
    row = person.page.get_by_role("row").filter(has=key)
    expect(row).to_contain_text(re.compile(rf"(^|\D){newest}($|\D)"))
    person.shot("bidding_flowers_partition_row_count")
    assert_checks_passed(person, "flower_auction_validated", 3)


def test_a_person_launches_both_groups_in_chromium_and_sees_rows_and_passed_checks(
    chromium: Path, dev: DagsterDev, warehouse_url: str
) -> None:
    shots = screenshot_dir()
    started = time.monotonic()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), headless=True, args=CHROMIUM_ARGS)
        try:
            # A browser in Korea: the UI shows KST, as the README asks of a person's UI.
            # Wide enough for the flower group's eight nodes at the zoom that draws them whole: the
            # zoomed-out graph shows truncated names and no partition links.
            context = browser.new_context(viewport={"width": 2560, "height": 1440}, timezone_id="Asia/Seoul")
            context.set_default_timeout(UI_TIMEOUT_MS)
            person = Person(context.new_page(), dev.url, shots)
            try:
                click_through(person, Ui(dev.url), WarehouseResource(database_url=warehouse_url).engine())
            except BaseException:
                with contextlib.suppress(Exception):  # the step's own error is the one to see
                    person.shot("failed")
                raise
        finally:
            browser.close()
    print(
        f"browser smoke: {time.monotonic() - started:.0f} s, screenshots in {shots}: {[p.name for p in person.taken]}"
    )
