"""embkit itself: how :func:`embkit.diffusers.apply` treats a file (what ``verify`` checked before
hosts existed). It reads every format embkit reads, under the names embkit gives them; an
encoder of the pipeline without vectors refuses the embedding (T5 may go without); vectors for
an encoder the pipeline lacks are left out with a warning; OneTrainer output vectors are skipped.
"""

from __future__ import annotations

from ..schema import FAMILIES, SLOT_WIDTHS
from .common import FAMILY_TITLES, SLOT_TITLES, HostVerdict, Read, failed, finish
from .facts import FileFacts


def read(facts: FileFacts) -> list[Read]:
    """One Read per embedding embkit finds in the file, named as embkit names it."""
    if facts.embkit_error is not None and not facts.embkit:
        return [Read(None, status="error", reasons=[f"embkit cannot read it: {facts.embkit_error}"])]
    return [Read(name, None, member=member, extra={"slots": dict(slots)}) for name, member, slots in facts.embkit]


def apply(read: Read, family: str, name: str | None = None) -> HostVerdict:
    """``embkit.diffusers.apply``'s structural checks against a pipeline of the family."""
    if read.status is not None:
        return failed("embkit", family, read, name)
    slots: dict[str, tuple[int, int]] = read.extra["slots"]
    inputs = [s for s in slots if not s.endswith("_out")]
    encoders = FAMILIES[family]
    fam = FAMILY_TITLES[family]
    reasons, notes = [], []
    for s in inputs:
        if s in encoders and slots[s][1] != SLOT_WIDTHS[s]:
            reasons.append(f"{s} vectors are {slots[s][1]} wide, the encoder expects {SLOT_WIDTHS[s]}")
    extra = [s for s in inputs if s not in encoders]
    if extra and len(extra) == len(inputs):
        reasons.append(f"has {', '.join(extra)} vectors but a {fam} pipeline has only {', '.join(encoders)} encoders")
    elif extra:
        notes.append(f"{', '.join(extra)} vectors ignored: a {fam} pipeline has no such encoder")
    uncovered = [s for s in encoders if s not in inputs and s != "t5"]
    if uncovered and not reasons:
        reasons.append(f"no {', '.join(SLOT_TITLES[s] for s in uncovered)} vectors, which a {fam} pipeline's encoders need: apply refuses it")
    for out in (s for s in slots if s.endswith("_out")):
        notes.append(f"{out} output vectors are not token rows: skipped")
    applied = [s for s in encoders if s in inputs]
    if reasons:
        return finish("embkit", family, read, [], list(encoders), reasons, notes, status="skipped", name=name)
    missed = [s for s in encoders if s not in inputs]
    if missed:
        reasons.append(f"no {', '.join(SLOT_TITLES[s] for s in missed)} vectors: that part of the prompt gets none")
    return finish("embkit", family, read, applied, missed, reasons, notes, name=name, unused=extra)
