"""A local Miso-compatible Data API: the default destination for development, demos and tests.

It speaks the part of Miso's API a target uses (see docs/sandbox.md):

* ``POST /v1/interactions``, ``/v1/products``, ``/v1/users`` with ``{"data": [...]}``: every
  record is checked like Miso does; one bad record refuses the whole request with a 422 whose
  ``data`` lines read ``data.<i>.<field> is invalid. <reason>``. ``?dry_run=1`` checks and
  stores nothing. Product and user uploads answer with a ``task_id``.
* ``GET /v1/{products|users}/_ids``, ``POST /v1/{products|users}/_delete``,
  ``GET /v1/{products|users}/_status/<task_id>``.
* The key in the ``X-API-KEY`` header (or the ``api_key`` query parameter, which Miso also
  accepts); a wrong key gets 401, the publishable key gets Miso's 403 "bot blocking" answer.

Faults can be switched on to rehearse bad days: latency, random 429/500/503, connections
dropped before or after the batch was stored, a status for every request (an outage), and
records refused by user id. ``/_sandbox/...`` paths let tests and people look inside.

Run it with ``target-miso-sandbox --port 8787 --api-key KEY``, or in-process with
``with Sandbox(api_key=KEY) as sandbox: ...``.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import http.server
import random
import threading
import time
import typing as t
import urllib.parse
import uuid
from pathlib import Path

import orjson

from target_miso.miso.schema import InteractionValidator, is_valid_interaction

DEFAULT_PORT = 8787
_BOT_BLOCKING = (
    "Request is denied due to bot blocking. Please only access this API from a real browser "
    "or use Secret API Key instead."
)
_CATALOGS = {"products": "product_id", "users": "user_id"}


@dataclasses.dataclass
class Faults:
    """Misbehaviour to inject; rates are probabilities per request (0 to 1)."""

    latency_ms: float = 0
    rate_429: float = 0
    rate_500: float = 0
    rate_503: float = 0
    #: Close the connection without an answer, before the records are stored.
    drop_before_store: float = 0
    #: Store the records, then close the connection without an answer (the client cannot
    #: know they were stored: a retry duplicates them, as it would on Miso).
    drop_after_store: float = 0
    #: Answer every data request with this status (e.g. 503 for an outage).
    fail_all_status: int | None = None
    #: Records with these user ids are refused as invalid (exercises 422 recovery).
    reject_user_ids: tuple[str, ...] = ()
    #: Report refused records in a 200 with ``"errors": true`` instead of a 422.
    errors_in_200: bool = False
    #: Seconds sent in ``Retry-After`` with a 429 (None: no header).
    retry_after: float | None = 0
    #: The status ``/_status/<task_id>`` reports for catalog tasks (e.g. ``failed``).
    task_status: str = "succeeded"
    #: Answer catalog uploads and deletes without ``data.task_id`` (nothing to wait for).
    omit_task_id: bool = False
    seed: int | None = None

    @classmethod
    def from_options(cls, options: t.Mapping[str, t.Any]) -> Faults:
        """Build from keyword options, refusing unknown names (a typo must not go unnoticed).

        Args:
            options: Field names and values.

        Returns:
            The faults.

        Raises:
            TypeError: On an unknown option.

        """
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise TypeError(f"unknown sandbox fault option(s): {', '.join(unknown)}")
        values = dict(options)
        if "reject_user_ids" in values:
            values["reject_user_ids"] = tuple(values["reject_user_ids"] or ())
        return cls(**values)


class SandboxStore:
    """What the sandbox holds and counts; every method is thread-safe."""

    def __init__(self, faults: Faults, capture: Path | None = None) -> None:
        """Start empty.

        Args:
            faults: Faults to inject.
            capture: A JSON Lines file to append every stored interaction to.

        """
        self._lock = threading.Lock()
        self._validator = InteractionValidator()
        self.capture = capture
        self._configure(faults)
        self._clear()

    def _configure(self, faults: Faults) -> None:
        self.faults = faults
        self._random = random.Random(faults.seed)  # noqa: S311 - fault injection, not crypto

    def _clear(self) -> None:
        self.interactions: list[dict[str, t.Any]] = []
        self.catalogs: dict[str, dict[str, dict[str, t.Any]]] = {name: {} for name in _CATALOGS}
        self.tasks: dict[str, dict[str, t.Any]] = {}
        self.deleted: dict[str, list[str]] = {name: [] for name in _CATALOGS}
        self.requests_total = 0
        self.requests_by_status: collections.Counter[str] = collections.Counter()
        self.requests_by_path: collections.Counter[str] = collections.Counter()
        self.faults_fired: collections.Counter[str] = collections.Counter()
        self.in_flight = 0
        self.max_in_flight = 0

    def reset(self, faults: Faults | None = None) -> None:
        """Forget everything stored and counted; optionally replace the faults.

        Args:
            faults: New faults, or None to keep the current ones.

        """
        with self._lock:
            self._clear()
            self._configure(faults or self.faults)

    def set_faults(self, faults: Faults) -> None:
        """Replace the faults, keeping what is stored.

        Args:
            faults: The new faults.

        """
        with self._lock:
            self._configure(faults)

    def roll(self, fault: str, rate: float) -> bool:
        """Decide whether a random fault fires on this request, and count it if so.

        Args:
            fault: The fault's name (for stats).
            rate: Its probability.

        Returns:
            True when it fires.

        """
        if rate <= 0:
            return False
        with self._lock:
            fired = self._random.random() < rate
            if fired:
                self.faults_fired[fault] += 1
        return fired

    def count_request(self, path: str, status: int) -> None:
        """Count one answered (or dropped: status 0) request."""
        with self._lock:
            self.requests_total += 1
            self.requests_by_status[str(status)] += 1
            self.requests_by_path[path] += 1

    def enter(self) -> None:
        """Count a request that started (for the concurrency high-water mark)."""
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def leave(self) -> None:
        """Count a request that finished."""
        with self._lock:
            self.in_flight -= 1

    def invalid_lines(self, kind: str, records: list[t.Any]) -> list[str]:
        """Miso's 422 lines for every invalid record of an upload.

        Args:
            kind: ``interactions``, ``products`` or ``users``.
            records: The uploaded records.

        Returns:
            Lines ``data.<i>.<field> is invalid. <reason>``; empty when all are valid.

        """
        lines = []
        for index, record in enumerate(records):
            for reason in self._reasons(kind, record):
                field, _, why = reason.partition(": ")
                field = field.split("/")[0] if why else "record"
                lines.append(f"data.{index}.{field} is invalid. {why or reason}")
        return lines

    def _reasons(self, kind: str, record: t.Any) -> list[str]:
        if not isinstance(record, dict):
            return [f"record: expected an object, got {type(record).__name__}"]
        if kind == "interactions":
            reasons = [] if is_valid_interaction(record) else self._validator.reasons(record)
        else:
            reasons = _catalog_reasons(_CATALOGS[kind], record)
        if record.get("user_id") in self.faults.reject_user_ids:
            reasons.append("user_id: refused by the sandbox (reject_user_ids fault)")
        return reasons

    def store(self, kind: str, records: list[dict[str, t.Any]]) -> str | None:
        """Store valid records.

        Args:
            kind: ``interactions``, ``products`` or ``users``.
            records: The records to keep.

        Returns:
            The task id of a catalog upload, None for interactions.

        """
        with self._lock:
            if kind == "interactions":
                self.interactions.extend(records)
                if self.capture is not None:
                    with self.capture.open("ab") as capture:
                        capture.writelines(orjson.dumps(record) + b"\n" for record in records)
                return None
            id_field = _CATALOGS[kind]
            for record in records:
                self.catalogs[kind][record[id_field]] = record
            return self._task(kind, "upload", len(records))

    def delete(self, kind: str, ids: list[str]) -> str:
        """Delete catalog records by id; unknown ids are ignored, as Miso does.

        Args:
            kind: ``products`` or ``users``.
            ids: The ids to delete.

        Returns:
            The task id.

        """
        with self._lock:
            for record_id in ids:
                if self.catalogs[kind].pop(record_id, None) is not None:
                    self.deleted[kind].append(record_id)
            return self._task(kind, "delete", len(ids))

    def _task(self, kind: str, action: str, count: int) -> str:
        task_id = uuid.uuid4().hex
        self.tasks[task_id] = {
            "task_id": task_id,
            "kind": kind,
            "action": action,
            "status": self.faults.task_status,
            "records": count,
        }
        return task_id

    def ids(self, kind: str) -> list[str]:
        """Every id in a catalog."""
        with self._lock:
            return list(self.catalogs[kind])

    def snapshot(self) -> dict[str, t.Any]:
        """Counters for ``/_sandbox/stats`` and tests."""
        with self._lock:
            return {
                "requests_total": self.requests_total,
                "requests_by_status": dict(self.requests_by_status),
                "requests_by_path": dict(self.requests_by_path),
                "interactions_accepted": len(self.interactions),
                "products": len(self.catalogs["products"]),
                "users": len(self.catalogs["users"]),
                "deleted": {kind: list(ids) for kind, ids in self.deleted.items()},
                "faults": dict(self.faults_fired),
                "max_in_flight": self.max_in_flight,
            }


def _catalog_reasons(id_field: str, record: dict[str, t.Any]) -> list[str]:
    record_id = record.get(id_field)
    if not isinstance(record_id, str) or not 1 <= len(record_id) <= 512:  # noqa: PLR2004
        return [f"{id_field}: required, a string of 1 to 512 characters"]
    if record_id.startswith("_"):
        return [f"{id_field}: must not start with '_'"]
    if id_field == "product_id" and "," in record_id:
        return [f"{id_field}: must not contain ','"]
    return []


class _Dropped(Exception):
    """The connection is closed without an answer (a fault)."""


class SandboxHandler(http.server.BaseHTTPRequestHandler):
    """One HTTP/1.1 connection (keep-alive, as a real API behind a load balancer)."""

    protocol_version = "HTTP/1.1"
    # The answer's headers and body leave in separate writes; with Nagle's algorithm the
    # body then waited for the client's delayed ACK, adding 40 ms to every request after
    # the first on a keep-alive connection (measured: 16 ms, then 52 ms each).
    disable_nagle_algorithm = True
    server: _SandboxServer

    def log_message(self, format: str, *args: t.Any) -> None:
        """Stay quiet: tests and benchmarks read the target's logs, not ours."""

    def do_GET(self) -> None:
        """Serve reads: catalog ids and task status, and the sandbox's own introspection."""
        self._handle("GET")

    def do_POST(self) -> None:
        """Serve uploads and deletes."""
        self._handle("POST")

    def _handle(self, method: str) -> None:
        url = urllib.parse.urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        store = self.server.store
        store.enter()
        try:
            if url.path.startswith("/_sandbox/"):
                status, answer = self._introspect(method, url.path, body)
            else:
                status, answer = self._api(method, url, body)
        except _Dropped:
            store.count_request(url.path, 0)
            self.close_connection = True
            return
        finally:
            store.leave()
        if not url.path.startswith("/_sandbox/"):
            store.count_request(url.path, status)
        self._answer(status, answer)

    def _answer(self, status: int, answer: dict[str, t.Any]) -> None:
        payload = orjson.dumps(answer)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        if status == 429 and self.server.store.faults.retry_after is not None:  # noqa: PLR2004
            self.send_header("Retry-After", f"{self.server.store.faults.retry_after:g}")
        self.end_headers()
        self.wfile.write(payload)

    def _api(  # noqa: PLR0911 - flat routing: one answer per refusal
        self, method: str, url: urllib.parse.SplitResult, body: bytes
    ) -> tuple[int, dict]:
        store = self.server.store
        query = urllib.parse.parse_qs(url.query)
        key = self.headers.get("X-API-KEY") or [*query.get("api_key", []), None][0]
        if key is not None and key == self.server.publishable_key:
            return 403, {"message": _BOT_BLOCKING}
        if key != self.server.api_key:
            return 401, {"message": "invalid api key."}
        faults = store.faults
        if faults.latency_ms:
            time.sleep(faults.latency_ms / 1000)
        if faults.fail_all_status:
            return faults.fail_all_status, {"message": "The sandbox is failing every request."}
        parts = url.path.strip("/").split("/")
        if parts[:1] != ["v1"] or len(parts) < 2:  # noqa: PLR2004
            return 404, {"message": "not found"}
        kind = parts[1]
        if kind not in ("interactions", *_CATALOGS):
            return 404, {"message": "not found"}
        if method == "POST" and len(parts) == 2:  # noqa: PLR2004
            return self._upload(kind, body, dry_run=query.get("dry_run") == ["1"])
        if kind in _CATALOGS:
            return self._catalog(method, kind, parts[2:], body)
        return 405, {"message": "method not allowed"}

    def _upload(self, kind: str, body: bytes, *, dry_run: bool) -> tuple[int, dict]:
        store = self.server.store
        if store.roll("drop_before_store", store.faults.drop_before_store):
            raise _Dropped
        if store.roll("429", store.faults.rate_429):
            return 429, {"message": "Too many requests."}
        if store.roll("500", store.faults.rate_500):
            return 500, {"message": "Something went wrong. Please contact miso product team."}
        if store.roll("503", store.faults.rate_503):
            return 503, {"message": "Service unavailable."}
        try:
            records = orjson.loads(body)["data"]
            if not isinstance(records, list):
                raise TypeError
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return 400, {"message": 'the body must be a JSON object {"data": [...]}'}
        lines = store.invalid_lines(kind, records)
        if lines and not store.faults.errors_in_200:
            message = (
                "None of the records were inserted because at least one of them contains"
                " schema errors. See `data` for details."
            )
            return 422, {"errors": True, "message": message, "data": lines}
        if lines:
            flagged = {int(line.split(".")[1]) for line in lines}
            records = [record for index, record in enumerate(records) if index not in flagged]
        task_id = None if dry_run else store.store(kind, records)
        if store.roll("drop_after_store", store.faults.drop_after_store):
            raise _Dropped
        answer: dict[str, t.Any] = {"message": "success"}
        if lines:
            answer.update(errors=True, data=lines)
        elif task_id is not None and not store.faults.omit_task_id:
            answer["data"] = {"task_id": task_id}
        return 200, answer

    def _catalog(  # noqa: PLR0911 - flat routing: one answer per endpoint
        self, method: str, kind: str, rest: list[str], body: bytes
    ) -> tuple[int, dict]:
        store = self.server.store
        if method == "GET" and rest == ["_ids"]:
            ids = store.ids(kind)
            if not ids:
                return 404, {"message": "not found"}  # Miso answers 404 for an empty dataset
            return 200, {"message": "success", "data": {"ids": ids}}
        if method == "POST" and rest == ["_delete"]:
            try:
                ids = orjson.loads(body)["data"][_CATALOGS[kind] + "s"]
            except (orjson.JSONDecodeError, KeyError, TypeError):
                return 422, {"detail": [{"loc": ["body", "data"], "msg": "field required"}]}
            task_id = store.delete(kind, ids)
            if store.faults.omit_task_id:
                return 200, {"message": "deleted"}
            return 200, {"message": "deleted", "data": {"task_id": task_id}}
        if method == "GET" and len(rest) == 2 and rest[0] == "_status":  # noqa: PLR2004
            task = store.tasks.get(rest[1])
            if task is None:
                return 404, {"message": "not found"}
            return 200, {"message": "success", "data": task}
        if method == "GET" and len(rest) == 1:
            record = store.catalogs[kind].get(urllib.parse.unquote(rest[0]))
            if record is None:
                return 404, {"message": "not found"}
            return 200, {"message": "success", "data": record}
        return 404, {"message": "not found"}

    def _introspect(  # noqa: PLR0911 - flat routing: one answer per endpoint
        self, method: str, path: str, body: bytes
    ) -> tuple[int, dict]:
        store = self.server.store
        name = path.removeprefix("/_sandbox/")
        if method == "GET" and name == "stats":
            return 200, store.snapshot()
        if method == "GET" and name == "interactions":
            return 200, {"data": list(store.interactions)}
        if method == "GET" and name in _CATALOGS:
            return 200, {"data": list(store.catalogs[name].values())}
        if method == "POST" and name == "reset":
            store.reset()
            return 200, {"message": "reset"}
        if method == "POST" and name == "faults":
            try:
                store.set_faults(Faults.from_options(orjson.loads(body or b"{}")))
            except (TypeError, orjson.JSONDecodeError) as error:
                return 400, {"message": str(error)}
            return 200, {"message": "faults set"}
        return 404, {"message": "not found"}


