"""Expressions in mapping settings, in the language of singer-sdk stream maps (simpleeval).

Users already write ``__filter__`` and property expressions for Meltano stream maps; the
same syntax, names and helper functions work here: each column of the record is a name,
``record`` (or ``_``) is the whole record (for columns whose names are not identifiers),
``__stream_name__`` is the stream, and the functions are the SDK's: ``int``, ``float``,
``str``, ``bool``, ``md5``, ``sha256``, and the ``datetime`` and ``json`` modules.
"""

from __future__ import annotations

import ast
import datetime
import json
import typing as t

import simpleeval
from singer_sdk.mapper import md5, sha256

from target_miso.mappings.base import MappingConfigError, MappingError

#: Names every expression may use besides the record's columns.
RECORD_NAMES = frozenset({"record", "_", "__stream_name__", "True", "False", "None"})


def stream_map_functions() -> dict[str, t.Any]:
    """Build the helper functions exactly as singer-sdk's ``CustomStreamMap.functions`` does.

    Returns:
        Function name -> callable (modules wrapped so only their attributes are reachable).

    """
    functions: dict[str, t.Any] = dict(simpleeval.DEFAULT_FUNCTIONS)
    functions["md5"] = md5
    functions["sha256"] = sha256
    functions["datetime"] = simpleeval.ModuleWrapper(datetime)
    functions["bool"] = bool
    functions["json"] = simpleeval.ModuleWrapper(json)
    return functions


FUNCTIONS = stream_map_functions()
_SUPPORTED_NODES = frozenset(simpleeval.EvalWithCompoundTypes().nodes)


def _free_names(tree: ast.AST) -> frozenset[str]:
    """Names an expression reads that it does not bind itself (comprehension variables)."""
    loaded = {
        n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)
    }
    bound = {
        n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)
    }
    return frozenset(loaded - bound - FUNCTIONS.keys() - RECORD_NAMES)


class Expression:
    """One expression from the settings, parsed once at start-up.

    Attributes:
        text: The expression as written.
        columns: The record columns it reads (a column missing from a record reads as None).

    """

    def __init__(self, text: object, path: str) -> None:
        """Parse the expression; a syntax error stops the run before any record.

        Args:
            text: The expression as written in the settings.
            path: Its setting path, for error messages.

        Raises:
            MappingConfigError: If it is not a string or not a valid expression.

        """
        if not isinstance(text, str) or not text.strip():
            raise MappingConfigError(
                path, f"expected an expression (a non-empty string), got {text!r}"
            )
        self.text = text
        self.path = path
        try:
            # mode="eval" refuses statements and several expressions, which simpleeval
            # would otherwise ignore or accept with a warning.
            body = ast.parse(text.strip(), mode="eval").body
        except SyntaxError as error:
            reason = f"invalid expression {text!r}: {error.msg}"
            raise MappingConfigError(path, reason) from None
        for node in ast.walk(body):
            if isinstance(node, ast.expr) and type(node) not in _SUPPORTED_NODES:
                reason = f"invalid expression {text!r}: {type(node).__name__} is not supported"
                raise MappingConfigError(path, reason)
        for node in ast.walk(body):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                if node.func.id not in FUNCTIONS:
                    known = ", ".join(sorted(FUNCTIONS))
                    reason = f"unknown function {node.func.id!r} in {text!r} (available: {known})"
                    raise MappingConfigError(path, reason)
        self._tree = ast.Expr(body)
        self.columns = _free_names(body)

    def evaluate(self, scope: Scope, field: str) -> object:
        """Evaluate against one record.

        Args:
            scope: The record's names.
            field: The Miso field being computed, named in errors.

        Returns:
            The expression's value.

        Raises:
            MappingError: If evaluation fails (e.g. arithmetic on a null column).

        """
        evaluator = scope.evaluator
        evaluator.names = scope.names
        try:
            return evaluator.eval(self.text, previously_parsed=self._tree)
        except Exception as error:
            raise MappingError(field, self._failure(error, scope)) from None

    def _failure(self, error: Exception, scope: Scope) -> str:
        # The usual cause is a null column ("'NoneType' has no attribute 'split'" says it
        # badly): name it, and say how to leave the field out instead.
        nulls = sorted(name for name in self.columns if scope.names.get(name) is None)
        detail = f"{type(error).__name__}: {error}"
        if not nulls:
            return f"expression {self.text!r} failed: {detail}"
        names = ", ".join(repr(name) for name in nulls)
        verb = "is" if len(nulls) == 1 else "are"
        return (
            f"expression {self.text!r} failed because {names} {verb} null in this record "
            f'(to leave the field out on a null, write "... if {nulls[0]} is not None else '
            f'None"; {detail})'
        )


class Scope:
    """The names one record offers to expressions; built once per record."""

    __slots__ = ("evaluator", "names")

    def __init__(
        self,
        record: dict[str, t.Any],
        columns: t.Iterable[str],
        stream_name: str,
        evaluator: simpleeval.EvalWithCompoundTypes,
    ) -> None:
        """Collect the names.

        Args:
            record: The source record.
            columns: Every column any expression of the mapping reads.
            stream_name: The Singer stream.
            evaluator: The mapping's evaluator (reused: building one is not free).

        """
        names: dict[str, t.Any] = {column: record.get(column) for column in columns}
        names["record"] = names["_"] = record
        names["__stream_name__"] = stream_name
        self.names = names
        self.evaluator = evaluator


def new_evaluator() -> simpleeval.EvalWithCompoundTypes:
    """Create an evaluator with the stream-map functions.

    Returns:
        A simpleeval evaluator that allows lists, dicts and comprehensions.

    """
    return simpleeval.EvalWithCompoundTypes(functions=FUNCTIONS)
