"""The target's settings: their schema, and the start-up checks the schema cannot express.

Everything here runs before any record is read, so a mistake in the settings stops the run
at once with the setting's name, never half-way through a sync.
"""

from __future__ import annotations

import json
import re
import typing as t
from pathlib import Path
from urllib.parse import urlsplit

from singer_sdk import typing as th
from singer_sdk.exceptions import ConfigValidationError

from target_miso.catalog.sync import CATALOG_SETTINGS
from target_miso.mappings import MappingConfigError, check_mappings
from target_miso.mappings.meltano_keys import check_env_mappings
from target_miso.run.rejects import check_rejects_path

#: Path segments that show api_url is an endpoint rather than the API root.
_API_PATHS = frozenset({"v1", "interactions", "products", "users"})
#: What an API key may hold: visible ASCII (an HTTP header value), no spaces.
_KEY_TEXT = re.compile(r"[\x21-\x7e]+")

SETTINGS_SCHEMA: dict = th.PropertiesList(
    th.Property(
        "api_url",
        th.StringType(nullable=False),
        default="https://api.askmiso.com",
        title="API URL",
        description="Root of Miso's API, without `/v1`. Point it at `target-miso-sandbox` "
        "to try a pipeline without a Miso account.",
    ),
    th.Property(
        "api_key",
        th.StringType(nullable=False),
        required=True,
        secret=True,
        title="API key",
        description="The **secret** API key of the Miso environment. Sent only in the "
        "`X-API-KEY` header; never logged. Spaces or a newline around it are removed.",
    ),
    th.Property(
        "dry_run",
        th.BooleanType(nullable=False),
        default=False,
        title="Dry run",
        description="Ask Miso to validate every request without storing anything "
        "(`dry_run=1`). STATE is still written.",
    ),
    th.Property(
        "batch_size_rows",
        th.IntegerType(nullable=False),
        default=1000,
        title="Batch size (rows)",
        description="Interactions per request (Miso's own tools send 1,000).",
    ),
    th.Property(
        "max_request_bytes",
        th.IntegerType(nullable=False),
        default=1_048_576,
        title="Max request bytes",
        description="Upper bound of one request body; batches are cut at "
        "`batch_size_rows` records or this many bytes, whichever comes first.",
    ),
    th.Property(
        "max_concurrent_requests",
        th.IntegerType(nullable=False),
        default=8,
        title="Max concurrent requests",
        description="Requests on the wire at once, so that API latency does not "
        "serialize the run (`max_requests_per_second` still bounds the rate).",
    ),
    th.Property(
        "max_requests_per_second",
        th.NumberType(nullable=False),
        default=10,
        title="Max requests per second",
        description="Rate limit across all requests, retries included (Miso's SDK uses "
        "10). 0 disables it.",
    ),
    th.Property(
        "request_timeout",
        th.NumberType(nullable=False),
        default=60,
        title="Request timeout",
        description="Seconds to wait for a connection and for an answer.",
    ),
    th.Property(
        "max_retries",
        th.IntegerType(nullable=False),
        default=8,
        title="Max retries",
        description="Retries of one request after a 429, a 5xx, a timeout or a dropped "
        "connection, with exponential backoff and jitter; `Retry-After` is honored. "
        "When they run out the run fails without writing STATE.",
    ),
    th.Property(
        "retry_initial_delay",
        th.NumberType(nullable=False),
        default=0.5,
        title="Retry initial delay",
        description="Seconds before the first retry; doubles on each retry.",
    ),
    th.Property(
        "retry_max_delay",
        th.NumberType(nullable=False),
        default=60,
        title="Retry max delay",
        description="Upper bound in seconds of one backoff delay (a longer `Retry-After` "
        "from Miso wins).",
    ),
    th.Property(
        "rejects_path",
        th.StringType(nullable=False),
        default="miso-rejects.jsonl",
        title="Rejects file",
        description="JSON Lines file where records that cannot be delivered are set "
        "aside with their stream, source record, mapped interaction and every reason. "
        "Created on the first reject, readable by its owner only (mode 0600); appended to "
        "across runs. Checked at start-up: a path that cannot be written stops the run.",
    ),
    th.Property(
        "resend_guard_store",
        th.StringType(nullable=True),
        default=".target-miso/resend-guard.sqlite",
        title="Resend guard store",
        description="SQLite file (relative to the working directory; Meltano runs in the "
        "project root) of the interactions Miso accepted that no saved STATE covers yet. A "
        "run stopped (SIGTERM, kill -9, a failure) leaves them there, and the next run does "
        "not send them again when the tap re-reads them, whatever the preset. Keep it on a "
        "persistent volume beside the rejects file; null keeps nothing between runs.",
    ),
    th.Property(
        "max_rejects",
        th.IntegerType(nullable=True),
        default=10_000,
        title="Max rejects",
        description="The run fails once more than this many records were set aside in "
        "one run (null: no limit).",
    ),
    th.Property(
        "max_future_timestamp_seconds",
        th.NumberType(nullable=True),
        default=86_400,
        title="Max future timestamp (seconds)",
        description="An interaction whose `timestamp` is more than this many seconds "
        "ahead of the clock (a wrong time zone or unit upstream) is set aside at "
        "validation instead of being sent (null: no limit).",
    ),
    th.Property(
        "state_checkpoint_seconds",
        th.NumberType(nullable=False),
        default=60,
        title="Checkpoint interval (seconds)",
        description="Deliver everything read so far and write the latest STATE at least "
        "this often, so a crash replays a bounded window.",
    ),
    th.Property(
        "state_checkpoint_records",
        th.IntegerType(nullable=False),
        default=10_000,
        title="Checkpoint interval (records)",
        description="Also checkpoint after this many records. Mappings hold some "
        "interactions until the next checkpoint (Snowplow page views waiting for their "
        "pings), so this bounds memory and the replay window; larger values cut fewer "
        "ping sequences at checkpoint boundaries.",
    ),
    th.Property(
        "stop_grace_seconds",
        th.NumberType(nullable=False),
        default=25,
        title="Stop grace period",
        description="After SIGTERM or SIGINT the target stops reading and delivers what "
        "it read, then writes the STATE that covers it and exits 128+signal. If that takes "
        "longer than this many seconds (an outage), or a second signal arrives, it exits "
        "at once without further STATE. The default fits Kubernetes' 30 s grace period.",
    ),
    th.Property(
        "progress_log_seconds",
        th.NumberType(nullable=False),
        default=30,
        title="Progress log interval",
        description="Seconds between progress lines on long runs (0: none).",
    ),
    th.Property(
        "mappings",
        th.ObjectType(additional_properties=True),
        default={},
        title="Mappings",
        description="How each stream becomes interactions: stream name (or glob) -> "
        "`{preset: auto|passthrough|snowplow|ga4|segment|custom, ...options}`. "
        "Streams without an entry use `auto`. See docs/mappings.md. An entry with "
        "`kind: products` or `kind: users` syncs the stream to Miso's catalog instead "
        "(docs/catalog.md).",
    ),
    th.Property(
        "unmatched_mappings",
        th.StringType(nullable=False),
        default="error",
        allowed_values=["error", "warn"],
        title="Unmatched mappings",
        description="What a `mappings` key that no stream of the run used (a misspelt "
        "stream name or a glob that matches nothing) does at the end of the run: `error` "
        "fails it (exit 1) after everything read was delivered and the final STATE "
        "written; `warn` only logs a WARNING. Streams without their own key would "
        "otherwise use `auto` silently. A run that saw no stream is not checked.",
    ),
    *CATALOG_SETTINGS,
).to_dict()


