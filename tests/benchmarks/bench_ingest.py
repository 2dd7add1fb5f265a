"""Benchmark: `embkit ingest` over 20,000 generated embedding files, on one machine and on Ray.

    python tests/benchmarks/bench_ingest.py [--files 20000] [--stage-sample 2000]
    python tests/benchmarks/bench_ingest.py --device cuda --model ./sd15 [--previews 64]

Measured in the same run, on the same files (in the page cache), each a fresh process with a
fresh output folder (start-up, imports, walking, reading, hashing, scanning, parsing, converting,
durable writes of objects, shards and manifests: everything):

* the local process pool with 1 and 2 workers (``-j 1``, ``-j 2``): the scaling curve;
* Ray Data on this machine (``--ray local -j N``: a private Ray instance with N CPUs, whose start
  is included) with 1 and 2 workers, its workers at the local pool's priority
  (``RAY_worker_niceness=0``; Ray's default, 15, yields the CPU to everything else on the machine);
* a re-run over the finished output (every file skipped by its SHA-256: the resume path);
* what a user would otherwise run for the same answers: ``embkit scan`` (verdicts), ``embkit
  library scan`` (records), ``embkit convert --to multi`` (safetensors copies) and ``embkit
  inspect --json`` (every host's status on every model family, the ``hosts`` of each row), one
  after the other, each a whole process with its own parallel workers.

Then the cost of each stage, in this process, on a sample of the files: read, scan, record,
convert (open, plan, write in memory, read back, compare), hosts (every host's verdict on every
model family), and each file's share of its batch's durable
commit (the objects by group commit, one JSONL shard), batches of the default size.

Each measurement is taken once per round (``--repeat``, default 2), rounds interleaved, the best
kept. What a private Ray costs before and after any work (start, planning, shutdown) is measured
apart, on one file: a cluster is running already when ``--ray auto`` joins it. Targets: local
-j 2 >= 1.3x local -j 1; Ray -j 2, its start excluded, >= 0.5x local -j 2 (Ray's scheduling cost,
bounded); ingest -j 2 >= 0.8x the four commands it replaces (it also reads every
conversion back and keeps a durable, resumable manifest); on 4 cores or more, Ray -j 2 >= 1.2x
Ray -j 1 (on 2, a 1-CPU Ray already runs its driver and daemons on the other core).

With a GPU (``--device cuda``, a real diffusers ``--model``): preview images per second for one
Ray actor holding the GPU (``--ray local --previews --gpus-per-actor 1``) against rendering the
same embeddings with one PreviewRenderer in one process (what a previews command does). Not run
by run_all.py without CUDA.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: What a user would otherwise run for the answers ingest gives (see the module docstring).
FOUR = "scan + library scan + convert + inspect"
sys.path.insert(0, str(HERE))


def timed(cmd: list[str], env: dict | None = None) -> tuple[float, float, str]:
    """(wall seconds, CPU seconds of the process and its children, stdout)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})})
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"command failed ({done.returncode}): {' '.join(cmd)}\n{done.stderr[-3000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), done.stdout


def ingest_cmd(tree: str, out: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "embkit", "ingest", tree, "-o", out, "--json", *extra]


def stage_costs(tree: str, sample: int, scratch: str) -> dict[str, float]:
    """Seconds per file of each stage, in this process, on ``sample`` files of the tree."""
    from embkit.ingest import steps
    from embkit.ingest.sources import discover

    items = discover([tree], scratch).items[:sample]
    costs = dict.fromkeys(("read", "scan", "record", "convert", "hosts", "write"), 0.0)
    datas = []
    t = time.perf_counter()
    for item in items:
        datas.append(steps.read_step(item)[0])
    costs["read"] = time.perf_counter() - t
    from embkit.scan import scan_bytes

    t = time.perf_counter()
    scans = [scan_bytes(data, item["path"]) for item, data in zip(items, datas)]
    costs["scan"] = time.perf_counter() - t
    t = time.perf_counter()
    for item, data in zip(items, datas):
        steps.record_step(item["path"], len(data), item["mtime_ns"], data, item["sidecar_key"], tuple(json.loads(item["present"])))
    costs["record"] = time.perf_counter() - t
    t = time.perf_counter()
    opened = []
    for item, data in zip(items, datas):
        loaded = steps.open_step(item["path"], data)[0]
        opened.append(loaded)
        if loaded is not None:
            steps.convert_step(loaded, scratch)
    costs["convert"] = time.perf_counter() - t  # the file opened once more, then converted and read back
    t = time.perf_counter()
    for loaded, data, scanned in zip(opened, datas, scans):
        if loaded is not None:
            steps.hosts_step(steps.host_facts(loaded, data, scanned))
    costs["hosts"] = time.perf_counter() - t
    from embkit.ingest.local import BATCH

    settings = steps.StepSettings(out=scratch)
    t = time.perf_counter()
    for i in range(0, len(items), BATCH):
        steps.process_batch(items[i : i + BATCH], settings)
    whole = time.perf_counter() - t
    costs["write"] = max(0.0, whole - sum(costs.values()))  # the objects, the shard, the durable commit
    return {k: v / len(items) for k, v in costs.items()} | {"whole batch": whole / len(items)}


