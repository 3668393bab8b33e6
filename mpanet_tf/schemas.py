"""Schemas of the JSON files mpanet-tf writes and reads back, checked as a whole when opened.

A schema is a tree of small checkers; :func:`check_document` walks a parsed document against it
and raises the caller's error type (an :class:`~mpanet_tf.errors.MPANetError` subclass) with one
line naming the file and the field, e.g.::

    checkpoint state runs/a/checkpoints/ckpt-000000012.state.json: field epoch must be an integer
    >= 1, got 'one'; delete the file to resume from the previous checkpoint

Checkers (each a callable ``check(value, where)`` raising :class:`Violation`):

- :func:`integer`, :func:`number` (finite, optional range), :func:`string` (optional choices),
  :func:`boolean`, :func:`anything`;
- :func:`nullable` (``None`` or the inner checker), :func:`list_of` (a JSON array, optionally
  bounded in length), :func:`dict_of` (an object of like values), :func:`mapping` (an object with required and optional keys; keys the
  schema does not name are tolerated, so a newer writer adding a key is still read).

The schemas themselves live beside the readers of each file: the gallery index's ``meta.json``
and ``entries.jsonl`` in :mod:`mpanet_tf.index.format`, a run's ``config.json`` in
:mod:`mpanet_tf.config`, a checkpoint's ``state.json`` in :mod:`mpanet_tf.training.checkpoints`.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import stat


class Violation(Exception):
    """One field of a document breaks its schema: ``where`` is the field's dotted path."""

    def __init__(self, where: str, problem: str):
        super().__init__(f"{where} {problem}")
        self.where, self.problem = where, problem


def _shown(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _range(low, high) -> str:
    if low is not None and high is not None:
        return f" in {low}..{high}"
    if low is not None:
        return f" >= {low}"
    return f" <= {high}" if high is not None else ""


def integer(low=None, high=None):
    """A JSON integer (not a bool, not 1.0) within ``low``..``high`` (inclusive; None: open)."""
    def check(value, where):
        if isinstance(value, bool) or not isinstance(value, int) \
                or (low is not None and value < low) or (high is not None and value > high):
            raise Violation(where, f"must be an integer{_range(low, high)}, got {_shown(value)}")
    return check


def number(low=None, high=None):
    """A finite JSON number (integer or float, not a bool) within ``low``..``high``."""
    def check(value, where):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) \
                or (low is not None and value < low) or (high is not None and value > high):
            raise Violation(where, f"must be a finite number{_range(low, high)}, got {_shown(value)}")
    return check


def string(choices=None, max_length: int = 1 << 16):
    """A JSON string (of at most ``max_length`` characters), one of ``choices`` when given."""
    def check(value, where):
        if not isinstance(value, str) or len(value) > max_length:
            raise Violation(where, f"must be a string, got {_shown(value)}")
        if choices is not None and value not in choices:
            raise Violation(where, f"must be one of {', '.join(map(repr, choices))}, got {_shown(value)}")
    return check


def boolean():
    """``true`` or ``false``."""
    def check(value, where):
        if not isinstance(value, bool):
            raise Violation(where, f"must be true or false, got {_shown(value)}")
    return check


def anything():
    """Any JSON value (a field whose content another reader checks)."""
    def check(value, where):
        return None
    return check


def nullable(inner):
    """``null`` or what ``inner`` accepts."""
    def check(value, where):
        if value is not None:
            inner(value, where)
    return check


def list_of(item, max_length: int | None = None):
    """A JSON array whose every element ``item`` accepts (``where[i]`` names a bad one)."""
    def check(value, where):
        if not isinstance(value, list):
            raise Violation(where, f"must be a list, got {_shown(value)}")
        if max_length is not None and len(value) > max_length:
            raise Violation(where, f"must hold at most {max_length} items, got {len(value)}")
        for index, element in enumerate(value):
            item(element, f"{where}[{index}]")
    return check


def dict_of(value):
    """A JSON object whose every value ``value`` accepts (any keys)."""
    def check(document, where):
        if not isinstance(document, dict):
            raise Violation(where, f"must be an object, got {_shown(document)}")
        for key, element in document.items():
            value(element, f"{where}.{key}")
    return check


def mapping(required: dict, optional: dict | None = None):
    """A JSON object with every key of ``required`` (name -> checker) and, when present, the keys
    of ``optional``; other keys are tolerated."""
    optional = optional or {}

    def check(value, where):
        if not isinstance(value, dict):
            raise Violation(where or "the document", f"must be an object, got {_shown(value)}")
        prefix = f"{where}." if where else ""
        for key, checker in required.items():
            if key not in value:
                raise Violation(f"{prefix}{key}", "is missing")
            checker(value[key], f"{prefix}{key}")
        for key, checker in optional.items():
            if key in value:
                checker(value[key], f"{prefix}{key}")
    return check


def check_document(document, schema, what: str, error_type, fix: str) -> None:
    """Check a parsed JSON ``document`` against ``schema`` (a :func:`mapping`).

    Args:
        what: the file as the message names it (``"gallery index meta.json /x/meta.json"``).
        error_type: the :class:`~mpanet_tf.errors.MPANetError` subclass to raise.
        fix: the advice ending the message.

    Raises:
        error_type: ``"<what>: field <path> <problem>; <fix>"`` for the first violation.
    """
    try:
        schema(document, "")
    except Violation as violation:
        field = f"field {violation.where}" if violation.where != "the document" else "the document"
        raise error_type(f"{what}: {field} {violation.problem}; {fix}") from None


#: The largest JSON file :func:`read_json_file` parses (meta.json, config.json, state.json are far smaller).
MAX_JSON_BYTES = 64 * 2**20


def read_json_file(path, what: str, error_type, fix: str, max_bytes: int = MAX_JSON_BYTES):
    """Parse the JSON file ``path``: only a regular file of at most ``max_bytes`` is read, and every
    failure (missing, a device or pipe, too large, not UTF-8, not JSON, nested too deep) is one
    ``error_type`` line ``"<what> <path> <problem>; <fix>"``. The caller checks the schema."""
    try:
        fd = os.open(os.fspath(path), os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as error:
        raise error_type(f"cannot read {what} {path} ({error.strerror or error}); {fix}") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise error_type(f"{what} {path} is not a regular file; {fix}")
        if info.st_size > max_bytes:
            raise error_type(f"{what} {path} has {info.st_size} bytes, more than the {max_bytes} such a file "
                             f"can hold; {fix}")
        data = handle.read(max_bytes + 1)
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise error_type(f"{what} {path} is not UTF-8 text; {fix}") from None
    except RecursionError:
        raise error_type(f"{what} {path} is nested too deeply to be one; {fix}") from None
    except ValueError as error:   # JSONDecodeError, or an integer with too many digits
        raise error_type(f"{what} {path} is not valid JSON ({str(error).splitlines()[0][:80]}); {fix}") from None
