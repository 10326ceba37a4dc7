"""A function shipped by value to a job's process that still says where it was written.

cloudpickle pickles a function of `__main__` (a Hydra app's own script) by value, and since version 3 it names
every such code object's file `<dynamic-code>`, so a traceback of the app's failure points nowhere. Pickled
here, each code object keeps its own file name: the job's error record and log name the app's file and line.
"""
from __future__ import annotations

import io
import pickle
import types
from collections import ChainMap
from typing import Any, Callable

import cloudpickle

#: The file name cloudpickle gives the code it pickles by value.
DYNAMIC = "<dynamic-code>"


def _code_reduce(code: types.CodeType) -> tuple[Callable, tuple]:
    """cloudpickle's reduction of a code object, with the code's own file name in place of DYNAMIC."""
    rebuild, args = cloudpickle.Pickler.dispatch_table[types.CodeType](code)
    fields = list(args)
    fields[fields.index(DYNAMIC)] = code.co_filename
    return rebuild, tuple(fields)


class _LocatedPickler(cloudpickle.Pickler):
    dispatch_table = ChainMap({types.CodeType: _code_reduce}, cloudpickle.Pickler.dispatch_table)


def dumps(function: Callable) -> bytes:
    """The function (and what it carries by value) as bytes that `pickle.loads` turns back into it."""
    buffer = io.BytesIO()
    _LocatedPickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(function)
    return buffer.getvalue()


class Located:
    """A function that travels in a pickle (submitit's) as `dumps` writes it."""

    def __init__(self, function: Callable) -> None:
        self.function = function

    def __reduce__(self) -> tuple[Callable[[bytes], Any], tuple[bytes]]:
        return _load, (dumps(self.function),)


def _load(data: bytes) -> Callable:
    return pickle.loads(data)
