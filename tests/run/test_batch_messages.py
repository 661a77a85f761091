"""Singer BATCH messages: the records of the files a manifest names, with every guarantee.

A tap built on singer-sdk with ``batch_config`` sends SCHEMA, then BATCH messages naming
jsonl (optionally gzip) or parquet files, then STATE. Before, the target read none of those
records and still wrote the STATE: every record lost. These run the real target process
against the sandbox with hand-written manifests, local and on S3 (moto's real server).
"""

from __future__ import annotations

import gzip
import io
import json
import os
import typing as t

import pytest

from tests.helpers import (
    INTERACTION_SCHEMA,
    interaction,
    run_target,
    schema_message,
    seqs,
    state_message,
    write_config,
)
from tests.s3 import free_port, s3_client

if t.TYPE_CHECKING:
    from pathlib import Path

    from tests.helpers import TargetRun


def _write_jsonl(path: Path, records: list[dict], *, gzipped: bool) -> str:
    data = "".join(json.dumps(record) + "\n" for record in records).encode()
    path.write_bytes(gzip.compress(data) if gzipped else data)
    return path.as_uri()


def _batch(files: list[str], encoding: dict | None = None, stream: str = "interactions") -> str:
    encoding = encoding or {"format": "jsonl", "compression": "gzip"}
    return json.dumps({"type": "BATCH", "stream": stream, "encoding": encoding, "manifest": files})


def _lines(*lines: str) -> str:
    return "\n".join(lines) + "\n"


#: The STATE before the BATCH a run cannot read: the only one such a run may write.
BEFORE = {"bookmarks": {"interactions": {"seq": 0}}}


def _run_between_states(config: Path, batch: str) -> TargetRun:
    """Run the target on SCHEMA, STATE (BEFORE), the BATCH, then a STATE past it."""
    after = state_message({"bookmarks": {"interactions": {"seq": 1}}})
    return run_target(config, _lines(schema_message(), state_message(BEFORE), batch, after))


def _assert_stopped_before_the_batch(run: TargetRun, message: str) -> None:
    assert run.returncode == 1
    assert message in run.stderr
    assert "Traceback" not in run.stderr
    assert run.states in ([], [BEFORE]), "no STATE past the BATCH it could not read"


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
    config = write_config(tmp_path, sandbox.url)

    run = _run_between_states(config, _batch(files, {"format": "csv", "compression": None}))

    _assert_stopped_before_the_batch(
        run, "cannot be read (target-miso reads jsonl, jsonl with gzip, and parquet)"
    )


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
    # Google Cloud Storage through fsspec needs gcsfs, which target-miso does not depend on.
    config = write_config(tmp_path, sandbox.url)

    run = run_target(
        config,
        _lines(
            schema_message(),
            _batch(["gs://a-bucket/batches/part-1.jsonl.gz"]),
            state_message({"bookmarks": {"x": 1}}),
        ),
    )

    assert run.returncode == 1
    assert (
        "BATCH file gs://a-bucket/batches/part-1.jsonl.gz cannot be read: its storage needs a "
        "package target-miso does not install (Please install gcsfs to access Google Storage)"
        in run.stderr
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


# BATCH files on S3: read with boto3 (the `s3` extra), against moto's real S3 server; the
# target finds the endpoint and the credentials in the standard AWS environment only.

BUCKET = "tap-batches"
#: moto takes any key; this one must never show in the target's output.
SECRET = "never-print-this-s3cr3t-9f2c"  # noqa: S105 - a test key, for moto only


@pytest.fixture
def s3_bucket(s3_server, monkeypatch):
    """An empty bucket on moto; the target's environment points at it (AWS_ENDPOINT_URL)."""
    for name in [name for name in os.environ if name.startswith("AWS_")]:
        monkeypatch.delenv(name)  # no profile, region or endpoint of the machine's
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "batch-reader")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    client = s3_client(s3_server)
    client.create_bucket(Bucket=BUCKET)
    return client


def _put_jsonl(client, key: str, records: list[dict], *, gzipped: bool) -> str:
    data = "".join(json.dumps(record) + "\n" for record in records).encode()
    client.put_object(Bucket=BUCKET, Key=key, Body=gzip.compress(data) if gzipped else data)
    return f"s3://{BUCKET}/{key}"


