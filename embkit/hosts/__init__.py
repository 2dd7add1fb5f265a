"""The one table of hosts: what AUTOMATIC1111, Forge, ComfyUI, InvokeAI, diffusers, SD.Next and
embkit itself do with an embedding file, from each host's own source (cited in docs/hosts.md).

Each :class:`Host` row says which files the host reads and ignores, how it derives the word a user
types (file stem, stored name, token; ``embedding:NAME``; ``<NAME>``), how its prompt matching
works, whether it folds case, what its pickle loader refuses, the layout and container it loads
best, and points at the two functions that model its loader: ``read`` (the file → what the host
keeps, or why it fails) and ``apply`` (that → what reaches each text encoder of a model family).
Validation, ``verify --host``, ``inspect``, the library, the writers and ``convert --for`` all
read this table; there is no second list of host rules.

The public face, torch-free::

    >>> from embkit import hosts
    >>> hosts.verdict("learned_embeds.bin", "a1111", "sd1").trigger
    'learned_embeds'
    >>> hosts.triggers(embkit.read("cat-toy/"))
    {'a1111': 'learned_embeds', 'forge': 'learned_embeds', 'comfyui': 'embedding:cat-toy/learned_embeds', …}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Mapping

from . import comfyui, embkit_host, hf_diffusers, invokeai, sdnext, webui
from .common import STATUSES, HostVerdict, Read
from .facts import FileFacts


@dataclass(frozen=True)
class Host:
    """One host's rules (see the module docstring)."""

    id: str
    #: how the host is named in tables and messages (``A1111``, ``ComfyUI``)
    label: str
    title: str
    #: the snapshot the rules were read from (``owner/repo@commit``)
    source: str
    reads: str
    ignores: str
    trigger_rule: str
    #: how a prompt finds the trigger: ``token-ids`` (the name's CLIP token ids, longest first),
    #: ``embedding-syntax`` (``embedding:NAME`` up to a space), ``angle-brackets`` (``<NAME>``),
    #: ``added-tokens`` (new tokenizer tokens, multi-vector ones expanded with ``str.replace``),
    #: ``whole-words`` (embkit's expansion: whole words, longest first)
    matching: str
    #: True when ``Style`` and ``style`` are the same trigger to it
    folds_case: bool
    #: ``str.format`` pattern of what is typed for a name
    syntax: str
    safe_loader: str
    #: trigger-name pitfalls that concern it (see :mod:`embkit.check.names`)
    pitfalls: frozenset[str]
    read: Callable[[FileFacts], list[Read]]
    apply: Callable[..., HostVerdict]
    #: the (format, container) it loads best: ``"one"`` for one text encoder, ``"sdxl"`` for CLIP-L + CLIP-G
    writes: Mapping[str, tuple[str, str]]
    #: model families it applies textual inversions on
    families: tuple[str, ...] = ("sd1", "sd2", "sdxl", "sd3", "flux")

    def bare(self, trigger: str | None) -> str | None:
        """The name inside the syntax: ``embedding:x`` → ``x``, ``<x>`` → ``x``."""
        if trigger is None:
            return None
        head, _, tail = self.syntax.partition("{}")
        if trigger.startswith(head) and trigger.endswith(tail):
            return trigger[len(head) : len(trigger) - len(tail)]
        return trigger


