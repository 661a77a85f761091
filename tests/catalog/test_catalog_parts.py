"""The catalog's parts on their own: schema checks, field coercion, options, hashes."""

from __future__ import annotations

import datetime as dt
import decimal
import typing as t

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from target_miso.catalog.hashes import CatalogHashes, environment_key
from target_miso.catalog.mapping import CatalogMapping, CatalogOptions, content_hash
from target_miso.catalog.schema import FIELDS, CatalogValidator, catalog_reasons
from target_miso.catalog.sync import task_state
from target_miso.mappings import MappingConfigError, MappingError, check_mappings

if t.TYPE_CHECKING:
    from pathlib import Path


# --- Schema ------------------------------------------------------------------------------

VALID_PRODUCT = {
    "product_id": "sku-1",
    "product_group_id": "group-1",
    "title": "Miso soup T-shirt",
    "categories": [["Clothing", "T-Shirts"], ["Novelty"]],
    "tags": ["cute"],
    "url": "https://example.com/p/1",
    "sale_price": 15,
    "rating": 4.5,
    "condition": "NEW",
    "availability": "IN_STOCK",
    "created_at": "2024-05-01",
    "updated_at": "2024-05-01T10:00:00.000Z",
    "location": [{"lat": 40.7, "lon": -73.9}],
    "children": [{"id": "chapter-1", "title": "One"}],
    "enable_question_answering": False,
    "custom_attributes": {"designer": "Ann", "sizes": [1, 2], "adult": False, "meta": {"a": 1}},
}


def test_a_full_valid_product_passes_both_checks() -> None:
    validator = CatalogValidator("products")
    assert validator.reasons(VALID_PRODUCT) == []
    assert validator.is_valid(VALID_PRODUCT)


@pytest.mark.parametrize(
    ("kind", "record", "reasons"),
    [
        ("products", {"title": "x"}, ["product_id: missing; every record of products needs one"]),
        ("products", {"product_id": ""}, ["product_id: must be 1 to 512 characters, got 0"]),
        ("products", {"product_id": "x" * 513},
         ["product_id: must be 1 to 512 characters, got 513"]),
        ("products", {"product_id": "_x"}, ["product_id: must not start with '_'"]),
        ("products", {"product_id": "a,b"}, ["product_id: must not contain ','"]),
        ("products", {"product_id": 7}, ["product_id: must be a string, got int"]),
        ("users", {"user_id": "a,b"}, []),  # commas are fine in user ids
        ("users", {"user_id": "_u"}, ["user_id: must not start with '_'"]),
        ("products", {"product_id": "p", "colour": "red"}, ["colour: not a Miso product field"]),
        ("users", {"user_id": "u", "title": "Dr"}, ["title: not a Miso user field"]),
        ("products", {"product_id": "p", "tags": "a"}, ["tags: expected an array of strings"]),
        ("products", {"product_id": "p", "rating": 5.5},
         ["rating: 5.5 is not a number from 0 to 5"]),
        ("products", {"product_id": "p", "condition": "new"},
         ["condition: 'new' is not one of NEW, USED, REFURBISHED"]),
        ("products", {"product_id": "p", "created_at": "yesterday"},
         ["created_at: 'yesterday' is not an ISO 8601 date or date-time"]),
        ("products", {"product_id": "p", "categories": ["Toys"]},
         ["categories: expected an array of arrays of strings, broad to narrow "
          "(e.g. [['Toys', 'Dolls']])"]),
        ("products", {"product_id": "p", "url": "/p/1"},
         ["url: '/p/1' is not a URI (e.g. https://example.com/page)"]),
        ("users", {"user_id": "u", "age": 3.5}, ["age: 3.5 is not an integer"]),
        ("users", {"user_id": "u", "custom_attributes": {"x": [1, "a"]}},
         ["custom_attributes: 'x': a value must be a string, number, boolean, an object of "
          "those, or an array of numbers, of strings or of objects"]),
    ],
)  # fmt: skip
def test_each_problem_is_named_with_its_field(
    kind: str, record: dict[str, t.Any], reasons: list[str]
) -> None:
    assert catalog_reasons(kind, record) == reasons
    assert CatalogValidator(kind).is_valid(record) is (not reasons)


