"""Finding CLIP's tokenizer files on this machine, offline, for rendering single-file checkpoints.

A checkpoint holds no tokenizer, and diffusers would fetch one from the Hub. Every Stable Diffusion
text encoder (SD1's CLIP-L, SD2's OpenCLIP-H, SDXL's CLIP-L and OpenCLIP-bigG) uses the same BPE
vocabulary of 49,408 tokens; only the padding token differs, and :mod:`embkit.diffusers.pipelines`
sets that per encoder. So one copy of the vocabulary serves every family. embkit looks, in order:

1. ``--tokenizer DIR`` (a folder with ``vocab.json`` + ``merges.txt`` or ``tokenizer.json``, a
   diffusers model folder with ``tokenizer/``, or an open_clip ``bpe_simple_vocab_16e6.txt.gz``);
2. ``--host-dir DIR``: a ComfyUI, Forge or A1111 install (:data:`HOST_TOKENIZERS`);
3. the Hugging Face cache (:data:`HF_CACHE_REPOS`), where A1111, Forge and diffusers users have them;
4. the same host layouts in the usual install places under the home folder (:data:`USUAL_INSTALLS`).

Each candidate is checked to be a real CLIP vocabulary (49,408 entries): transformers builds a
2-token tokenizer without complaint from a folder missing its files, and every word then becomes
the same id. When nothing fits, :class:`~embkit.errors.TargetError` lists every place looked at
and why it did not fit. Torch-free.
"""

from __future__ import annotations

import glob
import gzip
import os
from dataclasses import dataclass

from ..errors import TargetError
from .vocab import byte_encoder, load_tokenizer_json

#: CLIP's vocabulary: 256 bytes, alone and word-final, 48,894 merges, ``<|startoftext|>``, ``<|endoftext|>``.
CLIP_VOCAB_SIZE = 49408
#: open_clip's (and OpenAI CLIP's) bundled vocabulary file: merges only, the vocabulary is derived.
BPE_GZ = "bpe_simple_vocab_16e6.txt.gz"
#: Hub repos whose cached snapshots hold a CLIP tokenizer, and the sub-folder it is in.
HF_CACHE_REPOS = (
    ("openai/clip-vit-large-patch14", ""),
    ("stable-diffusion-v1-5/stable-diffusion-v1-5", "tokenizer"),
    ("runwayml/stable-diffusion-v1-5", "tokenizer"),
    ("stabilityai/stable-diffusion-xl-base-1.0", "tokenizer"),
    ("stabilityai/stable-diffusion-xl-base-1.0", "tokenizer_2"),
    ("stabilityai/stable-diffusion-2-1", "tokenizer"),
    ("stabilityai/stable-diffusion-2-base", "tokenizer"),
    ("laion/CLIP-ViT-bigG-14-laion2B-39B-b160k", ""),
)
#: Where a host install keeps a CLIP tokenizer, relative to the install folder (globs allowed):
#: ComfyUI ships ``comfy/sd1_tokenizer/`` (Comfy-Org/ComfyUI ``comfy/sd1_clip.py``
#: @4bd7a4004ab8bf0e516222036dc97733ddf3aa74); Forge ships the Hub configs and tokenizers under
#: ``backend/huggingface/`` (lllyasviel/stable-diffusion-webui-forge @dfdcbab685e57677014f05a3309b48cc87383167);
#: A1111 has open_clip's vocabulary in its venv (``modules/sd_hijack_open_clip.py``
#: @01a40c62556b8cf3beb418e382760dd21811d3b2) and CLIP-L's in the Hugging Face cache.
HOST_TOKENIZERS = (
    ("ComfyUI", "comfy/sd1_tokenizer"),
    ("ComfyUI", "ComfyUI/comfy/sd1_tokenizer"),
    ("Forge", "backend/huggingface/runwayml/stable-diffusion-v1-5/tokenizer"),
    ("Forge", "backend/huggingface/stabilityai/stable-diffusion-xl-base-1.0/tokenizer"),
    ("Forge", "webui/backend/huggingface/runwayml/stable-diffusion-v1-5/tokenizer"),
    ("A1111", f"venv/lib/python3*/site-packages/open_clip/{BPE_GZ}"),
    ("A1111", f"venv/Lib/site-packages/open_clip/{BPE_GZ}"),
    ("A1111", f"venv/lib/python3*/site-packages/clip/{BPE_GZ}"),
    ("A1111", f"webui/venv/Lib/site-packages/open_clip/{BPE_GZ}"),
)
#: Install folders looked in under the home folder when no ``--host-dir`` is given.
USUAL_INSTALLS = ("ComfyUI", "comfyui", "ComfyUI_windows_portable", "stable-diffusion-webui-forge", "stable-diffusion-webui",
                  "sd.webui", "webui_forge_cu121_torch231")
