"""Pieces every host module shares: what a host made of a file (:class:`Read`), the answer for one
model family (:class:`HostVerdict`), family and encoder names, and how per-encoder results add up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from .facts import FileFacts, TensorInfo

#: What a host does with an embedding on a model: applies it to every encoder it puts embeddings
#: into (``loads``), to some (``partial``), to none (``skipped``: silently or with a log line),
#: fails loading it (``error``), never looks at the file (``ignored``), or embkit has no facts for
#: that model family on that host (``unknown``).
STATUSES = ("loads", "partial", "skipped", "error", "ignored", "unknown")
FAMILY_TITLES = {"sd1": "SD1", "sd2": "SD2", "sdxl": "SDXL", "sd3": "SD3", "flux": "Flux"}
SLOT_TITLES = {"clip_l": "CLIP-L", "clip_h": "CLIP-H", "clip_g": "CLIP-G", "t5": "T5"}


@dataclass
class Read:
    """What one host made of (one embedding of) a file, before the model family matters.

    ``vec`` is the tensor the host keeps (``TensorInfo``) or, for layouts it keeps as a dict of
    encoder keys (A1111's SDXL branch, ComfyUI's per-encoder lookup), ``{key: TensorInfo}``. When
    the host fails earlier, ``status`` says how (``error``, ``ignored``, ``skipped``) and
    ``reasons`` why.
    """

    trigger: str | None
    vec: TensorInfo | dict[str, TensorInfo] | None = None
    member: str | None = None
    status: str | None = None
    reasons: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    releases: dict[str, bool] = field(default_factory=dict)
    #: anything else a host's apply step needs (ComfyUI's guessed width, InvokeAI's base …)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class HostVerdict:
    """What one host does with one embedding on one model family.

    ``trigger`` is the exact text to type in that host's prompt (``None`` when nothing can be
    typed); ``reasons`` say why it does not (fully) load; ``notes`` are true even when it loads
    (an older release refuses it, another file with the same name wins …); ``applied`` and
    ``missed`` are the encoders (slots) that get vectors and those that do not.
    """

    host: str
    family: str
    status: str
    trigger: str | None
    reasons: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    applied: tuple[str, ...] = ()
    missed: tuple[str, ...] = ()
    member: str | None = None
    name: str | None = None
    #: A1111: release → whether its safe loader accepts the file
    releases: Mapping[str, bool] = field(default_factory=dict)

    @property
    def loads(self) -> bool:
        """True when the host applies at least part of it (``loads`` or ``partial``)."""
        return self.status in ("loads", "partial")

    @property
    def partial_slots(self) -> tuple[str, ...]:
        """The encoders a partly applied embedding reaches (empty unless ``partial``)."""
        return self.applied if self.status == "partial" else ()

    def to_dict(self) -> dict[str, Any]:
        """``{"loads", "trigger", "reasons", "status", "notes", "applied", "missed"}`` (and
        ``releases`` where a host has several rule sets): the ``hosts`` entries of ``verify --json``."""
        out: dict[str, Any] = {
            "loads": self.loads,
            "trigger": self.trigger,
            "reasons": list(self.reasons),
            "status": self.status,
            "notes": list(self.notes),
            "applied": list(self.applied),
            "missed": list(self.missed),
        }
        if self.releases:
            out["releases"] = dict(self.releases)
        return out

    def describe(self) -> str:
        """One line: the status, what reaches which encoder, the first reason."""
        fam = FAMILY_TITLES.get(self.family, self.family)
        if self.status == "loads":
            return f"loads on {fam}"
        if self.status == "partial":
            return f"{fam}: only {', '.join(SLOT_TITLES.get(s, s) for s in self.applied)}" + (f" ({self.reasons[0]})" if self.reasons else "")
        return f"{self.status} on {fam}" + (f": {self.reasons[0]}" if self.reasons else "")


#: keys of encoder-keyed tensors → the slot they hold vectors for (input vectors only)
KEY_SLOTS = {"clip_l": "clip_l", "clip_h": "clip_h", "clip_g": "clip_g", "t5": "t5", "t5xxl": "t5"}


def unused_slots(vec: Any, used: list[str]) -> list[str]:
    """Encoder-keyed input tensors the host keeps but no encoder of the model takes (an SDXL
    file's CLIP-G half on SD1): the embedding then applies only in part."""
    if not isinstance(vec, dict):
        return []
    have = {KEY_SLOTS[k] for k in vec if k in KEY_SLOTS}
    return [s for s in SLOT_TITLES if s in have and s not in used]


def finish(
    host: str, family: str, read: Read, applied: list[str], missed: list[str], reasons: list[str], notes: list[str] | None = None,
    status: str | None = None, name: str | None = None, unused: list[str] | None = None,
) -> HostVerdict:
    """A verdict from the encoders reached: all → loads, some → partial, none → skipped; an
    embedding with vectors for encoders the model lacks (``unused``) applies only in part."""
    if status is None:
        status = "loads" if applied and not missed else "partial" if applied else "skipped"
        if status == "loads" and unused:
            status = "partial"
            reasons = [*reasons, f"its {', '.join(SLOT_TITLES[s] for s in unused)} vectors are not used on {FAMILY_TITLES.get(family, family)}"]
    return HostVerdict(
        host=host,
        family=family,
        status=status,
        trigger=read.trigger,
        reasons=tuple(dict.fromkeys(reasons)),
        notes=tuple(dict.fromkeys([*read.notes, *(notes or [])])),
        applied=tuple(applied),
        missed=tuple(missed),
        member=read.member,
        name=name,
        releases=dict(read.releases),
    )


def failed(host: str, family: str, read: Read, name: str | None = None) -> HostVerdict:
    """The verdict for a read that failed before the model family mattered."""
    return HostVerdict(
        host=host,
        family=family,
        status=read.status or "error",
        trigger=read.trigger,
        reasons=tuple(dict.fromkeys(read.reasons)),
        notes=tuple(dict.fromkeys(read.notes)),
        member=read.member,
        name=name,
        releases=dict(read.releases),
    )


def shape_text(t: TensorInfo) -> str:
    return "x".join(str(d) for d in t.shape)


def first_value(facts: FileFacts) -> TensorInfo | None:
    """``next(iter(data.values()))`` when it is a tensor: the first key's tensor, in the order the
    host's reader returns the dict (``facts.tensors`` is already in that order for safetensors)."""
    if facts.container == "safetensors" or (facts.container == "folder" and (facts.inner or "").endswith(".safetensors")):
        return facts.tensors[0] if facts.tensors else None
    if not facts.keys:
        return facts.tensors[0] if facts.tensors else None
    return facts.tensor(facts.keys[0])


def bundle_groups(facts: FileFacts, split: str = "first") -> dict[str, dict[str, TensorInfo]]:
    """``bundle_emb.<name>.<rest>`` tensors grouped by name, as A1111 and SD.Next split the key:
    the name is the text between the first and second dot (``bundle_emb.style.v2.clip_l`` is
    ``style`` with ``v2.clip_l``)."""
    groups: dict[str, dict[str, TensorInfo]] = {}
    for t in facts.bundles:
        rest = t.key[len("bundle_emb.") :]
        name, _, vec_name = rest.partition(".")
        groups.setdefault(name, {})[vec_name] = t
    return groups
