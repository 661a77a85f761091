"""tap-postgres-copy: Postgres tables and views as Singer streams, read with ``COPY ... TO STDOUT``.

Why another Postgres tap: the pipeline waits on the extractor, not on target-miso
(docs/performance.md). tap-postgres asks for 1,000 rows at a time, turns every value into a
Python object, conforms it to the schema and serializes it again; about 90 µs a row. Here
Postgres itself writes each row as JSON (``row_to_json`` of the selected columns) and streams
the rows with ``COPY``; the tap puts each one, unchanged, inside a RECORD line. Only the
replication key is read by Python, to move the bookmark.

Everything else is singer-sdk's SQL tap, so it behaves as Singer taps do: discovery (tables
and views of ``filter_schemas``, the SDK's type mapping, primary keys), selection from the
catalog (only the selected columns are read), FULL_TABLE or INCREMENTAL replication on a
replication key (rows ``>=`` the bookmark, in its order; a STATE every 10,000 rows and at
the end, in the same format as tap-postgres, so a bookmark carries over from one to the
other), ``--about`` and ``--test``.

``stream_options`` takes tap-postgres's ``custom_where_clauses`` (a partition per run).
What it does not do: stream maps, schema flattening and BATCH output (records are never
Python objects to transform; those settings are refused at start-up, and target-miso's own
``mappings`` do the mapping), log-based replication and the SDK's partitions.

Values are written as Postgres writes JSON: timestamps in ISO 8601 (``timestamptz`` in
UTC), numeric as JSON numbers, ``json`` and ``jsonb`` as JSON, arrays as arrays. Connection
options beyond the settings (TLS, ...) come from libpq's environment variables
(``PGSSLMODE``, ``PGSSLROOTCERT``, ...).
"""

from __future__ import annotations

import datetime as dt
import decimal
import sys
import typing as t

import orjson
import sqlalchemy as sa
from singer_sdk import typing as th
from singer_sdk.exceptions import ConfigValidationError
from singer_sdk.helpers.capabilities import PluginCapabilities, TapCapabilities
from singer_sdk.helpers.conform import TypeConformanceLevel
from singer_sdk.sql import SQLConnector, SQLStream, SQLTap
from sqlalchemy.dialects import postgresql

from target_miso.taps.singer_output import FastSingerWriter

try:
    import psycopg
    from psycopg import sql
except ImportError:  # pragma: no cover - the `postgres` extra
    msg = "tap-postgres-copy needs psycopg 3: pip install 'target-miso[postgres]'"
    raise ImportError(msg) from None

if t.TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

    from singer_sdk.helpers.capabilities import CapabilitiesEnum
    from sqlalchemy.engine import reflection

#: The record's key holding its ready-made RECORD line; the only other key is the bookmark's.
LINE = "__line__"
#: Settings of singer-sdk taps that transform or re-encode records: refused at start-up.
UNSUPPORTED_SETTINGS = ("stream_maps", "flattening_enabled", "batch_config")
#: Any JSON value: what ``json``/``jsonb`` columns hold (spelled out: the SDK's tools cannot
#: read ``{}``).
ANY_JSON: dict[str, t.Any] = {"type": ["object", "array", "string", "number", "boolean", "null"]}


class CopyReadError(RuntimeError):
    """A stream that cannot be read: the message names the stream and what Postgres said."""


class PostgresCopyConnector(SQLConnector):
    """Connects with psycopg 3 (through SQLAlchemy for discovery) from the tap's settings."""

    allow_temp_tables = False
    allow_column_alter = False
    allow_merge_upsert = False

    def get_sqlalchemy_url(self, config: dict[str, t.Any]) -> str:
        """Build the URL from host, port, user, password and database.

        Args:
            config: The tap's settings.

        Returns:
            The SQLAlchemy URL (psycopg 3 driver).

        """
        url = sa.engine.URL.create(
            "postgresql+psycopg",
            username=config.get("user"),
            password=config.get("password"),
            host=config.get("host"),
            port=config.get("port"),
            database=config.get("database"),
        )
        return url.render_as_string(hide_password=False)

    def get_schema_names(self, engine: sa.Engine, inspected: reflection.Inspector) -> list[str]:
        """Return the schemas to discover: ``filter_schemas``, or every schema.

        Args:
            engine: Unused.
            inspected: The database's inspector.

        Returns:
            Schema names.

        """
        wanted = self.config.get("filter_schemas") or []
        found = super().get_schema_names(engine, inspected)
        return [name for name in found if not wanted or name in wanted]

    def to_jsonschema_type(self, sql_type: t.Any) -> dict[str, t.Any]:
        """Map a column type to JSON Schema, as Postgres writes the value in JSON.

        Args:
            sql_type: The reflected SQLAlchemy type.

        Returns:
            The JSON Schema.

        """
        if isinstance(sql_type, (postgresql.JSON, postgresql.JSONB, sa.types.JSON)):
            return dict(ANY_JSON)
        if isinstance(sql_type, sa.types.ARRAY):
            item = self.to_jsonschema_type(sql_type.item_type)
            return {"type": ["array", "null"], "items": item}
        return super().to_jsonschema_type(sql_type)


