"""What a target model offers an embedding: its text-encoder slots, their widths, vocabularies,
prompt token limits and token-embedding norms.

A :class:`ModelSpec` is built from a family name, a local diffusers folder, a single-file
``.safetensors`` checkpoint (header only) or a live diffusers pipeline;
:func:`embkit.model.resolve.resolve_target` picks from what a user names. Only the pipeline path
imports torch, and only inside the function.
"""

from __future__ import annotations

import os
import types
from dataclasses import dataclass, field
from typing import Any, Mapping

from ..errors import TargetError
from ..schema import CLIP_TOKEN_LIMIT, FAMILIES, SLOTS, family_for
from . import files
from .slots import T5_TOKEN_LIMIT, SlotSpec, TokenNorms, default_slot, family_name, replace_limit, slot_of_encoder
from .vocab import Vocab


@dataclass(frozen=True, eq=False)
class ModelSpec:
    """A validation target: its family (or ``"unknown"``) and its slots.

    Build one with :meth:`from_family`, :meth:`from_folder`, :meth:`from_checkpoint`,
    :meth:`from_pipeline` or :func:`resolve_target`.
    """

    family: str
    slots: Mapping[str, SlotSpec]
    #: what it was built from, for messages: ``family sdxl``, a path, ``pipeline StableDiffusionPipeline``
    source: str = ""
    kind: str = "family"
    notes: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        ordered = {s: self.slots[s] for s in sorted(self.slots, key=SLOTS.index)}
        object.__setattr__(self, "slots", types.MappingProxyType(ordered))

    def describe(self) -> str:
        """``SDXL (clip_l 768, clip_g 1280)``: the family and its slots, for messages."""
        name = self.family.upper() if self.family != "unknown" else "unknown model"
        return f"{name} ({', '.join(f'{s} {spec.width}' for s, spec in self.slots.items())})"

    def to_dict(self) -> dict:
        """JSON form, as used in ``embkit verify --json``."""
        return {"family": self.family, "kind": self.kind, "source": self.source, "slots": {s: v.to_dict() for s, v in self.slots.items()}, "notes": list(self.notes)}

    # -- constructors --------------------------------------------------------------------------
    @classmethod
    def from_family(cls, name: str) -> "ModelSpec":
        """The spec of a family (``sd1``, ``sd2``, ``sdxl``, ``sd3``, ``flux``): canonical widths,
        75-token CLIP prompts, documented norm priors, no vocabulary."""
        fam = family_name(name)
        if fam not in FAMILIES:
            raise TargetError(f"unknown model family {name!r}; known families: {', '.join(FAMILIES)}")
        return cls(fam, {s: default_slot(s, fam) for s in FAMILIES[fam]}, source=f"family {fam}", kind="family")

    @classmethod
    def from_folder(cls, path: str | os.PathLike) -> "ModelSpec":
        """Read a local diffusers model folder: ``text_encoder*/config.json`` for the slots,
        ``tokenizer*/`` for vocabularies, and (when present) only the token-embedding tensor of
        ``text_encoder*/model*.safetensors`` for real token norms. No torch."""
        return files.read_folder(cls, os.fspath(path))

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike) -> "ModelSpec":
        """Read a single-file checkpoint's tensor names and shapes (no tensor data): a ``.safetensors``
        header, or a ``.ckpt`` through embkit's allow-list unpickler. The shapes of its token-embedding
        tensors name the slots, diffusion-model keys the family."""
        return files.read_checkpoint(cls, os.fspath(path))

    @classmethod
    def from_pipeline(cls, pipe: Any) -> "ModelSpec":
        """Read a live diffusers pipeline's text encoders and tokenizers (imports torch)."""
        import torch  # noqa: F401  (a pipeline means torch is loaded; norms are computed with it)

        slots: dict[str, SlotSpec] = {}
        for i, suffix in enumerate(("", "_2", "_3")):
            encoder = getattr(pipe, f"text_encoder{suffix}", None)
            if encoder is None:
                continue
            weight = encoder.get_input_embeddings().weight.detach()
            width = int(weight.shape[1])
            model_type = str(getattr(encoder.config, "model_type", ""))
            slot = slot_of_encoder(model_type, width, i)
            norms = torch.linalg.vector_norm(weight.float(), dim=1).cpu().numpy()
            tokenizer = getattr(pipe, f"tokenizer{suffix}", None)
            vocab = None
            limit = CLIP_TOKEN_LIMIT if slot != "t5" else 256
            if tokenizer is not None:
                kind = "t5" if slot == "t5" else "clip"
                vocab = Vocab.from_callable(tokenizer.get_vocab().keys(), tokenizer.tokenize, kind=kind, added=tokenizer.get_added_vocab().keys())
                max_len = getattr(tokenizer, "model_max_length", None)
                if isinstance(max_len, int) and 2 < max_len <= 4096:
                    limit = max_len - 2 if slot != "t5" else max_len
            if slot in slots:
                raise TargetError(f"pipeline has two text encoders for slot {slot}")
            slots[slot] = SlotSpec(width, vocab, limit, TokenNorms.from_norms(norms), f"text_encoder{suffix}")
        if not slots:
            raise TargetError(f"{type(pipe).__name__} has no text encoder (text_encoder, text_encoder_2, text_encoder_3)")
        fam = family_for(slots)
        if fam in T5_TOKEN_LIMIT and "t5" in slots:
            # the pipelines' max_sequence_length default, not the tokenizer's 512
            slots["t5"] = replace_limit(slots["t5"], T5_TOKEN_LIMIT[fam])
        return cls(fam, slots, source=f"pipeline {type(pipe).__name__}", kind="pipeline")
