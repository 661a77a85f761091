"""``preset: custom``: a mapping written in the settings, for any table (see docs/mappings.md).

Shape of the options (every part is checked at start-up)::

    filter: "<expression>"          # optional; rows where it is false are skipped
    dedup_key: "<expression>"       # optional; later rows with the same key in a run are skipped
    type: <type> | {column|expr: ..., map: {value: <type> | {type, fields}}, default: <type>}
          | [{when: "<expression>", type: <type>, fields: {...}}, ...]   # first match wins
    fields: {<field path>: <value>}  # applied to every interaction whose type accepts them

A ``<type>`` is a Miso interaction type or ``skip``. Field paths and values are described
in ``fields.py``; expressions in ``expressions.py``.
"""

from __future__ import annotations

import typing as t

from target_miso.mappings.base import Mapping, MappingConfigError, MappingError
from target_miso.mappings.declarative.expressions import Expression, Scope, new_evaluator
from target_miso.mappings.declarative.fields import ValueSpec, build_interaction, check_field_path
from target_miso.miso.schema import INTERACTION_TYPES, allowed_fields

if t.TYPE_CHECKING:
    from collections.abc import Mapping as MappingType

SKIP = "skip"
_OPTIONS = ("filter", "dedup_key", "type", "fields")


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
        if isinstance(setting, dict):
            unknown = sorted(set(setting) - {"type", "fields", "when"})
            if unknown:
                raise MappingConfigError(
                    f"{path}.{unknown[0]}", "unknown option (allowed: type, fields)"
                )
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
    for field_path, value in setting.items():
        spec_path = f"{path}.{field_path}"
        check_field_path(str(field_path), spec_path)
        specs[str(field_path)] = ValueSpec(value, spec_path)
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
            reason = f"unknown option (allowed: preset, {', '.join(_OPTIONS)})"
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
        self._columns = self._all_columns()
        self._evaluator = new_evaluator()
        self._seen: set[object] = set()

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

    def _all_columns(self) -> dict[str, str]:
        """Every column read by name, with the setting that reads it."""
        columns: dict[str, str] = {}
        for spec in [
            *self.fields.values(),
            *(s for o in self.type_choice.outcomes for s in o.fields.values()),
        ]:
            for name in spec.columns:
                columns.setdefault(name, spec.path)
        for name in self.type_choice.columns:
            columns.setdefault(name, self.type_choice.path)
        for expression in (self.filter, self.dedup_key):
            if expression is not None:
                for name in expression.columns:
                    columns.setdefault(name, expression.path)
        return columns

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
            key = _hashable(self.dedup_key.evaluate(scope, "dedup_key"))
            if key is not None and key in self._seen:
                self.skipped[f"{self.stream_name}: duplicate dedup_key"] += 1
                return []
        allowed = allowed_fields(outcome.type)
        values: dict[str, object] = {}
        for field_path, spec in self.fields.items():
            if field_path.split(".")[0] in allowed:
                values[field_path] = spec.read(record, scope, field_path)
        for field_path, spec in outcome.fields.items():
            values[field_path] = spec.read(record, scope, field_path)
        interaction = build_interaction(outcome.type, values)
        if key is not None:
            # Remembered only once mapped: a rejected row must not hide a later good copy.
            self._seen.add(key)
        return [interaction]


def _hashable(value: object) -> object:
    if value is None or isinstance(value, (str, int, float)):
        return value
    return repr(value)


__all__ = ["CustomMapping", "MappingError"]
