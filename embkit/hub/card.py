"""The model card (``README.md``) that ``embkit push`` uploads, built with huggingface_hub's
``ModelCard`` and ``ModelCardData``.

The front matter is what the Hub indexes: ``base_model`` (the family's base repo),
``license``, ``library_name: diffusers``, ``pipeline_tag: text-to-image``, ``tags`` (with
``textual_inversion``, the tag diffusers' own training scripts use), ``instance_prompt`` and, with a
contact sheet, a ``widget`` entry that shows it on the model page. The body gives the trigger per
host, the vectors, the file's hashes, the embedding's metadata, and how to load the file in
AUTOMATIC1111/Forge, ComfyUI, InvokeAI, diffusers (a snippet that uses every vector) and embkit.

Every string that came from a file (trigger names, file names, metadata) is escaped for the place it
goes: YAML by huggingface_hub's serialiser, markdown text and table cells by :func:`md_text` (HTML
special characters as entities, markdown punctuation backslash-escaped, control and bidi characters
shown as escapes), inline code by :func:`md_code`, Python snippets by ``repr``.
"""

from __future__ import annotations

import os
import re
import unicodedata
from typing import Any, Mapping, Sequence

from ..hashes import a1111_short, autov2, autov3, sha256
from ..hubclient import _hf
from ..schema import Embedding, Source

#: Hub tags per family, so the repo shows up under the right base model filters.
FAMILY_TAGS = {
    "sd1": "stable-diffusion",
    "sd2": "stable-diffusion",
    "sdxl": "stable-diffusion-xl",
    "sd3": "stable-diffusion-3",
    "flux": "flux",
}
#: family → the base model repo a card names: diffusers' default pipeline repos per model type
#: (``DIFFUSERS_DEFAULT_PIPELINE_PATHS`` in diffusers' ``loaders/single_file_utils.py``).
BASE_MODELS = {
    "sd1": "stable-diffusion-v1-5/stable-diffusion-v1-5",
    "sd2": "stabilityai/stable-diffusion-2-1",
    "sdxl": "stabilityai/stable-diffusion-xl-base-1.0",
    "sd3": "stabilityai/stable-diffusion-3-medium-diffusers",
    "flux": "black-forest-labs/FLUX.1-dev",
}
#: family → the license of that base model, the default for an embedding trained on it (``push
#: --license`` sets another); ``other`` where the base model has a license of its own.
BASE_LICENSES = {"sd1": "creativeml-openrail-m", "sd2": "openrail++", "sdxl": "openrail++", "sd3": "other", "flux": "other"}
#: Card tags every embedding gets.
TAGS = ("textual_inversion", "embedding", "embkit", "text-to-image")
#: host id → how the card names it.
HOST_LABELS = {"a1111": "AUTOMATIC1111", "forge": "Forge", "comfyui": "ComfyUI", "invokeai": "InvokeAI", "diffusers": "diffusers"}
#: The arguments that point ``load_textual_inversion`` at the text encoder a lone slot belongs to.
_ENCODER_ARGS = {"clip_l": "", "clip_h": "", "clip_g": ", text_encoder=pipe.text_encoder_2, tokenizer=pipe.tokenizer_2"}
#: Metadata rows a card shows at most, and characters per value.
MAX_METADATA_ROWS, MAX_METADATA_CHARS = 24, 200
#: The hosts the card names a trigger for (diffusers gets the snippet's token).
CARD_HOSTS = ("a1111", "forge", "comfyui", "invokeai", "sdnext")


def host_triggers(embedding: Embedding, filename: str, token: str) -> dict[str, str]:
    """What to write in each host's prompt to use ``embedding`` uploaded as ``filename``:
    ``{host id: trigger}``, from the hosts table (:func:`embkit.hosts.triggers`: AUTOMATIC1111 and
    Forge name a file by its stem, ComfyUI by ``embedding:<stem>``, InvokeAI by ``<stem>``…), for
    the hosts that can type one; diffusers by the ``token`` the card's snippet passes to
    ``load_textual_inversion`` (see :func:`diffusers_token`)."""
    from ..hosts import triggers

    src = embedding.source
    uploaded = embedding.replace(source=Source(path=filename, format=src.format if src is not None else "diffusers",
                                               container="safetensors", member=src.member if src is not None else None))
    found = {host: word for host, word in triggers(uploaded, CARD_HOSTS).items() if word}
    found["diffusers"] = token
    return found


