"""``preset: custom``: a mapping written in the settings, for any table (see docs/mappings.md).

Shape of the options (every part is checked at start-up)::

    filter: "<expression>"          # optional; rows where it is false are skipped
    dedup_key: "<expression>"       # optional; later rows with the same key in a run are skipped
    dedup_store: <file>             # optional; keys delivered are remembered across runs too
    dedup_retention_days: 30        # how long a stored key is remembered
    type: <type> | {column|expr: ..., map: {value: <type> | {type, fields}}, default: <type>}
          | [{when: "<expression>", type: <type>, fields: {...}}, ...]   # first match wins
    fields: {<field path>: <value>}  # applied to every interaction whose type accepts them

A ``<type>`` is a Miso interaction type or ``skip``. Field paths and values are described
in ``fields.py``; expressions in ``expressions.py``. Every type the mapping can produce must
get the fields Miso requires of it (``custom_action_name`` on ``custom``, ...): a mapping
that cannot give them is refused at start-up, not row by row.
"""

from __future__ import annotations

import json
import sqlite3
import typing as t

from target_miso.mappings.base import (
    Columns,
    Mapping,
    MappingConfigError,
    MappingError,
    raise_errors,
)
from target_miso.mappings.declarative.expressions import Expression, Scope, new_evaluator
from target_miso.mappings.declarative.fields import (
    ValueSpec,
    build_interaction,
    check_field_path,
    field_entries,
)
from target_miso.mappings.meltano_keys import dotted_key_hint
from target_miso.mappings.seen_events import SeenEvents
from target_miso.miso.schema import (
    INTERACTION_TYPES,
    ITEM_FIELDS,
    ITEM_REQUIRED_TYPES,
    TYPE_REQUIRED,
    allowed_fields,
)

if t.TYPE_CHECKING:
    from collections.abc import Mapping as MappingType

SKIP = "skip"
_OPTIONS = ("filter", "dedup_key", "dedup_store", "dedup_retention_days", "type", "fields")
_IDENTITY_FIELDS = frozenset({"user_id", "anonymous_id"})


class Outcome:
    """One possible result of choosing a type: the type and the fields only it gets."""

    def __init__(self, setting: object, path: str) -> None:
        """Read ``<type>`` or ``{type: <type>, fields: {...}}``.

        Args:
            setting: The setting as written.
            path: Its setting path.

        Raises:
            MappingConfigError: If the type is unknown or a field is not allowed on it.

        """
        fields: object = {}
        type_path = path
        self.path = path
        if isinstance(setting, dict):
            unknown = sorted(set(setting) - {"type", "fields", "when"})
            if unknown:
                reason = "unknown option (allowed: type, fields)"
                raise MappingConfigError(f"{path}.{unknown[0]}", reason)
            if "type" not in setting:
                raise MappingConfigError(path, "missing `type`")
            fields = setting.get("fields") or {}
            type_path = f"{path}.type"
            setting = setting["type"]
        if setting != SKIP and setting not in INTERACTION_TYPES:
            raise MappingConfigError(
                type_path,
                f"{setting!r} is not a Miso interaction type (use one of "
                f"{', '.join(INTERACTION_TYPES)}, or `skip`)",
            )
        self.type: str = setting
        self.fields = read_fields(fields, f"{path}.fields")
        if self.type == SKIP and self.fields:
            raise MappingConfigError(f"{path}.fields", "a skipped row has no fields")
        for field_path, spec in self.fields.items():
            top = field_path.split(".")[0]
            if top not in allowed_fields(self.type):
                raise MappingConfigError(spec.path, _not_allowed(top, self.type))


def _not_allowed(field: str, interaction_type: str) -> str:
    return (
        f"{field!r} is not allowed on type {interaction_type!r} (it accepts "
        f"{', '.join(allowed_fields(interaction_type))})"
    )