_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 10),
    st.floats(-1, 6, allow_nan=False),
    st.sampled_from([-0.01, 0, 3.0, 5, 5.01]),
    st.sampled_from(["", "a", "_a", "a,b", "NEW", "IN_STOCK", "2024-05-01", "https://x.io/p",
                     "2024-05-01T10:00:00Z", "en"]),
    st.lists(st.sampled_from(["a", "b"]), max_size=2),
    st.lists(st.lists(st.sampled_from(["a", "b"]), max_size=2), max_size=2),
    st.lists(st.integers(0, 3), max_size=2),
    st.fixed_dictionaries({"lat": st.floats(-90, 90), "lon": st.floats(-180, 180)}),
    st.fixed_dictionaries({"id": st.sampled_from(["c", 1])}).map(lambda child: [child]),
    st.dictionaries(st.sampled_from(["k", "l"]), st.one_of(st.integers(), st.text(max_size=2),
                                                            st.lists(st.integers(), max_size=2))),
)  # fmt: skip


@pytest.mark.parametrize(
    ("kind", "field"), [(kind, field) for kind in FIELDS for field in [*FIELDS[kind], "other"]]
)
@settings(max_examples=100, deadline=None)
@given(
    value=st.one_of(st.sampled_from([-0.01, 0, 3.0, 5, 5.01, "x", ["x"], [["x"]]]), _VALUES),
    record_id=st.one_of(st.just("p-1"), st.sampled_from(["_p", "a,b", "", 3, None])),
)
def test_the_fast_check_agrees_with_jsonschema(
    kind: str, field: str, value: object, record_id: object
) -> None:
    record = {field: value}
    if record_id is not None:
        record.setdefault(kind[:-1] + "_id", record_id)
    assert (catalog_reasons(kind, record) == []) is CatalogValidator(kind).is_valid(record)


# --- Options and mapping ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"kind": "product", "fields": {}},
         "mappings.s.kind: 'product' is not a kind (use interactions, products or users)"),
        ({"kind": "products"},
         "mappings.s.fields: expected an object of Miso product field -> column or expression"),
        ({"kind": "products", "fields": {"title": "name"}},
         "mappings.s.fields: missing 'product_id': every record needs one"),
        ({"kind": "users", "fields": {"user_id": "id", "titel": "t"}},
         "mappings.s.fields.titel: 'titel' is not a Miso user field"),
        ({"kind": "products", "fields": {"product_id": "id", "title.en": "t"}},
         "mappings.s.fields.title.en: 'title' holds a whole value; only custom_attributes.<name> "
         "places a value inside a field"),
        ({"kind": "products", "fields": {"product_id": "id +"}},
         "mappings.s.fields.product_id: invalid expression 'id +'"),
        ({"kind": "products", "fields": {"product_id": "id"}, "preset": "custom"},
         "mappings.s.preset: unknown option for a catalog stream"),
        ({"kind": "products", "fields": {"product_id": "id"}, "delete_missing": "yes"},
         "mappings.s.delete_missing: expected true or false, got 'yes'"),
        ({"kind": "products", "fields": {"product_id": "id"}, "max_delete_fraction": 2},
         "mappings.s.max_delete_fraction: expected a number from 0 to 1, got 2"),
        ({"kind": "products", "fields": {"product_id": "id"}, "delete_filtered": 1},
         "mappings.s.delete_filtered: expected true or false, got 1"),
    ],
)  # fmt: skip
def test_catalog_entry_mistakes_name_the_setting(entry: dict[str, t.Any], message: str) -> None:
    with pytest.raises(MappingConfigError) as raised:
        check_mappings({"s": entry})
    assert str(raised.value).startswith(message)


