"""Everything :func:`~embkit.diffusers.apply` and :func:`~embkit.diffusers.load_textual_inversion`
accept, turned into :class:`~embkit.schema.Embedding` objects: embeddings, files and folders (any
format, through embkit's readers: no ``torch.load``), Hub repo ids (one file through
huggingface_hub's cache, as diffusers fetches it), state dicts and tensors (numpy or torch).

Two ways to pick the trigger of a file: embkit's (the name :func:`embkit.read` gives: what A1111 and
ComfyUI type) and diffusers' (:func:`diffusers_trigger`), which ``load_textual_inversion`` follows so
that prompts written for diffusers keep working.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

from ..errors import EmbkitError, TargetError
from ..schema import Embedding

#: the files diffusers looks for in a repo or folder without ``weight_name``, in order
#: (``TEXT_INVERSION_NAME_SAFE``, ``TEXT_INVERSION_NAME``: diffusers@58eb52c
#: src/diffusers/loaders/textual_inversion.py:41-42)
DEFAULT_WEIGHTS = ("learned_embeds.safetensors", "learned_embeds.bin")
#: the Hub arguments of diffusers' loader (``load_textual_inversion_state_dicts``, :46-55) → embkit's
HUB_ARGUMENTS = ("cache_dir", "force_download", "proxies", "local_files_only", "hf_token", "revision", "subfolder", "use_safetensors")
#: arguments diffusers documents but no longer uses; accepted and ignored
IGNORED_ARGUMENTS = ("mirror", "resume_download", "user_agent")
_REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9._-]+")


@dataclass
class HubOptions:
    """Where a repo id or folder's file is found, as diffusers' keyword arguments say."""

    weight_name: str | None = None
    subfolder: str | None = None
    revision: str | None = None
    token: str | bool | None = None
    cache_dir: Any = None
    force_download: bool = False
    local_files_only: bool = False
    use_safetensors: bool | None = None

    @classmethod
    def from_kwargs(cls, weight_name: str | None, kwargs: dict[str, Any], caller: str) -> "HubOptions":
        """Parse diffusers' ``**kwargs``; an unknown name is a ``TypeError`` (diffusers drops it
        silently, so its own docs' ``tokens=`` typo goes unnoticed there)."""
        unknown = sorted(set(kwargs) - set(HUB_ARGUMENTS) - set(IGNORED_ARGUMENTS) - {"use_auth_token"})
        if unknown:
            hint = " (did you mean token=?)" if "tokens" in unknown else ""
            raise TypeError(f"{caller}() got unexpected keyword argument(s) {', '.join(unknown)}{hint}")
        if kwargs.get("proxies"):
            raise TypeError(f"{caller}(): proxies= is not passed on; set HTTPS_PROXY for huggingface_hub instead")
        return cls(
            weight_name=weight_name,
            subfolder=kwargs.get("subfolder") or None,
            revision=kwargs.get("revision"),
            token=kwargs.get("hf_token", kwargs.get("use_auth_token")),
            cache_dir=kwargs.get("cache_dir"),
            force_download=bool(kwargs.get("force_download", False)),
            local_files_only=bool(kwargs.get("local_files_only") or False),
            use_safetensors=kwargs.get("use_safetensors"),
        )

    def candidates(self) -> list[str]:
        """The file names to try, in diffusers' order."""
        if self.weight_name:
            return [self.weight_name]
        if self.use_safetensors is True:
            return [DEFAULT_WEIGHTS[0]]
        if self.use_safetensors is False:
            return [DEFAULT_WEIGHTS[1]]
        return list(DEFAULT_WEIGHTS)


# -- what a thing is ----------------------------------------------------------------------------------


def is_tensor(value: Any) -> bool:
    """A numpy array or a torch tensor (known by its methods: torch is not imported here)."""
    import numpy as np

    return isinstance(value, np.ndarray) or all(hasattr(value, a) for a in ("detach", "cpu", "dtype", "shape"))


def looks_like_repo_id(text: str) -> bool:
    """``owner/name`` that is not a path on disk and does not end like an embedding file."""
    from ..formats import extensions

    if os.path.exists(text) or not _REPO_ID.fullmatch(text):
        return False
    return not text.lower().endswith(extensions())


# -- turning things into embeddings --------------------------------------------------------------------


