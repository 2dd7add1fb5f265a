"""Typing that works: mypy (``--strict``) on the README's and docs/python.md's examples
(tests/typing/readme_examples.py) and on the public module ``embkit/__init__.py``.

- the lazy public names are what they are (functions, classes), not ``Any``;
- the examples' values have no ``Any`` in their revealed types, and mypy reports no error;
- a misspelt name (``embkit.reed``) and a wrong argument are flagged (tests/typing/wrong_names.py);
- every line of code in the Python examples of README.md and docs/python.md is in the checked file.

The library below the public surface is read (``--follow-imports=silent``) but not itself held to
``--strict``.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "tests" / "typing" / "readme_examples.py"
WRONG = ROOT / "tests" / "typing" / "wrong_names.py"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def mypy_output(tmp_path_factory) -> dict[str, list[tuple[int, str, str]]]:
    """``{file name: [(line, kind, message)]}`` of one mypy run over the three files."""
    pytest.importorskip("mypy", reason="the typing check needs mypy (the test extra has it)")
    cache = tmp_path_factory.mktemp("mypy-cache")
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--follow-imports=silent", "--no-error-summary", "--show-absolute-path",
         "--cache-dir", str(cache), str(EXAMPLES), str(WRONG), str(ROOT / "embkit" / "__init__.py")],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )
    assert proc.returncode in (0, 1), proc.stderr
    out: dict[str, list[tuple[int, str, str]]] = {}
    for line in proc.stdout.splitlines():
        m = re.match(r"(.+?):(\d+): (error|note): (.*)", line)
        if m:
            out.setdefault(Path(m.group(1)).name, []).append((int(m.group(2)), m.group(3), m.group(4)))
    return out


def _revealed(lines: list[tuple[int, str, str]]) -> dict[int, str]:
    return {n: re.match(r'Revealed type is "(.*)"', msg).group(1) for n, kind, msg in lines
            if kind == "note" and msg.startswith("Revealed type is")}


def test_the_examples_type_check_strictly_with_no_any(mypy_output):
    lines = mypy_output.get(EXAMPLES.name, [])
    errors = [f"{n}: {msg}" for n, kind, msg in lines if kind == "error"]
    assert errors == []
    revealed = _revealed(lines)
    source = EXAMPLES.read_text().splitlines()
    calls = [i + 1 for i, text in enumerate(source) if "reveal_type(" in text]
    assert sorted(revealed) == calls, "every reveal_type is answered"
    names_end = next(i + 1 for i, text in enumerate(source) if text.startswith("# -- README"))
    for n, typ in revealed.items():
        if n < names_end:  # the public names themselves: a function or class, never Any
            assert typ != "Any" and (typ.startswith("def ") or typ.startswith("overload")), (source[n - 1], typ)
        else:  # the examples' values: no Any anywhere in the type
            assert not re.search(r"\bAny\b", typ), (source[n - 1], typ)
    by_line = {source[n - 1].strip(): typ for n, typ in revealed.items()}
    assert by_line["reveal_type(embkit.validate(emb, \"sdxl\").ok)"] == "bool"
    assert by_line["reveal_type(emb)"] == "embkit.schema.Embedding"
    assert "tuple[int, int]" in by_line['reveal_type((emb.name, emb.slots, emb.vectors["clip_l"].shape))']


def test_the_public_module_is_strictly_typed(mypy_output):
    assert [f"{n}: {msg}" for n, kind, msg in mypy_output.get("__init__.py", []) if kind == "error"] == []


def test_misspelt_names_and_wrong_arguments_are_flagged(mypy_output):
    errors = {n: msg for n, kind, msg in mypy_output.get(WRONG.name, []) if kind == "error"}
    assert 'Module has no attribute "reed"' in errors.get(6, "")
    assert 'has no attribute "validate"' in errors.get(7, ""), "embkit.validate is the function only"
    assert 'Module has no attribute "pul"' in errors.get(8, "")
    assert 'incompatible type "int"' in errors.get(9, "")


def test_every_python_example_of_the_docs_is_type_checked():
    """A line of code added to a Python example of README.md or docs/python.md must be added to
    tests/typing/readme_examples.py too (wrapped in ``reveal_type`` where it is a value)."""
    checked = re.sub(r"\s+", "", EXAMPLES.read_text())
    missing = []
    for doc in (ROOT / "README.md", ROOT / "docs" / "python.md"):
        for block in re.findall(r"```python\n(.*?)```", doc.read_text(), re.S):
            for line in block.splitlines():
                code = re.sub(r"\s+#.*$", "", line).strip()
                if code and not code.startswith("#") and re.sub(r"\s+", "", code) not in checked:
                    missing.append(f"{doc.name}: {code}")
    assert missing == []
