"""Benchmark: the README's main command, ``embkit verify fixtures/sd1-demo.safetensors --render -o sheet.png``.

It runs the command as a user does (a fresh process: imports included) and prints its wall time and
the split the command itself reports: importing torch and diffusers, building the pipeline,
rendering (the conditioning passes, and per seed the image before and after),
and writing the sheet. In the same run it does the same render with plain diffusers, as a script
would: ``StableDiffusionPipeline.from_single_file`` on the same tiny SD1 pipeline saved as a
single-file checkpoint (with a local config folder: offline), ``load_textual_inversion`` of the same
file, and two calls (before, after) at the same size, steps and seed. The diffusers script runs
twice: with torch's default threads (what a user gets) and with one thread (as embkit renders the
tiny pipeline: on a busy two-core machine two threads wait on each other).

Targets: the command under 10 s, and within 1.5x of the one-thread diffusers script (embkit also
validates, measures the conditioning and draws the sheet). Best of ``--repeat`` runs each. Most of
the command's time is importing torch and diffusers, which a busy machine slows several-fold: when
the load average was above the CPU count during the runs, the 10 s target is reported but not
judged, and the ratio (measured under the same load) decides.

    python tests/benchmarks/bench_render.py [--repeat 2]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "fixtures" / "sd1-demo.safetensors"
TARGET_SECONDS = 10.0
TARGET_RATIO = 1.5

PLAIN = r'''
import json, sys, time
t0 = time.perf_counter()
import torch
from diffusers import StableDiffusionPipeline
from transformers import CLIPTokenizer
t1 = time.perf_counter()
if sys.argv[4] == "1":
    torch.set_num_threads(1)
tok = CLIPTokenizer.from_pretrained(sys.argv[2], model_max_length=77)
pipe = StableDiffusionPipeline.from_single_file(sys.argv[1], config=sys.argv[2] + "/..", local_files_only=True, tokenizer=tok,
                                                safety_checker=None, feature_extractor=None, requires_safety_checker=False)
pipe.set_progress_bar_config(disable=True)
t2 = time.perf_counter()
kw = dict(num_inference_steps=4, height=64, width=64, output_type="np")
before = pipe("a photo, sd1-demo", generator=torch.Generator().manual_seed(0), **kw).images[0]
pipe.load_textual_inversion(sys.argv[3], token="sd1-demo")
after = pipe("a photo, sd1-demo", generator=torch.Generator().manual_seed(0), **kw).images[0]
t3 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "build": t2 - t1, "render": t3 - t2}))
'''


def _setup(folder: Path) -> tuple[Path, Path]:
    """The built-in tiny SD1 pipeline as a single-file checkpoint, and its config folder (with the tokenizer)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from singlefile_fixtures import tiny_single_file, write_clip_vocab

    from embkit.model.configs import write_config_folder

    ckpt = folder / "tiny-sd1.safetensors"
    _pipe, configs = tiny_single_file("sd1", ckpt)
    config = write_config_folder(str(folder / "config"), configs)
    write_clip_vocab(Path(config) / "tokenizer", 1190)
    return ckpt, Path(config) / "tokenizer"


def _embkit(folder: Path) -> tuple[float, dict]:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "embkit", "verify", str(DEMO), "--render", "-o", str(folder / "sheet.png")],
                          capture_output=True, text=True, cwd=folder, env={**os.environ, "COLUMNS": "200"})
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"embkit failed ({proc.returncode}): {proc.stderr[-2000:]}")
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("time: "))
    return wall, {k: float(v) for k, v in re.findall(r"(\w+) ([\d.]+) s", line)}


def _plain(ckpt: Path, tokenizer: Path, threads: str) -> tuple[float, dict]:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", PLAIN, str(ckpt), str(tokenizer), str(DEMO), threads], capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error", "DIFFUSERS_VERBOSITY": "error"})
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"diffusers script failed: {proc.stderr[-2000:]}")
    return wall, json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    import installed

    installed.compile_embkit()  # as pip does at install: processes read bytecode, not source
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-render-") as tmp:
        folder = Path(tmp)
        ckpt, tokenizer = _setup(folder)
        runs = {"embkit": [], "diffusers": [], "diffusers-1-thread": []}
        load = os.getloadavg()[0]
        for _ in range(args.repeat):  # interleaved, so a burst of load elsewhere hits all three alike
            runs["embkit"].append(_embkit(folder))
            runs["diffusers"].append(_plain(ckpt, tokenizer, "default"))
            runs["diffusers-1-thread"].append(_plain(ckpt, tokenizer, "1"))
        load = max(load, os.getloadavg()[0])
    best = {name: min(results, key=lambda r: r[0]) for name, results in runs.items()}
    busy = load > (os.cpu_count() or 1)
    print(f"load average up to {load:.1f} on {os.cpu_count()} CPUs{' (busy)' if busy else ''}; best of {args.repeat}")
    for name, (wall, split) in best.items():
        parts = " · ".join(f"{k} {v:.2f} s" for k, v in split.items())
        print(f"  {name:<19} {wall:6.2f} s wall   ({parts})")
    wall = best["embkit"][0]
    ratio = wall / best["diffusers-1-thread"][0]
    print(f"embkit / diffusers (one thread): {ratio:.2f}x; embkit / diffusers (default threads): {wall / best['diffusers'][0]:.2f}x")
    missed = []
    if wall > TARGET_SECONDS and busy:
        print(f"the command took {wall:.1f} s: the {TARGET_SECONDS:.0f} s target is not judged on a busy machine")
    elif wall > TARGET_SECONDS:
        missed.append(f"the command took {wall:.1f} s (target {TARGET_SECONDS:.0f} s)")
    if ratio > TARGET_RATIO:
        missed.append(f"{ratio:.2f}x the diffusers script (target {TARGET_RATIO}x)")
    print("target met" if not missed else "target missed: " + "; ".join(missed))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
