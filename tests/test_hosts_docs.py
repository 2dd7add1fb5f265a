"""docs/hosts.md holds the matrix embkit.hosts gives on the oracle tests' files, names every host,
and is linked from the README."""

from __future__ import annotations

from pathlib import Path

import pytest

from embkit import hosts

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "hosts.md"

pytest.importorskip("torch")


@pytest.mark.slow
def test_the_matrix_in_the_docs_is_current(tmp_path):
    from hosts_matrix import BEGIN, END, matrix

    text = DOC.read_text(encoding="utf-8")
    got = text[text.index(BEGIN) : text.index(END) + len(END)]
    want = matrix(tmp_path)
    assert got == want, "docs/hosts.md is stale: python tests/hosts_matrix.py prints the current matrix"


def test_every_host_is_documented_with_its_snapshot():
    text = DOC.read_text(encoding="utf-8")
    for row in hosts.HOSTS:
        assert f"`{row.id}`" in text, row.id
        commit = row.source.split("@", 1)[-1].split()[0]
        assert row.id == "embkit" or commit in text, (row.id, commit)
    assert "docs/hosts.md" in (ROOT / "README.md").read_text(encoding="utf-8")