def gpu_previews(args) -> None:
    """Preview images per second: one Ray actor on the GPU against one renderer in one process."""
    from bench_library import make_tree

    with tempfile.TemporaryDirectory(prefix="embkit-bench-") as tmp:
        tree = os.path.join(tmp, "tree")
        make_tree(tree, args.previews)
        import embkit
        from embkit.diffusers.previews import PreviewRenderer, PreviewSettings

        # SD1 embeddings (one CLIP-L slot): --model is an SD1.5-family folder; the others are
        # skipped by both sides alike
        embs = [e for p in sorted(Path(tree).rglob("*.*")) for e in embkit.read_all(p) if tuple(e.slots) == ("clip_l",)][: args.previews]
        renderer = PreviewRenderer(args.model, device="cuda", settings=PreviewSettings())
        renderer.render(embs[:1])  # warm-up
        t = time.perf_counter()
        renderer.render(embs)
        alone = len(embs) / (time.perf_counter() - t)
        wall, _, out = timed(ingest_cmd(tree, os.path.join(tmp, "out"), "--ray", "local", "--previews", "--model", args.model,
                                        "--device", "cuda", "--gpus-per-actor", "1"))
        made = json.loads(out)["previews"]
        print(f"one renderer in one process: {alone:.2f} images/s; one Ray GPU actor (whole run, start included): {made / wall:.2f} images/s")


