"""embkit's errors: one base class, a few subclasses, each with a stable code and a CLI exit code.

The library raises these and never prints or exits; ``embkit.cli`` maps them to exit statuses.
Every message names the file (when there is one) and what is wrong with it.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any


class EmbkitError(Exception):
    """Base class of every error embkit raises on purpose.

    ``code`` is a stable machine-readable string (used in ``--json`` output), ``exit_code`` the
    status the CLI exits with when this error ends a command.
    """

    code = "error"
    exit_code = 1

    def __init_subclass__(cls, *, code: str | None = None, exit_code: int | None = None, **kwargs: Any):
        # a subclass names its code and exit status in its header, ``class X(EmbkitError,
        # code="x", exit_code=3)``: one line per error, the table of docs/errors.md in the code
        super().__init_subclass__(**kwargs)
        if code is not None:
            cls.code = code
        if exit_code is not None:
            cls.exit_code = exit_code

    def __init__(self, message: str, *, path: str | Path | None = None):
        self.path = str(path) if path is not None else None
        self.detail = message
        super().__init__(f"{self.path}: {message}" if self.path else message)

    def __str__(self) -> str:
        # the message, also for the classes that are OSErrors too (whose own str is "[Errno 2] ...")
        return str(self.args[0]) if self.args else ""

    def __reduce__(self) -> tuple[Any, ...]:
        # rebuilt from message and path (errors cross process pools): OSError's own reduce would
        # call the class with (errno, strerror, filename)
        return (_rebuild, (type(self), self.detail, self.path, dict(self.__dict__)))

    def to_dict(self) -> dict[str, str]:
        """The ``{"code", "message"}`` object used in JSON reports."""
        return {"code": self.code, "message": str(self)}


def _rebuild(cls: type[EmbkitError], detail: str, path: str | None, state: dict[str, Any]) -> EmbkitError:
    exc = cls(detail, path=path)
    exc.__dict__.update(state)
    return exc


def _set_os_fields(exc: OSError, number: int) -> None:
    # what Python's own OSError carries, so ``except FileNotFoundError`` code can read exc.filename
    exc.errno = number
    exc.strerror = os.strerror(number)
    exc.filename = getattr(exc, "path", None)


class MissingFileError(EmbkitError, FileNotFoundError):
    """An input file or folder does not exist. Also a :class:`FileNotFoundError` (``errno`` ENOENT,
    ``filename`` the path), as huggingface_hub's ``LocalEntryNotFoundError`` is."""

    errno_value = errno.ENOENT

    def __init__(self, message: str = "no such file", *, path: str | Path | None = None):
        super().__init__(message, path=path)
        _set_os_fields(self, self.errno_value)


class PermissionDeniedError(EmbkitError, PermissionError):
    """An input cannot be read for lack of permission. Also a :class:`PermissionError` (``errno``
    EACCES, ``filename`` the path)."""

    errno_value = errno.EACCES

    def __init__(self, message: str = "permission denied", *, path: str | Path | None = None):
        super().__init__(message, path=path)
        _set_os_fields(self, self.errno_value)


def read_error(exc: OSError, path: str | Path) -> EmbkitError:
    """The embkit error for an ``OSError`` met reading ``path``: :class:`MissingFileError` and
    :class:`PermissionDeniedError` for the two a user fixes, a plain :class:`EmbkitError` otherwise."""
    if isinstance(exc, FileNotFoundError):
        return MissingFileError("no such file", path=path)
    if isinstance(exc, PermissionError):
        return PermissionDeniedError("permission denied", path=path)
    return EmbkitError(f"cannot read ({exc.strerror or exc})", path=path)


class BrokenFileError(EmbkitError, code="broken-file", exit_code=3):
    """The file is recognised but damaged: truncated, empty, inconsistent, odd dtype or shape."""


class UnknownFormatError(EmbkitError, code="unknown-format", exit_code=4):
    """No format in the table recognises the file (or the requested format does not fit it)."""


class UnsupportedLayoutError(UnknownFormatError, code="unsupported-layout"):
    """The file is in a layout embkit recognises but that is not a textual inversion any host
    applies (kohya's XTI: one embedding per UNet block). The message says what it is."""


