"""A small client for Miso's Data API: auth, retries, rate limit and 422 parsing.

It knows HTTP and Miso's answers, nothing about Singer. The API key travels only in the
``X-API-KEY`` header, and every message this module builds is scrubbed of it, so it can be
logged as it is.
"""

from __future__ import annotations

import email.utils
import logging
import random
import re
import threading
import time
import typing as t
from dataclasses import dataclass, field
from urllib.parse import quote

import orjson
import requests

logger = logging.getLogger("target-miso.client")

#: ``data.<index>[.<path>] [(<value>)] is invalid. <reason>`` (as Miso's own Node SDK parses it).
_INVALID_LINE = re.compile(
    r"^\s*data\.(\d+)(?:\.(\S+))?\s+(?:\(([^)]*)\)\s+)?is\s+invalid\.\s*(.*)$"
)
_RETRIABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
_USER_AGENT = "target-miso/0.1 (+singer; python-requests)"


class MisoAPIError(Exception):
    """Miso answered in a way the run cannot recover from."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        """Keep the HTTP status beside the message.

        Args:
            message: What went wrong and what to do about it.
            status: The HTTP status, when there was an answer.

        """
        super().__init__(message)
        self.status = status


class MisoAuthError(MisoAPIError):
    """The API key was refused (401) or is the wrong kind of key (403)."""


class MisoRequestError(MisoAPIError):
    """Miso refused the request itself (400, 404, other 4xx); retrying cannot help."""


class MisoResponseError(MisoAPIError):
    """Miso's answer could not be understood (e.g. a 422 whose lines do not parse)."""


class MisoUnavailableError(MisoAPIError):
    """Retries were exhausted on 429s, 5xx answers, timeouts or dropped connections."""


@dataclass(frozen=True, slots=True)
class UploadResult:
    """What Miso did with one upload."""

    #: Records Miso refused, by index into the request, with Miso's reasons.
    refused: dict[int, list[str]] = field(default_factory=dict)
    #: True when Miso stored the records it did not refuse (a 2xx with ``"errors": true``);
    #: False after a 422, which stores nothing, so the rest must be sent again.
    others_stored: bool = True
    #: The task Miso queued for a product or user upload (``data.task_id``), if any.
    task_id: str | None = None


class RateLimiter:
    """Spread requests so that at most ``per_second`` start in any second, across threads."""

    def __init__(self, per_second: float) -> None:
        """Set the rate.

        Args:
            per_second: Requests per second; 0 or less means no limit.

        """
        self._interval = 1.0 / per_second if per_second > 0 else 0.0
        self._next = time.monotonic()
        self._lock = threading.Lock()

    def wait(self) -> None:
        """Block until the next request may start."""
        if not self._interval:
            return
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self._interval
        if start > now:
            time.sleep(start - now)


#: Outcomes of an attempt that was sent and whose answer never came.
_LOST_ANSWERS = frozenset({"timeout", "connection error"})


class ClientStats:
    """Counters for the run summary; updated from several threads."""

    def __init__(self) -> None:
        """Start at zero."""
        self.requests = 0
        self.retries = 0
        self.by_status: dict[str, int] = {}
        #: Retries after an attempt whose answer may have been lost: a timeout, a dropped
        #: connection or a 5xx may come after Miso stored the batch, so the retry can store
        #: it a second time (a 429 stored nothing).
        self.retries_after_lost_answer = 0
        self._lock = threading.Lock()

    def count(self, outcome: str, *, retry: bool) -> None:
        """Count one attempt.

        Args:
            outcome: The HTTP status or the kind of connection failure.
            retry: Whether another attempt follows.

        """
        with self._lock:
            self.requests += 1
            self.retries += retry
            self.by_status[outcome] = self.by_status.get(outcome, 0) + 1
            if retry and (outcome in _LOST_ANSWERS or outcome.startswith("5")):
                self.retries_after_lost_answer += 1