class _SandboxServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    # Many short-lived test connections: do not refuse any while the backlog fills.
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        store: SandboxStore,
        api_key: str,
        publishable_key: str | None,
    ) -> None:
        super().__init__(address, SandboxHandler)
        self.store = store
        self.api_key = api_key
        self.publishable_key = publishable_key


class Sandbox:
    """The sandbox API in a background thread of this process.

    Example::

        with Sandbox(api_key="secret", rate_503=0.1) as sandbox:
            ...  # point the target at sandbox.url
            assert len(sandbox.interactions) == 1000
    """

    def __init__(
        self,
        *,
        api_key: str,
        host: str = "127.0.0.1",
        port: int = 0,
        publishable_key: str | None = None,
        capture: Path | None = None,
        **faults: t.Any,
    ) -> None:
        """Bind the port (0: any free port); serving starts with ``start()`` or ``with``.

        Args:
            api_key: The secret key the sandbox accepts.
            host: Interface to listen on.
            port: Port to listen on.
            publishable_key: A key to answer with Miso's 403 for publishable keys.
            capture: A JSON Lines file that receives every stored interaction.
            **faults: Options of ``Faults``.

        """
        self.store = SandboxStore(Faults.from_options(faults), capture)
        self._server = _SandboxServer((host, port), self.store, api_key, publishable_key)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The API root to use as the target's ``api_url``."""
        host, port = self._server.server_address[:2]
        host = t.cast("str", host)  # an AF_INET server: the host is text
        return f"http://{host}:{port}"

    @property
    def interactions(self) -> list[dict[str, t.Any]]:
        """Every interaction stored so far, in arrival order."""
        with self.store._lock:
            return list(self.store.interactions)

    @property
    def products(self) -> dict[str, dict[str, t.Any]]:
        """The product catalog, by id."""
        with self.store._lock:
            return dict(self.store.catalogs["products"])

    @property
    def users(self) -> dict[str, dict[str, t.Any]]:
        """The user catalog, by id."""
        with self.store._lock:
            return dict(self.store.catalogs["users"])

    def stats(self) -> dict[str, t.Any]:
        """Counters: requests by status and path, records stored, faults fired."""
        return self.store.snapshot()

    def reset(self, **faults: t.Any) -> None:
        """Forget everything; with fault options, also replace the faults.

        Args:
            **faults: Options of ``Faults`` (none: keep the current faults).

        """
        self.store.reset(Faults.from_options(faults) if faults else None)

    def set_faults(self, **faults: t.Any) -> None:
        """Replace the faults (all options not given go back to their defaults).

        Args:
            **faults: Options of ``Faults``.

        """
        self.store.set_faults(Faults.from_options(faults))

    def start(self) -> Sandbox:
        """Serve in a daemon thread."""
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> Sandbox:
        """Start serving."""
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        """Stop serving."""
        self.stop()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="target-miso-sandbox",
        description="A local Miso-compatible Data API for development, demos and tests.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument(
        "--api-key",
        default="sandbox-secret-key",
        help="the secret key to accept (default: %(default)s)",
    )
    parser.add_argument("--publishable-key", help="a key to refuse with Miso's 403 answer")
    parser.add_argument(
        "--capture", type=Path, help="append stored interactions to this JSONL file"
    )
    parser.add_argument("--latency-ms", type=float, default=0)
    for status in (429, 500, 503):
        parser.add_argument(f"--rate-{status}", type=float, default=0, help="probability, 0-1")
    parser.add_argument("--drop-before-store", type=float, default=0, help="probability, 0-1")
    parser.add_argument("--drop-after-store", type=float, default=0, help="probability, 0-1")
    parser.add_argument("--fail-all-status", type=int, help="answer every request with it")
    parser.add_argument("--seed", type=int)
    return parser


def main(argv: list[str] | None = None) -> None:
    """Run the sandbox until interrupted.

    Args:
        argv: Command-line arguments (default: ``sys.argv``).

    """
    options = vars(_parser().parse_args(argv))
    config = {
        name: options.pop(name)
        for name in ("host", "port", "api_key", "publishable_key", "capture")
    }
    sandbox = Sandbox(**config, **options)
    print(f"Miso sandbox listening on {sandbox.url}", flush=True)
    try:
        sandbox._server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        sandbox._server.server_close()


if __name__ == "__main__":
    main()
