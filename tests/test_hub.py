"""``embkit pull`` against a local fake Hub (tests/hub_server.py) with the real huggingface_hub client.

Each command runs as ``python -m embkit`` in a fresh process whose ``HF_ENDPOINT`` points at the fake
Hub and whose ``HF_HOME`` is a fresh folder, so the client's cache, offline mode and retries are the
real ones. Files are written the way the tools that publish them write them (torch.save for the
sd-concepts-library and A1111 files, safetensors for the rest).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save as st_save

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hub_server import READ_TOKEN, HubServer, run_client  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RNG = np.random.default_rng(9)


# -- files as the publishing tools write them ---------------------------------------------------------
def torch_bytes(obj) -> bytes:
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def concept_bin(token: str, values: np.ndarray) -> bytes:
    """diffusers' textual_inversion.py: torch.save({token: tensor}) as learned_embeds.bin."""
    import torch

    return torch_bytes({token: torch.from_numpy(values)})


def a1111_pt(name: str, values: np.ndarray) -> bytes:
    import torch

    return torch_bytes({"string_to_token": {"*": 265}, "string_to_param": {"*": torch.from_numpy(values)},
                        "name": name, "step": 500, "sd_checkpoint": None, "sd_checkpoint_name": None})


def vectors(n: int, width: int) -> np.ndarray:
    return RNG.standard_normal((n, width)).astype(np.float32) * 0.02


EASY = vectors(8, 768)
CAT = vectors(1, 768)[0]
SDXL_L, SDXL_G = vectors(2, 768), vectors(2, 1280)
FILES = {
    "sd-concepts-library/cat-toy": {
        "learned_embeds.bin": concept_bin("<cat-toy>", CAT),
        "token_identifier.txt": b"<cat-toy>",
        "type_of_concept.txt": b"object",
        "README.md": b"# cat toy\n",
        "concept_images/0.jpeg": b"\xff\xd8 not really a jpeg",
    },
    "someone/easy-negative": {
        "EasyNegative.safetensors": st_save({"emb_params": EASY}),
        "README.md": b"negative\n",
    },
    "someone/pack": {
        "bad-hands.pt": a1111_pt("bad-hands", vectors(2, 768)),
        "xl/style-xl.safetensors": st_save({"clip_l": SDXL_L, "clip_g": SDXL_G}),
        "other.safetensors": st_save({"<other>": vectors(3, 768)}, metadata={"format": "pt"}),
        "notes.txt": b"three embeddings\n",
    },
}


@pytest.fixture(scope="module")
def hub():
    srv = HubServer().start()
    for repo_id, files in FILES.items():
        srv.add_repo(repo_id, files)
    srv.add_repo("org/gated-emb", {"gated.safetensors": st_save({"emb_params": vectors(4, 768)})}, gated=True)
    yield srv
    srv.stop()


