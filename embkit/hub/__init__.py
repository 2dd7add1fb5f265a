"""The Hugging Face Hub: :func:`pull` embedding repos (module :mod:`.download`), :func:`push` an
embedding with a model card (module :mod:`.upload`), and :mod:`embkit.hubclient`, which they share
with model targets (errors, quiet progress, model repos as folders). ``huggingface_hub`` is imported
only when a function runs. The modules are not named after the functions, so ``embkit.hub.pull``
means one thing: the function."""

from ..hubclient import MODEL_PATTERNS, model_folder, quiet
from .download import PULL_IGNORE, PulledFile, find_embeddings, pull, safetensors_format
from .upload import FAMILY_TAGS, model_card, push

__all__ = ["pull", "push", "model_folder", "model_card", "quiet", "find_embeddings", "safetensors_format", "PulledFile", "MODEL_PATTERNS", "PULL_IGNORE", "FAMILY_TAGS"]
