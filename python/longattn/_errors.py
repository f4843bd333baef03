"""longattn's errors, each also a built-in exception type.

The native module raises these for the C++ library's typed errors
(include/longattn/error.hpp; python/src/errors.cpp) with the C++ message
unchanged, which names the operation, the argument and the value, e.g.
``[longattn::attention] k.shape[1] = 5 does not divide q.shape[1] = 32``.
Checks made in Python (array types, layout names) raise the same classes.
"""

from __future__ import annotations

from typing import Any, List, Optional, Tuple

from ._report import RunReport


class Error(Exception):
    """Base of every longattn error.

    Attributes, set when the error stopped a run part way (cancelled, a
    backend error, out of memory mid-run), else left as below:

    report: the RunReport of what ran, or None.
    finished_rows: the query ranges [q0, q1) whose output rows are final
        (all batches and heads); other rows were not written, or only in part.
    out, lse: the outputs the run was writing (those longattn allocated, or
        the ones passed in), so that the finished rows can be used.
    """

    report: Optional[RunReport]
    finished_rows: List[Tuple[int, int]]
    out: Any
    lse: Any

    def __init__(self, *args: object) -> None:
        super().__init__(*args)
        self.report = None
        self.finished_rows = []
        self.out = None
        self.lse = None


class InvalidArgument(Error, ValueError):
    """A bad shape, stride, dtype, device or option value."""


class Unsupported(Error, NotImplementedError):
    """A valid request this build or backend cannot serve (e.g. CUDA arrays
    with a build that has no CUDA backend, or a head dim it did not build)."""


class OutOfMemory(Error, MemoryError):
    """A host or device allocation failed."""


class BackendError(Error, RuntimeError):
    """A backend call failed (a CUDA error, ...)."""


class IoError(Error, OSError):
    """A file could not be read or written (DeviceProfile.save/load)."""


class Cancelled(Error):
    """The progress callback returned False: the run stopped between two
    submissions. .report, .finished_rows, .out and .lse say what was done."""
