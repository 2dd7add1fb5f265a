"""embkit ingest on a real Ray cluster: a head node and a worker node on this machine (1 CPU and
100 MB of object store each, a private temp dir), the CLI run with ``--ray 127.0.0.1:<port>``.

* the manifest of a run over a generated tree of 500+ files (every layout, unsafe, broken,
  duplicate files, links) equals the single-machine run's, row for row, and so do the objects;
* previews rendered by tiny-pipeline actors equal the single-machine previews pixel for pixel;
* a worker node killed while the run is under way: the run still completes (Ray re-runs the lost
  tasks) or, stopped, resumes; no row is missing or there twice.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ray")
pytest.importorskip("pyarrow")

import embkit  # noqa: E402
from embkit.ingest.manifest import from_table, read_manifest  # noqa: E402
from embkit.ingest.shards import shard_files  # noqa: E402
from ingest_tree import build_tree, canary_untouched  # noqa: E402
from ray_cluster import Cluster  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster():
    # the head starts while the tree is written; each test waits for the whole cluster
    with Cluster(cpus_per_node=1).launch(workers=1) as c:
        yield c


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    base = tmp_path_factory.mktemp("ingest-ray")
    return base / "uploads", build_tree(base / "uploads", 500, outside=base / "outside")


@pytest.fixture(scope="module")
def local(tree, tmp_path_factory):
    root, _ = tree
    return embkit.ingest([root], tmp_path_factory.mktemp("local") / "out", jobs=2)


def _cmd(cluster: Cluster, *args: str) -> list[str]:
    return [sys.executable, "-m", "embkit", "ingest", *args, "--ray", cluster.address, "--json"]


def _objects(out: Path) -> dict[str, str]:
    from embkit.atomic import is_temp

    found = {}
    for folder in ("objects", "previews"):
        for path in sorted((out / folder).rglob("*")):
            if path.is_file() and not is_temp(path.name):
                found[str(path.relative_to(out))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def test_the_cluster_writes_the_single_machine_manifest_row_for_row(cluster, tree, local, tmp_path):
    root, expect = tree
    assert len(expect) >= 500
    cluster.ready()
    out = tmp_path / "out"
    done = subprocess.run(_cmd(cluster, str(root), "-o", str(out)), capture_output=True, text=True, env=cluster.env, timeout=300)
    assert done.returncode == 5, done.stderr[-3000:]  # the walk rule: the tree holds unsafe files
    summary = json.loads(done.stdout)
    assert summary["exit_code"] == local.exit_code == 5 and summary["ignored"] == local.to_dict()["ignored"]
    assert summary["mode"] == f"ray ({cluster.address})" and summary["files"] == len(expect)
    rows = read_manifest(out)
    assert rows == local.rows  # sorted by path, row for row
    import pyarrow.parquet as pq

    assert from_table(pq.read_table(out / "manifest.parquet")) == local.rows
    assert _objects(out) == _objects(Path(local.out))
    assert {r["status"] for r in rows} == {"ok", "unconverted", "unsafe", "broken", "skipped"}
    assert canary_untouched(root.parent / "outside")


def test_previews_from_actors_equal_the_single_machine_previews_pixel_for_pixel(cluster, tree, tmp_path):
    root, expect = tree
    cluster.ready()
    src = tmp_path / "src"
    src.mkdir()
    kinds = ("a1111_", "lora_")  # three embeddings (a bundle holds two), one tiny pipeline
    for kind in kinds:
        path = Path(next(p for p, s in sorted(expect.items()) if s == "ok" and os.path.basename(p).startswith(kind)))
        (src / path.name).write_bytes(path.read_bytes())
    # a CPU render depends on the thread count (float sums in another order): each Ray actor
    # has 1 CPU, so 1 thread; the single-machine run is given the same
    env = {**cluster.env, "OMP_NUM_THREADS": "1"}
    single = tmp_path / "single"
    done = subprocess.run([sys.executable, "-m", "embkit", "ingest", str(src), "-o", str(single), "--previews", "-j", "1", "--json"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    actors = tmp_path / "actors"
    done = subprocess.run(_cmd(cluster, str(src), "-o", str(actors), "--previews", "--actors", "1", "--gpus-per-actor", "0"),
                          capture_output=True, text=True, env=cluster.env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    a, b = read_manifest(single), read_manifest(actors)
    assert a == b
    made = [p for r in a for p in r["previews"] if p["path"]]
    assert len(made) >= len(kinds)
    from PIL import Image

    for p in made:
        x = np.asarray(Image.open(single / p["path"]))
        y = np.asarray(Image.open(actors / p["path"]))
        assert x.shape == y.shape and np.array_equal(x, y)


def test_a_worker_node_killed_mid_run_loses_no_row(cluster, tree, local, tmp_path):
    root, expect = tree
    cluster.ready()
    sources = [str(root / f"set{i:02d}") for i in range(6)] + [str(root / "uploads")]
    want = [r for r in local.rows if any(r["path"].startswith(s + os.sep) for s in sources)]
    out = tmp_path / "out"
    log = open(tmp_path / "run.log", "w")
    proc = subprocess.Popen(_cmd(cluster, *sources, "-o", str(out), "--batch-size", "2"), stdout=subprocess.PIPE, stderr=log, text=True, env=cluster.env)
    deadline = time.monotonic() + 120
    while len(shard_files(str(out))) < 10 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before the node could be killed"
    cluster.kill(cluster.nodes[1])  # the worker node, with whatever tasks it was running
    stdout, _ = proc.communicate(timeout=300)
    log.close()
    # a finished run exits 5 (uploads/evil holds unsafe files: the walk rule); a stopped one 1
    if proc.returncode != 5:  # stopped: the same command resumes
        assert not (out / "manifest.jsonl").exists()
        again = subprocess.run(_cmd(cluster, *sources, "-o", str(out)), capture_output=True, text=True, env=cluster.env, timeout=300)
        assert again.returncode == 5, again.stderr[-3000:]
        stdout = again.stdout
        assert json.loads(stdout)["reused"] > 0
    assert json.loads(stdout)["files"] == len(want) > 250
    rows = read_manifest(out)
    paths = [r["path"] for r in rows]
    assert len(paths) == len(set(paths)) == len(want)
    # a link stays inside its own SOURCE: uploads/alias leads into set00, another SOURCE now
    alias = str(root / "uploads" / "alias.safetensors")
    assert next(r for r in rows if r["path"] == alias)["error_code"] == "link-outside"
    assert [{**r, "source": None} for r in rows if r["path"] != alias] == [{**r, "source": None} for r in want if r["path"] != alias]
    assert {r["source"] for r in rows} == set(sources)
