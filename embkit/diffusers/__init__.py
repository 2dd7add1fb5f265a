"""The torch side of embkit: apply embeddings to diffusers pipelines and unload them exactly
(:mod:`.apply`), diffusers' ``load_textual_inversion`` API on top of it (:mod:`.loader`), expand
multi-vector triggers in prompts (:mod:`.prompt`), state dicts as torch tensors (:mod:`.tensors`),
build the pipeline a render uses, single-file checkpoints offline included (:mod:`.pipelines`), test
renders (:mod:`.render`) and their contact sheets (:mod:`.sheet`, with A1111-style ``parameters``
text: :mod:`.infotext`), and the built-in tiny pipelines (:mod:`.tiny`).

This is the only package that imports torch, diffusers and transformers, and only inside the
functions that need them: ``import embkit.diffusers as ed`` is cheap.
"""

from .apply import ENCODER_PAIRS, Applied, EncoderSlot, applied, apply, encoder_slots, remove_tokens, unload
from .loader import TextualInversionMixin, load_textual_inversion, maybe_convert_prompt, patch, unload_textual_inversion, unpatch
from .prompt import expand, expand_prompt, expanded_prompts, token_names, trigger_counts
from .tensors import to_state_dict

__all__ = ["apply", "unload", "applied", "remove_tokens", "Applied", "EncoderSlot", "encoder_slots", "expand", "expanded_prompts", "expand_prompt",
           "token_names", "trigger_counts", "ENCODER_PAIRS", "load_textual_inversion", "unload_textual_inversion", "maybe_convert_prompt",
           "patch", "unpatch", "TextualInversionMixin", "to_state_dict"]