def read_fields(setting: object, path: str) -> dict[str, ValueSpec]:
    """Read a ``fields`` object: field path -> value.

    Args:
        setting: The setting as written.
        path: Its setting path.

    Returns:
        The value specs by field path.

    Raises:
        MappingConfigError: If a field path or value is invalid.

    """
    if not isinstance(setting, dict):
        raise MappingConfigError(path, "expected an object of field -> value")
    specs: dict[str, ValueSpec] = {}
    for field_path, value in field_entries(setting):  # nested objects spell paths too
        spec_path = f"{path}.{field_path}"
        check_field_path(field_path, spec_path)
        if field_path in specs:
            raise MappingConfigError(spec_path, "given twice (as a dotted path and nested)")
        specs[field_path] = ValueSpec(value, spec_path)
    return specs


class TypeChoice:
    """Decides each row's type: a constant, a value map, or ordered rules."""

    def __init__(self, setting: object, path: str) -> None:
        """Read the ``type`` option.

        Args:
            setting: The setting as written.
            path: Its setting path (``mappings.<stream>.type``).

        Raises:
            MappingConfigError: On any mistake.

        """
        self.path = path
        self.constant: Outcome | None = None
        self.source: ValueSpec | None = None
        self.by_value: dict[str, Outcome] = {}
        self.default: Outcome | None = None
        self.rules: list[tuple[Expression | None, Outcome]] = []
        if setting is None:
            raise MappingConfigError(path, "missing; give a Miso type, a value map or rules")
        if isinstance(setting, str):
            self.constant = Outcome(setting, path)
        elif isinstance(setting, list):
            self._read_rules(setting, path)
        elif isinstance(setting, dict):
            self._read_map(setting, path)
        else:
            raise MappingConfigError(path, "expected a Miso type, a value map or a list of rules")

    def _read_map(self, setting: dict[str, t.Any], path: str) -> None:
        unknown = sorted(set(setting) - {"column", "expr", "map", "default"})
        if unknown:
            reason = "unknown option (allowed: column or expr, map, default)"
            raise MappingConfigError(f"{path}.{unknown[0]}", reason)
        if not isinstance(setting.get("map"), dict) or not setting["map"]:
            raise MappingConfigError(f"{path}.map", "expected an object of source value -> type")
        source = {key: setting[key] for key in ("column", "expr") if key in setting}
        self.source = ValueSpec(source, path)
        for value, outcome in setting["map"].items():
            if isinstance(outcome, dict) and not set(outcome) & {"type", "fields"}:
                # ``v1.view: like`` in meltano.yml arrives as ``v1: {view: like}``.
                reason = (
                    f"expected a Miso type or {{type, fields}}{dotted_key_hint(value, outcome)}"
                )
                raise MappingConfigError(f"{path}.map.{value}", reason)
        self.by_value = {
            str(value): Outcome(outcome, f"{path}.map.{value}")
            for value, outcome in setting["map"].items()
        }
        self.default = Outcome(setting.get("default", SKIP), f"{path}.default")

    def _read_rules(self, setting: list[t.Any], path: str) -> None:
        if not setting:
            raise MappingConfigError(path, "expected at least one rule")
        for index, rule in enumerate(setting):
            rule_path = f"{path}[{index}]"
            if not isinstance(rule, dict):
                raise MappingConfigError(rule_path, "expected {when: <expression>, type: <type>}")
            when = Expression(rule["when"], f"{rule_path}.when") if "when" in rule else None
            self.rules.append((when, Outcome(rule, rule_path)))

    @property
    def outcomes(self) -> list[Outcome]:
        """Every outcome the choice can give."""
        if self.constant is not None:
            return [self.constant]
        if self.rules:
            return [outcome for _, outcome in self.rules]
        return [*self.by_value.values(), *([self.default] if self.default else [])]

    @property
    def columns(self) -> frozenset[str]:
        """Columns read by name by the conditions and the value source."""
        names: set[str] = set()
        for when, _ in self.rules:
            if when is not None:
                names |= when.columns
        if self.source is not None:
            names |= self.source.columns
        return frozenset(names)

    def choose(self, record: dict[str, t.Any], scope: Scope) -> tuple[Outcome | None, str]:
        """Pick the outcome for one record.

        Args:
            record: The source record.
            scope: Its expression names.

        Returns:
            The outcome (None when nothing matched) and, for no match, the skip reason.

        """
        if self.constant is not None:
            return self.constant, ""
        if self.rules:
            for when, outcome in self.rules:
                if when is None or when.evaluate(scope, "type"):
                    return outcome, ""
            return None, "no type rule matched"
        assert self.source is not None  # noqa: S101 - set whenever there are no rules
        value = self.source.read(record, scope, "type")
        mapped = self.by_value.get(_map_key(value))
        if mapped is None:
            shown = _map_key(value)
            shown = shown if len(shown) <= 40 else shown[:40] + "..."  # noqa: PLR2004
            return self.default, f"type: {shown!r} not in the map"
        return mapped, ""