def product_mapping(fields: dict[str, t.Any], **options: t.Any) -> CatalogMapping:
    entry = {"kind": "products", "fields": fields, **options}
    return CatalogMapping(CatalogOptions(entry, "mappings.s"), "s")


def test_values_take_the_shape_of_their_miso_field() -> None:
    mapping = product_mapping(
        {
            "product_id": "sku",
            "tags": "tags",
            "authors": "author",
            "categories": "cats",
            "sale_price": "price",
            "created_at": "created",
            "published_at": "published",
            "location": "loc",
            "custom_attributes.pages": "pages",
            "custom_attributes.meta": {"column": "meta", "json": True},
            "size": "size",
        },
    )
    row = {
        "sku": decimal.Decimal("1234"),
        "tags": '["a", "b"]',
        "author": "Ann",
        "cats": '[["Toys", "Dolls"], ["Gifts"]]',
        "price": decimal.Decimal("12.50"),
        "created": dt.date(2024, 5, 1),
        "published": "2024-05-01 10:00:00+02:00",
        "loc": '{"lat": 1.5, "lon": 2}',
        "pages": decimal.Decimal("300"),
        "meta": '{"a": 1}',
        "size": 42,
    }
    assert mapping.map(row) == {
        "product_id": "1234",
        "tags": ["a", "b"],
        "authors": ["Ann"],
        "categories": [["Toys", "Dolls"], ["Gifts"]],
        "sale_price": 12.5,
        "created_at": "2024-05-01",
        "published_at": "2024-05-01T08:00:00.000Z",
        "location": {"lat": 1.5, "lon": 2},
        "custom_attributes": {"pages": 300, "meta": {"a": 1}},
        "size": "42",
    }


def test_custom_attributes_keep_the_type_of_their_source() -> None:
    # Miso wants one type per attribute across the catalog: text that looks like a number or
    # JSON stays text; JSON text is parsed only where the mapping says `json: true`.
    mapping = product_mapping(
        {
            "product_id": "sku",
            "custom_attributes.designer": "designer",
            "custom_attributes.model_no": "model_no",
            "custom_attributes.note": "note",
            "custom_attributes.weight": "weight",
            "custom_attributes.pages": "pages",
            "custom_attributes.adult": "adult",
            "custom_attributes.specs": {"column": "specs", "json": True},
            "custom_attributes.sizes": "sizes",
        },
    )
    row = {
        "sku": 1,
        "designer": "Ana Ruiz",
        "model_no": "8841",
        "note": '{"not": "parsed"}',
        "weight": decimal.Decimal("1.25"),
        "pages": 300,
        "adult": False,
        "specs": '{"cotton": 0.8, "sizes": ["S", "M"]}',
        "sizes": ["S", "M"],
    }
    assert mapping.map(row)["custom_attributes"] == {
        "designer": "Ana Ruiz",
        "model_no": "8841",
        "note": '{"not": "parsed"}',
        "weight": 1.25,
        "pages": 300,
        "adult": False,
        "specs": {"cotton": 0.8, "sizes": ["S", "M"]},
        "sizes": ["S", "M"],
    }
    with pytest.raises(MappingError) as raised:
        mapping.map({**row, "specs": "Ana Ruiz"})
    assert str(raised.value) == "custom_attributes.specs: 'Ana Ruiz' is not valid JSON"
    assert "specs" not in mapping.map({**row, "specs": None})["custom_attributes"]


def test_json_takes_true_or_false() -> None:
    with pytest.raises(MappingConfigError) as raised:
        product_mapping({"product_id": "sku", "custom_attributes.x": {"column": "x", "json": 1}})
    assert str(raised.value).startswith(
        "mappings.s.fields.custom_attributes.x.json: expected true or false"
    )


def test_the_id_alone_is_computed_as_the_mapping_computes_it() -> None:
    mapping = product_mapping({"product_id": "'p-' + str(sku)", "sale_price": "price"})
    assert mapping.record_id({"sku": decimal.Decimal("7"), "price": "N/A"}) == "p-7"
    assert product_mapping({"product_id": "sku"}).record_id({"sku": 12}) == "12"
    assert product_mapping({"product_id": "sku"}).record_id({"sku": None}) is None
    with pytest.raises(MappingError):
        product_mapping({"product_id": "'p-' + sku"}).record_id({"sku": 7})


