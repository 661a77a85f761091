"""URL rules for page views in the GA4 and Segment presets (``page_rules``).

The rule engine (ordered regexes with named groups -> type, product_ids, category) is
``target_miso.mappings.rules``, shared with the Snowplow preset; this is where GA4 and
Segment reach it.
"""

from __future__ import annotations

from target_miso.mappings.rules import PageRules, compile_page_rules


def read_page_rules(setting: object, path: str) -> PageRules:
    """Compile the ``page_rules`` setting.

    Args:
        setting: The rules as written.
        path: Their setting path.

    Returns:
        The rules; ``match(url)`` gives the first matching rule's type and fields, or None.

    """
    return compile_page_rules(setting, path)