def run(hub: HubServer, home: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """``python -m embkit ARGS`` with the client pointed at the fake Hub and its cache in ``home``."""
    full = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    full.update({"HF_ENDPOINT": hub.endpoint, "HF_HOME": str(home), "HF_HUB_DISABLE_TELEMETRY": "1",
                 "EMBKIT_LIBRARY": str(home / "library.db")})
    full.update(env)
    return subprocess.run([sys.executable, "-m", "embkit", *args], capture_output=True, text=True, cwd=home,
                          env=full, timeout=120)


def pull_json(hub: HubServer, home: Path, *args: str, **env: str) -> list[dict]:
    proc = run(hub, home, "pull", *args, "--json", **env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def fetched(hub: HubServer, repo_id: str) -> set[str]:
    """Files of a repo the client downloaded (GET on resolve, or on the CDN after a resolve redirect)."""
    names = set()
    for r in hub.requests("HEAD", f"/{repo_id}/resolve/"):
        names.add(r["path"].split("/resolve/", 1)[1].split("/", 1)[1])
    return names


# -- layouts -------------------------------------------------------------------------------------------
def test_sd_concepts_repo_is_read_as_one_concept_folder(hub, tmp_path):
    out = tmp_path / "emb"
    [res] = pull_json(hub, tmp_path, "sd-concepts-library/cat-toy", "-o", str(out))
    assert res["format"] == "concept-folder"
    assert res["filename"] == "."
    assert [e["name"] for e in res["embeddings"]] == ["<cat-toy>"]
    assert res["embeddings"][0]["slots"] == {"clip_l": {"vectors": 1, "dim": 768}}
    folder = out / "cat-toy"
    assert res["path"] == str(folder)
    assert (folder / "learned_embeds.bin").read_bytes() == FILES["sd-concepts-library/cat-toy"]["learned_embeds.bin"]
    assert (folder / "token_identifier.txt").read_text() == "<cat-toy>"
    assert (folder / "type_of_concept.txt").read_text() == "object"
    # only what embkit reads was downloaded: no README, no concept images
    assert fetched(hub, "sd-concepts-library/cat-toy") == {"learned_embeds.bin", "token_identifier.txt", "type_of_concept.txt"}
    import embkit

    emb = embkit.read(folder)
    assert emb.name == "<cat-toy>" and np.array_equal(emb.vectors["clip_l"][0], CAT)


def test_single_file_repo(hub, tmp_path):
    [res] = pull_json(hub, tmp_path, "someone/easy-negative", "-o", str(tmp_path / "out"))
    assert (res["filename"], res["format"]) == ("EasyNegative.safetensors", "kohya")
    assert res["embeddings"][0]["name"] == "EasyNegative"
    assert res["embeddings"][0]["slots"]["clip_l"] == {"vectors": 8, "dim": 768}
    copied = tmp_path / "out" / "EasyNegative.safetensors"
    assert copied.read_bytes() == FILES["someone/easy-negative"]["EasyNegative.safetensors"]
    assert len(res["commit"]) == 40


def test_without_output_folder_the_file_stays_in_the_hf_cache(hub, tmp_path):
    [res] = pull_json(hub, tmp_path, "someone/easy-negative")
    assert Path(res["path"]).is_relative_to(tmp_path / "hub")
    assert f"/snapshots/{res['commit']}/" in res["path"]


def test_repo_with_several_embeddings(hub, tmp_path):
    res = pull_json(hub, tmp_path, "someone/pack", "-o", str(tmp_path / "out"))
    by_file = {r["filename"]: r for r in res}
    assert set(by_file) == {"bad-hands.pt", "other.safetensors", "xl/style-xl.safetensors"}
    assert by_file["bad-hands.pt"]["format"] == "a1111"
    assert by_file["other.safetensors"]["embeddings"][0]["name"] == "<other>"
    xl = by_file["xl/style-xl.safetensors"]["embeddings"][0]
    assert (xl["family"], sorted(xl["slots"])) == ("sdxl", ["clip_g", "clip_l"])
    assert (tmp_path / "out" / "xl" / "style-xl.safetensors").is_file()
    assert "notes.txt" not in fetched(hub, "someone/pack")


def test_one_file_of_a_repo(hub, tmp_path):
    before = len(hub.requests("HEAD", "/someone/pack/resolve/"))
    [res] = pull_json(hub, tmp_path, "someone/pack", "--file", "xl/style-xl.safetensors")
    assert res["filename"] == "xl/style-xl.safetensors"
    heads = hub.requests("HEAD", "/someone/pack/resolve/")[before:]
    assert [h["path"].rsplit("/", 2)[-2:] for h in heads] == [["xl", "style-xl.safetensors"]]


def test_human_output_names_trigger_family_and_destination(hub, tmp_path):
    proc = run(hub, tmp_path, "pull", "someone/easy-negative", "-o", str(tmp_path / "o"))
    assert proc.returncode == 0, proc.stderr
    assert "EasyNegative" in proc.stdout and "kohya" in proc.stdout and "sd1" in proc.stdout


# -- revisions and cache ---------------------------------------------------------------------------------
def test_revision_branch_tag_and_commit(hub, tmp_path):
    old, new = vectors(1, 768), vectors(2, 768)
    first = hub.add_repo("someone/evolving", {"evolving.safetensors": st_save({"emb_params": old})})
    hub.tag("someone/evolving", "v1", first)
    hub.state.commit("someone/evolving", {"evolving.safetensors": st_save({"emb_params": new})}, message="retrain")
    latest = pull_json(hub, tmp_path, "someone/evolving")[0]
    assert latest["embeddings"][0]["slots"]["clip_l"]["vectors"] == 2
    for rev in ("v1", first):
        [res] = pull_json(hub, tmp_path, "someone/evolving", "--revision", rev)
        assert res["commit"] == first
        assert res["embeddings"][0]["slots"]["clip_l"]["vectors"] == 1
    proc = run(hub, tmp_path, "pull", "someone/evolving", "--revision", "v9")
    assert proc.returncode == 12
    assert "someone/evolving" in proc.stderr and "v9" in proc.stderr


def test_offline_mode_with_a_warm_cache(hub, tmp_path):
    online = pull_json(hub, tmp_path, "someone/pack")
    seen = len(hub.state.log)
    offline = pull_json(hub, tmp_path, "someone/pack", "-o", str(tmp_path / "o"), HF_HUB_OFFLINE="1")
    assert len(hub.state.log) == seen, "offline mode must not touch the network"
    assert sorted(r["filename"] for r in offline) == sorted(r["filename"] for r in online)
    assert (tmp_path / "o" / "bad-hands.pt").read_bytes() == FILES["someone/pack"]["bad-hands.pt"]


def test_offline_mode_with_a_cold_cache_is_a_clear_error(hub, tmp_path):
    proc = run(hub, tmp_path, "pull", "someone/pack", HF_HUB_OFFLINE="1")
    assert proc.returncode == 12
    assert "offline" in proc.stderr and "someone/pack" in proc.stderr


# -- failures ---------------------------------------------------------------------------------------------
def test_missing_repo_is_404(hub, tmp_path):
    proc = run(hub, tmp_path, "pull", "nobody/nothing")
    assert proc.returncode == 12, proc.stderr
    assert "nobody/nothing" in proc.stderr and "not found" in proc.stderr and "404" in proc.stderr


def test_missing_file_names_the_file(hub, tmp_path):
    proc = run(hub, tmp_path, "pull", "someone/pack", "--file", "nope.safetensors")
    assert proc.returncode == 12
    assert "someone/pack" in proc.stderr and "nope.safetensors" in proc.stderr


def test_gated_repo(hub, tmp_path):
    proc = run(hub, tmp_path, "pull", "org/gated-emb", "-o", str(tmp_path / "o"))
    assert proc.returncode == 12
    assert "org/gated-emb" in proc.stderr and "gated" in proc.stderr and "401" in proc.stderr
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())
    wrong = run(hub, tmp_path, "pull", "org/gated-emb", HF_TOKEN="hf_not_allowed")
    assert wrong.returncode == 12 and "403" in wrong.stderr
    [res] = pull_json(hub, tmp_path, "org/gated-emb", HF_TOKEN=READ_TOKEN)
    assert res["embeddings"][0]["slots"]["clip_l"]["vectors"] == 4
    # the token goes to the Hub, never to the CDN the download is redirected to
    assert all(r["auth"] is None for r in hub.state.log if r["role"] == "cdn")
    assert any(r["auth"] == f"Bearer {READ_TOKEN}" for r in hub.requests("HEAD", "/org/gated-emb/"))


def hf_version() -> tuple[int, ...]:
    import huggingface_hub

    return tuple(int(p) for p in huggingface_hub.__version__.split(".")[:2])


@pytest.mark.skipif(hf_version() < (1, 20), reason="huggingface_hub resumes a broken download within the same call "
                    "since 1.20; older clients fail the call (run again: the cache resumes)")
def test_interrupted_download_is_resumed(hub, tmp_path):
    data = st_save({"emb_params": vectors(6, 768)})
    hub.add_repo("someone/flaky", {"flaky.safetensors": data})
    hub.interrupt("someone/flaky", "flaky.safetensors", "once")
    digest = hashlib.sha256(data).hexdigest()
    [res] = pull_json(hub, tmp_path, "someone/flaky", "-o", str(tmp_path / "o"))
    assert len(hub.requests("GET", f"/cdn/{digest}")) == 2
    assert (tmp_path / "o" / "flaky.safetensors").read_bytes() == data
    assert res["embeddings"][0]["slots"]["clip_l"]["vectors"] == 6


def test_download_that_keeps_failing_is_a_hub_error_and_leaves_nothing(hub, tmp_path):
    hub.add_repo("someone/broken", {"broken.safetensors": st_save({"emb_params": vectors(6, 768)})})
    hub.interrupt("someone/broken", "broken.safetensors", "always")
    out = tmp_path / "o"
    proc = run(hub, tmp_path, "pull", "someone/broken", "-o", str(out))
    assert proc.returncode == 12, proc.stderr
    assert "someone/broken" in proc.stderr and "interrupted" in proc.stderr
    if hf_version() >= (1, 0):  # snapshot_download(dry_run=True) names the missing files since 1.0
        assert "broken.safetensors" in proc.stderr
    assert not out.exists() or not any(out.rglob("*"))
    leftovers = [p for p in (tmp_path / "hub").rglob("*") if p.is_file() and p.stat().st_size > 0 and "blobs" in p.parts]
    assert leftovers == [], "no partial blob may stay in the cache"


def test_repo_without_embeddings(hub, tmp_path):
    hub.add_repo("someone/text-only", {"README.md": b"hi", "notes.txt": b"x"})
    proc = run(hub, tmp_path, "pull", "someone/text-only")
    assert proc.returncode == 12
    assert "someone/text-only" in proc.stderr and "no embedding files" in proc.stderr


def test_a_broken_file_is_reported_and_the_others_still_pulled(hub, tmp_path):
    hub.add_repo("someone/mixed", {"good.safetensors": st_save({"emb_params": vectors(1, 768)}), "bad.pt": b"PK\x03\x04 truncated"})
    proc = run(hub, tmp_path, "pull", "someone/mixed", "--json")
    assert proc.returncode != 0
    res = {r["filename"]: r for r in json.loads(proc.stdout)}
    assert "error" in res["bad.pt"] and "error" not in res["good.safetensors"]


@pytest.mark.parametrize("bad", ["../escape.safetensors", "/".join(["d"] * 40) + "/deep.safetensors", "x" * 300 + ".safetensors"])
def test_a_hostile_file_name_is_skipped_with_its_own_error(hub, tmp_path, bad):
    """huggingface_hub refuses a '..' name and the file system a name too long: either stopped
    the whole pull with a traceback. Now that file alone is skipped, with an error naming it."""
    repo = f"someone/names-{abs(hash(bad)) % 10**6}"
    hub.add_repo(repo, {"good.safetensors": st_save({"emb_params": vectors(1, 768)}), bad: st_save({"emb_params": vectors(1, 768)})})
    out = tmp_path / "out"
    proc = run(hub, tmp_path, "pull", repo, "--json", "-o", str(out))
    assert "Traceback" not in proc.stderr and proc.returncode == 5, proc.stderr[-800:]
    res = {r["filename"]: r for r in json.loads(proc.stdout)}
    assert "error" not in res["good.safetensors"] and (out / "good.safetensors").is_file()
    assert res[bad]["error"]["code"] == "unsafe-file" and "skipped" in res[bad]["error"]["message"]
    assert bad not in fetched(hub, repo)
    assert not (tmp_path / "escape.safetensors").exists()


def test_existing_different_file_is_not_replaced_without_overwrite(hub, tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "EasyNegative.safetensors").write_bytes(b"mine")
    proc = run(hub, tmp_path, "pull", "someone/easy-negative", "-o", str(out))
    assert proc.returncode == 9 and (out / "EasyNegative.safetensors").read_bytes() == b"mine"
    proc = run(hub, tmp_path, "pull", "someone/easy-negative", "-o", str(out), "--overwrite")
    assert proc.returncode == 0, proc.stderr
    assert (out / "EasyNegative.safetensors").read_bytes() == FILES["someone/easy-negative"]["EasyNegative.safetensors"]


# -- convert, library, torch-free -----------------------------------------------------------------------
def test_convert_writes_safetensors(hub, tmp_path):
    out = tmp_path / "o"
    res = pull_json(hub, tmp_path, "sd-concepts-library/cat-toy", "-o", str(out), "--convert")
    assert res[0]["converted"] == [str(out / "cat-toy.safetensors")]
    import embkit

    emb = embkit.read(out / "cat-toy.safetensors")
    assert emb.name == "<cat-toy>" and np.array_equal(emb.vectors["clip_l"][0], CAT)
    assert not (out / "cat-toy").exists(), "convert writes the safetensors file instead of copying the folder"


def test_library_flag_adds_to_the_library(hub, tmp_path):
    db = tmp_path / "lib.db"
    out = tmp_path / "o"
    pull_json(hub, tmp_path, "someone/pack", "-o", str(out), "--library", "--db", str(db))
    import embkit

    with embkit.Library(db) as lib:
        names = sorted(e.name for e in lib.search())
    assert "bad-hands" in names and "<other>" in names


def test_pull_does_not_import_torch(hub, tmp_path):
    code = ("import sys, embkit.hub as h; r = h.pull('someone/pack');"
            "print(len(r), [m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules])")
    proc = run_client(hub, code, tmp_path)
    assert proc.stdout.split() == ["3", "[]"]


def test_validation_errors_fail_the_pull(hub, tmp_path):
    bad = vectors(2, 768)
    bad[1, 5] = np.nan
    hub.add_repo("someone/nan", {"nan.safetensors": st_save({"emb_params": bad})})
    proc = run(hub, tmp_path, "pull", "someone/nan", "--json")
    assert proc.returncode == 7, proc.stderr
    [res] = json.loads(proc.stdout)
    assert any(f["code"] == "nan-inf" and f["severity"] == "error" for f in res["findings"])


def test_unreachable_hub_with_a_cold_cache(hub, tmp_path):
    import socket

    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = run(hub, tmp_path, "pull", "someone/pack", HF_ENDPOINT=f"http://127.0.0.1:{port}")
    assert proc.returncode == 12, proc.stderr
    assert "cannot reach the Hub" in proc.stderr and "someone/pack" in proc.stderr


def test_file_option_on_a_concept_repo_brings_its_text_files(hub, tmp_path):
    [res] = pull_json(hub, tmp_path, "sd-concepts-library/cat-toy", "--file", "learned_embeds.bin")
    assert res["format"] == "concept-folder"
    assert res["embeddings"][0]["name"] == "<cat-toy>"


def test_invalid_repo_id(hub, tmp_path):
    proc = run(hub, tmp_path, "pull", "not a/valid repo!")
    assert proc.returncode == 12, proc.stderr
    assert "not a valid Hub repo id" in proc.stderr and "Traceback" not in proc.stderr


# -- regressions ------------------------------------------------------------------------------------------
DUPS = {
    "a/dup.safetensors": st_save({"emb_params": vectors(2, 768)}),
    "b/dup.safetensors": st_save({"emb_params": vectors(3, 768)}),
    "b/same.pt": a1111_pt("same", vectors(1, 768)),
    "b/same.safetensors": st_save({"emb_params": vectors(4, 768)}),
}


def test_convert_keeps_the_repo_tree(hub, tmp_path):
    """Regression: --convert wrote every embedding straight into -o, so a/dup and b/dup collided
    (exit 9 into an empty folder, nothing printed, even with --json)."""
    hub.add_repo("someone/dups", {k: v for k, v in DUPS.items() if "dup" in k})
    out = tmp_path / "o"
    res = pull_json(hub, tmp_path, "someone/dups", "-o", str(out), "--convert")
    assert {r["filename"]: r["converted"] for r in res} == {
        "a/dup.safetensors": [str(out / "a" / "dup.safetensors")], "b/dup.safetensors": [str(out / "b" / "dup.safetensors")]}
    import embkit

    assert embkit.read(out / "a" / "dup.safetensors").vectors["clip_l"].shape[0] == 2
    assert embkit.read(out / "b" / "dup.safetensors").vectors["clip_l"].shape[0] == 3


@pytest.mark.parametrize("overwrite", [False, True])
def test_convert_never_lets_one_pulled_file_replace_another(hub, tmp_path, overwrite):
    """b/same.pt and b/same.safetensors both convert to b/same.safetensors: the second is reported
    (exit 9, in --json too) and the first kept, --overwrite or not."""
    hub.add_repo("someone/same-stem", {k: v for k, v in DUPS.items() if "same" in k})
    out = tmp_path / "o"
    proc = run(hub, tmp_path, "pull", "someone/same-stem", "-o", str(out), "--convert", "--json",
               *(["--overwrite"] if overwrite else []))
    assert proc.returncode == 9, proc.stderr
    res = {r["filename"]: r for r in json.loads(proc.stdout)}
    assert res["b/same.pt"]["converted"] == [str(out / "b" / "same.safetensors")] and "error" not in res["b/same.pt"]
    lost = res["b/same.safetensors"]
    assert lost["error"]["code"] == "write-failed" and "b/same.pt" in lost["error"]["message"]
    assert lost["embeddings"][0]["slots"]["clip_l"]["vectors"] == 4, "what was read is still reported"
    import embkit

    assert embkit.read(out / "b" / "same.safetensors").name == "same"
    human = run(hub, tmp_path, "pull", "someone/same-stem", "-o", str(tmp_path / "h"), "--convert")
    assert human.returncode == 9 and "b/same.safetensors" in human.stdout and "not written" in human.stdout


def test_a_file_that_exists_is_reported_in_json(hub, tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "EasyNegative.safetensors").write_bytes(b"mine")
    proc = run(hub, tmp_path, "pull", "someone/easy-negative", "-o", str(out), "--json")
    assert proc.returncode == 9
    [res] = json.loads(proc.stdout)
    assert res["error"]["code"] == "exists"
    # the same wording as every other command (was "pass overwrite to replace it")
    assert res["error"]["message"].endswith("exists; pass overwrite=True (--overwrite) to replace it")
    proc = run(hub, tmp_path, "pull", "someone/easy-negative", "-o", str(out))
    assert "pass overwrite=True (--overwrite) to replace it" in " ".join(proc.stderr.split())


def test_pulled_files_get_the_umask_mode(hub, tmp_path):
    """Regression: copies were written 0600 (mkstemp); every other embkit output follows the umask."""
    old = os.umask(0o027)
    try:
        pull_json(hub, tmp_path, "someone/pack", "-o", str(tmp_path / "o"))
        pull_json(hub, tmp_path, "sd-concepts-library/cat-toy", "-o", str(tmp_path / "o"))
        pull_json(hub, tmp_path, "someone/easy-negative", "-o", str(tmp_path / "c"), "--convert")
    finally:
        os.umask(old)
    files = [p for p in (tmp_path / "o").rglob("*") if p.is_file()] + [tmp_path / "c" / "EasyNegative.safetensors"]
    assert len(files) == 7
    assert {p.relative_to(tmp_path).as_posix(): oct(p.stat().st_mode & 0o777) for p in files} == \
        {p.relative_to(tmp_path).as_posix(): oct(0o640) for p in files}


def test_failed_pulls_print_only_embkits_error(hub, tmp_path):
    """Regression: huggingface_hub's own warnings ("No files matched …", "Trying to resume
    download..." per retry) came before embkit's error."""
    hub.add_repo("someone/always-broken", {"x.safetensors": st_save({"emb_params": vectors(6, 768)})})
    hub.interrupt("someone/always-broken", "x.safetensors", "always")
    for args, code in ((["someone/pack", "--file", "nope.safetensors"], 12), (["someone/always-broken"], 12)):
        proc = run(hub, tmp_path, "pull", *args)
        assert proc.returncode == code
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        assert lines[0].startswith("error[hub]:"), proc.stderr
        for noise in ("No files matched", "Trying to resume", "Error while downloading", "Max retries"):
            assert noise not in proc.stderr


def test_pull_puts_the_clients_log_level_and_bars_back(hub, tmp_path):
    """The quiet spell is for embkit's call only: a Python caller's settings are restored, on
    success and on error."""
    code = ("import logging, embkit, embkit.hub as h\n"
            "from huggingface_hub.utils import logging as hl, are_progress_bars_disabled\n"
            "hl.set_verbosity(logging.INFO)\n"
            "seen = []\n"
            "class Spy(logging.Handler):\n"
            "    def emit(self, record): seen.append(record.getMessage())\n"
            "logging.getLogger('huggingface_hub').addHandler(Spy())\n"
            "h.pull('someone/easy-negative')\n"
            "try:\n    h.pull('someone/pack', filename='nope.safetensors')\nexcept embkit.HubError:\n    pass\n"
            "print(hl.get_verbosity() == logging.INFO, are_progress_bars_disabled(), [m for m in seen if 'No files matched' in m])\n")
    proc = run_client(hub, code, tmp_path)
    assert proc.stdout.split() == ["True", "False", "[]"]