def _map_key(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


class CustomMapping(Mapping):
    """A mapping written entirely in the settings (``preset: custom``)."""

    preset = "custom"
    option_names = _OPTIONS

    def __init__(
        self,
        options: MappingType[str, t.Any],
        *,
        stream_name: str,
        config_path: str,
    ) -> None:
        """Read and check every option; mistakes stop the run before any record.

        Args:
            options: This stream's settings (without ``preset``).
            stream_name: The Singer stream.
            config_path: ``mappings.<stream>``.

        Raises:
            MappingConfigError: On the first mistake, with its setting path.

        """
        super().__init__(options, stream_name=stream_name, config_path=config_path)
        unknown = sorted(set(options) - set(_OPTIONS))
        if unknown:
            reason = f"unknown option (allowed: preset, {', '.join(_OPTIONS)})" + dotted_key_hint(
                unknown[0], options[unknown[0]]
            )
            raise MappingConfigError(f"{config_path}.{unknown[0]}", reason)
        self.filter = (
            Expression(options["filter"], f"{config_path}.filter") if "filter" in options else None
        )
        self.dedup_key = (
            Expression(options["dedup_key"], f"{config_path}.dedup_key")
            if "dedup_key" in options
            else None
        )
        self.type_choice = TypeChoice(options.get("type"), f"{config_path}.type")
        self.fields = read_fields(options.get("fields") or {}, f"{config_path}.fields")
        self._check_common_fields()
        self._check_required_fields()
        self._columns = self._all_columns()
        #: None, or the setting whose expression reads the record as a whole, and how.
        self.unlisted: str | None = None
        self._reads = self._read_columns()
        self._evaluator = new_evaluator()
        self.dedup_store = options.get("dedup_store")
        self.seen = self._open_seen(options, config_path)

    def _open_seen(self, options: MappingType[str, t.Any], path: str) -> SeenEvents:
        """Open the dedup_key store: in memory for the run, or a file kept across runs."""
        store = self.dedup_store
        if store is not None and (not isinstance(store, str) or not store.strip()):
            raise MappingConfigError(f"{path}.dedup_store", "expected a file path or null")
        if store is not None and self.dedup_key is None:
            reason = "needs a dedup_key: the store remembers the keys of delivered rows"
            raise MappingConfigError(f"{path}.dedup_store", reason)
        retention = options.get("dedup_retention_days", 30)
        if isinstance(retention, bool) or not isinstance(retention, (int, float)) or retention <= 0:
            reason = f"expected a number of days above 0, got {retention!r}"
            raise MappingConfigError(f"{path}.dedup_retention_days", reason)
        try:
            return SeenEvents(store, retention)
        except (OSError, sqlite3.Error) as error:
            raise MappingConfigError(f"{path}.dedup_store", f"cannot open: {error}") from None

    def _check_required_fields(self) -> None:
        """Refuse at start-up an outcome that can never give a valid interaction.

        Miso requires some fields of some types (``custom_action_name`` on ``custom``,
        ``product_ids`` on item types, a user); without a setting for them every row of that
        outcome would be set aside, run after run.
        """
        shared = {path.split(".")[0] for path in self.fields}
        for outcome in self.type_choice.outcomes:
            if outcome.type == SKIP:
                continue
            given = shared | {path.split(".")[0] for path in outcome.fields}
            missing = [name for name in TYPE_REQUIRED.get(outcome.type, ()) if name not in given]
            if outcome.type in ITEM_REQUIRED_TYPES and not given & set(ITEM_FIELDS):
                missing.append("product_ids (or product_group_ids)")
            if not given & _IDENTITY_FIELDS:
                missing.append("user_id or anonymous_id")
            if missing:
                example = missing[0].split(" ")[0]
                reason = (
                    f"type {outcome.type!r} needs {', '.join(missing)}, and no setting gives "
                    f"{'it' if len(missing) == 1 else 'them'}: add it to the shared fields or "
                    f"to this outcome, e.g. {{type: {outcome.type}, fields: {{{example}: ...}}}}"
                )
                raise MappingConfigError(outcome.path, reason)

    def _check_common_fields(self) -> None:
        """Check that each shared field fits at least one type the mapping produces."""
        types = sorted({o.type for o in self.type_choice.outcomes if o.type != SKIP})
        for field_path, spec in self.fields.items():
            top = field_path.split(".")[0]
            fitting = [name for name in types if top in allowed_fields(name)]
            if types and not fitting:
                if len(types) == 1:
                    raise MappingConfigError(spec.path, _not_allowed(top, types[0]))
                reason = (
                    f"{top!r} is not allowed on any type this mapping produces "
                    f"({', '.join(types)}); set it in a rule's or map entry's own fields"
                )
                raise MappingConfigError(spec.path, reason)

    def _value_specs(self) -> list[ValueSpec]:
        """Every field value setting: the shared fields, then each outcome's."""
        outcomes = self.type_choice.outcomes
        return [*self.fields.values(), *(s for o in outcomes for s in o.fields.values())]

    def _all_columns(self) -> dict[str, str]:
        """Every column read by name, with the setting that reads it."""
        columns: dict[str, str] = {}
        for spec in self._value_specs():
            for name in spec.columns:
                columns.setdefault(name, spec.path)
        for name in self.type_choice.columns:
            columns.setdefault(name, self.type_choice.path)
        for expression in (self.filter, self.dedup_key):
            if expression is not None:
                for name in expression.columns:
                    columns.setdefault(name, expression.path)
        return columns

    def _read_columns(self) -> Columns | None:
        """Every column a value, the type, the filter or the dedup key reads, by name.

        A ``column:`` reads that column; an expression its names and ``record['...']``.
        Values inside a column (``key: sku``, ``json.loads(meta)['k']``) are read from that
        one column. An expression that uses ``record`` as a whole (``record.keys()``,
        ``record[name]``) may read any column: nothing is listed then (``unlisted`` says
        which setting), so that a tap selects every column.
        """
        specs = self._value_specs()
        if self.type_choice.source:
            specs.append(self.type_choice.source)
        expressions = [self.filter, self.dedup_key, *(when for when, _ in self.type_choice.rules)]
        names: set[str] = set()
        for spec in specs:
            if spec.column is not None:
                names.add(spec.column)
            expressions.append(spec.expression)
        for expression in expressions:
            if expression is None:
                continue
            reads = expression.reads
            if reads is None:
                self.unlisted = f"{expression.path}: {expression.whole_record}"
                return None
            names |= reads
        return Columns(tuple(sorted(names)))

    def columns(self) -> Columns | None:
        """Return the columns the settings read (see ``_read_columns``).

        Returns:
            The columns by name, in alphabetical order, or None when an expression reads the
            record as a whole.

        """
        return self._reads

    def bind_schema(self, schema: dict[str, t.Any]) -> None:
        """Check that every name the expressions read is a column of the stream.

        Args:
            schema: The stream's JSON Schema.

        Raises:
            MappingConfigError: If an expression reads a name that is not a column.

        """
        properties = schema.get("properties") or {}
        if not properties:
            return
        for name, path in sorted(self._columns.items()):
            if name not in properties:
                reason = (
                    f"{name!r} is not a column of stream '{self.stream_name}' (quote constants, "
                    f"e.g. \"'{name}'\"; columns with odd names: record['name'])"
                )
                raise MappingConfigError(path, reason)

    def map(self, record: dict[str, t.Any]) -> list[dict[str, t.Any]]:
        """Map one row.

        Args:
            record: The row as the tap sent it.

        Returns:
            One interaction, or none when the row is filtered out, skipped or a duplicate.

        Raises:
            MappingError: If a value cannot be computed or normalized (names the field).

        """
        scope = Scope(record, self._columns, self.stream_name, self._evaluator)
        if self.filter is not None and not self.filter.evaluate(scope, "filter"):
            self.skipped[f"{self.stream_name}: filtered out"] += 1
            return []
        outcome, reason = self.type_choice.choose(record, scope)
        if outcome is None or outcome.type == SKIP:
            self.skipped[f"{self.stream_name}: {reason or 'type: skip'}"] += 1
            return []
        key = None
        if self.dedup_key is not None:
            key = self._key_text(self.dedup_key.evaluate(scope, "dedup_key"))
            # A null key never deduplicates: such rows are all sent.
            if key is not None and self.seen.check_and_add(key):
                self.skipped[f"{self.stream_name}: duplicate dedup_key"] += 1
                return []
        try:
            return [self._interaction(outcome, record, scope)]
        except MappingError:
            if key is not None:  # set aside: a later good copy of the row is not a duplicate
                self.seen.forget(key)
            raise

    def _interaction(
        self, outcome: Outcome, record: dict[str, t.Any], scope: Scope
    ) -> dict[str, t.Any]:
        allowed = allowed_fields(outcome.type)
        values: dict[str, object] = {}
        errors: list[MappingError] = []
        specs = [(p, s) for p, s in self.fields.items() if p.split(".")[0] in allowed]
        for field_path, spec in [*specs, *outcome.fields.items()]:
            try:
                values[field_path] = spec.read(record, scope, field_path)
            except MappingError as error:
                errors.append(error)
        try:
            interaction = build_interaction(outcome.type, values)
        except MappingError as error:
            errors.append(error)
        raise_errors(errors)  # every failing field, not only the first
        return interaction

    def _key_text(self, value: object) -> str | None:
        # The stream and the key's type are part of it: one store serves several streams,
        # and 5 and "5" stay apart as they did in the run's own set.
        if value is None:
            return None
        shown = value if isinstance(value, (str, int, float)) else repr(value)
        return json.dumps([self.stream_name, type(value).__name__, shown])

    def kept_source(self, record: dict[str, t.Any]) -> object:
        """Keep the row itself when keys are stored: ``refused`` reads its key again.

        Args:
            record: The row.

        Returns:
            The row (with a ``dedup_store``), else None (the batch keeps the Singer line).

        """
        return record if self.dedup_store is not None else None

    def refused(self, source: object) -> None:
        """Do not store the key of a row whose interaction was set aside (any thread).

        Args:
            source: The source row.

        """
        if self.dedup_key is None or not isinstance(source, dict):
            return
        # A fresh evaluator: this runs in delivery threads while the main one maps rows.
        scope = Scope(source, self._columns, self.stream_name, new_evaluator())
        try:
            key = self._key_text(self.dedup_key.evaluate(scope, "dedup_key"))
        except MappingError:
            return
        if key is not None:
            self.seen.refuse(key)

    def seal(self) -> int:
        """Take a checkpoint: the keys seen so far belong to it."""
        return self.seen.seal()

    def commit(self, token: object = None) -> None:
        """Store the keys of a checkpoint whose interactions were delivered (with a store).

        Args:
            token: What ``seal`` returned for that checkpoint; None: everything so far.

        """
        self.seen.commit(t.cast("int | None", token))

    def bind_environment(self, environment: str) -> None:
        """Look up and store keys of this Miso environment only.

        Args:
            environment: From ``catalog.hashes.environment_key``.

        """
        self.seen.set_environment(environment)

    def close(self) -> None:
        """Close the key store."""
        self.seen.close()


__all__ = ["CustomMapping", "MappingError"]
