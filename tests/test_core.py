"""singer-sdk's standard target tests, each with a check of what the sandbox received.

The SDK's stock streams (``test_array_data``, ``test_camelcase``, ...) are not shaped like
interactions, so under the passthrough preset each of their records must be set aside with
the reason "type: missing" and nothing must reach Miso: the target neither crashes nor
sends garbage. Our own ``.singer`` files then check real interaction streams end to end.
"""

from __future__ import annotations

import json
import socket
from importlib.resources import files
from pathlib import Path

import pytest
from singer_sdk.testing import get_target_test_class
from singer_sdk.testing.suites import SingerTestSuite
from singer_sdk.testing.target_tests import (
    TargetArrayData,
    TargetCamelcaseComplexSchema,
    TargetCamelcaseTest,
    TargetCliPrintsTest,
    TargetDuplicateRecords,
    TargetEncodedStringData,
    TargetInvalidSchemaTest,
    TargetNoPrimaryKeys,
    TargetOptionalAttributes,
    TargetPrimaryKeyUpdates,
    TargetRecordBeforeSchemaTest,
    TargetRecordMissingKeyProperty,
    TargetRecordMissingOptionalFields,
    TargetSchemaNoProperties,
    TargetSchemaUpdates,
    TargetSpecialCharsInAttributes,
)
from singer_sdk.testing.templates import TargetFileTestTemplate

from target_miso.miso.sandbox import Sandbox
from target_miso.target import TargetMiso
from tests import data_files
from tests.helpers import API_KEY


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


PORT = _free_port()
REJECTS = Path(__file__).parent / ".." / ".pytest_cache" / f"sdk-suite-rejects-{PORT}.jsonl"
SAMPLE_CONFIG = {
    "api_url": f"http://127.0.0.1:{PORT}",
    "api_key": API_KEY,
    "rejects_path": str(REJECTS.resolve()),
    "max_requests_per_second": 0,
    "max_rejects": None,
    # The SDK's stock streams are not interactions: send every stream through passthrough
    # so that their records are set aside (never sent); our own streams are sent as they are.
    "mappings": {"*": {"preset": "passthrough"}},
}


def _rejected_records() -> list[dict]:
    if not REJECTS.exists():
        return []
    return [json.loads(line) for line in REJECTS.read_text().splitlines()]


def _input_records(singer_file) -> list[dict]:
    messages = [json.loads(line) for line in singer_file.read_text().splitlines() if line.strip()]
    return [message for message in messages if message["type"] == "RECORD"]


class SetAsideNotSent:
    """validate(): every record of the stock stream is set aside, none reaches Miso."""

    def setup(self) -> None:
        REJECTS.unlink(missing_ok=True)
        self.resource.reset()

    def validate(self) -> None:
        sent = list(self.resource.interactions)
        assert sent == []
        rejected = _rejected_records()
        expected = _input_records(self.singer_filepath)
        assert len(rejected) == len(expected)
        for entry, message in zip(rejected, expected, strict=True):
            assert entry["stream"] == message["stream"]
            assert entry["stage"] == "validation"
            assert "type: missing; every interaction needs a type" in entry["reasons"]


def _checked(template: type) -> type:
    return type(template.__name__, (SetAsideNotSent, template), {})


