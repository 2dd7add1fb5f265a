"""The Hugging Face Hub: pull embedding repos (:mod:`.pull`), push an embedding with a model card
(:mod:`.push`), and :mod:`embkit.hubclient`, which they share with model targets (errors, quiet progress,
model repos as folders). ``huggingface_hub`` is imported only when a function runs."""

from ..hubclient import MODEL_PATTERNS, model_folder, quiet
from .pull import PULL_IGNORE, PulledFile, find_embeddings, pull, safetensors_format
from .push import FAMILY_TAGS, model_card, push

__all__ = ["pull", "push", "model_folder", "model_card", "quiet", "find_embeddings", "safetensors_format", "PulledFile", "MODEL_PATTERNS", "PULL_IGNORE", "FAMILY_TAGS"]
