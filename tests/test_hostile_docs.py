"""docs/errors.md and docs/safety.md stay true to the code they describe."""

from __future__ import annotations

import re
from pathlib import Path

from embkit import errors
from embkit.formats import (
    base,
    imagecard,
    pickle_allow,
    pickle_globals,
    safetensors_file,
    stored_zip,
    torchfile,
)

DOCS = Path(__file__).resolve().parent.parent / "docs"


def _error_rows() -> dict[str, tuple[tuple[str, ...], str, int]]:
    rows = {}
    for line in (DOCS / "errors.md").read_text().splitlines():
        m = re.match(r"\| `(\w+)` \| ((?:`\w+`(?:, )?)+) \| `([\w-]+)` \| (\d+) \|", line)
        if m:
            rows[m.group(1)] = (tuple(re.findall(r"`(\w+)`", m.group(2))), m.group(3), int(m.group(4)))
    return rows


def test_error_table_lists_every_class_with_its_parents_code_and_exit_status():
    rows = _error_rows()
    assert set(rows) == {cls.__name__ for cls in errors.ALL_ERRORS}
    for cls in errors.ALL_ERRORS:
        parents, code, exit_code = rows[cls.__name__]
        assert parents == tuple(b.__name__ for b in cls.__bases__), cls
        assert (code, exit_code) == (cls.code, cls.exit_code), cls


def test_errors_that_resemble_a_builtin_are_that_builtin():
    """A missing input is a FileNotFoundError, a refused read a PermissionError (as
    huggingface_hub's LocalEntryNotFoundError is a FileNotFoundError), with Python's fields,
    embkit's message, and the code and exit status of the embkit parent."""
    import errno
    import pickle

    for cls, builtin, number in ((errors.MissingFileError, FileNotFoundError, errno.ENOENT),
                                 (errors.PermissionDeniedError, PermissionError, errno.EACCES),
                                 (errors.WritePermissionError, PermissionError, errno.EACCES),
                                 (errors.HubEntryNotFoundError, FileNotFoundError, errno.ENOENT),
                                 (errors.LibraryPathNotFoundError, FileNotFoundError, errno.ENOENT)):
        exc = cls("it is gone", path="x.pt")
        assert isinstance(exc, errors.EmbkitError) and isinstance(exc, builtin), cls
        assert (exc.errno, exc.filename, str(exc)) == (number, "x.pt", "x.pt: it is gone"), cls
        back = pickle.loads(pickle.dumps(exc))  # errors cross process pools
        assert type(back) is cls and (str(back), back.filename, back.to_dict()) == (str(exc), "x.pt", exc.to_dict())
    assert (errors.WritePermissionError.code, errors.WritePermissionError.exit_code) == ("write-failed", 9)
    # a missing input exits 1 in every command (issue 19), the library's too
    assert (errors.HubEntryNotFoundError.exit_code, errors.LibraryPathNotFoundError.exit_code) == (12, 1)


def test_every_public_error_class_is_in_all_errors():
    public = {name for name, obj in vars(errors).items() if isinstance(obj, type) and issubclass(obj, errors.EmbkitError)}
    assert public == {cls.__name__ for cls in errors.ALL_ERRORS}


def test_safety_doc_states_the_caps_in_the_code():
    text = (DOCS / "safety.md").read_text()
    assert base.MAX_TENSOR_ELEMENTS == 64 * 1024 * 1024 and "64 Mi" in text
    assert safetensors_file.MAX_HEADER_BYTES == 100_000_000 and "100,000,000 bytes" in text
    assert imagecard.MAX_PIXELS == 8_000_000 and "8 Mpx" in text
    assert pickle_allow.MAX_PICKLE_OPS == 500_000 and "500,000" in text
    assert pickle_allow.SMALL_PICKLE_BYTES == 256 * 1024 and "256 KB" in text
    assert torchfile.MAX_PICKLE_BYTES == 64 * 1024 * 1024 and "64 MB declared" in text
    assert stored_zip.MAX_ZIP_MEMBERS == 100_000 and "100,000" in text
    for module, name in pickle_globals.ALLOWED_GLOBALS:
        if not name.endswith("Storage") and module != "__builtin__":
            assert name in text, name


def test_safety_doc_lists_every_refusal_rule_with_its_case():
    from embkit.formats.rules import RULES

    text = (DOCS / "safety.md").read_text()
    for rule in RULES:
        row = next((line for line in text.splitlines() if line.startswith(f"| `{rule}` |")), None)
        assert row is not None, rule
        assert row.count("|") >= 4 and row.rstrip(" |").split("|")[-1].strip(), rule  # names the case that tests it
