"""The sample data others build on: column lists, the S3 loader's file format, benchmark rows."""

from __future__ import annotations

import collections
import gzip
import json

from target_miso import samples


def test_the_enriched_tsv_has_131_fields_and_the_warehouses_128_atomic_columns():
    assert len(samples.ENRICHED_TSV_COLUMNS) == 131
    assert len(set(samples.ENRICHED_TSV_COLUMNS)) == 131
    assert samples.ENRICHED_TSV_COLUMNS[52] == "contexts"
    assert samples.ENRICHED_TSV_COLUMNS[58] == "unstruct_event"
    assert samples.ENRICHED_TSV_COLUMNS[122] == "derived_contexts"
    assert samples.ENRICHED_TSV_COLUMNS[130] == "true_tstamp"
    assert len(samples.ATOMIC_COLUMNS) == 128


def test_enriched_tsv_files_are_headerless_tab_separated_lines(tmp_path):
    rows = samples.render_tsv_shaped(samples.sample_events()[:3])
    samples.write_enriched_tsv(tmp_path / "a.gz", rows)
    samples.write_enriched_tsv(tmp_path / "b.tsv", rows, gzip=False)

    with gzip.open(tmp_path / "a.gz", "rt", encoding="utf-8") as compressed:
        lines = compressed.read().splitlines()
    assert (tmp_path / "b.tsv").read_text(encoding="utf-8").splitlines() == lines
    assert len(lines) == 3
    fields = lines[0].split("\t")
    assert len(fields) == 131
    assert fields[6] == rows[0]["event_id"]
    assert json.loads(fields[52]) == json.loads(rows[0]["contexts"])
    assert fields[12] == "", "an empty field is a null"


def test_benchmark_rows_have_114_columns_and_a_realistic_mix():
    rows = list(samples.benchmark_rows(2_000))
    names = collections.Counter(row["event_name"] for row in rows)

    assert {len(row) for row in rows} == {114}
    assert len({row["event_id"] for row in rows}) == 2_000
    assert 0.50 < names["page_view"] / 2_000 < 0.60
    assert 0.20 < names["page_ping"] / 2_000 < 0.30
    assert 0.07 < names["snowplow_ecommerce_action"] / 2_000 < 0.13
    assert 0.03 < names["site_search"] / 2_000 < 0.07
    assert 0.03 < names["event"] / 2_000 < 0.07


def test_benchmark_singer_lines_are_a_schema_then_records_and_states():
    lines = list(samples.benchmark_singer_lines(10_001))
    messages = [json.loads(line) for line in lines]

    assert all(isinstance(line, str) and "\n" not in line for line in lines)
    assert messages[0]["type"] == "SCHEMA"
    assert messages[0]["stream"] == "atomic-events"
    assert collections.Counter(m["type"] for m in messages) == {
        "SCHEMA": 1,
        "RECORD": 10_001,
        "STATE": 2,
    }
