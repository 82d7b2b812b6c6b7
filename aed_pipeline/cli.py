"""``aed-pipeline``: the operator's commands for what is not Dagster's job.

aed-pipeline db upgrade            apply the schema migrations
aed-pipeline db downgrade REV      revert them (``base`` drops the platform's tables)
aed-pipeline db url                print the database URL in use, password redacted
aed-pipeline db stop               stop the embedded PostgreSQL (it otherwise keeps running)
aed-pipeline simulator serve       serve both simulated APIs over HTTP on localhost
aed-pipeline metrics serve         serve the Prometheus metrics of both syncs on /metrics
aed-pipeline aed changes --since DATE [--until DATE] [--format csv|jsonl]
                                   write the AED change feed (aed_changes) of those dates to stdout
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import logging
import sys

from aed_pipeline.lib.core import settings
from aed_pipeline.lib.core.embedded_postgres import stop_embedded_postgres
from aed_pipeline.lib.core.warehouse import (
    create_warehouse_engine,
    current_revision,
    downgrade_schema,
    redact_database_url,
    resolve_database_url,
    upgrade_schema,
)


def _database_url() -> str:
    return resolve_database_url(settings.env_or_none(settings.DATABASE_URL_ENV), settings.pipeline_home())


def _db_upgrade(args: argparse.Namespace) -> int:
    return _migrate(upgrade_schema, args.revision)


def _db_downgrade(args: argparse.Namespace) -> int:
    return _migrate(downgrade_schema, args.revision)


def _migrate(migration, revision: str) -> int:
    url = _database_url()
    engine = create_warehouse_engine(url)
    migration(engine, revision)
    print(f"{redact_database_url(url)} is at revision {current_revision(engine) or 'base'}")
    return 0


def _db_url(_: argparse.Namespace) -> int:
    print(redact_database_url(_database_url()))
    return 0


def _db_stop(_: argparse.Namespace) -> int:
    if settings.env_or_none(settings.DATABASE_URL_ENV):
        print(f"{settings.DATABASE_URL_ENV} is set: there is no embedded server to stop", file=sys.stderr)
        return 1
    stopped = stop_embedded_postgres(settings.pipeline_home())
    print("stopped the embedded PostgreSQL" if stopped else "the embedded PostgreSQL was not running")
    return 0


def _simulator_serve(args: argparse.Namespace) -> int:
    from aed_pipeline.simulator import run_server

    run_server(args.host, args.port, seed=args.seed, aed_count=args.aed_count, today=args.today)
    return 0


def _metrics_serve(args: argparse.Namespace) -> int:
    from aed_pipeline.lib.ops.metrics import MetricsServer

    url = _database_url()
    # A plain engine: the metrics server reads, it never migrates the schema.
    server = MetricsServer(create_warehouse_engine(url), args.host, args.port)
    print(f"serving the metrics of {redact_database_url(url)} at {server.url}", flush=True)
    server.serve_forever()
    return 0


def _aed_changes(args: argparse.Namespace) -> int:
    import sqlalchemy as sa

    from aed_pipeline.lib.egen_aed.changes import FEED_COLUMNS, stream_changes

    if args.until is not None and args.until < args.since:
        print(f"--until {args.until} is before --since {args.since}", file=sys.stderr)
        return 2
    # A plain engine, like the db commands: reading the feed never migrates the schema.
    engine = create_warehouse_engine(_database_url())
    out = sys.stdout
    writer = csv.writer(out, lineterminator="\n")
    if args.format == "csv":
        writer.writerow(FEED_COLUMNS)
    try:
        with engine.connect() as conn:
            for change in stream_changes(conn, args.since, args.until):
                if args.format == "csv":
                    writer.writerow([_csv_cell(change[column]) for column in FEED_COLUMNS])
                else:
                    out.write(json.dumps(change, ensure_ascii=False, default=str) + "\n")
            out.flush()
    except sa.exc.ProgrammingError as exc:
        if "aed_changes" not in str(exc):
            raise
        print("the warehouse has no change feed yet (aed_changes): run `aed-pipeline db upgrade`", file=sys.stderr)
        return 1
    except BrokenPipeError:  # the reader stopped early (e.g. `| head`): not an error of ours
        sys.stdout = None  # type: ignore[assignment]  # nothing more can be written (not even at exit)
    finally:
        engine.dispose()
    return 0


def _csv_cell(value: object) -> object:
    """A CSV cell: dates as ISO text, the column list and the values as JSON, NULL as empty."""
    if value is None:
        return ""
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False)
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aed-pipeline", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    db = commands.add_parser("db", help="the warehouse database").add_subparsers(dest="db_command", required=True)
    upgrade = db.add_parser("upgrade", help="apply the schema migrations")
    upgrade.add_argument("revision", nargs="?", default="head")
    upgrade.set_defaults(handler=_db_upgrade)
    downgrade = db.add_parser("downgrade", help="revert the schema migrations")
    downgrade.add_argument("revision")
    downgrade.set_defaults(handler=_db_downgrade)
    db.add_parser("url", help="print the database URL in use (password redacted)").set_defaults(handler=_db_url)
    db.add_parser("stop", help="stop the embedded PostgreSQL").set_defaults(handler=_db_stop)

    simulator = commands.add_parser("simulator", help="the offline API simulator").add_subparsers(
        dest="simulator_command", required=True
    )
    serve = simulator.add_parser("serve", help="serve both simulated APIs over HTTP")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8765)
    serve.add_argument("--seed", type=int, default=20260101)
    serve.add_argument("--aed-count", type=int, default=81464)
    serve.add_argument(
        "--today",
        type=datetime.date.fromisoformat,
        default=None,
        help="pin the simulated date (YYYY-MM-DD); default: the current date in Korea",
    )
    serve.set_defaults(handler=_simulator_serve)

    metrics = commands.add_parser("metrics", help="Prometheus metrics").add_subparsers(
        dest="metrics_command", required=True
    )
    metrics_serve = metrics.add_parser("serve", help="serve /metrics, computed from sync_runs and the warehouse")
    metrics_serve.add_argument("--host", default="127.0.0.1")
    metrics_serve.add_argument("--port", type=int, default=9464, help="0: any free port (printed)")
    metrics_serve.set_defaults(handler=_metrics_serve)

    aed = commands.add_parser("aed", help="the e-gen AED registry").add_subparsers(dest="aed_command", required=True)
    changes = aed.add_parser(
        "changes",
        help="write the change feed (aed_changes) of the snapshot dates since DATE to stdout",
        description="One row per device change between consecutive applied snapshots, by snapshot date and "
        "serial: the change type (baseline, new, changed, removed, revived, repaired), the changed columns and "
        "their values before and after (JSON). Streamed as PostgreSQL sends it.",
    )
    changes.add_argument("--since", type=datetime.date.fromisoformat, required=True, help="first snapshot date")
    changes.add_argument(
        "--until", type=datetime.date.fromisoformat, default=None, help="last snapshot date (default: the newest)"
    )
    changes.add_argument("--format", choices=("csv", "jsonl"), default="csv")
    changes.set_defaults(handler=_aed_changes)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
