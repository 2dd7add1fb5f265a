"""Reading, probing and inspecting never import torch, diffusers or transformers."""

from __future__ import annotations

import json
import subprocess
import sys

import makers as mk

HEAVY = ("torch", "diffusers", "transformers")

SCRIPT = r"""
import json, sys
import embkit
from embkit.report import inspect_paths
for p in sys.argv[1:]:
    embkit.read_all(p)
    embkit.probe(p)
inspect_paths(sys.argv[1:])
from embkit.cli.main import main
try:
    main(["inspect", "--json", *sys.argv[1:]])
except SystemExit:
    pass
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "diffusers", "transformers"))
sys.stderr.write("HEAVY=" + json.dumps(heavy) + "\n")
"""


def test_no_heavy_imports(tmp_path, corpus):
    files = [
        mk.a1111_pt(tmp_path / "a.pt", mk.vectors(2, 768)),
        mk.multi_file(tmp_path / "m.safetensors", {"clip_l": mk.vectors(1, 768), "clip_g": mk.vectors(1, 1280)}),
        mk.image_card_text_only(tmp_path / "c.png", mk.vectors(1, 768), "c"),
        corpus / "test_embedding.png",
        corpus / "rummd",
    ]
    proc = subprocess.run([sys.executable, "-c", SCRIPT, *map(str, files)], capture_output=True, text=True, timeout=120)
    line = [ln for ln in proc.stderr.splitlines() if ln.startswith("HEAVY=")]
    assert line, proc.stderr
    assert json.loads(line[0][6:]) == []
    assert json.loads(proc.stdout)[0]["name"] == "a"


def test_import_embkit_is_light():
    code = "import embkit, sys; print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch','diffusers','transformers','PIL','rich','click')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