class MisoClient:
    """Posts batches to Miso and tells which records, if any, Miso refused."""

    def __init__(
        self,
        *,
        api_url: str,
        api_key: str,
        dry_run: bool = False,
        timeout: float = 60.0,
        max_retries: int = 8,
        retry_initial_delay: float = 0.5,
        retry_max_delay: float = 60.0,
        max_requests_per_second: float = 10.0,
        pool_size: int = 4,
    ) -> None:
        """Configure the client.

        Args:
            api_url: Base URL, e.g. ``https://api.askmiso.com``.
            api_key: The secret key of the Miso environment.
            dry_run: Ask Miso to validate only (``dry_run=1``): nothing is stored.
            timeout: Seconds to wait for a connection and for an answer.
            max_retries: Retries of one request after a 429, 5xx, timeout or dropped
                connection.
            retry_initial_delay: First backoff delay in seconds; it doubles per retry.
            retry_max_delay: Upper bound of one backoff delay (a longer Retry-After wins).
            max_requests_per_second: Request rate limit across all threads (0: none).
            pool_size: Connections kept open (one per concurrent request).

        """
        self.api_url = api_url.rstrip("/")
        self._api_key = api_key
        self.dry_run = dry_run
        self.timeout = timeout
        self.max_retries = max_retries
        self.retry_initial_delay = retry_initial_delay
        self.retry_max_delay = retry_max_delay
        self.stats = ClientStats()
        #: Set when the run has failed: requests waiting to retry give up at once.
        self._stopping = threading.Event()
        self._limiter = RateLimiter(max_requests_per_second)
        self._session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(
            pool_connections=1,
            pool_maxsize=max(pool_size, 1),
            max_retries=0,
        )
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._session.headers.update(
            {
                "X-API-KEY": api_key,
                "Content-Type": "application/json",
                "Accept": "application/json",
                "User-Agent": _USER_AGENT,
            },
        )

    def stop_retrying(self) -> None:
        """Give up the retries of a failed run: waiting requests stop instead of waiting it out."""
        self._stopping.set()

    def close(self) -> None:
        """Close the connections."""
        self._session.close()

    def scrub(self, text: str) -> str:
        """Remove the API key from a text.

        Args:
            text: Any message.

        Returns:
            The message with every occurrence of the key replaced by ``***``.

        """
        if not self._api_key:
            return text
        # Also the key as quoted by repr() (requests' messages quote header values).
        return text.replace(self._api_key, "***").replace(repr(self._api_key)[1:-1], "***")

    def upload_interactions(self, records: list[bytes]) -> UploadResult:
        """POST encoded interaction records as one ``{"data": [...]}`` request.

        Args:
            records: Each record already encoded as compact JSON.

        Returns:
            Which records Miso refused, if any, and whether it stored the others.

        """
        return self.upload_records("/v1/interactions", records)

    def upload_records(self, path: str, records: list[bytes]) -> UploadResult:
        """POST encoded records as one ``{"data": [...]}`` request.

        Args:
            path: The endpoint: ``/v1/interactions``, ``/v1/products`` or ``/v1/users``.
            records: Each record already encoded as compact JSON.

        Returns:
            Which records Miso refused, if any, whether it stored the others, the task id.

        """
        body = b'{"data":[' + b",".join(records) + b"]}"
        return self.upload(path, body, size=len(records))

    def upload(self, path: str, body: bytes, *, size: int) -> UploadResult:
        """POST a ``{"data": [...]}`` body, retrying what can be retried.

        Args:
            path: The endpoint, e.g. ``/v1/interactions``.
            body: The JSON body.
            size: How many records the body holds (to check 422 indices).

        Returns:
            Which records Miso refused, if any, and whether it stored the others.

        """
        answer = self.request("POST", path, body=body)
        if answer.status_code == 422:  # noqa: PLR2004 - nothing stored
            return UploadResult(self._refused_records(answer, size), others_stored=False)
        if _reports_errors(answer):
            return UploadResult(self._refused_records(answer, size), others_stored=True)
        return UploadResult(task_id=_task_id(answer))

    # --- Catalog endpoints (products and users) ------------------------------------------

    def catalog_ids(self, kind: str) -> list[str]:
        """Every id in a catalog (``GET /v1/{kind}/_ids``); Miso's 404 means an empty one.

        Args:
            kind: ``products`` or ``users``.

        Returns:
            The ids.

        Raises:
            MisoResponseError: If the answer holds no id list.

        """
        try:
            answer = self.request("GET", f"/v1/{kind}/_ids")
        except MisoRequestError as error:
            if error.status == 404:  # noqa: PLR2004 - Miso's answer for no dataset yet
                return []
            raise
        ids = _data(answer).get("ids")
        if not isinstance(ids, list):
            msg = f"GET /v1/{kind}/_ids answered without data.ids; nothing is deleted"
            raise MisoResponseError(msg, status=answer.status_code)
        return [str(item) for item in ids]

    def delete_catalog(self, kind: str, ids: list[str]) -> str | None:
        """Delete records by id (``POST /v1/{kind}/_delete``).

        Args:
            kind: ``products`` or ``users``.
            ids: At most 1,000 ids (Miso's own tools send no more per request).

        Returns:
            The task id Miso gave the deletion, if any.

        Raises:
            MisoRequestError: If Miso refused the request (a 422).

        """
        id_key = "product_ids" if kind == "products" else "user_ids"
        body = orjson.dumps({"data": {id_key: ids}})
        answer = self.request("POST", f"/v1/{kind}/_delete", body=body)
        if answer.status_code == 422:  # noqa: PLR2004 - request() hands 422s back
            said = _message(answer)
            text = f"Miso refused the delete request to /v1/{kind}/_delete (HTTP 422 {said})"
            raise MisoRequestError(self.scrub(text), status=422)
        return _task_id(answer)

    def task_status(self, kind: str, task_id: str) -> dict[str, t.Any]:
        """Read a task's status (``GET /v1/{kind}/_status/{task_id}``; shape undocumented).

        Args:
            kind: ``products`` or ``users``.
            task_id: From an upload or a delete.

        Returns:
            The answer's ``data`` object (or the whole answer when it has none).

        """
        answer = self.request("GET", f"/v1/{kind}/_status/{quote(task_id, safe='')}")
        return _data(answer) or _json(answer)

    def request(self, method: str, path: str, *, body: bytes | None = None) -> requests.Response:
        """Send one request, retrying 429, 5xx, timeouts and dropped connections.

        Args:
            method: HTTP method.
            path: Path under the API URL.
            body: JSON body, if any.

        Returns:
            The final answer: a 2xx, or a 422 for the caller to parse.

        Raises:
            MisoAuthError: On 401 or 403.
            MisoRequestError: On another 4xx, or when requests cannot send the request at
                all (an invalid header or URL).
            MisoUnavailableError: When retries are exhausted.

        """
        url = f"{self.api_url}{path}"
        params = {"dry_run": "1"} if self.dry_run and method == "POST" else None
        last_problem = ""
        for attempt in range(self.max_retries + 1):
            retry_after: float | None = None
            self._limiter.wait()
            try:
                answer = self._session.request(
                    method,
                    url,
                    data=body,
                    params=params,
                    timeout=self.timeout,
                )
            except requests.Timeout:
                outcome, last_problem = "timeout", f"no answer within {self.timeout:g} s"
            except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as error:
                outcome = "connection error"
                last_problem = f"connection failed ({_cause(error)})"
            except requests.RequestException as error:
                # InvalidHeader, InvalidURL, MissingSchema...: the request cannot be sent, and
                # requests' text may quote the header (the key) or the URL: scrub it.
                self.stats.count("not sent", retry=False)
                text = (
                    f"{method} {self.api_url}{path}: the request could not be sent "
                    f"({type(error).__name__}: {error}); check api_url and api_key"
                )
                raise MisoRequestError(self.scrub(text)) from None
            else:
                status = answer.status_code
                if status < 300 or status == 422:  # noqa: PLR2004
                    self.stats.count(str(status), retry=False)
                    return answer
                if status not in _RETRIABLE_STATUSES:
                    self.stats.count(str(status), retry=False)
                    raise self._fatal(answer, path, len(body or b""))
                outcome = str(status)
                last_problem = f"HTTP {status} {_message(answer)}"
                retry_after = _retry_after_seconds(answer.headers.get("Retry-After"))
            will_retry = attempt < self.max_retries
            self.stats.count(outcome, retry=will_retry)
            if not will_retry:
                break
            delay = self._backoff(attempt, retry_after)
            logger.warning(
                "%s %s: %s; retry %d of %d in %.1f s",
                method,
                path,
                self.scrub(last_problem),
                attempt + 1,
                self.max_retries,
                delay,
            )
            if self._stopping.wait(delay):
                last_problem += " (not retried further: the run failed)"
                break
        msg = self.scrub(
            f"{method} {self.api_url}{path} failed {attempt + 1} times; last: "
            f"{last_problem}. Miso may be down or rate-limiting: the run stops here and no "
            "STATE is written past the undelivered records, so the next run resends them.",
        )
        raise MisoUnavailableError(msg)

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        # Exponential backoff with "equal jitter": half fixed, half random, so that
        # concurrent senders do not retry in lockstep.
        ceiling = min(self.retry_max_delay, self.retry_initial_delay * 2**attempt)
        delay = ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 - not crypto
        if retry_after is not None:
            delay = max(delay, retry_after)
        return delay

    def _fatal(self, answer: requests.Response, path: str, body_bytes: int = 0) -> MisoAPIError:
        status = answer.status_code
        said = _message(answer)
        if status == 413:  # noqa: PLR2004
            text = (
                f"Miso refused a {body_bytes:,}-byte request to {path} as too large (HTTP 413 "
                f"{said}): set max_request_bytes below that, e.g. max_request_bytes: "
                f"{max(body_bytes // 2, 1024)}"
            )
            return MisoRequestError(self.scrub(text), status=status)
        if status == 401:  # noqa: PLR2004
            text = (
                f"Miso refused the API key (HTTP 401 {said}): set api_key to the *secret* key "
                "of the Miso environment you send to (Dashboard > API keys)"
            )
            return MisoAuthError(self.scrub(text), status=status)
        if status == 403:  # noqa: PLR2004
            text = (
                f"Miso forbade the request (HTTP 403 {said}): this usually means a publishable "
                "key was used; server-side uploads need the secret key"
            )
            return MisoAuthError(self.scrub(text), status=status)
        if status == 404:  # noqa: PLR2004
            text = (
                f"POST {self.api_url}{path} answered 404 {said}: check api_url "
                "(it should be the API root, e.g. https://api.askmiso.com)"
            )
            return MisoRequestError(self.scrub(text), status=status)
        text = f"Miso refused the request to {path} (HTTP {status} {said})"
        return MisoRequestError(self.scrub(text), status=status)

    def _refused_records(self, answer: requests.Response, size: int) -> dict[int, list[str]]:
        try:
            lines = answer.json().get("data")
        except (ValueError, AttributeError):
            lines = None
        refused: dict[int, list[str]] = {}
        unparsed = []
        for line in lines if isinstance(lines, list) else []:
            match = _INVALID_LINE.match(line) if isinstance(line, str) else None
            if match is None or int(match.group(1)) >= size:
                unparsed.append(line)
                continue
            field = match.group(2) or "record"
            refused.setdefault(int(match.group(1)), []).append(f"{field}: {match.group(4)}")
        if unparsed or not refused:
            text = (
                f"Miso answered HTTP {answer.status_code} with errors the target cannot "
                f"attribute to records ({len(unparsed)} unparsable lines, e.g. "
                f"{str(unparsed[:1])[:200]}); stopping so that nothing is lost silently"
            )
            raise MisoResponseError(self.scrub(text), status=answer.status_code)
        return refused