class UnsafeFileError(EmbkitError, code="unsafe-file", exit_code=5):
    """The file asks for something embkit refuses to do: a pickle global outside the allow-list,
    a path-traversal zip member, an object that would need code to run."""

    #: which refusal rule fired (an id of ``embkit.formats.rules.RULES``), when one did
    rule: str | None = None


class TooLargeError(UnsafeFileError, code="too-large"):
    """The file declares sizes past embkit's caps (a header, a member, a tensor, an image)."""


class TargetError(EmbkitError, code="bad-target", exit_code=6):
    """A target model spec could not be built (unknown family, unreadable model folder)."""


class ValidationFailed(EmbkitError, code="invalid", exit_code=7):
    """An embedding does not fit its target (raised where a caller asked for a hard check)."""


class LossError(EmbkitError, code="lossy", exit_code=8):
    """A conversion or edit would lose something and the caller asked for ``strict``."""


class WriteError(EmbkitError, code="write-failed", exit_code=9):
    """A file could not be written: the target exists (and overwrite was not asked), or the
    format cannot hold the embedding, or the disk failed. Nothing partial is left behind."""


class TargetExistsError(WriteError, code="exists"):
    """The output file exists and ``overwrite`` was not given."""


class WritePermissionError(WriteError, PermissionDeniedError):
    """The output cannot be written for lack of permission (a read-only folder). A
    :class:`WriteError` (its code and exit status) that is also a :class:`PermissionError`."""


def write_error(exc: OSError, path: str | Path | None, what: str = "write failed") -> WriteError:
    """The :class:`WriteError` for an ``OSError`` met writing ``path``: a
    :class:`WritePermissionError` (also a ``PermissionError``) when permission was refused."""
    cls = WritePermissionError if isinstance(exc, PermissionError) else WriteError
    return cls(f"{what} ({exc.strerror or exc})", path=path)


class OperationError(EmbkitError, code="bad-operation", exit_code=10):
    """A merge or edit cannot be done as asked (different widths, bad selection, bad expression)."""


class MissingDependencyError(EmbkitError, code="missing-dependency", exit_code=11):
    """An optional package is needed for this feature; the message says what to install."""


class HubError(EmbkitError, code="hub", exit_code=12):
    """The Hugging Face Hub refused or failed a request (not found, gated, offline, interrupted)."""


class HubEntryNotFoundError(HubError, MissingFileError):
    """A file asked for is not in the Hub repo, or (offline) not in the local cache. A
    :class:`HubError` (its code and exit status) that is also a :class:`FileNotFoundError`,
    as huggingface_hub's ``LocalEntryNotFoundError`` is."""


class LibraryError(EmbkitError, code="library", exit_code=13):
    """The embedding library (SQLite registry) failed: bad database, unknown entry."""


class LibraryPathNotFoundError(LibraryError, MissingFileError, exit_code=1):
    """A file or folder given to the library (to scan) does not exist. A :class:`LibraryError`
    (its code) that is also a :class:`MissingFileError` and a :class:`FileNotFoundError`, with the
    exit status every command gives a missing input (1)."""


class NoEffectError(EmbkitError, code="no-effect", exit_code=14):
    """A test render applied the embedding and it changed neither the conditioning nor the images
    (the "appears to do nothing" failure of ``embkit verify --render``)."""


class NotMine(Exception):
    """Internal signal: "this reader does not recognise the file". Never escapes embkit.

    Distinct from :class:`BrokenFileError`, which means "this is my format, and it is damaged".
    """


ALL_ERRORS = (
    EmbkitError,
    MissingFileError,
    PermissionDeniedError,
    BrokenFileError,
    UnknownFormatError,
    UnsupportedLayoutError,
    UnsafeFileError,
    TooLargeError,
    TargetError,
    ValidationFailed,
    LossError,
    WriteError,
    TargetExistsError,
    WritePermissionError,
    OperationError,
    MissingDependencyError,
    HubError,
    HubEntryNotFoundError,
    LibraryError,
    LibraryPathNotFoundError,
    NoEffectError,
)


def exit_code_of(code: str) -> int:
    """The exit status of the error class whose ``code`` this is (an error recorded by its code,
    as the library stores it); 1 for a code no class has."""
    for cls in ALL_ERRORS:
        if cls.code == code:
            return cls.exit_code
    return 1