HOSTS: tuple[Host, ...] = (
    Host(
        "a1111", "A1111", "AUTOMATIC1111 web UI", "AUTOMATIC1111/stable-diffusion-webui@82a973c (v1.10.1)",
        ".pt, .bin (torch.load through its safe loader), .safetensors, embedding cards (.png .webp .jxl .avif); LoRA-bundled embeddings while the LoRA is in the prompt",
        "*.preview.* pictures, zero-byte files, every other extension (.ckpt, .pth, .txt, .json, .civitai.info)",
        "the file stem (the stored name is ignored); a card's stored name; a LoRA bundle's name before the second dot",
        "token-ids", True, "{}",
        "zip members must match ^([^/]+)/((data/\\d+)|version|(data\\.pkl))$ before 1.10, plus byteorder and .data/serialization_id from 1.10; "
        "no release accepts .format_version or .storage_alignment; globals from a short allow-list",
        frozenset({"vocab-token", "case-fold", "token-prefix"}),
        lambda facts: webui.read(facts, "a1111"), webui.apply_a1111,
        {"one": ("a1111", "pickle"), "sdxl": ("multi", "safetensors")},
        ("sd1", "sd2", "sdxl"),
    ),
    Host(
        "forge", "Forge", "Stable Diffusion WebUI Forge", "lllyasviel/stable-diffusion-webui-forge@dfdcbab",
        "as A1111 (no LoRA-bundled embeddings)", "as A1111",
        "the file stem; a card's stored name",
        "token-ids", True, "{}",
        "none: plain torch.load on torch 2.3.1 (weights_only=False), so no member check either",
        frozenset({"vocab-token", "case-fold", "token-prefix"}),
        lambda facts: webui.read(facts, "forge"), webui.apply_forge,
        {"one": ("a1111", "pickle"), "sdxl": ("multi", "safetensors")},
    ),
    Host(
        "comfyui", "ComfyUI", "ComfyUI", "Comfy-Org/ComfyUI@a125cd8",
        "any file typed after embedding: (its name, or the name plus .safetensors, .pt, .bin), in models/embeddings or a folder below it",
        "files never typed; pictures fail (no embedding cards); bundled embeddings in LoRAs",
        "embedding:<file stem> (embedding:<folder>/learned_embeds for a concept folder); the stored name and token are ignored",
        "embedding-syntax", False, "embedding:{}",
        "torch.load with weights_only=True plus a few numpy globals; on refusal a zip fallback guesses the tensor (width 768/1024, float32)",
        frozenset(),
        comfyui.read, comfyui.apply,
        {"one": ("kohya", "safetensors"), "sdxl": ("multi", "safetensors")},
    ),
    Host(
        "invokeai", "InvokeAI", "InvokeAI", "invoke-ai/InvokeAI@8e71a8a",
        "installed models: .ckpt .bin .pth .safetensors .pt .gguf files, folders holding learned_embeds.bin",
        "pictures; LoRA-bundled embeddings (stripped)",
        "<model name>: the file stem, or the folder name",
        "angle-brackets", False, "<{}>",
        "picklescan, then torch.load with weights_only=True",
        frozenset(),
        invokeai.read, invokeai.apply,
        {"one": ("kohya", "safetensors"), "sdxl": ("multi", "safetensors")},
        ("sd1", "sd2", "sdxl"),
    ),
    Host(
        "diffusers", "diffusers", "diffusers load_textual_inversion", "huggingface/diffusers@58eb52c",
        "the path it is given: .safetensors by load_file, anything else by torch.load; a folder's learned_embeds.safetensors or .bin",
        "nothing it is given (pictures and multi-key dicts fail)",
        "the one key of a one-key dict (kohya files: 'emb_params'); an A1111 file's stored name; the file name never",
        "added-tokens", True, "{}",
        "torch.load with weights_only=True",
        frozenset({"vocab-token", "case-fold", "mixed-case", "expanded-names", "substring-replace"}),
        hf_diffusers.read, hf_diffusers.apply,
        {"one": ("diffusers", "safetensors"), "sdxl": ("diffusers", "safetensors")},
        ("sd1", "sd2", "sdxl", "flux"),
    ),
    Host(
        "sdnext", "SD.Next", "SD.Next (diffusers backend)", "vladmandic/sdnext@058a7f0",
        ".safetensors (every tensor) and .pt (string_to_param['*'] only)",
        ".bin files, pictures, *.preview files, zero-byte files",
        "the file stem (stem, stem_1, … case-sensitive); a LoRA bundle's name before the second dot",
        "added-tokens", False, "{}",
        "plain torch.load on torch 2.13 (weights_only=True by default)",
        frozenset({"vocab-token", "substring-replace"}),
        sdnext.read, sdnext.apply,
        {"one": ("kohya", "safetensors"), "sdxl": ("multi", "safetensors")},
        ("sd1", "sd2", "sdxl"),
    ),
    Host(
        "embkit", "embkit", "embkit.diffusers.apply", "this repository",
        "every format embkit reads (embkit formats)", "files embkit cannot read or refuses as unsafe",
        "the name embkit gives it (docs/formats.md)",
        "whole-words", True, "{}",
        "embkit's allow-list reader (never unpickles anything else)",
        frozenset({"vocab-token", "case-fold", "mixed-case", "expanded-names", "substring-replace"}),
        embkit_host.read, embkit_host.apply,
        {"one": ("diffusers", "safetensors"), "sdxl": ("multi", "safetensors")},
    ),
)

HOST_IDS: tuple[str, ...] = tuple(h.id for h in HOSTS)


def get_host(host_id: str) -> Host:
    """The table row for a host id; ``KeyError`` names the known ids."""
    for h in HOSTS:
        if h.id == host_id:
            return h
    raise KeyError(f"unknown host {host_id!r}; known hosts: {', '.join(HOST_IDS)}")


def resolve_hosts(names: Iterable[str] | str | None) -> tuple[str, ...]:
    """Host ids from what a user typed: ids (any case), ``all``; ``None`` or empty gives ``()``."""
    if names is None:
        return ()
    if isinstance(names, str):
        names = [names]
    out: list[str] = []
    for n in names:
        for part in str(n).split(","):
            part = part.strip().lower()
            if not part:
                continue
            ids = HOST_IDS if part == "all" else (get_host(part).id,)
            out.extend(i for i in ids if i not in out)
    return tuple(out)


from .verdict import every_family, triggers, verdict, verdicts, where  # noqa: E402  (the API over the table)

__all__ = ["HOSTS", "HOST_IDS", "Host", "HostVerdict", "STATUSES", "FileFacts", "get_host", "resolve_hosts", "verdict", "verdicts", "triggers", "where", "every_family"]
