"""Nearest vocabulary tokens of an embedding's vectors: Embedding Inspector's view, per encoder.

``embkit inspect FILE --model TARGET --nearest K`` lists, for each vector of each input slot, the
``K`` tokens of that encoder's vocabulary whose token-embedding rows have the highest cosine
similarity to it (every row, special tokens included, as Embedding Inspector ranks them; it shows
30 names and no scores, embkit shows the scores too). TARGET is

- a local diffusers folder: ``text_encoder*/`` weights (only the token-embedding tensor is read,
  memory-mapped) and ``tokenizer*/`` for the names;
- a single-file ``.safetensors`` checkpoint: the token-embedding tensors found in its header and
  read at their offsets; the names from the CLIP tokenizer in the Hugging Face cache
  (``openai/clip-vit-large-patch14``, the vocabulary every SD CLIP encoder shares) when it is there;
- a Hub repo id whose text encoders are already in the Hugging Face cache (nothing is downloaded).

The ranking itself is :func:`embkit.model.tokens.nearest`, shared with ``embkit port --via``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import EmbkitError, TargetError
from ..schema import JSON, Embedding, is_output_slot
from .files import checkpoint_token_keys, encoder_matrix
from .headers import read_st_header
from .tokens import TokenMatrix, nearest, unit_rows
from .vocab import token_names

#: Where the CLIP vocabulary is looked for when a single-file checkpoint is the target.
CLIP_TOKENIZER_REPO = "openai/clip-vit-large-patch14"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass
class TokenTable:
    """One encoder's token matrix (memory-mapped), its rows normalised, and the token names."""

    slot: str
    matrix: TokenMatrix
    names: list[str | None] | None
    _unit: np.ndarray | None = None

    @property
    def unit(self) -> np.ndarray:
        """The rows scaled to length 1 (computed on first use, once)."""
        if self._unit is None:
            self._unit = unit_rows(self.matrix.matrix())
        return self._unit

    def nearest(self, vectors: np.ndarray, k: int) -> list[list[dict[str, Any]]]:
        """For each vector, ``k`` entries ``{"token", "id", "cosine"}``, best first."""
        ids, cos = nearest(vectors, self.unit, k, self.matrix.rows)
        names = self.names or []
        return [
            [{"token": names[i] if i < len(names) else None, "id": int(i), "cosine": round(float(c), 6)} for i, c in zip(row_ids, row_cos)]
            for row_ids, row_cos in zip(ids, cos)
        ]


class TokenIndex:
    """The token tables of a target model, by slot; :meth:`slot_fields` adds ``nearest`` to a slot
    of an ``inspect`` report. Close it (or use it as a context manager) to unmap the files."""

    def __init__(self, tables: dict[str, TokenTable], source: str, notes: list[str]):
        self.tables, self.source, self.notes = tables, source, notes

    @classmethod
    def from_target(cls, target: str | os.PathLike) -> "TokenIndex":
        """Token tables from a diffusers folder, a single-file ``.safetensors`` checkpoint or a Hub
        repo id in the cache (see the module docstring)."""
        text = os.path.expanduser(os.fspath(target))
        if os.path.isdir(text):
            return cls._from_folder(text)
        if os.path.isfile(text):
            if not text.lower().endswith(".safetensors"):
                raise TargetError("is not a .safetensors checkpoint or a diffusers folder", path=text)
            return cls._from_checkpoint(text)
        if _HUB_ID.match(text):
            return cls._from_folder(_cached_repo(text), source=text)
        raise TargetError(f"cannot find token embeddings in {text!r}: not a folder, a .safetensors checkpoint, or a Hub repo id")

    @classmethod
    def _from_folder(cls, folder: str, source: str | None = None) -> "TokenIndex":
        from .spec import ModelSpec

        spec = ModelSpec.from_folder(folder)
        tables: dict[str, TokenTable] = {}
        notes: list[str] = []
        try:
            for slot, s in spec.slots.items():
                found = encoder_matrix(os.path.join(folder, s.component))
                if found is None:
                    notes.append(f"{s.component}: no safetensors weights, so no {slot} nearest tokens")
                    continue
                tok_dir = os.path.join(folder, s.component.replace("text_encoder", "tokenizer"))
                names = token_names(tok_dir) if os.path.isdir(tok_dir) else None
                if names is None:
                    notes.append(f"{slot}: no tokenizer files in {os.path.basename(tok_dir)}/; tokens shown by id")
                tables[slot] = TokenTable(slot, TokenMatrix(found[0], found[1]), names)
        except BaseException:
            for t in tables.values():
                t.matrix.close()
            raise
        return cls(tables, source or folder, notes)

    @classmethod
    def _from_checkpoint(cls, path: str) -> "TokenIndex":
        header, _, _, _ = read_st_header(path)
        keys = checkpoint_token_keys(header, path)
        if not keys:
            raise TargetError("holds no text-encoder token embedding", path=path)
        names, notes = _cached_clip_names(), []
        if names is None:
            notes.append(f"no CLIP tokenizer in the Hugging Face cache ({CLIP_TOKENIZER_REPO}); tokens shown by id")
        tables = {}
        for slot, (_width, key) in keys.items():
            tables[slot] = TokenTable(slot, TokenMatrix(path, key), names if slot != "t5" else None)
            if slot == "t5":
                notes.append("t5: a single-file checkpoint holds no T5 vocabulary; tokens shown by id")
        return cls(tables, path, notes)

    def slot_fields(self, emb: Embedding, slot: str, k: int) -> dict[str, JSON]:
        """``{"nearest": [[{"token", "id", "cosine"}, …] per vector]}`` for an input slot the model
        has; ``{"nearest": None}`` for one it lacks (a width it has no encoder for) and for
        output vectors (they are added to an encoder's output, not token rows)."""
        table = self.tables.get(slot)
        if table is None or is_output_slot(slot) or table.matrix.width != emb.vectors[slot].shape[1]:
            return {"nearest": None}
        return {"nearest": table.nearest(emb.vectors[slot], k)}

    def close(self) -> None:
        for t in self.tables.values():
            t.matrix.close()

    def __enter__(self) -> "TokenIndex":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _cached_repo(repo_id: str) -> str:
    """The snapshot folder of a repo already in the Hugging Face cache (never a download)."""
    from ..hubclient import _hf

    hf = _hf()
    try:
        return hf.snapshot_download(repo_id, local_files_only=True)
    except Exception as exc:  # LocalEntryNotFoundError and friends: say what to do instead
        raise TargetError(
            f"{repo_id!r} is not in the Hugging Face cache ({type(exc).__name__}); download its text encoders first "
            f"(hf download {repo_id} --include 'text_encoder*/*' 'tokenizer*/*' '*/config.json'), or pass a local folder"
        ) from None


def _cached_clip_names() -> list[str | None] | None:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    try:
        vocab = try_to_load_from_cache(CLIP_TOKENIZER_REPO, "vocab.json")
    except Exception:  # a broken cache must not stop the ranking, which works by id
        return None
    if not isinstance(vocab, str) or not os.path.isfile(vocab):
        return None
    try:
        return token_names(os.path.dirname(vocab))
    except EmbkitError:
        return None


__all__ = ["TokenIndex", "TokenTable", "CLIP_TOKENIZER_REPO"]
