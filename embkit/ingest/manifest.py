"""The manifest: one row per file, its columns (the one list of them), and how rows are written.

A row is a plain dict whose keys are :data:`COLUMNS`, in that order. The same rows are written as
JSON Lines (always) and as Parquet (when pyarrow is installed) with the Arrow schema built from
:data:`COLUMNS`; ``docs/ingest.md`` documents every column. :func:`normal_row` puts a row in the
exact shape both writers and every comparison expect: every key present, nested lists of dicts
with every field, ints as ints. Rows are a deterministic function of the file's path, stat and
bytes (and the preview settings): no timestamps, no host names, so two runs over the same files give
equal manifests, on one machine or on a Ray cluster.
"""

from __future__ import annotations

import json
import os
from typing import Any, Iterable

from ..errors import MissingDependencyError

#: Slot fields of each embedding (as ``embkit library scan`` records them).
SLOT_FIELDS = (
    ("slot", "string"), ("vectors", "int64"), ("width", "int64"), ("dtype", "string"), ("vectors_hash", "string"),
    ("norm_min", "float64"), ("norm_mean", "float64"), ("norm_max", "float64"),
)
#: Embedding fields (the library's ``embeddings`` table; ``families`` and ``warnings`` as lists).
EMBEDDING_FIELDS = (
    ("member", "string"), ("name", "string"), ("stored_name", "string"), ("family", "string"),
    ("families", ["string"]), ("num_vectors", "int64"), ("vectors_hash", "string"), ("metadata", "string"),
    ("warnings", ["string"]), ("slots", [SLOT_FIELDS]),
)
#: One converted embedding: where its safetensors file lies under DIR and what to publish it as.
CONVERTED_FIELDS = (
    ("member", "string"), ("name", "string"), ("format", "string"), ("path", "string"), ("sha256", "string"),
    ("size", "int64"), ("filename", "string"),
)
#: One host's verdict (``hosts`` maps a host id to this): on the embedding's own family, and the
#: host's status on every family.
HOST_FIELDS = (("loads", "bool"), ("trigger", "string"), ("reasons", ["string"]), ("family", "string"), ("families", ("map", "string")))
#: One preview image ingest rendered (or why there is none).
PREVIEW_FIELDS = (
    ("member", "string"), ("name", "string"), ("trigger", "string"), ("negative", "bool"), ("path", "string"),
    ("sha256", "string"), ("skipped", "string"),
)
#: One preview picture found beside the upload (the library's ``previews`` table).
SIDECAR_PREVIEW_FIELDS = (
    ("member", "string"), ("path", "string"), ("size", "int64"), ("mtime_ns", "int64"), ("format", "string"),
    ("width", "int64"), ("height", "int64"), ("parameters", "string"), ("embkit", "bool"),
)

#: (column, type, nullable). A type is an Arrow primitive name, ``[T]`` a list of T, a tuple of
#: fields a struct, ``("map", T)`` a map from host id to T. The one list of columns (docs/ingest.md).
COLUMNS: tuple[tuple[str, Any, bool], ...] = (
    ("path", "string", False),
    ("source", "string", False),
    ("size", "int64", False),
    ("mtime_ns", "int64", False),
    ("status", "string", False),
    ("error_code", "string", True),
    ("error", "string", True),
    ("sha256", "string", True),
    ("autov2", "string", True),
    ("autov3", "string", True),
    ("scan_verdict", "string", True),
    ("scan_container", "string", True),
    ("scan_rules", ["string"], False),
    ("scan_globals", ["string"], False),
    ("scan_refused", ["string"], False),
    ("scan_reasons", ["string"], False),
    ("format", "string", True),
    ("container", "string", True),
    ("metadata", "string", True),
    ("embeddings", [EMBEDDING_FIELDS], False),
    ("sidecars", "string", True),
    ("base_model", "string", True),
    ("trained_words", ["string"], False),
    ("sidecar_previews", [SIDECAR_PREVIEW_FIELDS], False),
    ("sidecar_key", "string", True),
    ("converted", [CONVERTED_FIELDS], False),
    ("convert_error", "string", True),
    ("hosts", ("map", HOST_FIELDS), False),
    ("preview_key", "string", True),
    ("previews", [PREVIEW_FIELDS], True),
)
COLUMN_NAMES = tuple(c[0] for c in COLUMNS)

