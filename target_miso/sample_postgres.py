"""Sample events in a real Postgres, laid out the way Snowplow's Postgres loader does (shredded).

For the tests, the view's figures and ``scripts/benchmark.py --pipeline``; it needs psycopg
(the ``test`` extra), which the target itself never imports.
"""

from __future__ import annotations

import argparse
import sys
import typing as t
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from target_miso import samples

#: The shipped view script (in the repository, not in the installed package).
VIEW_SQL = Path(__file__).resolve().parent.parent / "sql" / "snowplow" / "postgres_events_view.sql"
_BOOLEANS = frozenset(
    {c for c in samples.ATOMIC_COLUMNS if c.startswith("br_features_")}
    | {"br_cookies", "dvce_ismobile"}
)


def _atomic_type(column: str) -> str:
    if column == "event_id":
        return "uuid NOT NULL"
    if column.endswith("_tstamp"):
        return "timestamp"
    if column in samples._INTEGERS:
        return "integer"
    if column in samples._FLOATS or column in samples._MONEY:
        return "double precision"
    if column in _BOOLEANS:
        return "boolean"
    return "varchar(4096)"


def _json_type(values: list[t.Any]) -> str:
    present = [value for value in values if value is not None]
    if present and all(isinstance(value, bool) for value in present):
        return "boolean"
    if present and all(isinstance(value, int) and not isinstance(value, bool) for value in present):
        return "bigint"
    if present and all(
        isinstance(value, (int, float)) and not isinstance(value, bool) for value in present
    ):
        return "double precision"
    if any(isinstance(value, (list, dict)) for value in present):
        return "jsonb"
    return "varchar(4096)"


def _shredded(
    events: list[samples.LogicalEvent],
) -> dict[str, list[tuple[str, dict, samples.LogicalEvent]]]:
    """Shredded table name -> (iglu uri, snake_case data, event) for every event and entity."""
    tables: dict[str, list[tuple[str, dict, samples.LogicalEvent]]] = {}
    for event in events:
        items = [event.unstruct] if event.unstruct else []
        for schema, data in [*items, *event.contexts, *event.derived_contexts]:
            stem, major, _ = samples._schema_key(schema)
            snake = {samples._snake(key): value for key, value in data.items()}
            tables.setdefault(f"{stem}_{major}"[:63], []).append((schema, snake, event))
    return tables


def load_events(
    conn: psycopg.Connection, schema: str, events: list[samples.LogicalEvent], *, create: bool
) -> None:
    """Insert events into <schema>.events and its shredded tables.

    With ``create``, the schema is made first, with a shredded table for every schema of the
    sample event set (so that later loads of other sample events find their tables).
    """
    tables = _shredded(events)
    with conn.cursor() as cur:
        if create:
            tables_to_create = _shredded([*samples.sample_events(), *events])
            cur.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
            cur.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
            columns = sql.SQL(", ").join(
                sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(_atomic_type(c)))
                for c in samples.ATOMIC_COLUMNS
            )
            cur.execute(
                sql.SQL("CREATE TABLE {}.events ({})").format(sql.Identifier(schema), columns)
            )
            for table, rows in tables_to_create.items():
                keys = sorted({key for _, data, _ in rows for key in data})
                meta = (
                    "schema_vendor varchar(128) NOT NULL, schema_name varchar(128) NOT NULL, "
                    "schema_format varchar(128) NOT NULL, schema_version varchar(128) NOT NULL, "
                    "root_id uuid NOT NULL, root_tstamp timestamp NOT NULL"
                )
                fields = [
                    sql.SQL("{} {}").format(
                        sql.Identifier(key), sql.SQL(_json_type([d.get(key) for _, d, _ in rows]))
                    )
                    for key in keys
                ]
                cur.execute(
                    sql.SQL("CREATE TABLE {}.{} ({})").format(
                        sql.Identifier(schema),
                        sql.Identifier(table),
                        sql.SQL(", ").join([sql.SQL(meta), *fields]),
                    )
                )
        placeholders = sql.SQL(", ").join(sql.Placeholder() * len(samples.ATOMIC_COLUMNS))
        insert = sql.SQL("INSERT INTO {}.events ({}) VALUES ({})").format(
            sql.Identifier(schema),
            sql.SQL(", ").join(map(sql.Identifier, samples.ATOMIC_COLUMNS)),
            placeholders,
        )
        cur.executemany(
            insert, [[event.atomic.get(c) for c in samples.ATOMIC_COLUMNS] for event in events]
        )
        for table, rows in tables.items():
            for iglu, data, event in rows:
                vendor, name, fmt, version = iglu.removeprefix("iglu:").split("/")
                values = {
                    "schema_vendor": vendor,
                    "schema_name": name,
                    "schema_format": fmt,
                    "schema_version": version,
                    "root_id": event.atomic["event_id"],
                    "root_tstamp": event.atomic["collector_tstamp"],
                    **{
                        key: Jsonb(value) if isinstance(value, (list, dict)) else value
                        for key, value in data.items()
                    },
                }
                cur.execute(
                    sql.SQL("INSERT INTO {}.{} ({}) VALUES ({})").format(
                        sql.Identifier(schema),
                        sql.Identifier(table),
                        sql.SQL(", ").join(map(sql.Identifier, values)),
                        sql.SQL(", ").join(sql.Placeholder() * len(values)),
                    ),
                    list(values.values()),
                )
    conn.commit()