class PostgresCopyStream(SQLStream):
    """One table or view, read with one ``COPY`` of its selected columns as JSON rows."""

    connector_class = PostgresCopyConnector
    # Records are never turned into Python values: there is nothing to conform.
    TYPE_CONFORMANCE_LEVEL = TypeConformanceLevel.NONE

    def get_records(self, context: t.Mapping[str, t.Any] | None) -> Iterable[dict[str, t.Any]]:
        """Yield one record per row: its RECORD line and its replication key value.

        Args:
            context: Unused (no partitions).

        Yields:
            ``{LINE: <RECORD line>, <replication key>: <value>}``.

        Raises:
            CopyReadError: Postgres refused the query or the connection broke.

        """
        prefix = self._line_prefix()
        key = self.replication_key
        to_value = _key_parser(self.schema["properties"].get(key, {})) if key else None
        with self.connector._connect() as connection:  # the SDK's own connection
            raw = connection.connection.driver_connection
            if not isinstance(raw, psycopg.Connection):  # pragma: no cover - set by the URL
                msg = f"stream '{self.name}': the connection is not psycopg's"
                raise CopyReadError(msg)
            try:
                start = self.get_starting_replication_key_value(context)
                yield from self._copy_rows(raw, self._copy_query(start), prefix, key, to_value)
            except psycopg.Error as error:
                detail = str(error).strip().splitlines()[0] if str(error).strip() else ""
                msg = f"stream '{self.name}': Postgres could not read the rows: {detail}"
                raise CopyReadError(msg) from None

    def _copy_rows(
        self,
        raw: psycopg.Connection[t.Any],
        query: sql.Composed,
        prefix: str,
        key: str | None,
        to_value: Callable[[str], t.Any] | None,
    ) -> Iterator[dict[str, t.Any]]:
        raw.execute("SET TIME ZONE 'UTC'")  # timestamptz values in UTC, whatever the server's
        with raw.cursor() as cursor, cursor.copy(query) as copy:
            copy.set_types(["text", "text"])
            for bookmark, row in copy.rows():
                record: dict[str, t.Any] = {LINE: f"{prefix}{row}}}\n"}
                if key is not None and to_value is not None:
                    record[key] = None if bookmark is None else to_value(bookmark)
                yield record

    def _copy_query(self, start: t.Any) -> sql.Composed:
        """``COPY (SELECT <key as text>, <row as JSON> FROM (<selected columns>)) TO STDOUT``."""
        columns = list(self.get_selected_schema()["properties"])
        name = self.fully_qualified_name
        table = sql.Identifier(*(part for part in (name.schema, name.table) if part))
        inner = sql.SQL("SELECT {columns} FROM {table}").format(
            columns=sql.SQL(", ").join(sql.Identifier(column) for column in columns), table=table
        )
        key = sql.Identifier(self.replication_key) if self.replication_key else None
        conditions = [
            sql.SQL("({})").format(sql.SQL(clause))  # the operator's own SQL, as in tap-postgres
            for clause in self._where_clauses()
        ]
        if key is not None and start is not None:
            conditions.append(sql.SQL("{key} >= {start}").format(key=key, start=sql.Literal(start)))
        if conditions:
            inner += sql.SQL(" WHERE ") + sql.SQL(" AND ").join(conditions)
        as_json = sql.SQL("row_to_json(r)")
        if self.config.get("omit_null_values"):
            as_json = sql.SQL("json_strip_nulls(row_to_json(r))")
        bookmark = sql.SQL("to_json(r.{key}) #>> '{{}}'").format(key=key) if key else sql.NULL
        order = sql.SQL(" ORDER BY r.{key}").format(key=key) if key else sql.SQL("")
        return sql.SQL(
            "COPY (SELECT {bookmark}, {as_json} FROM ({inner}) AS r{order}) TO STDOUT"
        ).format(bookmark=bookmark, as_json=as_json, inner=inner, order=order)

    def _where_clauses(self) -> list[str]:
        options = (self.config.get("stream_options") or {}).get(self.name) or {}
        clauses = options.get("custom_where_clauses") or []
        if not isinstance(clauses, list) or not all(isinstance(c, str) for c in clauses):
            msg = f"stream_options.{self.name}.custom_where_clauses must be a list of SQL texts"
            raise CopyReadError(msg)
        return clauses

    def _line_prefix(self) -> str:
        head: dict[str, t.Any] = {"type": "RECORD", "stream": self.name}
        if self._stream_version is not None:
            head["version"] = self._stream_version
        return orjson.dumps(head).decode()[:-1] + ',"record":'

    def _write_record_message(self, record: dict[str, t.Any]) -> None:
        """Write the row's ready-made RECORD line (the SDK would build and serialize one).

        Args:
            record: From ``get_records``.

        """
        sys.stdout.write(record[LINE])
        self.state_manager.is_flushed = False


