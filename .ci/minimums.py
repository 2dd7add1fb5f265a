"""Print ``name==version`` for the lower bound pyproject.toml declares for each package named on the
command line (in the core dependencies or any extra): the minimum-versions step installs exactly
what the project claims to work with, read from the one place it is declared."""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path


def declared() -> dict[str, str]:
    project = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())["project"]
    found: dict[str, str] = {}
    for requirement in [*project["dependencies"], *(r for extra in project["optional-dependencies"].values() for r in extra)]:
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?\s*>=\s*([0-9][^,;\s]*)", requirement.strip())
        if m:
            found[m.group(1).lower().replace("_", "-")] = m.group(2)
    return found


def main(names: list[str]) -> None:
    bounds = declared()
    missing = [n for n in names if n.lower().replace("_", "-") not in bounds]
    if missing:
        sys.exit(f"no lower bound declared for {', '.join(missing)}")
    print(" ".join(f"{n}=={bounds[n.lower().replace('_', '-')]}" for n in names))


if __name__ == "__main__":
    main(sys.argv[1:])