def from_tensor(value: Any, name: str) -> Embedding:
    """A ``[n, d]`` or ``[d]`` tensor (numpy or torch) as one embedding named ``name``."""
    from ..statedicts import from_state_dict

    shape = tuple(getattr(value, "shape", ()))
    if len(shape) not in (1, 2):
        raise EmbkitError(f"a tensor embedding is [vectors, width] or [width], not {list(shape)}")
    (emb,) = from_state_dict({name: value}, name=name)
    return emb


def from_state_dict(tree: dict, name: str | None) -> list[Embedding]:
    """The embeddings of an in-memory state dict (see :func:`embkit.statedicts.from_state_dict`)."""
    from ..statedicts import from_state_dict as read_tree

    return read_tree(tree, name=name)


def from_hub(repo_id: str, options: HubOptions) -> list[Embedding]:
    """Fetch one file of ``repo_id`` (``weight_name``, else diffusers' default names) through the
    huggingface_hub cache and read it with embkit's readers."""
    from ..hubclient import hub_file

    path = hub_file(repo_id, options.candidates(), subfolder=options.subfolder, revision=options.revision, token=options.token,
                    cache_dir=options.cache_dir, force_download=options.force_download, local_files_only=options.local_files_only)
    return read_file(path, options)


def from_folder(folder: str, options: HubOptions) -> list[Embedding]:
    """diffusers' rule for a local folder: ``weight_name`` (or the default names) in it, or in its
    ``subfolder``."""
    tried = []
    for name in options.candidates():
        # the folder itself first, then its subfolder (diffusers' _get_model_file, utils/hub_utils.py)
        for base in [folder] + ([os.path.join(folder, options.subfolder)] if options.subfolder else []):
            path = os.path.join(base, name)
            tried.append(path)
            if os.path.isfile(path):
                return read_file(path, options)
    raise EmbkitError(f"{folder}: no {' or '.join(dict.fromkeys(os.path.basename(t) for t in tried))} in this folder; pass weight_name=")


def read_file(path: str, options: HubOptions | None = None) -> list[Embedding]:
    """Every embedding in a file, read by embkit (``use_safetensors=True`` refuses other containers).
    The file is read by itself, as diffusers reads it: one half of an SDXL pair stays one half."""
    from ..io import read_all

    embs = read_all(path, alone=True)
    if options is not None and options.use_safetensors and any(e.source is None or e.source.container != "safetensors" for e in embs):
        raise EmbkitError(f"{path}: use_safetensors=True, but this is not a safetensors file")
    return embs


def diffusers_trigger(emb: Embedding) -> str:
    """The token diffusers' loader gives a file's embedding when no ``token=`` is passed.

    It is the key of a ``{token: tensor}`` dict (embkit's name too) and the stored ``name`` of an
    A1111 file, not its file name (diffusers@58eb52c src/diffusers/loaders/textual_inversion.py:203-242,
    ``_retrieve_tokens_and_embeddings``). For the layouts diffusers refuses or names by a fixed key
    (kohya's ``emb_params``), embkit's name (the file stem) is used.
    """
    stored = emb.metadata.get("stored_name")
    if emb.source is not None and emb.source.format == "a1111" and isinstance(stored, str) and stored.strip():
        return stored
    return emb.name


def pipeline_pair(pipe: Any, text_encoder: Any, tokenizer: Any, pairs: tuple[tuple[str, str], ...]) -> tuple[str, str] | None:
    """The (encoder, tokenizer) attribute names of the objects a caller passed, or None for none."""
    if text_encoder is None and tokenizer is None:
        return None
    for enc_attr, tok_attr in pairs:
        enc, tok = getattr(pipe, enc_attr, None), getattr(pipe, tok_attr, None)
        if enc is None or tok is None:
            continue
        if (text_encoder is None or text_encoder is enc) and (tokenizer is None or tokenizer is tok):
            return enc_attr, tok_attr
    raise TargetError("text_encoder= and tokenizer= must be one of the pipeline's own pairs (text_encoder with tokenizer, "
                      "text_encoder_2 with tokenizer_2 …); embkit tracks what it loads per pipeline attribute")


__all__ = ["HubOptions", "DEFAULT_WEIGHTS", "is_tensor", "looks_like_repo_id", "from_tensor", "from_state_dict", "from_hub",
           "from_folder", "read_file", "diffusers_trigger", "pipeline_pair"]