#: Largest open_clip vocabulary file read (the real one is 1.3 MB unpacked).
MAX_BPE_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class TokenizerSource:
    """A CLIP tokenizer found on disk: ``path`` (a folder, or a ``.txt.gz``), ``kind`` (``folder``
    or ``bpe-gz``) and ``where`` (how it was found, for messages)."""

    path: str
    kind: str
    where: str


def _count_folder(folder: str) -> tuple[int | None, str]:
    """(entries, problem): the vocabulary size of a tokenizer folder, or why it is not one."""
    vocab_json, merges_txt, tok_json = (os.path.join(folder, f) for f in ("vocab.json", "merges.txt", "tokenizer.json"))
    if os.path.isfile(vocab_json) and os.path.isfile(merges_txt):
        data = load_tokenizer_json(vocab_json)
        return (len(data), "") if isinstance(data, dict) else (None, "vocab.json is not a JSON object")
    if os.path.isfile(tok_json):
        data = load_tokenizer_json(tok_json)
        model = data.get("model") if isinstance(data, dict) else None
        vocab = model.get("vocab") if isinstance(model, dict) else None
        if not isinstance(vocab, dict):
            return None, "tokenizer.json holds no BPE vocabulary"
        return len(set(vocab) | {t.get("content") for t in data.get("added_tokens") or [] if isinstance(t, dict)}), ""
    if os.path.isfile(vocab_json):
        return None, "vocab.json without merges.txt"
    return None, "no vocab.json + merges.txt or tokenizer.json"


def read_bpe_gz(path: str) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """CLIP's vocabulary and merges from an open_clip ``bpe_simple_vocab_16e6.txt.gz``, built as CLIP's
    ``simple_tokenizer.py`` builds them: the 256 byte characters, the same word-final, then one token
    per merge (the file's first 48,894 merge lines), then ``<|startoftext|>`` and ``<|endoftext|>``."""
    try:
        with gzip.open(path, "rb") as fh:
            data = fh.read(MAX_BPE_BYTES + 1)
    except (OSError, EOFError) as exc:
        raise TargetError(f"cannot read ({exc})", path=path) from None
    if len(data) > MAX_BPE_BYTES:
        raise TargetError(f"unpacks to more than {MAX_BPE_BYTES} bytes; not open_clip's vocabulary", path=path)
    lines = data.decode("utf-8", errors="replace").split("\n")[1 : 49152 - 256 - 2 + 1]
    merges = [tuple(line.split()) for line in lines]
    if any(len(m) != 2 for m in merges):
        raise TargetError("holds a merge line that is not two symbols", path=path)
    base = list(byte_encoder().values())
    tokens = base + [b + "</w>" for b in base] + ["".join(m) for m in merges] + ["<|startoftext|>", "<|endoftext|>"]
    return {t: i for i, t in enumerate(tokens)}, merges  # type: ignore[return-value]


def _check(path: str, kind: str, where: str, expected: int | None) -> tuple[TokenizerSource | None, str]:
    """The source at ``path`` if it is a CLIP vocabulary of ``expected`` entries, else why not."""
    if kind == "bpe-gz":
        if not os.path.isfile(path):
            return None, "not found"
        size = len(read_bpe_gz(path)[0])
    else:
        if not os.path.isdir(path):
            return None, "not found"
        size, problem = _count_folder(path)
        if size is None:
            return None, problem
    if expected is not None and size != expected:
        return None, f"{size} tokens, not CLIP's {expected}"
    return TokenizerSource(path, kind, where), ""


