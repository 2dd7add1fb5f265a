"""embkit: read, inspect, validate, convert, merge and test textual-inversion embeddings.

    >>> import embkit
    >>> emb = embkit.read("EasyNegative.pt")          # any format, no torch, no code execution
    >>> emb.name, emb.slots, emb.vectors["clip_l"].shape
    ('EasyNegative', ('clip_l',), (8, 768))

Importing embkit is cheap: numpy only. torch and diffusers are imported by
``embkit.diffusers`` alone, when a pipeline is used.
"""

from typing import TYPE_CHECKING

from .errors import (
    BrokenFileError,
    EmbkitError,
    HubEntryNotFoundError,
    HubError,
    LibraryError,
    LibraryPathNotFoundError,
    LossError,
    MissingDependencyError,
    MissingFileError,
    NoEffectError,
    OperationError,
    PermissionDeniedError,
    TargetError,
    TargetExistsError,
    TooLargeError,
    UnknownFormatError,
    UnsafeFileError,
    UnsupportedLayoutError,
    ValidationFailed,
    WriteError,
    WritePermissionError,
)
from .io import read, read_all
from .probing import probe
from .schema import Embedding, Sidecars, Source
from .version import __version__

#: Public names that live in heavier modules, imported on first use so ``import embkit`` stays cheap.
_LAZY = {
    "write": ("embkit.writing", "write"),
    "Loss": ("embkit.writing", "Loss"),
    "validate": ("embkit.check.validate", "validate"),
    "Report": ("embkit.check.findings", "Report"),
    "Finding": ("embkit.check.findings", "Finding"),
    "ModelSpec": ("embkit.model.spec", "ModelSpec"),
    "resolve_target": ("embkit.model.resolve", "resolve_target"),
    "merge": ("embkit.edit.merges", "merge"),
    "ops": ("embkit.edit.ops", None),
    "Library": ("embkit.library", "Library"),
    "hub": ("embkit.hub", None),
    "formats": ("embkit.formats", None),
    "scan": ("embkit.scan", None),
    "diffusers": ("embkit.diffusers", None),
    "to_state_dict": ("embkit.diffusers.tensors", "to_state_dict"),
    "from_state_dict": ("embkit.statedicts", "from_state_dict"),
    "statedicts": ("embkit.statedicts", None),
    # the package, callable as embkit.ingest.run.ingest (see embkit/ingest/__init__.py)
    "ingest": ("embkit.ingest", None),
}

if TYPE_CHECKING:  # what the lazy names are, for type checkers and editors (never run)
    from . import diffusers as diffusers
    from . import formats as formats
    from . import hub as hub
    from . import scan as scan
    from . import statedicts as statedicts
    from .check.findings import Finding, Report
    from .check.validate import validate
    from .diffusers.tensors import to_state_dict
    from .edit import ops as ops
    from .edit.merges import merge
    from .ingest import ingest as ingest
    from .library import Library
    from .model.resolve import resolve_target
    from .model.spec import ModelSpec
    from .statedicts import from_state_dict
    from .writing import Loss, write


if not TYPE_CHECKING:  # hidden from type checkers, which would take every name as valid: they read the block above

    def __getattr__(name: str) -> object:
        import importlib

        try:
            module_name, attr = _LAZY[name]
        except KeyError:
            raise AttributeError(f"module 'embkit' has no attribute {name!r}") from None
        module = importlib.import_module(module_name)
        return module if attr is None else getattr(module, attr)


def __dir__() -> list[str]:
    # the lazily imported names too, so dir(embkit) and completion show the whole API
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "Embedding",
    "write",
    "Loss",
    "validate",
    "Report",
    "Finding",
    "ModelSpec",
    "resolve_target",
    "merge",
    "to_state_dict",
    "from_state_dict",
    "Library",
    "ingest",
    "Source",
    "Sidecars",
    "read",
    "read_all",
    "probe",
    "EmbkitError",
    "MissingFileError",
    "PermissionDeniedError",
    "BrokenFileError",
    "UnknownFormatError",
    "UnsupportedLayoutError",
    "UnsafeFileError",
    "TooLargeError",
    "TargetError",
    "ValidationFailed",
    "LossError",
    "WriteError",
    "TargetExistsError",
    "WritePermissionError",
    "OperationError",
    "MissingDependencyError",
    "NoEffectError",
    "HubError",
    "HubEntryNotFoundError",
    "LibraryError",
    "LibraryPathNotFoundError",
]
