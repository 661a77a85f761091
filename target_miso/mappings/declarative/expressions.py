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
#: The names of the whole record.
_RECORD_ALIASES = frozenset({"record", "_"})
#: ``record.get`` and the like are the dict's own; ``record.<other name>`` reads that column
#: (simpleeval falls back to indexing when a dict has no such attribute).
_DICT_ATTRIBUTES = frozenset(dir(dict))


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


def _record_keys(tree: ast.AST) -> tuple[frozenset[str], str | None]:
    """Find the columns an expression reads through ``record`` (or ``_``) by a constant key.

    ``record['a b']``, ``record.get('a b')``, ``record.a`` and ``'a' in record`` read one
    column each. Any other use of the whole record (``record.keys()``, ``json.dumps(record)``,
    ``record[name]``, a comprehension that binds ``_``) reads columns no one can list before
    the row arrives.

    Returns:
        The keys, and None or, when the record is used as a whole, how.

    """
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    keys: set[str] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Name) or node.id not in _RECORD_ALIASES:
            continue
        key = None if isinstance(node.ctx, ast.Store) else _constant_key(node, parents)
        if key is None:
            return frozenset(), f"it uses {node.id!r} as a whole, not by a constant column name"
        keys.add(key)
    return frozenset(keys), None


def _constant_key(name: ast.Name, parents: dict[ast.AST, ast.AST]) -> str | None:
    parent = parents.get(name)
    if isinstance(parent, ast.Subscript) and parent.value is name:
        return _text(parent.slice)
    if isinstance(parent, ast.Attribute) and parent.value is name:
        if parent.attr not in _DICT_ATTRIBUTES:
            return parent.attr
        call = parents.get(parent)
        if parent.attr == "get" and isinstance(call, ast.Call) and call.func is parent:
            return _text(call.args[0]) if call.args else None
        return None
    if (
        isinstance(parent, ast.Compare)
        and [type(op) for op in parent.ops] in ([ast.In], [ast.NotIn])
        and parent.comparators[0] is name
    ):
        return _text(parent.left)
    return None


def _text(node: ast.AST) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


class Expression:
    """One expression from the settings, parsed once at start-up.

    Attributes:
        text: The expression as written.
        columns: The record columns it reads by name (a column missing from a record reads
            as None).
        record_keys: The columns it reads through ``record`` by a constant name.
        whole_record: None, or how it uses the record as a whole (its columns cannot be
            listed).

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
        self.record_keys, self.whole_record = _record_keys(body)

    @property
    def reads(self) -> frozenset[str] | None:
        """Every column the expression reads, or None when it reads the record as a whole."""
        return None if self.whole_record is not None else self.columns | self.record_keys

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