#: Row statuses (docs/ingest.md): read, recorded and converted; read but not converted; refused as
#: unsafe; damaged, or no embedding where it was named; not read at all, or, met in a SOURCE folder,
#: read and found to be no embedding (the folder rule, :mod:`embkit.folder`).
OK, UNCONVERTED, UNSAFE, BROKEN, SKIPPED = "ok", "unconverted", "unsafe", "broken", "skipped"
STATUSES = (OK, UNCONVERTED, UNSAFE, BROKEN, SKIPPED)

#: ``error_code`` of ``skipped`` rows whose file was never read (links passed over, non-files,
#: missing or unreadable paths); a ``skipped`` row with another code was read and is no embedding.
NOT_READ_CODES = ("link-outside", "link-broken", "link", "not-a-file", "missing", "unreadable")
#: Of those, the failures (a listed path that is missing, a file that cannot be read: exit 1, as a
#: missing input in every command); a link or a pipe passed over is no failure, as in every walk.
FAILED_NOT_READ_CODES = ("missing", "unreadable")

MANIFEST_JSONL = "manifest.jsonl"
MANIFEST_PARQUET = "manifest.parquet"


# -- the shape of a row ------------------------------------------------------------------------


def _converter(typ: Any):
    """A function putting a value in the shape of ``typ`` (built once per column: rows are many)."""
    if isinstance(typ, list):
        inner = _converter(typ[0])
        return lambda v: None if v is None else [inner(x) for x in v]
    if isinstance(typ, tuple) and typ and typ[0] == "map":
        value = _converter(typ[1])
        # Arrow gives a map back as (key, value) pairs
        return lambda v: None if v is None else {str(k): value(x) for k, x in sorted(v.items() if isinstance(v, dict) else v)}
    if isinstance(typ, tuple):
        fields = [(name, _converter(t)) for name, t in typ]
        return lambda v: None if v is None else {name: conv(v.get(name)) for name, conv in fields}
    leaf = {"int64": int, "float64": float, "bool": bool, "string": str}[typ]
    return lambda v: v if v is None or type(v) is leaf else leaf(v)


_COLUMN_CONVERTERS = [(name, _converter(typ), [] if isinstance(typ, list) and not nullable else {} if isinstance(typ, tuple) and not nullable else None) for name, typ, nullable in COLUMNS]


def normal_row(row: dict) -> dict:
    """``row`` with exactly the manifest's columns, in order, each value in its column's shape
    (missing nullable columns become ``None``, missing lists empty)."""
    out = {}
    for name, conv, empty in _COLUMN_CONVERTERS:
        value = row.get(name)
        out[name] = conv(empty if value is None and empty is not None else value)
    return out


def sorted_rows(rows: Iterable[dict]) -> list[dict]:
    """Rows in manifest order: by path (code point order, which is also UTF-8 byte order, so
    Arrow's sort and Python's agree)."""
    return sorted(rows, key=lambda r: r["path"])


# -- JSON Lines --------------------------------------------------------------------------------