def create_view(conn: psycopg.Connection, schema: str) -> None:
    """Run the shipped SQL script for this schema."""
    with conn.cursor() as cur:
        cur.execute("SELECT set_config('target_miso.snowplow_schema', %s, false)", (schema,))
        cur.execute(VIEW_SQL.read_text(encoding="utf-8"))
    conn.commit()


def multiply_events(conn: psycopg.Connection, schema: str, copies: int) -> int:
    """Add ``copies`` copies of every event already loaded, with their shredded rows.

    Copy k of an event gets a new event_id (derived from the old one and k) and its
    collector_tstamp moved k days later, in <schema>.events and in every shredded table, so
    that a few loaded events become a large, realistic database in seconds. Returns the number
    of events in the schema.
    """
    with conn.cursor() as cur:
        cur.execute(
            "SELECT table_name, array_agg(column_name::text ORDER BY ordinal_position)"
            "  FROM information_schema.columns WHERE table_schema = %s GROUP BY table_name",
            (schema,),
        )
        tables: dict[str, list[str]] = dict(cur.fetchall())
        renamed = {
            "event_id": sql.SQL("md5(t.event_id::text || '/' || k)::uuid"),
            "root_id": sql.SQL("md5(t.root_id::text || '/' || k)::uuid"),
            "collector_tstamp": sql.SQL("t.collector_tstamp + k * interval '1 day'"),
            "root_tstamp": sql.SQL("t.root_tstamp + k * interval '1 day'"),
        }
        for table, columns in tables.items():
            if table != "events" and "root_id" not in columns:
                continue
            cur.execute(
                sql.SQL(
                    "INSERT INTO {schema}.{table} ({columns}) SELECT {values}"
                    "  FROM {schema}.{table} t CROSS JOIN generate_series(1, %s) k"
                ).format(
                    schema=sql.Identifier(schema),
                    table=sql.Identifier(table),
                    columns=sql.SQL(", ").join(map(sql.Identifier, columns)),
                    values=sql.SQL(", ").join(
                        renamed.get(c, sql.SQL("t.{}").format(sql.Identifier(c))) for c in columns
                    ),
                ),
                (copies,),
            )
            cur.execute(
                sql.SQL("ANALYZE {}.{}").format(sql.Identifier(schema), sql.Identifier(table))
            )
        cur.execute(sql.SQL("SELECT count(*) FROM {}.events").format(sql.Identifier(schema)))
        (count,) = t.cast(tuple[int], cur.fetchone())
    conn.commit()
    return count


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m target_miso.sample_postgres",
        description="Load the sample Snowplow events into Postgres in the Postgres loader's "
        "layout (events plus one table per entity and event schema) and create the views "
        "the shipped pipeline reads, to try `meltano run tap-postgres target-miso` without "
        "data of your own.",
    )
    parser.add_argument("--dsn", required=True, help="a libpq connection string to the database")
    parser.add_argument("--schema", default="atomic", help="the schema to create (default: atomic)")
    parser.add_argument(
        "--copies",
        type=int,
        default=0,
        help="add this many copies of the sample events, a day apart, with fresh ids",
    )
    parser.add_argument(
        "--replace",
        action="store_true",
        help="drop the schema first if it exists (never the default: it may hold real events)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Load the samples; refuse to touch a schema that exists unless told to replace it."""
    args = _parser().parse_args(argv)
    try:
        with psycopg.connect(args.dsn) as conn:
            exists = conn.execute(
                "SELECT 1 FROM information_schema.schemata WHERE schema_name = %s", (args.schema,)
            ).fetchone()
            if exists and not args.replace:
                print(
                    f"schema {args.schema!r} exists already: nothing was changed. Pass --replace "
                    "to drop it and load the samples (it may hold real events), or --schema to "
                    "use another one.",
                    file=sys.stderr,
                )
                return 2
            events = samples.sample_events()
            load_events(conn, args.schema, events, create=True)
            count = multiply_events(conn, args.schema, args.copies) if args.copies else len(events)
            create_view(conn, args.schema)
    except psycopg.Error as error:
        print(f"Postgres: {error}".strip(), file=sys.stderr)
        return 1
    print(
        f"{count} sample events in {args.schema}.events and its entity tables; views "
        f"{args.schema}.events_for_miso, _narrow and _json created.",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