def diffusers_token(name: str) -> str:
    """The token the card's diffusers snippet loads an embedding under: its name in lower case.

    diffusers expands a multi-vector trigger in prompts itself (``maybe_convert_prompt``) only when
    the tokenizer gives back the token as it was added; CLIP tokenizers lower-case the prompt, so a
    mixed-case token (``EasyNegative``) would use one vector of eight.
    """
    return name.lower()


# -- escaping ------------------------------------------------------------------------------------------
_INVISIBLE = ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")
_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#x27;"}
_MD_PUNCTUATION = set("\\`*_{}[]()#+-.!|~=:;/?@$%^,") - set(_ENTITIES)


def visible(text: str) -> str:
    """``text`` with control, format (bidi overrides, zero-width) and line-separator characters
    shown as Python-style escapes (``\\n``, ``\\u202e``), so none can act on the document."""
    return "".join(_escaped(ch) if unicodedata.category(ch) in _INVISIBLE else ch for ch in text)


def _escaped(ch: str) -> str:
    code = ord(ch)
    named = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
    return named.get(ch) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")


def md_text(text: str) -> str:
    """``text`` as literal markdown text (also in a table cell): HTML special characters become
    entities, markdown punctuation is backslash-escaped, invisible characters are shown escaped."""
    out = []
    for ch in visible(text):
        out.append(_ENTITIES[ch] if ch in _ENTITIES else "\\" + ch if ch in _MD_PUNCTUATION else ch)
    return "".join(out)


def md_code(text: str) -> str:
    """``text`` as an inline code span when it can be one exactly (no backtick, no table pipe, only
    printable characters, no leading or trailing space), else as escaped text (:func:`md_text`).
    A code span's content is never read as markdown or HTML."""
    if text and text.isprintable() and "`" not in text and "|" not in text and text == text.strip():
        return f"`{text}`"
    return md_text(text)


def _fence(code: Sequence[str]) -> str:
    """A code fence longer than any run of backticks in ``code`` (``repr`` keeps a name on its line,
    so no line of it can close the block; the fence keeps that true for backticks too)."""
    longest = max((len(run) for line in code for run in re.findall(r"`+", line)), default=0)
    return "`" * max(3, longest + 1)


def _code_block(lines: Sequence[str], lang: str = "python") -> list[str]:
    fence = _fence(lines)
    return [fence + lang, *lines, fence]


# -- the card ------------------------------------------------------------------------------------------
def card_data(embeddings: Sequence[Embedding], *, base_model: str | None = None, license: str | None = None,
              sheet: str | None = None) -> Any:
    """The ``ModelCardData`` of the card (huggingface_hub's; it serialises the YAML front matter)."""
    hf = _hf()
    families = [f for f in dict.fromkeys(e.family for e in embeddings) if f in BASE_MODELS]
    family = families[0] if families else None
    token = diffusers_token(embeddings[0].name)
    tags = list(dict.fromkeys([*TAGS, *(FAMILY_TAGS[f] for f in families)]))
    extra: dict[str, Any] = {"instance_prompt": token}
    if sheet:
        extra["widget"] = [{"text": f"a photo, {token}", "output": {"url": sheet}}]
    return hf.ModelCardData(
        base_model=base_model or (BASE_MODELS[family] if family else None),
        license=license or (BASE_LICENSES[family] if family else "other"),
        library_name="diffusers",
        pipeline_tag="text-to-image",
        tags=tags,
        **extra,
    )


