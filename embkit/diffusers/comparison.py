"""What a before/after test render found: the images per seed and the numbers, as plain data
shared by the renderer (:mod:`.render`) and the contact sheet (:mod:`.sheet`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import NoEffectError

#: Exit status of ``embkit verify --render`` when the embedding changes nothing.
EXIT_NO_EFFECT = NoEffectError.exit_code
#: Below both of these, an embedding "changes nothing": conditioning cosine distance and mean
#: absolute pixel difference (0–255 scale, largest over the seeds).
NO_EFFECT_COSINE = 1e-6
NO_EFFECT_PIXELS = 0.5

@dataclass
class SeedRender:
    """One seed's pair of images (``uint8`` H×W×3 arrays) and their mean absolute difference."""

    seed: int
    before: Any
    after: Any
    pixel_difference: float


@dataclass
class Comparison:
    """The result of :func:`compare`."""

    model: str
    device: str
    dtype: str
    prompt: str
    negative_prompt: str | None
    as_negative: bool
    triggers: list[str]
    steps: int
    renders: list[SeedRender]
    conditioning_distance: float
    seconds: float
    seconds_per_image: float
    warnings: list[str] = field(default_factory=list)

    @property
    def pixel_difference(self) -> float:
        """The largest mean absolute pixel difference over the seeds (0–255)."""
        return max((r.pixel_difference for r in self.renders), default=0.0)

    @property
    def changed(self) -> bool:
        """False when the embedding moved neither the conditioning nor any image."""
        return self.conditioning_distance >= NO_EFFECT_COSINE or self.pixel_difference >= NO_EFFECT_PIXELS

    def to_dict(self) -> dict:
        """JSON form (no image data)."""
        return {
            "model": self.model,
            "device": self.device,
            "dtype": self.dtype,
            "prompt": self.prompt,
            "negative_prompt": self.negative_prompt,
            "as_negative": self.as_negative,
            "triggers": self.triggers,
            "steps": self.steps,
            "seeds": [r.seed for r in self.renders],
            "conditioning_cosine_distance": self.conditioning_distance,
            "pixel_difference": {str(r.seed): r.pixel_difference for r in self.renders},
            "pixel_difference_max": self.pixel_difference,
            "seconds": self.seconds,
            "seconds_per_image": self.seconds_per_image,
            "changed": self.changed,
            "warnings": list(self.warnings),
        }
