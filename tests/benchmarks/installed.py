"""Time embkit as a user runs it: installed, its modules compiled to bytecode.

``pip install`` compiles a package's modules when it installs them, so a user's ``embkit`` process
reads ``.pyc`` files. A checkout run where ``PYTHONDONTWRITEBYTECODE`` is set (this project's CI
and dev machines set it) compiles every embkit module again in every process: 30-50 ms of a
~150 ms ``embkit inspect``, which the torch side, installed and compiled, never pays. The
benchmarks that time whole processes call :func:`compile_embkit` first.
"""

from __future__ import annotations

import compileall
import os


def compile_embkit() -> None:
    """Write the ``__pycache__`` of the embkit being benchmarked, as pip does at install
    (``py_compile`` writes it whatever ``PYTHONDONTWRITEBYTECODE`` says; Python then reads it)."""
    import embkit

    compileall.compile_dir(os.path.dirname(embkit.__file__), quiet=1)
