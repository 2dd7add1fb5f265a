"""The Hugging Face Hub: :func:`pull` embedding repos (module :mod:`.download`), :func:`push` an
embedding with a model card (modules :mod:`.upload` and :mod:`.card`), and :mod:`embkit.hubclient`, which they share
with model targets (errors, quiet progress, model repos as folders). ``huggingface_hub`` is imported
only when a function runs. The modules are not named after the functions, so ``embkit.hub.pull``
means one thing: the function."""

from ..hubclient import MODEL_PATTERNS, model_folder, quiet
from .download import PULL_IGNORE, PulledFile, find_embeddings, pull, safetensors_format
from .card import FAMILY_TAGS, host_triggers, model_card
from .upload import PushResult, push

__all__ = ["pull", "push", "model_folder", "model_card", "host_triggers", "quiet", "find_embeddings", "safetensors_format",
           "PulledFile", "PushResult", "MODEL_PATTERNS", "PULL_IGNORE", "FAMILY_TAGS"]
