"""embkit's errors: one base class, a few subclasses, each with a stable code and a CLI exit code.

The library raises these and never prints or exits; ``embkit.cli`` maps them to exit statuses.
Every message names the file (when there is one) and what is wrong with it.
"""

from __future__ import annotations

from pathlib import Path


class EmbkitError(Exception):
    """Base class of every error embkit raises on purpose.

    ``code`` is a stable machine-readable string (used in ``--json`` output), ``exit_code`` the
    status the CLI exits with when this error ends a command.
    """

    code = "error"
    exit_code = 1

    def __init__(self, message: str, *, path: str | Path | None = None):
        self.path = str(path) if path is not None else None
        self.detail = message
        super().__init__(f"{self.path}: {message}" if self.path else message)

    def to_dict(self) -> dict:
        """The ``{"code", "message"}`` object used in JSON reports."""
        return {"code": self.code, "message": str(self)}


class BrokenFileError(EmbkitError):
    """The file is recognised but damaged: truncated, empty, inconsistent, odd dtype or shape."""

    code = "broken-file"
    exit_code = 3


class UnknownFormatError(EmbkitError):
    """No format in the table recognises the file (or the requested format does not fit it)."""

    code = "unknown-format"
    exit_code = 4


class UnsupportedLayoutError(UnknownFormatError):
    """The file is in a layout embkit recognises but that is not a textual inversion any host
    applies (kohya's XTI: one embedding per UNet block). The message says what it is."""

    code = "unsupported-layout"
    exit_code = 4


class UnsafeFileError(EmbkitError):
    """The file asks for something embkit refuses to do: a pickle global outside the allow-list,
    a path-traversal zip member, an object that would need code to run."""

    code = "unsafe-file"
    exit_code = 5
    #: which refusal rule fired (an id of ``embkit.formats.rules.RULES``), when one did
    rule: str | None = None


class TooLargeError(UnsafeFileError):
    """The file declares sizes past embkit's caps (a header, a member, a tensor, an image)."""

    code = "too-large"
    exit_code = 5


class TargetError(EmbkitError):
    """A target model spec could not be built (unknown family, unreadable model folder)."""

    code = "bad-target"
    exit_code = 6


class ValidationFailed(EmbkitError):
    """An embedding does not fit its target (raised where a caller asked for a hard check)."""

    code = "invalid"
    exit_code = 7


class LossError(EmbkitError):
    """A conversion or edit would lose something and the caller asked for ``strict``."""

    code = "lossy"
    exit_code = 8


class WriteError(EmbkitError):
    """A file could not be written: the target exists (and overwrite was not asked), or the
    format cannot hold the embedding, or the disk failed. Nothing partial is left behind."""

    code = "write-failed"
    exit_code = 9


class TargetExistsError(WriteError):
    """The output file exists and ``overwrite`` was not given."""

    code = "exists"
    exit_code = 9


class OperationError(EmbkitError):
    """A merge or edit cannot be done as asked (different widths, bad selection, bad expression)."""

    code = "bad-operation"
    exit_code = 10


class MissingDependencyError(EmbkitError):
    """An optional package is needed for this feature; the message says what to install."""

    code = "missing-dependency"
    exit_code = 11


class HubError(EmbkitError):
    """The Hugging Face Hub refused or failed a request (not found, gated, offline, interrupted)."""

    code = "hub"
    exit_code = 12


class LibraryError(EmbkitError):
    """The embedding library (SQLite registry) failed: bad database, unknown entry."""

    code = "library"
    exit_code = 13


class NoEffectError(EmbkitError):
    """A test render applied the embedding and it changed neither the conditioning nor the images
    (the "appears to do nothing" failure of ``embkit verify --render``)."""

    code = "no-effect"
    exit_code = 14


class NotMine(Exception):
    """Internal signal: "this reader does not recognise the file". Never escapes embkit.

    Distinct from :class:`BrokenFileError`, which means "this is my format, and it is damaged".
    """


ALL_ERRORS = (
    EmbkitError,
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
    OperationError,
    MissingDependencyError,
    HubError,
    LibraryError,
    NoEffectError,
)