def jsonl_bytes(rows: Iterable[dict]) -> bytes:
    """Rows as JSON Lines: one compact object per line, keys in column order, UTF-8."""
    return b"".join(json.dumps(r, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode() + b"\n" for r in rows)


def read_jsonl(path: str) -> list[dict]:
    """Rows from a JSON Lines file; a last line cut short (a crash while appending) is dropped."""
    rows = []
    with open(path, "rb") as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except ValueError:
                continue  # a torn line: the file was not written by an atomic commit
    return rows


# -- Arrow / Parquet ---------------------------------------------------------------------------


def have_pyarrow() -> bool:
    """Whether pyarrow can be imported (Parquet is written only then)."""
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return False
    return True


def pyarrow_module():
    """pyarrow, or :class:`MissingDependencyError` with the install line."""
    try:
        import pyarrow
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise MissingDependencyError("writing Parquet needs pyarrow: pip install 'embkit-ti[ray]' (or pip install pyarrow)") from None
    return pyarrow


def _arrow_type(pa, typ: Any):
    if isinstance(typ, list):
        return pa.list_(_arrow_type(pa, typ[0]))
    if isinstance(typ, tuple) and typ and typ[0] == "map":
        return pa.map_(pa.string(), _arrow_type(pa, typ[1]))
    if isinstance(typ, tuple):
        return pa.struct([pa.field(name, _arrow_type(pa, t)) for name, t in typ])
    return {"string": pa.string(), "int64": pa.int64(), "float64": pa.float64(), "bool": pa.bool_()}[typ]


def arrow_schema():
    """The manifest's Arrow schema, from :data:`COLUMNS`."""
    pa = pyarrow_module()
    return pa.schema([pa.field(name, _arrow_type(pa, typ), nullable=nullable) for name, typ, nullable in COLUMNS])


def to_table(rows: list[dict]):
    """Normal rows → an Arrow table with the manifest schema."""
    pa = pyarrow_module()
    return pa.Table.from_pylist(rows, schema=arrow_schema())


def from_table(table) -> list[dict]:
    """An Arrow table with the manifest columns → normal rows (maps back to dicts)."""
    return [normal_row(r) for r in table.select(list(COLUMN_NAMES)).to_pylist()]


def parquet_bytes(rows: list[dict]) -> bytes:
    """Rows as one Parquet file's bytes (written atomically by the caller)."""
    pa = pyarrow_module()
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(to_table(rows), sink)
    return sink.getvalue().to_pybytes()


def read_manifest(out: str | os.PathLike) -> list[dict]:
    """The rows of ``DIR/manifest.jsonl``."""
    return read_jsonl(os.path.join(os.fspath(out), MANIFEST_JSONL))


# -- what a row means for the walk rule ----------------------------------------------------------


def no_embedding_reason(row: dict) -> str | None:
    """Why the file of a row that was read is no embedding by the folder rule
    (:func:`embkit.folder.error_reason`: a picture without an embedding card, a model checkpoint, a
    file of model weights or of a layout no host applies), or ``None``: it was not read, it was
    read as an embedding, or it looks like one that is damaged or unsafe."""
    code = row.get("error_code")
    if not code or code in NOT_READ_CODES or row.get("status") not in (BROKEN, SKIPPED):
        return None
    from ..folder import error_reason

    message, path = row.get("error") or "", row["path"]
    detail = message[len(path) + 2:] if message.startswith(path + ": ") else message
    return error_reason(path, code, detail)


def row_exit_code(row: dict) -> int:
    """The exit status a row adds to the walk rule (:func:`embkit.folder.walk_exit_code`): 0 for
    a file ingested or passed over (``ok``; ``skipped`` as no embedding, a link or a pipe), else
    the exit status of its error class (:data:`embkit.errors.ALL_ERRORS`): 5 ``unsafe``; a
    ``broken`` file's own (3 damaged, 4 no embedding where it was named); an ``unconverted`` one's
    conversion error (8 a loss refused, 9 a write that failed); 1 a listed path missing or unreadable."""
    from ..errors import UnsafeFileError, exit_code_of

    status = row["status"]
    if status == UNSAFE:
        return UnsafeFileError.exit_code
    if status == BROKEN:
        return exit_code_of(row.get("error_code") or "error")
    if status == UNCONVERTED:
        return exit_code_of((row.get("convert_error") or "error").split(":", 1)[0])
    if status == SKIPPED and row.get("error_code") in FAILED_NOT_READ_CODES:
        return 1
    return 0


__all__ = [
    "COLUMNS",
    "COLUMN_NAMES",
    "STATUSES",
    "NOT_READ_CODES",
    "FAILED_NOT_READ_CODES",
    "no_embedding_reason",
    "row_exit_code",
    "normal_row",
    "sorted_rows",
    "jsonl_bytes",
    "read_jsonl",
    "arrow_schema",
    "to_table",
    "from_table",
    "parquet_bytes",
    "read_manifest",
    "have_pyarrow",
]