def model_card(embeddings: Sequence[Embedding], filename: str, data: bytes, *, source: str | None = None,
               sheet: str | None = None, repo_id: str | None = None, base_model: str | None = None,
               license: str | None = None) -> str:
    """The text of the card (``README.md``) for ``filename``, whose bytes are ``data``, holding
    ``embeddings``: front matter from :func:`card_data`, then the body. It parses back with
    ``huggingface_hub.ModelCard``."""
    hf = _hf()
    data_obj = card_data(embeddings, base_model=base_model, license=license, sheet=sheet)
    body = _body(embeddings, filename, data, source=source, sheet=sheet, repo_id=repo_id)
    card = hf.ModelCard(f"---\n{data_obj.to_yaml()}\n---\n\n" + "\n".join(body) + "\n")
    return str(card.content)


def _body(embeddings: Sequence[Embedding], filename: str, data: bytes, *, source: str | None, sheet: str | None,
          repo_id: str | None) -> list[str]:
    main = embeddings[0]
    title = repo_id.split("/")[-1] if repo_id else main.name
    triggers = host_triggers(main, filename, diffusers_token(main.name))
    sha = sha256(data)
    hashes = {"sha256": sha, "AutoV2": autov2(sha), "A1111 short hash": a1111_short(sha), "AutoV3": autov3(data)}
    lines = [
        f"# {md_text(title)}",
        "",
        ("Textual-inversion embedding. Trigger word: " + md_code(main.name) + "." if len(embeddings) == 1
         else "Textual-inversion embeddings. Trigger words: " + ", ".join(md_code(e.name) for e in embeddings) + "."),
        f"It takes {main.num_vectors} of the 75 tokens of a CLIP prompt.",
        "",
        "## Trigger per host",
        "",
        "| host | write in the prompt |",
        "| --- | --- |",
        *(f"| {HOST_LABELS.get(host, md_text(host))} | {md_code(trigger)} |" for host, trigger in triggers.items()),
        "",
        "## Vectors",
        "",
        "| trigger | family | slot | vectors | width | dtype |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for emb in embeddings:
        for slot, arr in emb.vectors.items():
            lines.append(f"| {md_code(emb.name)} | {emb.family} | {slot} | {arr.shape[0]} | {arr.shape[1]} | {emb.dtypes[slot]} |")
    lines += ["", f"## File {md_code(filename)}", ""]
    lines += [f"- {k}: `{v}`" for k, v in hashes.items() if v]
    if source:
        lines.append(f"- converted by embkit from {md_code(os.path.basename(os.path.normpath(source)))}")
    lines += _metadata(embeddings)
    lines += ["", "## Use", ""]
    lines += _host_use(filename, triggers)
    lines += _diffusers_use(embeddings, filename, data, repo_id)
    lines += _embkit_use(main, filename, repo_id)
    if sheet:
        lines += ["", "## Verify contact sheet", "",
                  "Same prompt and seeds without and with the embedding (`embkit verify --render`):", "",
                  f"![embkit verify contact sheet]({_link_target(sheet)})"]
    return lines


def _metadata(embeddings: Sequence[Embedding]) -> list[str]:
    """The embeddings' plain metadata values (training step, checkpoint name, …), escaped and cut."""
    rows = []
    for emb in embeddings:
        owner = f"{md_code(emb.name)}: " if len(embeddings) > 1 else ""
        for key, value in emb.metadata.items():
            if key == "provenance" or key.startswith("embkit.") or isinstance(value, (dict, list)) or value is None:
                continue
            text = str(value)
            text = text if len(text) <= MAX_METADATA_CHARS else text[:MAX_METADATA_CHARS] + "…"
            rows.append(f"| {owner}{md_text(key)} | {md_text(text)} |")
    if not rows:
        return []
    shown = rows[:MAX_METADATA_ROWS]
    more = ["", f"({len(rows) - len(shown)} more in the file's metadata.)"] if len(rows) > len(shown) else []
    return ["", "## Metadata", "", "| key | value |", "| --- | --- |", *shown, *more]


def _host_use(filename: str, triggers: Mapping[str, str]) -> list[str]:
    name = md_code(filename)
    out: list[str] = []
    # a host with no word to type (the hosts table found none: a name it cannot trigger) gets none
    for host, title, text in (
        ("a1111", "AUTOMATIC1111 / Forge", "Put {name} in the `embeddings` folder and write {word} in the prompt (or the negative prompt)."),
        ("comfyui", "ComfyUI", "Put {name} in `ComfyUI/models/embeddings` and write {word} in a CLIP Text Encode prompt."),
        ("invokeai", "InvokeAI", "Install {name} in the model manager (as a textual inversion) and write {word} in the prompt."),
    ):
        if triggers.get(host):
            out += [f"### {title}", "", text.format(name=name, word=md_code(triggers[host])), ""]
    return out


def _diffusers_use(embeddings: Sequence[Embedding], filename: str, data: bytes, repo_id: str | None) -> list[str]:
    """diffusers' own ``load_textual_inversion`` calls for this file, and a prompt that uses it.

    ``load_textual_inversion`` fills one CLIP text encoder per call: a file of one tensor loads by
    name; an SDXL file (``clip_l`` + ``clip_g`` tensors) is split over two calls, as the diffusers
    docs show. For the rest (a T5 slot, several embeddings or tensors in one file) there is no
    diffusers call to give: embkit's below fills every encoder of any pipeline in one call.
    """
    from ..formats.safetensors_file import read_header

    main = embeddings[0]
    token = diffusers_token(main.name)
    slots = set(main.vectors)
    keys = set(read_header(data, filename)[0])
    repo = repr(repo_id or ".")
    fetch = [] if repo_id is None else ["from huggingface_hub import hf_hub_download"]
    local = repr(filename) if repo_id is None else f"hf_hub_download({repo}, {filename!r})"
    if len(embeddings) == 1 and len(slots) == 1 and next(iter(slots)) in _ENCODER_ARGS and len(keys) == 1:
        code = [f"pipe.load_textual_inversion({repo}, weight_name={filename!r}, token={token!r}{_ENCODER_ARGS[next(iter(slots))]})"]
    elif len(embeddings) == 1 and slots == {"clip_l", "clip_g"} and {"clip_l", "clip_g"} <= keys:
        code = [*fetch, "from safetensors.torch import load_file", "", f"state_dict = load_file({local})",
                f'pipe.load_textual_inversion(state_dict["clip_g"], token={token!r}, text_encoder=pipe.text_encoder_2, tokenizer=pipe.tokenizer_2)',
                f'pipe.load_textual_inversion(state_dict["clip_l"], token={token!r}, text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer)']
    else:
        return ["### diffusers", "",
                "`load_textual_inversion` has no call for this file (one CLIP encoder and one tensor per call, no T5); use embkit's below.", ""]
    count, shown = main.num_vectors, visible(token)  # a comment ends at a line break: none may reach it
    if count > 1:
        code += ["", f"# {count} vectors: in a prompt, diffusers expands the token to {shown}, {shown}_1 … {shown}_{count - 1}"]
    code += [f"prompt = {'a photo, ' + token!r}", "image = pipe(prompt).images[0]"]
    return ["### diffusers", "", *_code_block(code), ""]


def _embkit_use(main: Embedding, filename: str, repo_id: str | None) -> list[str]:
    fetch = [] if repo_id is None else ["from huggingface_hub import hf_hub_download"]
    local = repr(filename) if repo_id is None else f"hf_hub_download({repo_id!r}, {filename!r})"
    code = ["import embkit.diffusers as ed", *fetch, "", f"ed.apply(pipe, {local})",
            "with ed.expanded_prompts(pipe):  # every vector, whatever the trigger's case",
            f"    image = pipe({'a photo, ' + main.name!r}).images[0]"]
    pull = md_code(f"embkit pull {repo_id or 'REPO_ID'}")
    return ["### embkit", "", "One call for every text encoder of the pipeline, checked against it first:", "",
            *_code_block(code), "", f"Or {pull}, then `embkit inspect` / `embkit verify`.", ""]


def _link_target(path: str) -> str:
    """A relative link target for a file embkit itself names (``contact_sheet.png``): percent-encode
    what could end or break the link."""
    from urllib.parse import quote

    return quote(path, safe="/._-")
