"""What a before/after test render found, as plain data shared by the renderer (:mod:`.render`),
the contact sheet (:mod:`.sheet`) and its ``parameters`` text (:mod:`.infotext`): the settings,
and one :class:`Row` per embedding with its images per seed and its numbers."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from ..errors import NoEffectError

#: Exit status of ``embkit verify --render`` when an embedding changes nothing.
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
class Row:
    """One embedding's renders: the trigger it was given, the prompts as rendered, the images per
    seed, and how far it moved the conditioning (cosine distance of the text encoders' outputs)."""

    name: str
    trigger: str
    prompt: str
    negative_prompt: str | None
    renders: list[SeedRender]
    conditioning_distance: float
    #: the file it was read from, and A1111's short hash of that file (what A1111 writes as ``TI hashes``)
    source: str | None = None
    short_hash: str | None = None

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
            "name": self.name,
            "trigger": self.trigger,
            "source": self.source,
            "short_hash": self.short_hash,
            "prompt": self.prompt,
            "negative_prompt": self.negative_prompt,
            "conditioning_cosine_distance": self.conditioning_distance,
            "pixel_difference": {str(r.seed): r.pixel_difference for r in self.renders},
            "pixel_difference_max": self.pixel_difference,
            "changed": self.changed,
        }


@dataclass
class Comparison:
    """The result of :func:`embkit.diffusers.render.compare`: the settings every row shares and the
    rows. ``prompt`` and ``negative_prompt`` are as given (or the default); each row's own, with its
    trigger in place, are on the row."""

    model: str
    device: str
    dtype: str
    prompt: str
    negative_prompt: str | None
    as_negative: bool
    steps: int
    width: int
    height: int
    guidance: float
    sampler: str
    seeds: list[int]
    rows: list[Row]
    seconds: float = 0.0
    seconds_per_image: float = 0.0
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    version: str = ""

    @property
    def triggers(self) -> list[str]:
        """Each row's trigger."""
        return [r.trigger for r in self.rows]

    @property
    def renders(self) -> list[SeedRender]:
        """The first row's renders (the whole render when there is one embedding)."""
        return self.rows[0].renders if self.rows else []

    @property
    def conditioning_distance(self) -> float:
        """The smallest conditioning distance over the rows: that of the embedding that moved least."""
        return min((r.conditioning_distance for r in self.rows), default=0.0)

    @property
    def pixel_difference(self) -> float:
        """The smallest, over the rows, of each row's largest pixel difference."""
        return min((r.pixel_difference for r in self.rows), default=0.0)

    @property
    def changed(self) -> bool:
        """True when every embedding moved the conditioning or an image."""
        return bool(self.rows) and all(r.changed for r in self.rows)

    @property
    def unchanged(self) -> list[Row]:
        """The rows whose embedding changed nothing."""
        return [r for r in self.rows if not r.changed]

    def subset(self, rows: list[Row]) -> "Comparison":
        """The same render with only ``rows`` (a sheet per file)."""
        return replace(self, rows=list(rows))

    def to_dict(self) -> dict:
        """JSON form (no image data). The top-level numbers are the rows' weakest, as :attr:`changed` is."""
        return {
            "model": self.model,
            "device": self.device,
            "dtype": self.dtype,
            "prompt": self.prompt,
            "negative_prompt": self.negative_prompt,
            "as_negative": self.as_negative,
            "triggers": self.triggers,
            "steps": self.steps,
            "width": self.width,
            "height": self.height,
            "guidance": self.guidance,
            "sampler": self.sampler,
            "seeds": list(self.seeds),
            "rows": [r.to_dict() for r in self.rows],
            "conditioning_cosine_distance": self.conditioning_distance,
            "pixel_difference": {str(s): min(r.renders[i].pixel_difference for r in self.rows) for i, s in enumerate(self.seeds)} if self.rows else {},
            "pixel_difference_max": self.pixel_difference,
            "seconds": self.seconds,
            "seconds_per_image": self.seconds_per_image,
            "changed": self.changed,
            "warnings": list(self.warnings),
            "notes": list(self.notes),
            "embkit_version": self.version,
        }