def _key_parser(schema: dict[str, t.Any]) -> Callable[[str], t.Any]:
    """How to read the replication key's text (from ``to_json``) as the SDK's value.

    Timestamps become datetimes so the bookmark is written exactly as tap-postgres writes
    it (ISO 8601, microseconds, UTC offset); numbers become numbers so they compare as such.
    """
    types = schema.get("type", [])
    types = [types] if isinstance(types, str) else types
    if schema.get("format") == "date-time":
        return _timestamp
    if "integer" in types:
        return int
    if "number" in types:
        return decimal.Decimal
    return str


def _timestamp(text: str) -> dt.datetime | str:
    try:
        return dt.datetime.fromisoformat(text)
    except ValueError:
        return text  # infinity, or a year Python cannot hold: compared as text


class TapPostgresCopy(SQLTap):
    """Postgres tables and views, read with COPY."""

    name = "tap-postgres-copy"
    package_name = "target-miso"  # the distribution that ships it (for --version)
    # The SDK's defaults minus stream maps, flattening and batch (see UNSUPPORTED_SETTINGS).
    capabilities: t.ClassVar[list[CapabilitiesEnum]] = [
        TapCapabilities.CATALOG,
        TapCapabilities.STATE,
        TapCapabilities.DISCOVER,
        TapCapabilities.ACTIVATE_VERSION,
        PluginCapabilities.ABOUT,
        PluginCapabilities.STRUCTURED_LOGGING,
    ]
    default_stream_class = PostgresCopyStream
    message_writer_class = FastSingerWriter
    config_jsonschema = th.PropertiesList(
        th.Property("host", th.StringType, default="localhost", title="Host"),
        th.Property("port", th.IntegerType, default=5432, title="Port"),
        th.Property("user", th.StringType, required=True, title="User"),
        th.Property("password", th.StringType, secret=True, title="Password"),
        th.Property("database", th.StringType, required=True, title="Database"),
        th.Property(
            "filter_schemas",
            th.ArrayType(th.StringType),
            title="Schemas",
            description="Discover only the tables and views of these schemas (default: all).",
        ),
        th.Property(
            "stream_options",
            th.ObjectType(additional_properties=True),
            title="Stream options",
            description="Per stream (by its id, e.g. `atomic-events_for_miso_narrow`): "
            "`custom_where_clauses`, SQL conditions a row must meet, as in tap-postgres (one "
            "partition per run: `[\"app_id = 'shop'\"]`).",
        ),
        th.Property(
            "omit_null_values",
            th.BooleanType,
            default=False,
            title="Omit null values",
            description="Leave null columns out of each record (Postgres's json_strip_nulls): "
            "fewer bytes per row for targets that read a missing key as null, as "
            "target-miso does.",
        ),
    ).to_dict()

    def setup_mapper(self) -> None:
        """Refuse, before the SDK uses them, settings that transform records.

        Raises:
            ConfigValidationError: ``stream_maps``, ``flattening_enabled`` or
                ``batch_config`` is set.

        """
        refused = [name for name in UNSUPPORTED_SETTINGS if self.config.get(name)]
        if refused:
            msg = (
                f"tap-postgres-copy does not apply {', '.join(refused)}: rows go from Postgres "
                "to the target as Postgres writes them, never as Python values to transform; "
                "remove the setting (map in the target: target-miso's `mappings`)"
            )
            raise ConfigValidationError(msg, errors=[msg])
        super().setup_mapper()


if __name__ == "__main__":
    TapPostgresCopy.cli()
