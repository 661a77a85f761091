"""S3 through boto3 (the ``s3`` extra): the client the S3 tap and BATCH manifests share.

The endpoint and credentials come from boto3's own chain, as for the AWS CLI:
``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_S3``, the ``AWS_*`` keys, the profile, the
instance role. Nothing here ever puts a credential in a message.
"""

from __future__ import annotations

import contextlib
import functools
import io
import typing as t

if t.TYPE_CHECKING:
    from collections.abc import Iterator


class Boto3MissingError(RuntimeError):
    """boto3 is not installed: ``s3://`` paths need the ``s3`` extra."""


class S3Error(OSError):
    """An S3 request that failed: the message gives S3's error code (the caller names the URL)."""


def client(endpoint_url: str | None = None) -> t.Any:
    """Return a boto3 S3 client.

    Args:
        endpoint_url: An S3-compatible endpoint; ``None`` lets boto3 read
            ``AWS_ENDPOINT_URL(_S3)`` and the profile.

    Returns:
        The client.

    Raises:
        Boto3MissingError: If boto3 is not installed.

    """
    try:
        import boto3  # noqa: PLC0415 - only the S3 paths need it (the `s3` extra)
    except ImportError:
        msg = "reading s3:// paths needs boto3: pip install 'target-miso[s3]'"
        raise Boto3MissingError(msg) from None
    return boto3.client("s3", endpoint_url=endpoint_url or None)


def split_url(url: str) -> tuple[str, str]:
    """Split ``s3://bucket/key`` into bucket and key.

    Args:
        url: The URL.

    Returns:
        The bucket and the key (``""`` if the URL has none).

    """
    bucket, _, key = url.removeprefix("s3://").partition("/")
    return bucket, key


@contextlib.contextmanager
def open_object(url: str) -> Iterator[io.BufferedReader]:
    """Stream one object (never loaded whole) as a binary file that reads by lines too.

    Args:
        url: ``s3://bucket/key``.

    Yields:
        The object's bytes, read from the response as they are asked for.

    Raises:
        Boto3MissingError: If boto3 is not installed.
        S3Error: If opening or reading the object fails (missing bucket or key, access
            denied, endpoint unreachable, connection cut), with S3's error code.

    """
    s3 = _client_of_the_environment()
    from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415 - with boto3

    bucket, key = split_url(url)
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"]
        with contextlib.closing(body):
            yield io.BufferedReader(_Raw(body), buffer_size=1 << 20)
    except ClientError as error:
        # Code and message only: the response may also carry the request's signing details.
        details = error.response.get("Error", {})
        code, text = details.get("Code", "unknown"), details.get("Message", "")
        msg = f"S3 error {code}" + (f": {text}" if text else "")
        raise S3Error(msg) from None
    except BotoCoreError as error:  # no answer: endpoint unreachable, time-out, no credentials
        text = " ".join(str(error).split())  # some span lines
        msg = f"S3 error {type(error).__name__}: {text}"
        raise S3Error(msg) from None


@functools.cache
def _client_of_the_environment() -> t.Any:
    # One per process: a manifest may name hundreds of files, and each client costs ~25 ms.
    return client()


class _Raw(io.RawIOBase):
    """A boto3 response body as a raw stream, for ``io.BufferedReader`` (lines, read(n))."""

    def __init__(self, body: t.Any) -> None:
        self._body = body

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: t.Any) -> int:
        chunk = self._body.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)