def test_gzip_and_plain_jsonl_batches_on_s3_deliver_every_record_before_the_state(
    sandbox, tmp_path, s3_bucket
):
    records = [interaction(i) for i in range(3000)]
    gzipped = [
        _put_jsonl(s3_bucket, "run-1/part-1.jsonl.gz", records[:1000], gzipped=True),
        _put_jsonl(s3_bucket, "run-1/part-2.jsonl.gz", records[1000:2000], gzipped=True),
    ]
    plain = _put_jsonl(s3_bucket, "run-1/part-3.jsonl", records[2000:], gzipped=False)
    state = {"bookmarks": {"interactions": {"seq": 2999}}}
    config = write_config(tmp_path, sandbox.url, batch_size_rows=500)

    run = run_target(
        config,
        _lines(
            schema_message(),
            _batch(gzipped),
            _batch([plain], {"format": "jsonl", "compression": "none"}),
            state_message(state),
        ),
    )

    assert run.returncode == 0, run.stderr[-2000:]
    assert sorted(seqs(sandbox.interactions)) == list(range(3000))
    assert run.states == [state]
    assert "records in: 3000" in run.stderr


def test_a_parquet_batch_on_s3_delivers_every_record(sandbox, tmp_path, s3_bucket):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    records = [interaction(i) for i in range(1200)]
    for record in records:
        record["context"] = json.dumps(record["context"])  # one column type for parquet
    body = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(records), body, row_group_size=500)
    s3_bucket.put_object(Bucket=BUCKET, Key="run-1/part-1.parquet", Body=body.getvalue())
    state = {"bookmarks": {"interactions": {"seq": 1199}}}
    schema = {**INTERACTION_SCHEMA, "properties": {**INTERACTION_SCHEMA["properties"]}}
    schema["properties"]["context"] = {"type": ["string", "null"]}
    config = write_config(tmp_path, sandbox.url)

    run = run_target(
        config,
        _lines(
            schema_message(schema=schema),
            _batch([f"s3://{BUCKET}/run-1/part-1.parquet"], {"format": "parquet"}),
            state_message(state),
        ),
    )

    assert run.returncode == 0, run.stderr[-2000:]
    assert sorted(seqs(sandbox.interactions)) == list(range(1200))
    assert run.states == [state]


@pytest.mark.parametrize(
    ("url", "code"),
    [
        (f"s3://{BUCKET}/run-1/gone.jsonl.gz", "NoSuchKey"),
        ("s3://no-such-bucket/run-1/part-1.jsonl.gz", "NoSuchBucket"),
    ],
)
def test_a_missing_s3_object_stops_the_run_naming_the_url_and_the_code(
    sandbox, tmp_path, s3_bucket, url, code
):
    first = _put_jsonl(s3_bucket, "run-1/part-1.jsonl.gz", [interaction(1)], gzipped=True)
    config = write_config(tmp_path, sandbox.url)

    run = _run_between_states(config, _batch([first, url]))

    _assert_stopped_before_the_batch(
        run, f"stream 'interactions': BATCH file {url} cannot be read (S3 error {code}"
    )
    assert SECRET not in run.stderr + run.stdout


def test_an_unreachable_s3_endpoint_stops_the_run_naming_the_url(
    sandbox, tmp_path, s3_bucket, monkeypatch
):
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")  # nothing there
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    url = f"s3://{BUCKET}/run-1/part-1.jsonl.gz"
    config = write_config(tmp_path, sandbox.url)

    run = run_target(config, _lines(schema_message(), _batch([url]), state_message({"b": 1})))

    assert run.returncode == 1
    assert f"BATCH file {url} cannot be read (S3 error EndpointConnectionError" in run.stderr
    assert SECRET not in run.stderr + run.stdout
    assert run.states == []


def test_an_s3_batch_without_boto3_says_which_extra_to_install(sandbox, tmp_path, monkeypatch):
    # The target as installed without the `s3` extra: boto3 cannot be imported.
    hidden = tmp_path / "no-boto3"
    hidden.mkdir()
    (hidden / "boto3.py").write_text("raise ImportError(\"No module named 'boto3'\")\n")
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join([str(hidden), os.environ.get("PYTHONPATH", "")])
    )
    url = f"s3://{BUCKET}/run-1/part-1.jsonl.gz"
    config = write_config(tmp_path, sandbox.url)

    run = run_target(config, _lines(schema_message(), _batch([url]), state_message({"b": 1})))

    assert run.returncode == 1
    assert (
        f"BATCH file {url} cannot be read: reading s3:// paths needs boto3: "
        "pip install 'target-miso[s3]'" in run.stderr
    )
    assert run.states == []
