"""Keys with a dot that Meltano drops from TARGET_MISO_MAPPINGS are named at start-up.

The real thing runs in tests/e2e/test_meltano_custom_mapping.py; here the comparison itself.
"""

from __future__ import annotations

import json

import pytest

from target_miso.mappings import MappingConfigError
from target_miso.mappings.meltano_keys import check_env_mappings

GIVEN = {
    "public-events": {
        "preset": "custom",
        "type": "home_page_view",
        "fields": {"anonymous_id": "a", "context.page.url": "page_url"},
    },
}
#: What Meltano 4.4.1 hands the target for GIVEN (measured: `meltano invoke --dump=config`).
RECEIVED = {
    "public-events": {"preset": "custom", "type": "home_page_view", "fields": {"anonymous_id": "a"}}
}


def _environ(given: object, *, meltano: bool = True) -> dict[str, str]:
    environ = {"TARGET_MISO_MAPPINGS": json.dumps(given)}
    if meltano:
        environ["MELTANO_PROJECT_ROOT"] = "/project"
    return environ


def test_a_dotted_key_meltano_dropped_is_named_with_the_nested_form() -> None:
    with pytest.raises(MappingConfigError) as caught:
        check_env_mappings(RECEIVED, _environ(GIVEN))
    assert caught.value.path == "mappings.public-events.fields.context.page.url"
    assert caught.value.reason.startswith(
        "Meltano dropped this key from TARGET_MISO_MAPPINGS: it drops every key with a dot "
        "given in JSON by the environment, and the target never received it. Write a field "
        'path nested, {"context": {"page": {"url": ...}}}'
    )


def test_a_dropped_stream_name_with_a_dot_is_named_with_its_escaped_form() -> None:
    given = {"analytics.events": {"preset": "ga4"}, "x": {"preset": "ga4"}}
    with pytest.raises(MappingConfigError) as caught:
        check_env_mappings({"x": {"preset": "ga4"}}, _environ(given))
    assert caught.value.path == "mappings.analytics.events"
    assert '("analytics\\\\.events")' in caught.value.reason


@pytest.mark.parametrize(
    ("given", "received"),
    [
        pytest.param(GIVEN, GIVEN, id="received-intact-outside-meltano-or-escaped"),
        pytest.param(
            {"s": {"fields": {"context\\.page\\.url": "u"}}},
            {"s": {"fields": {"context.page.url": "u"}}},
            id="escaped-dots-arrive-unescaped",
        ),
        pytest.param(
            {"s": {"page_rules": [{"fields": {"context.custom_context.a": "b"}}]}},
            {"s": {"page_rules": [{"fields": {"context.custom_context.a": "b"}}]}},
            id="lists-are-passed-as-written",
        ),
    ],
)
def test_nothing_lost_is_nothing_refused(given: dict, received: dict) -> None:
    check_env_mappings(received, _environ(given))


def test_outside_meltano_the_variable_is_not_compared() -> None:
    check_env_mappings(RECEIVED, _environ(GIVEN, meltano=False))
    check_env_mappings(RECEIVED, {"MELTANO_PROJECT_ROOT": "/p", "TARGET_MISO_MAPPINGS": "{oops"})


def test_the_flattened_variable_meltano_sets_from_meltano_yml_is_not_refused() -> None:
    # With the mappings in meltano.yml, Meltano sets TARGET_MISO_MAPPINGS itself, flattened.
    received = {
        "public-events": {
            "preset": "custom",
            "fields": {"context": {"page": {"url": "page_url"}}, "a.b": "x"},
        },
    }
    flattened = {
        "public-events.preset": "custom",
        "public-events.fields.context.page.url": "page_url",
        "public-events.fields.a\\.b": "x",
    }
    check_env_mappings(received, _environ(flattened))


def test_a_flattened_name_with_a_dot_is_found_escaped_or_not() -> None:
    received = {"s": {"fields": {"context": "ctx", "context.page.url": "u"}}}
    for key in ("s.fields.context.page.url", "s.fields.context\\.page\\.url"):
        check_env_mappings(received, _environ({key: "u", "s.fields.context": "ctx"}))
