"""load_textual_inversion and apply with Hub repo ids, against the local fake Hub (tests/hub_server.py)
and the real huggingface_hub client, compared with diffusers' own loader on the same repos.

The client runs in a fresh process (``run_client``): huggingface_hub reads ``HF_ENDPOINT`` when it is
imported. Repos hold files written the way their tools write them (torch.save for the
sd-concepts-library ``learned_embeds.bin``, safetensors for the rest).
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
from safetensors.numpy import save as st_save  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hub_server import HubServer, run_client  # noqa: E402

RNG = np.random.default_rng(3)


def _vectors(n: int, width: int = 768) -> np.ndarray:
    return (RNG.standard_normal((n, width)) * 0.05).astype(np.float32)


def _torch_bytes(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


REPOS = {
    "sd-concepts-library/cat-toy": {
        "learned_embeds.bin": _torch_bytes({"<cat-toy>": torch.from_numpy(_vectors(1)[0])}),
        "token_identifier.txt": b"<cat-toy>",
        "README.md": b"# cat toy\n",
    },
    "someone/pack": {
        "other.safetensors": st_save({"<other>": _vectors(3)}),
        "xl/style-xl.safetensors": st_save({"clip_l": _vectors(2), "clip_g": _vectors(2, 1280)}),
    },
    "someone/xl-pair": {
        "learned_embeds.safetensors": st_save({"<pair>": _vectors(2)}),
        "learned_embeds_2.safetensors": st_save({"<pair>": _vectors(2, 1280)}),
    },
    "someone/evil": {"learned_embeds.bin": b"\x80\x02cposix\nsystem\nq\x00X\x02\x00\x00\x00idq\x01\x85q\x02Rq\x03."},
}

CLIENT = r'''
import torch, embkit
from embkit import diffusers as ed
from embkit.diffusers.tiny import tiny_pipeline

def embeds(pipe, prompt):
    with torch.no_grad():
        out = pipe.encode_prompt(prompt=prompt, device=torch.device("cpu"), num_images_per_prompt=1, do_classifier_free_guidance=False)
    return [t for t in out if t is not None]

def same(a, b):
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))

ours, theirs = tiny_pipeline("sd1"), tiny_pipeline("sd1")
# the docs' first example: a repo id, learned_embeds.safetensors missing, learned_embeds.bin used
theirs.load_textual_inversion("sd-concepts-library/cat-toy")
applied = ed.load_textual_inversion(ours, "sd-concepts-library/cat-toy")
assert applied.triggers == {"<cat-toy>": "<cat-toy>"}, applied.triggers
assert same(embeds(ours, "A <cat-toy> backpack"), embeds(theirs, "A <cat-toy> backpack"))
# weight_name in a repo, through patch(pipe): diffusers-style code unchanged
ed.patch(ours)
theirs.load_textual_inversion("someone/pack", weight_name="other.safetensors")
ours.load_textual_inversion("someone/pack", weight_name="other.safetensors")
assert same(embeds(ours, "an <other> cat"), embeds(theirs, "an <other> cat"))
assert len(ed.applied(ours)) == 2
ours.unload_textual_inversion()
# apply takes repo ids too; a second time from the cache alone
assert ed.apply(ours, "sd-concepts-library/cat-toy").triggers == {"<cat-toy>": "<cat-toy>"}
ed.unload(ours)
ed.load_textual_inversion(ours, "sd-concepts-library/cat-toy", local_files_only=True)
ed.unload(ours)
try:
    ed.load_textual_inversion(ours, "someone/pack", weight_name="never.safetensors", local_files_only=True)
    raise SystemExit("local_files_only fetched a file")
except embkit.HubError as exc:
    assert "never.safetensors" in str(exc), exc
try:
    ed.load_textual_inversion(ours, "someone/evil")
    raise SystemExit("a pickle calling os.system was loaded")
except embkit.UnsafeFileError as exc:
    assert "posix" in str(exc) or "system" in str(exc), exc
try:
    ed.load_textual_inversion(ours, "nobody/missing")
    raise SystemExit("a missing repo loaded")
except embkit.HubError as exc:
    assert "not found" in str(exc), exc

# SDXL: the training script's pair in two calls, as diffusers documents it
xl_ours, xl_theirs = tiny_pipeline("sdxl"), tiny_pipeline("sdxl")
for pipe, load in ((xl_theirs, xl_theirs.load_textual_inversion), (xl_ours, lambda *a, **k: ed.load_textual_inversion(xl_ours, *a, **k))):
    load("someone/xl-pair", weight_name="learned_embeds.safetensors")
    load("someone/xl-pair", weight_name="learned_embeds_2.safetensors", text_encoder=pipe.text_encoder_2, tokenizer=pipe.tokenizer_2)
assert same(embeds(xl_ours, "a <pair> house"), embeds(xl_theirs, "a <pair> house"))
ed.unload(xl_ours)
# an encoder-keyed file in a subfolder: both encoders in one call (diffusers refuses this layout)
applied = ed.load_textual_inversion(xl_ours, "someone/pack", weight_name="style-xl.safetensors", subfolder="xl")
assert set(applied.tokens) == {"text_encoder", "text_encoder_2"} and applied.triggers == {"style-xl": "style-xl"}
print("OK")
'''


@pytest.mark.slow
def test_repo_ids_like_diffusers(tmp_path):
    hub = HubServer().start()
    try:
        for repo_id, files in REPOS.items():
            hub.add_repo(repo_id, files)
        proc = run_client(hub, CLIENT, tmp_path / "hf", timeout=300)
        assert proc.stdout.strip().splitlines()[-1] == "OK"
        # one file per call, as diffusers fetches it: not the README, not the whole repo
        got = {r["path"].split("/resolve/", 1)[1].split("/", 1)[1] for r in hub.requests("HEAD", "/sd-concepts-library/cat-toy/resolve/")}
        assert "README.md" not in got and "learned_embeds.bin" in got
    finally:
        hub.stop()
