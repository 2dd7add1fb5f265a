"""The docs stay true: the CLI reference matches the commands, and the README's links resolve."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_cli_reference_is_current():
    from embkit.cli.reference import render

    assert (ROOT / "docs" / "cli.md").read_text() == render() + "\n", "run: python -m embkit.cli.reference > docs/cli.md"


def test_readme_links_resolve():
    text = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\(([^)#]+)\)", text)
    assert links
    for link in links:
        if "://" not in link:
            assert (ROOT / link).exists(), link


def test_every_doc_is_linked_from_readme():
    text = (ROOT / "README.md").read_text()
    for doc in (ROOT / "docs").glob("*.md"):
        assert f"docs/{doc.name}" in text, f"README does not link docs/{doc.name}"