def _json(answer: requests.Response) -> dict[str, t.Any]:
    try:
        body = answer.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _data(answer: requests.Response) -> dict[str, t.Any]:
    data = _json(answer).get("data")
    # Miso's single-record delete documents ``data`` as a one-item list.
    if isinstance(data, list) and len(data) == 1 and isinstance(data[0], dict):
        data = data[0]
    return data if isinstance(data, dict) else {}


def _task_id(answer: requests.Response) -> str | None:
    if b"task_id" not in answer.content:
        return None
    task_id = _data(answer).get("task_id")
    return str(task_id) if task_id is not None else None


def _reports_errors(answer: requests.Response) -> bool:
    """Tell whether a 2xx refused some records (its body says ``"errors": true``)."""
    if b'"errors"' not in answer.content:
        return False
    try:
        return bool(answer.json().get("errors"))
    except (ValueError, AttributeError):
        return False


def _message(answer: requests.Response) -> str:
    try:
        body = answer.json()
    except ValueError:
        return repr(answer.text[:200])
    if isinstance(body, dict):
        for key in ("message", "message:", "detail", "error"):
            if key in body:
                return repr(str(body[key])[:200])
    return repr(str(body)[:200])


def _cause(error: requests.RequestException) -> str:
    # requests nests the real cause; its class name says enough ("RemoteDisconnected").
    cause: BaseException | None = error
    while cause is not None and cause.__context__ is not None and cause.__context__ is not cause:
        cause = cause.__context__
    return type(cause or error).__name__


def _retry_after_seconds(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(moment.timestamp() - time.time(), 0.0)