def main() -> None:
    import installed

    installed.compile_embkit()  # as pip does at install: processes read bytecode, not source
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=20000)
    ap.add_argument("--stage-sample", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=2, help="rounds of every measurement; the best is kept")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="cuda: measure GPU previews instead")
    ap.add_argument("--model", help="with --device cuda: an SD1.5-family diffusers model folder")
    ap.add_argument("--previews", type=int, default=64, help="with --device cuda: embeddings to preview")
    args = ap.parse_args()
    if args.device == "cuda":
        if not args.model:
            sys.exit("--device cuda needs --model (a local diffusers folder)")
        gpu_previews(args)
        return
    try:
        import pyarrow  # noqa: F401
        import ray  # noqa: F401
    except ImportError:
        sys.exit("needs embkit-ti[ray]: pip install 'embkit-ti[ray]'")
    from bench_library import make_tree

    with tempfile.TemporaryDirectory(prefix="embkit-bench-") as tmp:
        tree = os.path.join(tmp, "embeddings")
        t = time.perf_counter()
        counts = make_tree(tree, args.files)
        print(f"generated {args.files} files in {time.perf_counter() - t:.1f} s: {counts}", flush=True)
        n = args.files
        one = os.path.join(tmp, "one")
        os.makedirs(one)
        first = sorted(Path(tree).rglob("*.safetensors"))[0]
        (Path(one) / first.name).write_bytes(first.read_bytes())
        runs = [("local -j 1", ["-j", "1"]), ("local -j 2", ["-j", "2"]), ("ray local -j 1", ["--ray", "local", "-j", "1"]), ("ray local -j 2", ["--ray", "local", "-j", "2"])]
        best: dict[str, float] = {}
        four = float("inf")
        manifests: dict[str, bytes] = {}
        # rounds: every measurement once per round, the best of the rounds kept (the machine is
        # shared: a measurement taken while something else runs is slower for no reason of its own)
        for r in range(args.repeat):
            for label, extra in runs:
                out = os.path.join(tmp, f"out{r}-" + label.replace(" ", "_"))
                # Ray runs its workers at nice 15 so that its own daemons come first; on a machine
                # shared with other work that alone halves their share of the CPU. The local pool
                # runs at nice 0, so the Ray workers do too here, for a fair comparison.
                wall, _cpu, stdout = timed(ingest_cmd(tree, out, *extra), env={"RAY_worker_niceness": "0"} if "--ray" in extra else None)
                doc = json.loads(stdout)
                assert doc["files"] == n and doc["counts"]["ok"] == n, doc
                best[label] = min(best.get(label, wall), wall)
                manifests[f"{r} {label}"] = open(os.path.join(out, "manifest.jsonl"), "rb").read()
                print(f"  round {r + 1}: {label:16} {wall:7.1f} s  {n / wall:7,.0f} files/s", flush=True)
            # what a private Ray costs before and after any work (start, planning, shutdown): a
            # run over one file; on a running cluster (--ray auto / ADDRESS) this is not paid
            wall, _, _ = timed(ingest_cmd(one, os.path.join(tmp, f"out{r}-ray-one"), "--ray", "local", "-j", "2"), env={"RAY_worker_niceness": "0"})
            best["ray local, one file"] = min(best.get("ray local, one file", wall), wall)
            print(f"  round {r + 1}: ray local, one file  {wall:7.1f} s", flush=True)
            wall, _, stdout = timed(ingest_cmd(tree, os.path.join(tmp, f"out{r}-local_-j_2"), "-j", "2"))
            assert json.loads(stdout)["reused"] == n
            best["re-run (all done)"] = min(best.get("re-run (all done)", wall), wall)
            total = 0.0
            for cmd in (["scan", "--json", tree], ["library", "scan", "--json", "--db", os.path.join(tmp, f"lib{r}.sqlite"), tree],
                        ["convert", tree, "-o", os.path.join(tmp, f"converted{r}"), "--to", "multi", "--json"], ["inspect", "--json", tree]):
                total += timed([sys.executable, "-m", "embkit", *cmd])[0]
            four = min(four, total)
            print(f"  round {r + 1}: {FOUR} {total:7.1f} s", flush=True)
        best[FOUR] = four
        same = len(set(manifests.values())) == 1
        scratch = os.path.join(tmp, "stages")
        os.makedirs(scratch)
        costs = stage_costs(tree, min(args.stage_sample, n), scratch)

        print(f"\n{'measurement (best of ' + str(args.repeat) + ')':34} {'seconds':>8} {'files/s':>10}")
        for label, wall in best.items():
            print(f"{label:34} {wall:8.1f} " + (f"{n / wall:10,.0f}" if "one file" not in label else f"{'-':>10}"))
        fixed = best["ray local, one file"]
        ray_net = n / max(best["ray local -j 2"] - fixed, 1e-9)
        print(f"{'ray local -j 2, its start excluded':34} {best['ray local -j 2'] - fixed:8.1f} {ray_net:10,.0f}")
        print(f"\nmanifests of every run identical: {same}")
        print("\ncost of each stage, one process, per file (µs):")
        for stage, seconds in costs.items():
            print(f"  {stage:12} {seconds * 1e6:9.0f}")
        local1, local2 = n / best["local -j 1"], n / best["local -j 2"]
        ray1, ray2 = n / best["ray local -j 1"], n / best["ray local -j 2"]
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        print("\nscaling (files/s, 1 → 2 workers):")
        print(f"  local pool  {local1:8,.0f} → {local2:8,.0f}  ({local2 / local1:.2f}x)")
        print(f"  Ray         {ray1:8,.0f} → {ray2:8,.0f}  ({ray2 / ray1:.2f}x)")
        print(f"\ningest -j 2 against the four commands it replaces: {best[FOUR] / best['local -j 2']:.2f}x")
        print("\ntargets:")
        checks = [
            ("local -j 2 >= 1.3x local -j 1", local2 / local1 >= 1.3),
            # a cluster is running already in real use: Ray's own start is measured apart
            ("Ray -j 2, its start excluded, >= 0.5x local -j 2", ray_net / local2 >= 0.5),
            # ingest also reads every conversion back and keeps a durable, resumable manifest
            ("ingest -j 2 >= 0.8x " + FOUR, best[FOUR] / best["local -j 2"] >= 0.8),
            ("every run wrote the same manifest", same),
        ]
        if cores >= 4:
            checks.append(("Ray -j 2 >= 1.2x Ray -j 1", ray2 / ray1 >= 1.2))
        else:  # a 1-CPU Ray already runs its driver and daemons on the other core
            print(f"  [not checked on {cores} cores] Ray -j 2 >= 1.2x Ray -j 1: Ray's own processes take the second core")
        for label, ok in checks:
            print(f"  [{'met' if ok else 'MISSED'}] {label}")
        print(f"\ncpus available: {len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()}, load average {os.getloadavg()[0]:.2f}")
        if not all(ok for _label, ok in checks):
            sys.exit(1)


if __name__ == "__main__":
    main()
