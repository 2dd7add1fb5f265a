"""diffusers' textual-inversion API, done by embkit: :func:`load_textual_inversion`,
:func:`unload_textual_inversion` and :func:`maybe_convert_prompt` take the arguments of diffusers'
``TextualInversionLoaderMixin`` methods (diffusers@58eb52c src/diffusers/loaders/textual_inversion.py)
and :func:`patch` (or :class:`TextualInversionMixin`) makes a pipeline's own methods use them, so
code written for diffusers runs unchanged. Underneath it is :func:`~embkit.diffusers.apply`:

* files are read by embkit's readers (safetensors, and pickles through the allow-list unpickler:
  never ``torch.load``), every layout embkit knows, A1111 image cards included;
* a list of embeddings grows each matrix once, and a failure leaves the pipeline untouched;
* a file with ``clip_l`` and ``clip_g`` fills both SDXL encoders in one call;
* prompts are expanded as whole words, case-insensitively (:func:`embkit.prompt.expand`);
* unloading takes out exactly the tokens asked for, all vectors of a multi-vector trigger, in any
  order with diffusers' own loader, and works under CPU offload.

What differs is listed in docs/python.md ("Coming from diffusers").
"""

from __future__ import annotations

import types
from typing import Any

from ..errors import EmbkitError
from .apply import applied, apply, remove_tokens, unload
from .prompt import expand, token_names, trigger_counts
from .registry import ENCODER_PAIRS, TOKENIZER_OF, Applied, encoder_slots
from . import sources

#: the methods :func:`patch` replaces on a pipeline object
PATCHED = ("load_textual_inversion", "unload_textual_inversion", "maybe_convert_prompt")
_MARK = "_embkit_patched"


def load_textual_inversion(pipe: Any, pretrained_model_name_or_path: Any, token: str | list[str | None] | None = None,
                           tokenizer: Any = None, text_encoder: Any = None, *, weight_name: str | None = None, **kwargs: Any) -> Applied:
    """Load textual-inversion embeddings into ``pipe``, with the arguments of diffusers'
    ``pipe.load_textual_inversion``.

    ``pretrained_model_name_or_path``: a Hub repo id (its ``weight_name``, else
    ``learned_embeds.safetensors``, else ``learned_embeds.bin``, through the huggingface_hub
    cache), a folder (the same names in it or in ``subfolder``), a file of any format, a state dict
    (``{token: tensor}``, A1111's dict …), a tensor (with ``token``), or a list of them. ``token``
    overrides the trigger (a list matching the list; several tokens for one ``[n, d]`` tensor give
    one token per row). ``text_encoder``/``tokenizer``: one of the pipeline's pairs
    (``pipe.text_encoder_2, pipe.tokenizer_2``) to load into; by default each embedding goes into
    every encoder it has vectors for. Hub arguments: ``cache_dir``, ``force_download``,
    ``local_files_only``, ``hf_token``, ``revision``, ``subfolder``, ``use_safetensors``.

    Without ``token`` the trigger is what diffusers would use: a diffusers file's key, an A1111
    file's stored name; for the layouts diffusers cannot load or names by a fixed key (kohya's
    ``emb_params``, ``{clip_l, clip_g}``), the file name. Returns the :class:`Applied` record.
    """
    options = sources.HubOptions.from_kwargs(weight_name, kwargs, "load_textual_inversion")
    pair = sources.pipeline_pair(pipe, text_encoder, tokenizer, ENCODER_PAIRS)
    items = pretrained_model_name_or_path if isinstance(pretrained_model_name_or_path, list) else [pretrained_model_name_or_path]
    tokens: list[Any] = token if isinstance(token, list) else [token]
    if tokens == [None]:
        tokens = [None] * len(items)
    if len(items) == 1 and len(tokens) > 1 and sources.is_tensor(items[0]):
        # one [n, d] tensor and n tokens: a token per row (diffusers' step 4.1)
        rows = items[0]
        if len(rows.shape) != 2 or int(rows.shape[0]) != len(tokens):
            raise EmbkitError(f"a tensor of shape {list(rows.shape)} and {len(tokens)} tokens: pass one token per row")
        items = [rows[i] for i in range(len(tokens))]
    if len(items) != len(tokens):
        raise EmbkitError(f"{len(items)} embeddings and {len(tokens)} tokens: pass one token per embedding")
    named = [t for t in tokens if t is not None]
    if len(set(named)) < len(named):
        raise EmbkitError(f"the tokens repeat: {named}")
    embs, triggers = [], []
    for item, tok in zip(items, tokens):
        found = _embeddings(item, tok, options)
        if tok is not None and len(found) > 1:
            raise EmbkitError(f"{sources_label(item)} holds {len(found)} embeddings ({', '.join(e.name for e in found)}); token= names one")
        for emb in found:
            embs.append(emb)
            triggers.append(tok if tok is not None else sources.diffusers_trigger(emb))
    encoders = (pair[0],) if pair is not None else tuple(s.encoder for s in encoder_slots(pipe))
    return apply(pipe, embs, tokens=triggers, encoders=encoders)


