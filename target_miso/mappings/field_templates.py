"""Field values written in rules: constants, or templates such as ``'{label}'``.

URL rules (``page_rules``) and the Snowplow preset's ``struct_rules`` let a rule set Miso
fields through ``fields:``. A string may name values of the matched event in braces:
regex groups for URL rules, ``{label}``, ``{property}``, ``{value}``... for struct events.

* ``'{value}'`` (one placeholder, nothing else) gives the value itself; numeric fields
  (``quantities``, ``rating``, ``revenue``, ``duration``) read it as a number.
* ``'video {action}'`` gives text; ``{{`` and ``}}`` are literal braces.
* A list gives a list of its rendered items; list fields (``product_ids``, ``quantities``...)
  given a single value get a one-item list.
* A placeholder whose value is empty leaves its item (or the whole field) out.

Templates are parsed once, at start-up; a name that does not exist is a config error.
"""

from __future__ import annotations

import string
import typing as t

from target_miso.mappings.base import MappingConfigError
from target_miso.normalize import to_number

#: Miso fields whose value is a list (a single templated value becomes a one-item list).
LIST_FIELDS = frozenset({"product_ids", "product_group_ids", "quantities", "category"})
#: Miso fields whose values are numbers.
NUMBER_FIELDS = frozenset({"quantities", "rating", "revenue", "duration"})

#: Returned by a render whose placeholder had no value: the field is left out.
_EMPTY = object()


class _Text:
    """One string: a constant, a lone placeholder, or text mixing both."""

    __slots__ = ("lone", "parts")

    def __init__(self, text: str, names: t.Collection[str], path: str) -> None:
        self.parts: list[tuple[str, str | None]] = []
        try:
            parsed = list(string.Formatter().parse(text))
        except ValueError as error:
            raise MappingConfigError(path, f"not a valid template: {error}") from None
        for literal, name, spec, conversion in parsed:
            if name is not None:
                if name not in names or spec or conversion:
                    known = ", ".join("{" + known + "}" for known in names) or "none"
                    raise MappingConfigError(
                        path, f"unknown placeholder {{{name}}} (known: {known})"
                    )
            self.parts.append((literal, name))
        #: The placeholder's name when the text is exactly one placeholder.
        self.lone = self.parts[0][1] if len(self.parts) == 1 and not self.parts[0][0] else None

    def render(self, values: t.Mapping[str, object]) -> object:
        if self.lone is not None:
            value = values.get(self.lone)
            return _EMPTY if value is None or value == "" else value
        pieces = []
        for literal, name in self.parts:
            pieces.append(literal)
            if name is not None:
                value = values.get(name)
                if value is None or value == "":
                    return _EMPTY
                pieces.append(str(value))
        return "".join(pieces)


class FieldTemplate:
    """The value of one Miso field in a rule's ``fields``."""

    __slots__ = ("field", "is_list", "items", "number", "uses")

    def __init__(self, field: str, value: object, names: t.Collection[str], path: str) -> None:
        """Parse a field's value.

        Args:
            field: The Miso field path, e.g. ``quantities`` or ``context.custom_context.x``.
            value: As written: a constant, a template string or a list of them.
            names: The placeholder names the rule offers.
            path: The setting path, for errors.

        Raises:
            MappingConfigError: On an unknown placeholder or a malformed template.

        """
        self.field = field
        self.number = field in NUMBER_FIELDS
        self.is_list = isinstance(value, list) or field in LIST_FIELDS
        written = value if isinstance(value, list) else [value]
        self.items = [
            _Text(item, names, f"{path}[{index}]" if isinstance(value, list) else path)
            if isinstance(item, str)
            else item
            for index, item in enumerate(written)
        ]
        #: The placeholders this template reads.
        self.uses = {
            name for item in self.items if isinstance(item, _Text) for _, name in item.parts if name
        }

    def render(self, values: t.Mapping[str, object]) -> object:
        """Return the field's value for one event, or None when it is to be left out.

        Raises:
            ValueError: If a numeric field's value is not a number.

        """
        rendered = []
        for item in self.items:
            value = item.render(values) if isinstance(item, _Text) else item
            if value is _EMPTY:
                continue
            if self.number and not isinstance(value, (int, float)):
                value = to_number(value)
            elif not self.number and self.field in LIST_FIELDS and not isinstance(value, str):
                value = str(value)
            rendered.append(value)
        if not rendered:
            return None
        return rendered if self.is_list else rendered[0]


def compile_fields(
    setting: object,
    allowed: t.Collection[str],
    names: t.Collection[str],
    path: str,
) -> list[FieldTemplate]:
    """Check and parse a rule's ``fields`` object.

    Args:
        setting: The object as written (None: no fields).
        allowed: The Miso fields the rule's type takes (top-level names).
        names: The placeholder names the rule offers.
        path: The setting path of ``fields``.

    Returns:
        One template per field.

    Raises:
        MappingConfigError: On a field the type does not take or a bad template.

    """
    if setting is None:
        return []
    if not isinstance(setting, dict):
        raise MappingConfigError(path, "expected an object of field -> value")
    templates = []
    for field, value in setting.items():
        top = str(field).split(".")[0]
        if top not in allowed or top == "type":
            raise MappingConfigError(f"{path}.{field}", f"{top!r} is not a field of this type")
        templates.append(FieldTemplate(str(field), value, names, f"{path}.{field}"))
    return templates


def place(interaction: dict[str, t.Any], path: str, value: object) -> None:
    """Set a dotted field path (``context.custom_context.section``) in an interaction."""
    *parents, leaf = path.split(".")
    target = interaction
    for part in parents:
        target = target.setdefault(part, {})
    target[leaf] = value
