"""How the shipped taps write Singer messages: fast, and flushed where the target needs it."""

from __future__ import annotations

import sys
import typing as t

import orjson
from singer_sdk.io_base import SingerWriter
from singer_sdk.singerlib import SingerMessageType


class FastSingerWriter(SingerWriter):
    """orjson, and stdout flushed at STATE (not after every record): a third of a tap's time.

    The target still sees every record before the STATE that follows it.
    """

    def serialize_message(self, message: t.Any) -> str:
        """Serialize a message with orjson.

        Args:
            message: A Singer message.

        Returns:
            The message as one line of JSON, without its newline.

        """
        try:
            return orjson.dumps(message.to_dict()).decode()
        except TypeError:
            # A value orjson does not write, e.g. a Decimal the SDK read from the --state
            # file: the SDK's own serializer writes it exactly.
            return super().serialize_message(message)

    def write_message(self, message: t.Any) -> None:
        """Write one message; flush unless it is a RECORD.

        Args:
            message: A Singer message.

        """
        sys.stdout.write(self.format_message(message) + "\n")
        if message.type != SingerMessageType.RECORD:
            sys.stdout.flush()
