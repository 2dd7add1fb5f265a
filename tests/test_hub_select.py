"""``pull --repo-type`` and ``--include/--exclude`` (CLI and Python API) against the local fake Hub
(tests/hub_server.py), through the real huggingface_hub client in fresh processes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from safetensors.numpy import save as st_save

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hub_server import HubServer, run_client  # noqa: E402
from test_hub import concept_bin, fetched, pull_json, run, vectors  # noqa: E402

PACK = {
    "EasyNegative.safetensors": st_save({"emb_params": vectors(8, 768)}),
    "v2/neg-v2.safetensors": st_save({"emb_params": vectors(2, 768)}),
    "v2/old/neg-v2-old.safetensors": st_save({"emb_params": vectors(1, 768)}),
    "v2/model.ckpt.txt": b"not fetched",
    "v2/sample.jpg": b"\xff\xd8 not fetched",
    "cat/learned_embeds.bin": concept_bin("<cat>", vectors(1, 768)[0]),
    "cat/token_identifier.txt": b"<cat>",
    "cat/type_of_concept.txt": b"object",
    "README.md": b"a collection\n",
}


@pytest.fixture(scope="module")
def hub():
    srv = HubServer().start()
    srv.add_repo("someone/neg-collection", PACK, repo_type="dataset")
    srv.add_repo("someone/pack-model", PACK)
    yield srv
    srv.stop()


def test_a_dataset_repo_is_pulled_with_repo_type_dataset(hub, tmp_path):
    missing = run(hub, tmp_path, "pull", "someone/neg-collection")  # a model of that name does not exist
    assert missing.returncode == 12 and "not found" in missing.stderr
    out = tmp_path / "o"
    res = pull_json(hub, tmp_path, "someone/neg-collection", "--repo-type", "dataset", "-o", str(out))
    assert {r["filename"] for r in res} == {"EasyNegative.safetensors", "v2/neg-v2.safetensors",
                                            "v2/old/neg-v2-old.safetensors", "cat"}
    assert {r["repo_type"] for r in res} == {"dataset"}
    assert (out / "v2" / "neg-v2.safetensors").read_bytes() == PACK["v2/neg-v2.safetensors"]
    assert (out / "cat" / "token_identifier.txt").read_text() == "<cat>"
    assert hub.requests("GET", "/api/datasets/someone/neg-collection")
    assert hub.requests("HEAD", "/datasets/someone/neg-collection/resolve/")
    assert (tmp_path / "hub" / "datasets--someone--neg-collection").is_dir()
    bad = run(hub, tmp_path, "pull", "someone/neg-collection", "--repo-type", "space")
    assert bad.returncode == 2 and "space" in bad.stderr


def test_include_fetches_only_the_embeddings_it_names(hub, tmp_path):
    res = pull_json(hub, tmp_path, "someone/pack-model", "--include", "v2/*")
    assert sorted(r["filename"] for r in res) == ["v2/neg-v2.safetensors", "v2/old/neg-v2-old.safetensors"]
    assert fetched(hub, "someone/pack-model") == {"v2/neg-v2.safetensors", "v2/old/neg-v2-old.safetensors"}, \
        "nothing else under v2/ (samples, other files) was downloaded"


def test_exclude_and_include_combine(hub, tmp_path):
    res = pull_json(hub, tmp_path, "someone/pack-model", "--include", "v2/*", "--include", "*.bin", "--exclude", "v2/old/*")
    assert sorted(r["filename"] for r in res) == ["cat", "v2/neg-v2.safetensors"]
    [cat] = [r for r in res if r["filename"] == "cat"]
    assert cat["embeddings"][0]["name"] == "<cat>", "a concept folder's token file comes with its learned_embeds"
    res = pull_json(hub, tmp_path, "someone/pack-model", "--exclude", "v2/")
    assert sorted(r["filename"] for r in res) == ["EasyNegative.safetensors", "cat"]


def test_the_selection_holds_on_a_warm_cache(hub, tmp_path):
    """The cached snapshot holds every file of an earlier whole-repo pull; a later --include pull
    of the same commit still returns only what it selects (also offline)."""
    assert len(pull_json(hub, tmp_path, "someone/pack-model")) == 4
    [res] = pull_json(hub, tmp_path, "someone/pack-model", "--include", "Easy*", HF_HUB_OFFLINE="1")
    assert res["filename"] == "EasyNegative.safetensors"


def test_a_selection_that_matches_nothing_says_so(hub, tmp_path):
    proc = run(hub, tmp_path, "pull", "someone/pack-model", "--include", "nothing/*", "--exclude", "*.pt")
    assert proc.returncode == 12
    assert "no embedding files matching nothing/* outside *.pt" in " ".join(proc.stderr.split())


def test_python_api_repo_type_include_exclude_and_missing_file(hub, tmp_path):
    code = (
        "import json, embkit, embkit.hub as h\n"
        "out = {}\n"
        "r = h.pull('someone/neg-collection', repo_type='dataset', include=['*.safetensors'], exclude=['v2/old/*'])\n"
        "out['files'] = sorted((x.filename, x.repo_type) for x in r)\n"
        "try:\n"
        "    h.pull('someone/neg-collection', repo_type='dataset', filename='nope.safetensors')\n"
        "except FileNotFoundError as e:\n"
        "    out['missing'] = [type(e).__name__, isinstance(e, embkit.HubError), e.exit_code, str(e)]\n"
        "for bad in ({'repo_type': 'space'}, {'include': 'v2/*'}):\n"
        "    try:\n"
        "        h.pull('someone/neg-collection', **bad)\n"
        "    except (ValueError, TypeError) as e:\n"
        "        out.setdefault('bad', []).append(type(e).__name__)\n"
        "print(json.dumps(out))\n"
    )
    out = json.loads(run_client(hub, code, tmp_path).stdout)
    assert out["files"] == [["EasyNegative.safetensors", "dataset"], ["v2/neg-v2.safetensors", "dataset"]]
    name, is_hub_error, exit_code, message = out["missing"]
    assert (name, is_hub_error, exit_code) == ("HubEntryNotFoundError", True, 12)
    assert "someone/neg-collection" in message and "nope.safetensors" in message
    assert out["bad"] == ["ValueError", "TypeError"]
