"""``embkit push``: upload an embedding as safetensors with a model card (``README.md``).

The card is plain text built from the schema and the uploaded bytes: YAML front matter the Hub indexes (tags,
``library_name``), then the trigger word, family, slots, vectors, hashes, how to load it, and the
verify contact sheet when one is given.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Sequence

from ..errors import HubError
from ..hashes import a1111_short, autov2, autov3, sha256
from ..io import open_file, read_all
from ..schema import Embedding
from ..hubclient import _hf, _hub_errors, quiet
from .download import _safe_stem, _write_safetensors

#: Hub tags per family, so the repo shows up under the right base model filters.
FAMILY_TAGS = {
    "sd1": "stable-diffusion",
    "sd2": "stable-diffusion",
    "sdxl": "stable-diffusion-xl",
    "sd3": "stable-diffusion-3",
    "flux": "flux",
}


def model_card(embeddings: Sequence[Embedding], filename: str, data: bytes, *, source: str | None = None,
               sheet: str | None = None, repo_id: str | None = None) -> str:
    """Markdown for the repo card of ``filename`` (whose bytes are ``data``) holding ``embeddings``."""
    sha = sha256(data)
    hashes = {"sha256": sha, "AutoV2": autov2(sha), "A1111 short hash": a1111_short(sha), "AutoV3": autov3(data)}
    families = sorted({e.family for e in embeddings})
    tags = ["textual-inversion", "embedding", "embkit", *[FAMILY_TAGS[f] for f in families if f in FAMILY_TAGS]]
    tags = list(dict.fromkeys(tags))
    front = ["---", "library_name: embkit", "tags:", *[f"- {t}" for t in tags], "---", ""]
    main = embeddings[0]
    title = repo_id.split("/")[-1] if repo_id else main.name
    body = [
        f"# {title}",
        "",
        f"Textual-inversion embedding. Trigger word: `{main.name}`." if len(embeddings) == 1
        else "Textual-inversion embeddings. Trigger words: " + ", ".join(f"`{e.name}`" for e in embeddings) + ".",
        "",
        "| trigger | family | slot | vectors | width | dtype |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for emb in embeddings:
        for slot, arr in emb.vectors.items():
            body.append(f"| `{emb.name}` | {emb.family} | {slot} | {arr.shape[0]} | {arr.shape[1]} | {emb.dtypes[slot]} |")
    body += ["", f"It takes {main.num_vectors} of the 75 tokens of a CLIP prompt.", "", f"## File `{filename}`", ""]
    body += [f"- {k}: `{v}`" for k, v in hashes.items() if v]
    if source:
        body += [f"- converted by embkit from `{_basename(source)}`"]
    body += [
        "",
        "## Use",
        "",
        f"- AUTOMATIC1111 / Forge / ComfyUI: put `{filename}` in the embeddings folder and write "
        f"`{_stem(filename)}` in the prompt.",
        *_diffusers_use(embeddings, filename, data, repo_id),
        "- embkit: `embkit pull " + (repo_id or "REPO_ID") + "` then `embkit inspect` / `embkit verify`.",
    ]
    if sheet:
        body += ["", "## Verify contact sheet", "", "Same prompt and seeds without and with the embedding (`embkit verify --render`):",
                 "", f"![embkit verify contact sheet]({sheet})"]
    return "\n".join(front + body) + "\n"


#: The arguments that point ``load_textual_inversion`` at the text encoder a lone slot belongs to.
_ENCODER_ARGS = {"clip_l": "", "clip_h": "", "clip_g": ", text_encoder=pipe.text_encoder_2, tokenizer=pipe.tokenizer_2"}


def _diffusers_use(embeddings: Sequence[Embedding], filename: str, data: bytes, repo_id: str | None) -> list[str]:
    """The card's diffusers lines: the call diffusers documents for this file, then embkit's own.

    ``load_textual_inversion`` fills one CLIP text encoder per call. A one-encoder file loads by
    name; an SDXL file (``clip_l`` + ``clip_g`` tensors) must be split over two calls, as the
    diffusers docs show (passed whole it fails with "Loaded state dictionary is incorrect"). For
    the rest (a T5 slot, several embeddings in one file) there is no diffusers call to give;
    ``embkit.diffusers.apply`` fills every encoder of any pipeline in one call.
    """
    from ..formats.safetensors_file import read_header

    main = embeddings[0]
    token = json.dumps(main.name)
    fetch = [] if repo_id is None else ["from huggingface_hub import hf_hub_download"]
    local = json.dumps(filename) if repo_id is None else f"hf_hub_download({json.dumps(repo_id)}, {json.dumps(filename)})"
    slots = set(main.vectors)
    if len(embeddings) == 1 and len(slots) == 1 and next(iter(slots)) in _ENCODER_ARGS:
        code = [f"pipe.load_textual_inversion({json.dumps(repo_id or '.')}, weight_name={json.dumps(filename)}, "
                f"token={token}{_ENCODER_ARGS[next(iter(slots))]})"]
    elif len(embeddings) == 1 and slots == {"clip_l", "clip_g"} and {"clip_l", "clip_g"} <= set(read_header(data, filename)[0]):
        code = [*fetch, "from safetensors.torch import load_file", "", f"state_dict = load_file({local})",
                f'pipe.load_textual_inversion(state_dict["clip_g"], token={token}, text_encoder=pipe.text_encoder_2, tokenizer=pipe.tokenizer_2)',
                f'pipe.load_textual_inversion(state_dict["clip_l"], token={token}, text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer)']
    else:
        code = []
    lines = ["- diffusers:", "", "```python", *code, "```", ""] if code else \
        ["- diffusers: `load_textual_inversion` has no call for this file (one CLIP encoder per call, no T5); use embkit's below.", ""]
    return lines + ["- embkit, one call for every text encoder of the pipeline, checked against it first:", "", "```python",
                    "import embkit.diffusers", *fetch, "", f"embkit.diffusers.apply(pipe, {local})", "```", ""]


def _basename(path: str) -> str:
    return os.path.basename(os.path.normpath(path))


def _stem(filename: str) -> str:
    return os.path.splitext(filename)[0]


def push(path: str | os.PathLike, repo_id: str, *, token: str | None = None, private: bool = False,
         sheet: str | os.PathLike | None = None, commit_message: str | None = None) -> str:
    """Upload an embedding as ``.safetensors`` (converted first when it is another format) with a model
    card ``README.md`` (family, slots, vectors, trigger word, hashes, and the verify contact sheet
    when ``sheet`` is given). Creates the repo when needed. Returns the repo's URL."""
    hf = _hf()
    path = os.fspath(path)
    loaded = open_file(path)
    embs = read_all(path)
    with tempfile.TemporaryDirectory(prefix="embkit-push-") as tmp:
        if loaded.container == "safetensors":
            upload, name = path, os.path.basename(path)
        else:
            if len(embs) != 1:
                raise HubError(f"{path}: holds {len(embs)} embeddings; convert them to separate safetensors files and push each", path=None)
            stem = _safe_stem(embs[0].name if loaded.container == "folder" else os.path.splitext(os.path.basename(path))[0])
            name = stem + ".safetensors"
            upload = _write_safetensors(embs[0], os.path.join(tmp, name), False)
            embs = read_all(upload)
        with open(upload, "rb") as fh:
            data = fh.read()
        sheet_name = "contact_sheet.png" if sheet is not None else None
        card = model_card(embs, name, data, source=path if upload != path else None, sheet=sheet_name, repo_id=repo_id)
        ops = [hf.CommitOperationAdd(path_in_repo=name, path_or_fileobj=data),
               hf.CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=card.encode("utf-8"))]
        if sheet is not None:
            ops.append(hf.CommitOperationAdd(path_in_repo=sheet_name, path_or_fileobj=os.fspath(sheet)))
        api = hf.HfApi(token=token)
        with quiet(), _hub_errors(repo_id, None, name):
            url = api.create_repo(repo_id, private=private, exist_ok=True)
            api.create_commit(repo_id, operations=ops, commit_message=commit_message or f"Upload {name} with embkit")
    return str(url)