def _explicit(path: str) -> list[tuple[str, str, str]]:
    path = os.path.expanduser(path)
    if os.path.isfile(path) and path.endswith(".gz"):
        return [(path, "bpe-gz", f"--tokenizer {path}")]
    if os.path.isdir(os.path.join(path, "tokenizer")):  # a diffusers model folder
        return [(os.path.join(path, "tokenizer"), "folder", f"--tokenizer {path}")]
    return [(path, "folder", f"--tokenizer {path}")]


def _host(root: str, flag: str) -> list[tuple[str, str, str]]:
    out = []
    for host, rel in HOST_TOKENIZERS:
        pattern = os.path.join(root, rel)
        matches = sorted(glob.glob(pattern)) if any(c in rel for c in "*?[") else [pattern]
        for match in matches or [pattern]:
            kind = "bpe-gz" if match.endswith(".gz") else "folder"
            out.append((match, kind, f"{host} install {flag}"))
    return out


def _hf_cache() -> tuple[list[tuple[str, str, str]], str | None]:
    from ..hubclient import cache_location, cached_file

    found = []
    for repo, sub in HF_CACHE_REPOS:
        for name in ("vocab.json", "tokenizer.json"):
            hit = cached_file(repo, f"{sub}/{name}" if sub else name)
            if hit is not None:
                found.append((os.path.dirname(hit), "folder", f"Hugging Face cache ({repo}{'/' + sub if sub else ''})"))
                break
    return found, cache_location()


def find_clip_tokenizer(*, tokenizer: str | None = None, host_dirs: tuple[str, ...] | list[str] = (),
                        expected_size: int | None = CLIP_VOCAB_SIZE, search: bool = True) -> TokenizerSource:
    """The first CLIP tokenizer found (see the module docstring for the order). ``tokenizer``: an
    explicit location, used alone when given. ``expected_size``: the vocabulary size a candidate must
    have (``None``: any). ``search``: also look in the Hugging Face cache and the usual install places.
    :class:`TargetError` naming the files needed and every place looked at when none fits."""
    looked: list[str] = []
    if tokenizer:
        candidates = _explicit(tokenizer)
    else:
        candidates = [c for root in host_dirs for c in _host(os.path.expanduser(root), f"--host-dir {root}")]
        if search:
            cached, cache_dir = _hf_cache()
            candidates += cached
            if not cached:
                looked.append(f"Hugging Face cache {cache_dir or '(huggingface_hub not installed)'}: none of "
                              f"{', '.join(sorted({r for r, _ in HF_CACHE_REPOS}))} is cached")
            home = os.path.expanduser("~")
            for name in USUAL_INSTALLS:
                if os.path.isdir(os.path.join(home, name)):
                    candidates += _host(os.path.join(home, name), f"~/{name}")
                else:
                    looked.append(f"~/{name}: no such install")
    for path, kind, where in candidates:
        source, problem = _check(path, kind, where, expected_size)
        if source is not None:
            return source
        looked.append(f"{where}: {path}: {problem}")
    raise TargetError(
        "no CLIP tokenizer found. Single-file checkpoints hold no tokenizer; rendering needs CLIP's vocabulary "
        f"({CLIP_VOCAB_SIZE:,} tokens) as vocab.json + merges.txt, tokenizer.json, or open_clip's {BPE_GZ}. Looked in:\n  - "
        + "\n  - ".join(looked or ["nowhere (no --tokenizer, --host-dir or search)"])
        + "\nPass --tokenizer DIR (a folder with those files), --host-dir DIR (your ComfyUI, Forge or A1111 install), or fetch "
        "them once: hf download openai/clip-vit-large-patch14 vocab.json merges.txt tokenizer_config.json special_tokens_map.json"
    )


__all__ = ["TokenizerSource", "find_clip_tokenizer", "read_bpe_gz", "CLIP_VOCAB_SIZE", "HF_CACHE_REPOS", "HOST_TOKENIZERS", "USUAL_INSTALLS", "BPE_GZ"]
