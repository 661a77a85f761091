"""URL rules: which kind of page a URL shows, shared by the Snowplow, GA4 and Segment presets.

A page view alone cannot say whether the page showed a product, a category or an article;
the site's URL scheme can. ``page_rules`` is an ordered list, the first match wins::

    page_rules:
      - {pattern: '^/product/(?P<product_id>[^/]+)', type: product_detail_page_view}
      - {pattern: '^/category/(?P<category>.+)$', type: category_page_view}
      - {pattern: '^/$', type: home_page_view}
      - {pattern: '^/(?P<section>blog|news)/(?P<product_id>[^/]+)', type: read,
         fields: {context.custom_context.section: '{section}'}}

Patterns are Python regular expressions searched in the URL's path (``on: url`` matches the
whole URL, query string included). Named groups fill Miso fields: ``product_id`` and
``product_group_id`` (one-item lists), ``category`` (split on ``category_separator``, default
``/``, broad to narrow). ``fields`` sets further fields, as constants or as templates naming
any group (``{section}``, see ``field_templates``). Every mistake is reported at start-up
with the rule's setting path.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import typing as t
import urllib.parse

from target_miso.mappings.base import MappingConfigError
from target_miso.mappings.field_templates import compile_fields
from target_miso.miso.schema import COMMON_FIELDS, TYPE_FIELDS

#: Named groups a pattern may use, and the Miso field each fills.
GROUP_FIELDS = {
    "product_id": "product_ids",
    "product_group_id": "product_group_ids",
    "category": "category",
}
_RULE_KEYS = frozenset({"pattern", "type", "fields", "on", "category_separator"})


@dataclasses.dataclass(frozen=True)
class PageMatch:
    """What a URL rule says about a page: the Miso type and the fields it sets."""

    type: str
    #: Miso field paths (``product_ids``, ``context.custom_context.section``) to values.
    fields: dict[str, object]


class PageRule:
    """One compiled rule."""

    def __init__(self, setting: object, path: str) -> None:
        """Check and compile one rule.

        Args:
            setting: The rule as written.
            path: Its setting path, e.g. ``mappings.events.page_rules[2]``.

        Raises:
            MappingConfigError: On any mistake, naming the key at fault.

        """
        if not isinstance(setting, dict):
            raise MappingConfigError(path, "expected an object with pattern and type")
        unknown = sorted(set(setting) - _RULE_KEYS)
        if unknown:
            allowed = ", ".join(sorted(_RULE_KEYS))
            raise MappingConfigError(f"{path}.{unknown[0]}", f"unknown key (allowed: {allowed})")
        interaction_type = setting.get("type")
        if interaction_type not in TYPE_FIELDS:
            raise MappingConfigError(
                f"{path}.type", f"{interaction_type!r} is not a Miso interaction type"
            )
        self.type = t.cast("str", interaction_type)  # a key of TYPE_FIELDS
        allowed_fields = set(TYPE_FIELDS[self.type]) | set(COMMON_FIELDS)
        try:
            self.pattern = re.compile(str(setting.get("pattern") or ""))
        except re.error as error:
            raise MappingConfigError(
                f"{path}.pattern", f"not a valid regular expression: {error}"
            ) from None
        if not setting.get("pattern"):
            raise MappingConfigError(f"{path}.pattern", "missing")
        self.on = setting.get("on", "path")
        if self.on not in ("path", "url"):
            raise MappingConfigError(f"{path}.on", "expected path or url")
        self.separator = str(setting.get("category_separator", "/"))
        groups = tuple(self.pattern.groupindex)
        self.templates = compile_fields(
            setting.get("fields"), allowed_fields, groups, f"{path}.fields"
        )
        templated = {name for template in self.templates for name in template.uses}
        for group in groups:
            field = GROUP_FIELDS.get(group)
            if field is None and group not in templated:
                known = ", ".join(GROUP_FIELDS)
                reason = (
                    f"named group {group!r} fills no Miso field (use {known}, a placeholder "
                    "{" + group + "} in fields, or (?:...))"
                )
                raise MappingConfigError(f"{path}.pattern", reason)
            if field is not None and field not in allowed_fields:
                reason = f"group {group!r} sets {field}, which type {self.type!r} does not take"
                raise MappingConfigError(f"{path}.pattern", reason)

    def match(self, url: str, url_path: str) -> PageMatch | None:
        """Apply the rule.

        Args:
            url: The full URL.
            url_path: Its path.

        Returns:
            The match, or None.

        """
        found = self.pattern.search(url if self.on == "url" else url_path)
        if found is None:
            return None
        groups = {
            group: urllib.parse.unquote(value) if value else value
            for group, value in found.groupdict().items()
        }
        fields: dict[str, object] = {}
        for template in self.templates:
            try:
                value = template.render(groups)
            except ValueError:  # a numeric field whose group matched text: leave it out
                continue
            if value is not None:
                fields[template.field] = value
        for group, value in groups.items():
            if not value or group not in GROUP_FIELDS:
                continue
            if group == "category":
                fields["category"] = [part for part in value.split(self.separator) if part]
            else:
                fields[GROUP_FIELDS[group]] = [value]
        return PageMatch(self.type, fields)


class PageRules:
    """Ordered URL rules; the first that matches a URL wins."""

    def __init__(self, rules: list[PageRule]) -> None:
        """Keep the compiled rules (use ``compile_page_rules``)."""
        self.rules = rules
        # Sites have far fewer distinct URLs than page views: remember the answers.
        self.match = functools.lru_cache(maxsize=65_536)(self._match)

    def _match(self, url: str) -> PageMatch | None:
        url_path = _path_of(url)
        for rule in self.rules:
            found = rule.match(url, url_path)
            if found is not None:
                return found
        return None

    def __len__(self) -> int:
        """How many rules there are."""
        return len(self.rules)


def _path_of(url: str) -> str:
    if url.startswith("/"):
        return url.split("?", 1)[0].split("#", 1)[0]
    return urllib.parse.urlsplit(url).path or "/"


def compile_page_rules(setting: object, path: str) -> PageRules:
    """Check and compile the ``page_rules`` setting.

    Args:
        setting: The list of rules as written (None: no rules).
        path: Its setting path.

    Returns:
        The rules, ready to match URLs (``rules.match(url)`` gives a PageMatch or None).

    Raises:
        MappingConfigError: On any mistake.

    """
    if setting is None:
        return PageRules([])
    if not isinstance(setting, list):
        raise MappingConfigError(path, "expected a list of rules")
    return PageRules([PageRule(rule, f"{path}[{index}]") for index, rule in enumerate(setting)])
