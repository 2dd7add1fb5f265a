"""The torch side of embkit: apply embeddings to diffusers pipelines and unload them exactly
(:mod:`.apply`), expand multi-vector triggers in prompts (:mod:`.prompt`), build the pipeline a
render uses, single-file checkpoints offline included (:mod:`.pipelines`), test renders (:mod:`.render`)
and their contact sheets (:mod:`.sheet`, with A1111-style ``parameters`` text: :mod:`.infotext`), and
the built-in tiny pipelines (:mod:`.tiny`).

This is the only package that imports torch, diffusers and transformers, and only inside the
functions that need them: ``import embkit.diffusers as ed`` is cheap.
"""

from .apply import ENCODER_PAIRS, Applied, EncoderSlot, applied, apply, encoder_slots, unload
from .prompt import expand, expand_prompt, expanded_prompts, token_names, trigger_counts

__all__ = ["apply", "unload", "applied", "Applied", "EncoderSlot", "encoder_slots", "expand", "expanded_prompts", "expand_prompt", "token_names", "trigger_counts", "ENCODER_PAIRS"]
