"""The model card (``README.md``) that ``embkit push`` uploads next to an embedding.

Plain text built from the schema and the uploaded bytes: YAML front matter the Hub indexes (tags,
``library_name``), then the trigger word, family, slots, vectors, hashes, how to load it, and the
verify contact sheet when one is given.
"""

from __future__ import annotations

import json
from typing import Sequence

from .hashes import a1111_short, autov2, autov3, sha256
from .schema import Embedding

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
        "- diffusers:",
        "",
        "```python",
        f"pipe.load_textual_inversion({json.dumps(repo_id or '.')}, weight_name={json.dumps(filename)}, token={json.dumps(main.name)})",
        "```",
        "",
        "- embkit: `embkit pull " + (repo_id or "REPO_ID") + "` then `embkit inspect` / `embkit verify`.",
    ]
    if sheet:
        body += ["", "## Verify contact sheet", "", "Same prompt and seeds without and with the embedding (`embkit verify --render`):",
                 "", f"![embkit verify contact sheet]({sheet})"]
    return "\n".join(front + body) + "\n"


def _basename(path: str) -> str:
    import os

    return os.path.basename(os.path.normpath(path))


def _stem(filename: str) -> str:
    import os

    return os.path.splitext(filename)[0]
