"""``struct_rules``: Snowplow structured events (category, action, label...) to Miso types.

Structured events have no fixed meaning, so each site says what its own mean::

    struct_rules:
      - {category: product, action: like, type: like}           # product_ids: ['{label}']
      - {category: cart, action: add, type: add_to_cart,
         fields: {product_ids: ['{label}'], quantities: ['{value}']}}
      - {category: review, action: '*', type: rate,
         fields: {product_ids: ['{property}'], rating: '{value}'}}

The first rule whose ``category`` and ``action`` match wins (``*``, the default, matches
anything). ``fields`` sets Miso fields from templates over the event's ``{category}``,
``{action}``, ``{label}``, ``{property}`` and ``{value}`` (``se_*`` columns). A type that
takes product_ids gets ``['{label}']`` unless ``fields`` says otherwise; ``rate`` gets
``rating: '{value}'``.
"""

from __future__ import annotations

import typing as t

from target_miso.mappings.base import MappingConfigError
from target_miso.mappings.field_templates import FieldTemplate, compile_fields
from target_miso.miso.schema import COMMON_FIELDS, INTERACTION_TYPES, TYPE_FIELDS

#: Placeholder -> the struct column it reads.
STRUCT_COLUMNS = {
    "category": "se_category",
    "action": "se_action",
    "label": "se_label",
    "property": "se_property",
    "value": "se_value",
}
_RULE_KEYS = frozenset({"category", "action", "type", "fields"})


class StructRule:
    """One ``struct_rules`` entry, checked and compiled."""

    def __init__(self, setting: object, path: str) -> None:
        """Check one rule.

        Args:
            setting: The rule as written.
            path: Its setting path, e.g. ``mappings.events.struct_rules[0]``.

        Raises:
            MappingConfigError: On any mistake, naming the key at fault.

        """
        if not isinstance(setting, dict):
            raise MappingConfigError(path, "expected an object with category, action and type")
        unknown = sorted(set(setting) - _RULE_KEYS)
        if unknown:
            known = ", ".join(sorted(_RULE_KEYS))
            raise MappingConfigError(f"{path}.{unknown[0]}", f"unknown key (allowed: {known})")
        self.category = str(setting.get("category", "*"))
        self.action = str(setting.get("action", "*"))
        self.type = setting.get("type")
        if self.type not in INTERACTION_TYPES:
            raise MappingConfigError(
                f"{path}.type", f"{self.type!r} is not a Miso interaction type"
            )
        fields = setting.get("fields") or {}
        if not isinstance(fields, dict):
            raise MappingConfigError(f"{path}.fields", "expected an object of field -> value")
        defaults: dict[str, object] = {}
        if "product_ids" in TYPE_FIELDS[self.type]:
            defaults["product_ids"] = ["{label}"]
        if self.type == "rate":
            defaults["rating"] = "{value}"
        allowed = (*TYPE_FIELDS[self.type], *COMMON_FIELDS)
        self.templates: list[FieldTemplate] = compile_fields(
            {**defaults, **fields}, allowed, tuple(STRUCT_COLUMNS), f"{path}.fields"
        )

    def matches(self, category: object, action: object) -> bool:
        """Whether the rule applies to this category and action."""
        return self.category in ("*", category) and self.action in ("*", action)

    def columns_of(self, template: FieldTemplate) -> str:
        """Return the struct columns a field reads, for error messages (``se_value``)."""
        return ", ".join(STRUCT_COLUMNS[name] for name in sorted(template.uses)) or "fields"


def compile_struct_rules(setting: object, path: str) -> list[StructRule]:
    """Check and compile the ``struct_rules`` setting (None: no rules).

    Raises:
        MappingConfigError: On any mistake.

    """
    if setting is None:
        return []
    if not isinstance(setting, list):
        raise MappingConfigError(path, "expected a list of rules")
    return [StructRule(rule, f"{path}[{index}]") for index, rule in enumerate(setting)]


def struct_values(
    text: t.Callable[[str], str | None], get: t.Callable[[str], t.Any]
) -> dict[str, t.Any]:
    """Return the placeholder values of one struct event (``value`` keeps its number type)."""
    values: dict[str, t.Any] = {name: text(column) for name, column in STRUCT_COLUMNS.items()}
    values["value"] = get("se_value")
    return values
