"""URL rules for page views in the GA4 and Segment presets (``page_rules``).

The rule engine itself (ordered regexes with named groups -> type, product_id, category) is
``target_miso.mappings.rules``, shared with the Snowplow preset. This module is the one
place GA4 and Segment reach it, so wiring it in is a change here only.
"""

from __future__ import annotations

import typing as t

from target_miso.mappings.base import MappingConfigError


class PageMatch(t.Protocol):
    """What a matching rule gives: the Miso type and the fields it sets (field path -> value)."""

    type: str
    fields: dict[str, object]


class PageRules(t.Protocol):
    """Ordered URL rules: the first that matches a URL wins."""

    def match(self, url: str) -> PageMatch | None:
        """Return the first rule's result for this URL, or None."""


def read_page_rules(setting: object, path: str) -> PageRules:
    """Compile the ``page_rules`` setting.

    Args:
        setting: The rules as written.
        path: Their setting path.

    Raises:
        MappingConfigError: Until the shared rule engine is wired in (see module docstring).

    """
    reason = (
        "URL rules for this preset are not available yet in this build; without page_rules, "
        "page views are skipped and every other event is still mapped"
    )
    raise MappingConfigError(path, reason)