def test_a_flat_category_path_becomes_one_category() -> None:
    mapping = product_mapping({"product_id": "id", "categories": {"column": "c", "split": ">"}})
    assert mapping.map({"id": "p", "c": "Toys > Dolls"}) == {
        "product_id": "p",
        "categories": [["Toys", "Dolls"]],
    }


def test_nulls_and_empties_are_left_out_and_the_filter_skips_rows() -> None:
    mapping = product_mapping({"product_id": "id", "title": "t"}, filter="not deleted")
    assert mapping.map({"id": "p", "t": "", "deleted": False}) == {"product_id": "p"}
    assert mapping.map({"id": "p", "t": "x", "deleted": True}) is None


def test_a_value_that_cannot_be_coerced_names_the_field() -> None:
    mapping = product_mapping({"product_id": "id", "sale_price": "price"})
    with pytest.raises(MappingError) as raised:
        mapping.map({"id": "p", "price": "cheap"})
    assert str(raised.value) == "sale_price: 'cheap' is not a number"


def test_a_row_set_aside_names_every_field_that_failed() -> None:
    mapping = product_mapping(
        {"product_id": "id", "sale_price": "price", "title": "str(name) + 1", "size": "size"}
    )
    with pytest.raises(MappingError) as raised:
        mapping.map({"id": "p", "price": "cheap", "name": "Doll", "size": 3})
    reasons = raised.value.reasons
    assert [reason.split(":")[0] for reason in reasons] == ["sale_price", "title"]
    assert "sale_price: 'cheap' is not a number" in reasons


def test_expressions_may_only_read_columns_of_the_stream() -> None:
    mapping = product_mapping({"product_id": "sku"})
    with pytest.raises(MappingConfigError) as raised:
        mapping.bind_schema({"properties": {"id": {"type": "string"}}})
    assert str(raised.value).startswith(
        "mappings.s.fields.product_id: 'sku' is not a column of stream 's'"
    )


# --- Hashes ---------------------------------------------------------------------------------


def test_the_content_hash_ignores_key_order_and_sees_every_value() -> None:
    record = {"product_id": "p", "title": "T", "tags": ["a", "b"]}
    assert content_hash(record) == content_hash(dict(reversed(record.items())))
    assert content_hash(record) != content_hash({**record, "tags": ["b", "a"]})
    assert content_hash(record) != content_hash({**record, "title": "T "})


def test_hashes_are_kept_per_environment_and_forgotten_on_request(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite"
    dev = environment_key("https://api.askmiso.com", "dev-key")
    prod = environment_key("https://api.askmiso.com/", "prod-key")
    assert dev != prod
    assert "dev-key" not in dev

    store = CatalogHashes(path, dev)
    store.save("products", {"p-1": "h1", "p-2": "h2"}, set())
    store.close()

    reopened = CatalogHashes(path, dev)
    assert reopened.get("products", "p-1") == "h1"
    assert reopened.get("users", "p-1") is None
    reopened.save("products", {}, {"p-1"})
    assert reopened.get("products", "p-1") is None
    assert reopened.count("products") == 1
    reopened.close()

    other = CatalogHashes(path, prod)
    assert other.get("products", "p-2") is None  # another environment starts from nothing
    other.close()


@pytest.mark.parametrize(
    ("status", "state"),
    [
        ({"status": "succeeded"}, "done"),
        ({"status": "DONE"}, "done"),
        ({"state": "failed"}, "failed"),
        ({"status": "error"}, "failed"),
        ({"status": "queued"}, "running"),
        ({}, "running"),
    ],
)
def test_task_states_are_read_from_the_undocumented_answer(
    status: dict[str, str], state: str
) -> None:
    assert task_state(status) == state