def normalize_config(config: dict[str, t.Any], schema: dict) -> tuple[bool, int]:
    """Fix up, in place, what Meltano and secret files hand over slightly off.

    Meltano 4.4 crashes on ``kind: decimal`` settings given by environment variables (it
    cannot JSON-encode the Decimal it makes), so meltano.yml declares the fractional
    settings as strings: numeric text is read as a number here. The key is a secret: a key
    of the wrong type is blanked so that no message shows it (the SDK's jsonschema message
    would print it), and spaces or a newline around it (pasted from a file) are removed.

    Args:
        config: The settings as given.
        schema: The settings schema.

    Returns:
        (the api_key was of the wrong type, how many whitespace characters were removed).

    """
    for name, spec in schema["properties"].items():
        value = config.get(name)
        if isinstance(value, str) and "number" in str(spec.get("type")):
            try:
                config[name] = float(value)
            except ValueError:
                pass  # the validator names the setting
    key = config.get("api_key")
    if "api_key" in config and not isinstance(key, str):
        config["api_key"] = ""  # the value stays out of every message
        return True, 0
    if isinstance(key, str) and key != key.strip():
        config["api_key"] = key.strip()
        return False, len(key) - len(key.strip())
    return False, 0


def check_settings(config: t.Mapping[str, t.Any]) -> None:
    """Check what the settings schema cannot say; every problem is named in one error.

    Args:
        config: The validated settings.

    Raises:
        ConfigValidationError: Listing each problem with its setting's name.

    """
    problems = []
    url = urlsplit(str(config.get("api_url", "")))
    if url.scheme not in {"http", "https"} or not url.netloc:
        problems.append("api_url: must be an http(s) URL such as https://api.askmiso.com")
    if url.query or "api_key" in str(config.get("api_url", "")):
        problems.append(
            "api_url: must not carry a query string; the API key goes in api_key only",
        )
    if url.path.strip("/") and _API_PATHS & set(url.path.lower().split("/")):
        problems.append(
            f"api_url: give the root, without {url.path.rstrip('/')} "
            f"(e.g. {url.scheme}://{url.netloc})",
        )
    key = config.get("api_key")
    if not str(key or "").strip():
        problems.append("api_key: is empty")
    elif isinstance(key, str) and not _KEY_TEXT.fullmatch(key):
        problems.append(
            "api_key: contains spaces, control or non-ASCII characters (value not shown); "
            "copy the key exactly as Miso's dashboard shows it",
        )
    rejects_problem = check_rejects_path(config["rejects_path"])
    if rejects_problem:
        problems.append(rejects_problem)
    future = config.get("max_future_timestamp_seconds")
    if future is not None and future < 0:
        problems.append("max_future_timestamp_seconds: must not be negative (null: no limit)")
    minimums = {
        "max_request_bytes": 1024,
        "max_concurrent_requests": 1,
        "request_timeout": 0.001,
        "state_checkpoint_records": 1,
        "state_checkpoint_seconds": 0.001,
        "stop_grace_seconds": 0,
    }
    problems += [
        f"{name}: must be at least {low}" for name, low in minimums.items() if config[name] < low
    ]
    problems += [
        f"{name}: must not be negative"
        for name in ("max_retries", "max_requests_per_second", "retry_initial_delay")
        if config[name] < 0
    ]
    if config.get("batch_size_rows") is not None and config["batch_size_rows"] < 1:
        problems.append("batch_size_rows: must be at least 1")
    if problems:
        raise ConfigValidationError("Invalid target-miso settings", errors=problems)
    try:
        check_env_mappings(config.get("mappings") or {})  # keys Meltano dropped on the way
        check_mappings(config.get("mappings") or {})
    except MappingConfigError as error:
        raise ConfigValidationError(str(error), errors=[str(error)]) from None


def config_file_problem(path: str) -> str | None:
    """Say what is wrong with a ``--config`` file, in a few words (None: a JSON object)."""
    if path == "ENV":
        return None
    problem = None
    try:
        text = Path(path).read_text(encoding="utf-8")
        settings = json.loads(text)
    except FileNotFoundError:
        problem = "no such file"
    except json.JSONDecodeError as error:
        problem = (
            f"not valid JSON: {error.msg} at line {error.lineno} column {error.colno}"
            + ("" if text.lstrip()[:1] in "{[" else " (YAML is not read here)")
            if text.strip()
            else "the file is empty"
        ) + "; write the settings as a JSON object"
    except (OSError, UnicodeDecodeError) as error:
        problem = f"cannot be read ({getattr(error, 'strerror', None) or error})"
    else:
        if not isinstance(settings, dict):
            problem = f"holds a JSON {type(settings).__name__}, not an object of settings"
    return problem