class TargetPassthroughInteractions(TargetFileTestTemplate):
    """Interaction-shaped records arrive normalized, a bad one is set aside."""

    name = "interactions_passthrough"

    @property
    def singer_filepath(self):
        return files(data_files) / f"{self.name}.singer"

    def setup(self) -> None:
        REJECTS.unlink(missing_ok=True)
        self.resource.reset()

    def validate(self) -> None:
        assert self.resource.interactions == [
            {
                "type": "product_detail_page_view",
                "user_id": "u1",
                "anonymous_id": "a1",
                "timestamp": "2024-05-01T10:00:00.000Z",
                "product_ids": ["sku-1"],
                "duration": 12.5,
                "context": {
                    "page": {
                        "url": "https://shop.example/p/sku-1",
                        "title": 'Red "shoes"\nline two',
                    },
                },
            },
            {
                "type": "add_to_cart",
                "anonymous_id": "a1",
                "timestamp": "2024-05-01T10:01:00.000Z",
                "product_ids": ["sku-1", "sku-2"],
                "quantities": [1, 2],
            },
            {
                "type": "checkout",
                "user_id": "u1",
                "timestamp": "2024-05-01T10:02:00.000Z",
                "product_ids": ["sku-1"],
                "quantities": [1],
                "revenue": 25.5,
            },
            {
                "type": "search",
                "user_id": "u1",
                "timestamp": "2024-05-01T10:03:00.500Z",
                "search": {"keywords": "red shoes", "filters": {"color": ["red"]}},
            },
            {
                "type": "category_page_view",
                "anonymous_id": "a2",
                "timestamp": "2024-05-01T10:04:00.000Z",
                "category": ["women", "shoes"],
            },
            {
                "type": "rate",
                "user_id": "u2",
                "timestamp": "2024-05-01T10:05:00.000Z",
                "product_ids": ["sku-9"],
                "rating": 4.5,
            },
        ]
        rejected = _rejected_records()
        assert [entry["record"]["event_id"] for entry in rejected] == ["e7"]
        assert rejected[0]["reasons"] == [
            "user_id/anonymous_id: neither is set (Miso would merge the record into one "
            "shared visitor)",
        ]
        assert self.runner.state_messages == [
            {"bookmarks": {"interactions": {"replication_key_value": "2024-05-01T10:06:00Z"}}},
        ]


class TargetStateAfterDelivery(TargetPassthroughInteractions):
    """The final STATE equals the input's last STATE, written once delivery settled."""

    name = "interactions_passthrough_state"

    @property
    def singer_filepath(self):
        return files(data_files) / "interactions_passthrough.singer"

    def validate(self) -> None:
        assert len(self.resource.interactions) == 6
        assert self.runner.state_messages[-1] == {
            "bookmarks": {"interactions": {"replication_key_value": "2024-05-01T10:06:00Z"}},
        }


miso_suite = SingerTestSuite(
    kind="target",
    tests=[
        # Stock streams: records must be set aside with a reason, never sent.
        _checked(TargetArrayData),
        _checked(TargetCamelcaseComplexSchema),
        _checked(TargetCamelcaseTest),
        _checked(TargetDuplicateRecords),
        _checked(TargetEncodedStringData),
        _checked(TargetNoPrimaryKeys),
        _checked(TargetOptionalAttributes),
        _checked(TargetPrimaryKeyUpdates),
        _checked(TargetRecordMissingOptionalFields),
        _checked(TargetSchemaNoProperties),
        _checked(TargetSchemaUpdates),
        _checked(TargetSpecialCharsInAttributes),
        # These expect an exception and check it themselves.
        TargetCliPrintsTest,
        TargetInvalidSchemaTest,
        TargetRecordBeforeSchemaTest,
        TargetRecordMissingKeyProperty,
        # Our own interaction streams.
        TargetPassthroughInteractions,
        TargetStateAfterDelivery,
        # Left out: TargetMultipleStateMessages expects one STATE out per STATE in; this
        # target writes STATE at checkpoints, after delivery (see README, "Delivery").
    ],
)

StandardTargetTests = get_target_test_class(
    TargetMiso,
    config=SAMPLE_CONFIG,
    custom_suites=[miso_suite],
    include_target_tests=False,
)


class TestTargetMiso(StandardTargetTests):
    """The SDK suite against a sandbox on a fixed port."""

    @pytest.fixture(scope="class")
    @classmethod
    def resource(cls):
        with Sandbox(api_key=API_KEY, port=PORT) as sandbox:
            yield sandbox