def _embeddings(item: Any, token: str | None, options: sources.HubOptions) -> list[Any]:
    import os

    from ..schema import Embedding

    if isinstance(item, Embedding):
        return [item]
    if isinstance(item, dict):
        return sources.from_state_dict(item, token)
    if sources.is_tensor(item):
        if token is None:
            raise EmbkitError("a tensor carries no trigger word; pass token=")
        return [sources.from_tensor(item, token)]
    if isinstance(item, (str, os.PathLike)):
        path = os.path.expanduser(os.fspath(item))
        if os.path.isdir(path):
            return sources.from_folder(path, options)
        if os.path.isfile(path) or not sources.looks_like_repo_id(path):
            return sources.read_file(path, options)
        return sources.from_hub(path, options)
    raise EmbkitError(f"cannot load a {type(item).__name__}; pass a Hub repo id, a path, a state dict or a tensor")


def sources_label(item: Any) -> str:
    """How messages name one item of the call."""
    return repr(item) if isinstance(item, str) else type(item).__name__


def unload_textual_inversion(pipe: Any, tokens: str | list[str] | None = None, tokenizer: Any = None, text_encoder: Any = None) -> list[str]:
    """Take textual-inversion tokens out of ``pipe``, with the arguments of diffusers'
    ``pipe.unload_textual_inversion``: the ``tokens`` given (a multi-vector trigger with all of its
    ``tok_1 …`` tokens), or every added token. ``text_encoder``/``tokenizer`` pick one pair; by
    default every encoder (embkit's loader fills all encoders an embedding has vectors for).
    Tokens loaded by diffusers' own loader go too; the tokenizer and the matrix stay consistent.
    Returns the tokens removed (an empty list when none of ``tokens`` is loaded, where diffusers
    raises ``ValueError``)."""
    pair = sources.pipeline_pair(pipe, text_encoder, tokenizer, ENCODER_PAIRS)
    targets = [pair[0]] if pair is not None else [s.encoder for s in encoder_slots(pipe)]
    wanted: dict[str, list[str]] = {}
    for enc_attr in targets:
        tok = getattr(pipe, TOKENIZER_OF[enc_attr])
        if tokens is None:
            wanted[enc_attr] = [t.content for t in tok.added_tokens_decoder.values() if not t.special]
        else:
            counts = trigger_counts(tok)
            names = [tokens] if isinstance(tokens, str) else list(tokens)
            wanted[enc_attr] = [t for name in names for t in token_names(name, counts.get(name, 1))]
    whole = _whole_triggers(pipe, wanted)
    if whole is not None:
        # exactly some of embkit's own triggers, in every encoder they are in: unload them, which
        # restores from snapshots where it can (exact, and faster than taking tokens out by name)
        unload(pipe, whole)
        return [t for enc_attr in targets for t in wanted[enc_attr]]
    removed: list[str] = []
    for enc_attr in targets:
        removed.extend(remove_tokens(pipe, enc_attr, wanted[enc_attr]))
    return removed


