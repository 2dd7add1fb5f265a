"""The distribution: a wheel built from this tree installs as ``embkit-ti`` into a fresh virtual
environment and gives the ``embkit`` package and command of this project (not the unrelated
"embkit" on the package index), with the core dependencies only (no torch).

No network: the wheel is built without build isolation (the setuptools of the running
environment), and the fresh environment gets the core dependencies from the running environment's
installed copies (linked into a folder on its path), so ``pip check`` there shows the wheel's
declared requirements are met by exactly those.
"""

from __future__ import annotations

import email
import importlib.metadata as md
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DIST = "embkit-ti"

pytestmark = pytest.mark.slow


def _run(*args: str | os.PathLike, **kwargs) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PIP_REQUIRE_VIRTUALENV")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    proc = subprocess.run([os.fspath(a) for a in args], capture_output=True, text=True, env=env, timeout=300, **kwargs)
    assert proc.returncode == 0, f"{args}\n{proc.stdout}\n{proc.stderr}"
    return proc


def _build_wheel(tmp: Path) -> Path:
    """``pip wheel`` of a copy of the tree (setuptools writes build/ and egg-info next to the sources)."""
    pytest.importorskip("setuptools", reason="building the wheel offline needs setuptools (the test extra has it)")
    src = tmp / "src"
    shutil.copytree(ROOT / "embkit", src / "embkit", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    _run(sys.executable, "-m", "pip", "wheel", src, "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", tmp / "dist")
    [wheel] = (tmp / "dist").glob("*.whl")
    return wheel


def _core_requirements(wheel: Path) -> list[str]:
    """The wheel's Requires-Dist without an extra marker: what a plain ``pip install`` pulls."""
    with zipfile.ZipFile(wheel) as zf:
        [meta] = [n for n in zf.namelist() if n.endswith(".dist-info/METADATA")]
        msg = email.message_from_bytes(zf.read(meta))
    return [r for r in msg.get_all("Requires-Dist") or [] if "extra ==" not in r]


def _name(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[(]", requirement, maxsplit=1)[0]


def _link_installed(requirements: list[str], folder: Path) -> set[str]:
    """Link the installed copies of ``requirements`` and everything they need (no extras) into
    ``folder``: the packages and their dist-info, as a site folder holds them."""
    folder.mkdir()
    todo, done = [_name(r) for r in requirements], set()
    while todo:
        dist = md.distribution(todo.pop())
        key = dist.metadata["Name"].lower().replace("_", "-")
        if key in done:
            continue
        done.add(key)
        todo += [_name(r) for r in dist.requires or [] if "extra ==" not in r]
        site = Path(dist.locate_file(""))
        for top in {Path(f).parts[0] for f in dist.files or []}:
            if top in ("..", "__pycache__") or top.endswith(".pth") or (folder / top).exists():
                continue
            if (site / top).exists():
                (folder / top).symlink_to(site / top)
    return done


def test_the_wheel_installs_as_its_own_distribution_into_a_fresh_venv(tmp_path):
    wheel = _build_wheel(tmp_path)
    assert wheel.name.startswith("embkit_ti-"), wheel.name
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
    assert "embkit/py.typed" in names and "embkit/__init__.py" in names
    assert not [n for n in names if n.startswith(("tests/", "fixtures/"))]
    core = _core_requirements(wheel)
    assert {_name(r).lower() for r in core} == {"numpy", "safetensors", "pillow", "click", "rich", "platformdirs"}

    venv = tmp_path / "fresh"
    _run(sys.executable, "-m", "venv", "--without-pip", venv)
    py = venv / "bin" / "python"
    site = Path(_run(py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip())
    linked = _link_installed(core, tmp_path / "deps")
    (site / "_core_deps.pth").write_text(str(tmp_path / "deps") + "\n")
    pip = (sys.executable, "-m", "pip", "--python", py)
    _run(*pip, "install", "--no-deps", "--no-index", "-q", wheel)

    show = _run(*pip, "show", DIST).stdout
    assert re.search(r"^Name: embkit-ti$", show, re.M) and f"Location: {site}" in show, show
    assert re.search(r"^Requires: click, numpy, Pillow, platformdirs, rich, safetensors$", show, re.M), show
    _run(*pip, "check")  # the declared core requirements are met by the linked copies alone

    version = _run(venv / "bin" / "embkit", "--version").stdout
    assert version.startswith("embkit 0.1.0 (embkit-ti, ") and str(site / "embkit") in version, version
    probe = ("import embkit, importlib.metadata as md, importlib.util, json\n"
             "print(json.dumps({'file': embkit.__file__, 'version': md.version('embkit-ti'), 'dunder': embkit.__version__,\n"
             "  'torch': importlib.util.find_spec('torch') is not None, 'read': embkit.read('sd1-demo.safetensors').name}))\n")
    out = json.loads(_run(py, "-c", probe, cwd=ROOT / "fixtures").stdout)
    assert out == {"file": str(site / "embkit" / "__init__.py"), "version": "0.1.0", "dunder": "0.1.0", "torch": False,
                   "read": "sd1-demo"}
    assert "embkit" not in linked and "embkit-ti" not in linked


def test_readme_and_docs_install_this_distribution():
    """The install lines name embkit-ti (plain ``pip install embkit`` installs someone else's
    project), and show both the CPU and the CUDA torch route."""
    readme = (ROOT / "README.md").read_text()
    install = (ROOT / "docs" / "install.md").read_text()
    for text in (readme, install):
        commands = "\n".join(re.findall(r"```(?:bash)?\n(.*?)```", text, re.S))  # what a reader copies
        assert not re.search(r"pip install ['\"]?embkit(?![-\w])", commands), "pip install embkit installs an unrelated project"
        assert 'pip install "embkit-ti' in commands
        assert "--index-url https://download.pytorch.org/whl/cpu" in text
        assert re.search(r"--index-url https://download.pytorch.org/whl/cu\d+", text)
    assert md.metadata(DIST)["Name"] == DIST
