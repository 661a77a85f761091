"""Singer BATCH messages: the records of the files a manifest names, with every guarantee.

A tap built on singer-sdk with ``batch_config`` sends SCHEMA, then BATCH messages naming
jsonl (optionally gzip) or parquet files, then STATE. Before, the target read none of those
records and still wrote the STATE: every record lost. These run the real target process
against the sandbox with hand-written manifests.
"""

from __future__ import annotations

import gzip
import json
import typing as t

from tests.helpers import (
    interaction,
    run_target,
    schema_message,
    seqs,
    state_message,
    write_config,
)

if t.TYPE_CHECKING:
    from pathlib import Path


def _write_jsonl(path: Path, records: list[dict], *, gzipped: bool) -> str:
    data = "".join(json.dumps(record) + "\n" for record in records).encode()
    path.write_bytes(gzip.compress(data) if gzipped else data)
    return path.as_uri()


def _batch(files: list[str], encoding: dict | None = None, stream: str = "interactions") -> str:
    encoding = encoding or {"format": "jsonl", "compression": "gzip"}
    return json.dumps({"type": "BATCH", "stream": stream, "encoding": encoding, "manifest": files})


def _lines(*lines: str) -> str:
    return "\n".join(lines) + "\n"


def test_a_gzip_jsonl_batch_delivers_every_record_before_its_state(sandbox, tmp_path):
    records = [interaction(i) for i in range(2500)]
    files = [
        _write_jsonl(tmp_path / "part-1.jsonl.gz", records[:1200], gzipped=True),
        _write_jsonl(tmp_path / "part-2.jsonl.gz", records[1200:], gzipped=True),
    ]
    state = {"bookmarks": {"interactions": {"seq": 2499}}}
    config = write_config(tmp_path, sandbox.url, batch_size_rows=500)

    run = run_target(config, _lines(schema_message(), _batch(files), state_message(state)))

    assert run.returncode == 0, run.stderr[-2000:]
    assert sorted(seqs(sandbox.interactions)) == list(range(2500))
    assert run.states == [state]
    assert "records in: 2500" in run.stderr


def test_plain_jsonl_batches_and_records_mix_in_one_stream(sandbox, tmp_path):
    plain = _write_jsonl(
        tmp_path / "b.jsonl", [interaction(i) for i in range(10, 20)], gzipped=False
    )
    record = json.dumps({"type": "RECORD", "stream": "interactions", "record": interaction(0)})
    config = write_config(tmp_path, sandbox.url)

    run = run_target(
        config,
        _lines(schema_message(), record, _batch([plain], {"format": "jsonl", "compression": None})),
    )

    assert run.returncode == 0, run.stderr[-2000:]
    assert sorted(seqs(sandbox.interactions)) == [0, *range(10, 20)]


def test_a_bad_record_in_a_batch_file_is_set_aside_like_any_record(sandbox, tmp_path):
    records = [interaction(i) for i in range(5)]
    records[2]["revenue"] = 12.5  # not allowed on a page view
    files = [_write_jsonl(tmp_path / "b.jsonl.gz", records, gzipped=True)]
    config = write_config(tmp_path, sandbox.url)

    run = run_target(config, _lines(schema_message(), _batch(files)))

    assert run.returncode == 0, run.stderr[-2000:]
    assert sorted(seqs(sandbox.interactions)) == [0, 1, 3, 4]
    assert "set aside: 1 " in run.stderr


def test_an_encoding_it_cannot_read_stops_the_run_without_state(sandbox, tmp_path):
    files = [_write_jsonl(tmp_path / "b.csv", [interaction(1)], gzipped=False)]
    before = {"bookmarks": {"interactions": {"seq": 0}}}
    config = write_config(tmp_path, sandbox.url)

    run = run_target(
        config,
        _lines(
            schema_message(),
            state_message(before),
            _batch(files, {"format": "csv", "compression": None}),
            state_message({"bookmarks": {"interactions": {"seq": 1}}}),
        ),
    )

    assert run.returncode == 1
    assert "cannot be read (target-miso reads jsonl, jsonl with gzip, and parquet)" in run.stderr
    assert "Traceback" not in run.stderr
    assert run.states in ([], [before]), "no STATE past the BATCH it could not read"


def test_a_missing_batch_file_stops_the_run_naming_the_file(sandbox, tmp_path):
    missing = (tmp_path / "gone.jsonl.gz").as_uri()
    config = write_config(tmp_path, sandbox.url)

    run = run_target(
        config,
        _lines(schema_message(), _batch([missing]), state_message({"bookmarks": {"x": 1}})),
    )

    assert run.returncode == 1
    assert "gone.jsonl.gz cannot be read" in run.stderr
    assert run.states == []


def test_a_storage_without_its_package_stops_the_run_naming_it(sandbox, tmp_path):
    # S3 through fsspec needs s3fs, which target-miso does not depend on.
    config = write_config(tmp_path, sandbox.url)

    run = run_target(
        config,
        _lines(
            schema_message(),
            _batch(["s3://a-bucket/batches/part-1.jsonl.gz"]),
            state_message({"bookmarks": {"x": 1}}),
        ),
    )

    assert run.returncode == 1
    assert (
        "BATCH file s3://a-bucket/batches/part-1.jsonl.gz cannot be read: its storage needs a "
        "package target-miso does not install (Install s3fs to access S3)" in run.stderr
    )
    assert "failed unexpectedly" not in run.stderr
    assert run.states == []


def test_a_corrupt_gzip_file_stops_the_run(sandbox, tmp_path):
    path = tmp_path / "b.jsonl.gz"
    path.write_bytes(gzip.compress(b'{"type": "x"}\n' * 100)[:40])
    config = write_config(tmp_path, sandbox.url)

    run = run_target(
        config, _lines(schema_message(), _batch([path.as_uri()]), state_message({"b": 1}))
    )

    assert run.returncode == 1
    assert "b.jsonl.gz cannot be read" in run.stderr
    assert run.states == []


def test_a_batch_of_a_stream_without_schema_is_one_clear_error(sandbox, tmp_path):
    files = [_write_jsonl(tmp_path / "b.jsonl.gz", [interaction(1)], gzipped=True)]
    config = write_config(tmp_path, sandbox.url)

    run = run_target(config, _lines(schema_message(), _batch(files, stream="other")))

    assert run.returncode == 1
    assert "Input line 2 is a BATCH of stream 'other', which no SCHEMA" in run.stderr
    assert "Traceback" not in run.stderr