def _whole_triggers(pipe: Any, wanted: dict[str, list[str]]) -> list[str] | None:
    """The embkit triggers whose tokens, in all encoders, are exactly the ``wanted`` ones; None when
    ``wanted`` holds anything else (tokens diffusers loaded, part of a trigger, another encoder)."""
    found: list[str] = []
    covered: dict[str, set[str]] = {enc_attr: set() for enc_attr in wanted}
    for record in applied(pipe):
        for trigger in record.triggers.values():
            held = {enc_attr: token_names(trigger, n) for enc_attr, tok_attr in ENCODER_PAIRS
                    if (n := record.counts.get(tok_attr, {}).get(trigger))}
            if held and all(enc_attr in wanted and set(toks) <= set(wanted[enc_attr]) for enc_attr, toks in held.items()):
                found.append(trigger)
                for enc_attr, toks in held.items():
                    covered[enc_attr].update(toks)
    if not found or any(covered[enc_attr] != set(toks) for enc_attr, toks in wanted.items()):
        return None
    everywhere = [t for record in applied(pipe) for t in record.triggers.values()]
    if any(everywhere.count(t) > 1 for t in found):
        return None  # one trigger in two applies (an SDXL pair loaded in two calls): unload would take both
    return found


def maybe_convert_prompt(pipe: Any, prompt: str | list[str], tokenizer: Any) -> str | list[str]:
    """diffusers' prompt hook, done with :func:`embkit.prompt.expand`: every multi-vector trigger
    of ``tokenizer`` becomes ``tok tok_1 …``, matched as a whole word and case-insensitively (so
    ``EasyNegative`` and ``tok`` beside ``tok2`` work, which diffusers' ``str.replace`` breaks)."""
    counts = trigger_counts(tokenizer)
    if isinstance(prompt, list):
        return [expand(p, counts) for p in prompt]
    return expand(prompt, counts)


def patch(pipe: Any) -> Any:
    """Make ``pipe.load_textual_inversion``, ``pipe.unload_textual_inversion`` and
    ``pipe.maybe_convert_prompt`` use embkit, for this pipeline object only; returns ``pipe``.

        pipe = embkit.diffusers.patch(StableDiffusionPipeline.from_pretrained(...))
        pipe.load_textual_inversion("sd-concepts-library/cat-toy")     # embkit's loader now
    """
    for name in PATCHED:
        pipe.__dict__[name] = types.MethodType(globals()[name], pipe)
    pipe.__dict__[_MARK] = True
    return pipe


def unpatch(pipe: Any) -> Any:
    """Give ``pipe`` its own diffusers methods back (what embkit loaded stays loaded)."""
    if pipe.__dict__.pop(_MARK, False):
        for name in PATCHED:
            pipe.__dict__.pop(name, None)
    return pipe


def is_patched(pipe: Any) -> bool:
    """True when :func:`patch` was applied to ``pipe``."""
    return bool(getattr(pipe, "__dict__", {}).get(_MARK))


class TextualInversionMixin:
    """The same three methods for a pipeline class: put it before the diffusers class,
    ``class MyPipeline(embkit.diffusers.TextualInversionMixin, StableDiffusionPipeline): ...``."""

    def load_textual_inversion(self, pretrained_model_name_or_path: Any, token: Any = None, tokenizer: Any = None,
                               text_encoder: Any = None, **kwargs: Any) -> Applied:
        """See :func:`embkit.diffusers.load_textual_inversion`."""
        return load_textual_inversion(self, pretrained_model_name_or_path, token, tokenizer, text_encoder, **kwargs)

    def unload_textual_inversion(self, tokens: Any = None, tokenizer: Any = None, text_encoder: Any = None) -> list[str]:
        """See :func:`embkit.diffusers.unload_textual_inversion`."""
        return unload_textual_inversion(self, tokens, tokenizer, text_encoder)

    def maybe_convert_prompt(self, prompt: Any, tokenizer: Any) -> Any:
        """See :func:`embkit.diffusers.maybe_convert_prompt`."""
        return maybe_convert_prompt(self, prompt, tokenizer)


__all__ = ["load_textual_inversion", "unload_textual_inversion", "maybe_convert_prompt", "patch", "unpatch", "is_patched",
           "TextualInversionMixin", "PATCHED"]
