"""Does an embedding fit a target model? Pure checks: Embedding × ModelSpec → a :class:`Report`.

Each :class:`Finding` has a stable kebab-case ``code`` (listed in :data:`CODES` and docs/validate.md),
a severity (``error``: the embedding would be skipped or break; ``warning``: it loads but something
is likely wrong; ``info``), a message that says what to do, and the slot / vector row it is about.
Nothing here prints, and nothing imports torch unless the target is a live pipeline.
"""

from __future__ import annotations

import os
import sys
import types
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np

from .errors import ValidationFailed
from .modelspec import ModelSpec, resolve_target
from .schema import Embedding

SEVERITIES = ("error", "warning", "info")

#: Every finding code, its severity, and what it means (docs/validate.md has an example and fix each).
CODES: dict[str, tuple[str, str]] = {
    "width-mismatch": ("error", "no slot of the embedding has the width of the target's encoder for it"),
    "missing-slot": ("error", "the target has a text encoder the embedding has no vectors for (warning for T5)"),
    "extra-slot": ("warning", "the embedding has vectors for an encoder the target does not have"),
    "vector-count-mismatch": ("error", "the embedding's slots hold different numbers of vectors"),
    "nan-inf": ("error", "a vector holds NaN or infinite values"),
    "zero-vector": ("warning", "a vector is all zeros"),
    "norm-outlier": ("warning", "a vector's length is far outside the target's token embeddings"),
    "prompt-budget": ("info", "prompt tokens used of the limit (warning past half, error past the limit)"),
    "trigger-in-vocab": ("warning", "the trigger is already a token of the target's vocabulary"),
    "trigger-split": ("info", "the tokenizer cuts the trigger into several tokens (warning with whitespace)"),
    "trigger-prefix": ("warning", "the trigger is part of another loaded trigger, or contains one"),
    "trigger-case": ("warning", "another loaded trigger differs from this one only by case"),
    "trigger-duplicate": ("warning", "another loaded embedding has the same trigger"),
    "trigger-mixed-case": ("warning", "a multi-vector trigger with capitals, which diffusers cannot expand (info when single-vector)"),
    "expanded-name-collision": ("warning", "the names diffusers gives extra vectors (tok_1 …) collide"),
    "vocab-unavailable": ("info", "the target's vocabulary is unknown, so trigger checks were limited"),
}

#: A row whose L2 norm is past HIGH × (median token norm), or under (median token norm) / LOW, is an
#: outlier. Trained embeddings are legitimately several times longer than vocabulary tokens (the
#: well-used bad-hands-5 is about 10x CLIP-L's median), so the band is wide on purpose.
NORM_HIGH_FACTOR = 15.0
NORM_LOW_FACTOR = 20.0
SLOT_TITLES = {"clip_l": "CLIP-L", "clip_h": "CLIP-H", "clip_g": "CLIP-G", "t5": "T5"}


@dataclass(frozen=True)
class Finding:
    """One problem (or note) about an embedding on a target."""

    code: str
    severity: str
    message: str
    slot: str | None = None
    index: int | None = None
    fix: str | None = None

    def to_dict(self) -> dict:
        return {"code": self.code, "severity": self.severity, "message": self.message, "slot": self.slot, "index": self.index, "fix": self.fix}


@dataclass(frozen=True)
class Report:
    """Every finding for one embedding on one target. ``ok`` means no errors."""

    name: str
    target: str
    findings: tuple[Finding, ...]
    path: str | None = None
    family: str = "unknown"

    @property
    def errors(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == "error")

    @property
    def warnings(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == "warning")

    @property
    def infos(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == "info")

    @property
    def ok(self) -> bool:
        return not self.errors

    def passes(self, strict: bool = False) -> bool:
        """No errors, and with ``strict`` no warnings either."""
        return self.ok and not (strict and self.warnings)

    def codes(self) -> list[str]:
        return [f.code for f in self.findings]

    def __iter__(self):
        """A report is its list of findings: ``for f in embkit.validate(emb, "sdxl")``."""
        return iter(self.findings)

    def __len__(self) -> int:
        return len(self.findings)

    def __getitem__(self, index: int) -> Finding:
        return self.findings[index]

    def raise_for_errors(self, strict: bool = False) -> None:
        """Raise :class:`ValidationFailed` naming the first problem unless :meth:`passes`."""
        if not self.passes(strict):
            first = (self.errors or self.warnings)[0]
            raise ValidationFailed(f"{self.name} does not fit {self.target}: [{first.code}] {first.message}", path=self.path)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "path": self.path,
            "family": self.family,
            "target": self.target,
            "ok": self.ok,
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "findings": [f.to_dict() for f in self.findings],
        }


def validate(embedding: Embedding | str | os.PathLike, target: Any, *, loaded: Iterable[Embedding | str] = ()) -> Report:
    """Check ``embedding`` against ``target`` (anything :func:`embkit.modelspec.resolve_target`
    accepts: a family name, a folder, a ``.safetensors`` checkpoint, a pipeline, a Hub id).

    ``loaded`` are the other embeddings (or bare trigger names) to be loaded alongside, for the
    name-collision checks. Returns a :class:`Report`; raises only when the target or the file
    cannot be read.
    """
    if not isinstance(embedding, Embedding):
        from .io import read

        embedding = read(embedding)
    spec = resolve_target(target)
    findings: list[Finding] = []
    ctx = _Context(embedding, spec)
    findings += _check_slots(ctx)
    findings += _check_values(ctx)
    findings += _check_budget(ctx)
    from .validate_names import check_names

    findings += check_names(embedding, spec, loaded)
    findings.sort(key=lambda f: SEVERITIES.index(f.severity))  # stable: errors first, then warnings, then notes
    return Report(embedding.name, spec.describe(), tuple(findings), embedding.source.path if embedding.source else None, embedding.family)


@dataclass
class _Context:
    emb: Embedding
    spec: ModelSpec

    @property
    def fix_path(self) -> str:
        """The input as `embkit edit` takes it: FILE, or FILE::MEMBER for one of several."""
        src = self.emb.source
        if src is None:
            return "IN"
        return _quote(f"{src.path}::{src.member}" if src.member else src.path)

    @property
    def label(self) -> str:
        fam = self.emb.family
        return f"{fam.upper()} embedding" if fam != "unknown" else f"embedding ({', '.join(self.emb.slots)})"


def _quote(path: str) -> str:
    import shlex

    return shlex.quote(path)


def _check_slots(ctx: _Context) -> list[Finding]:
    emb, spec = ctx.emb, ctx.spec
    have, want = set(emb.slots), set(spec.slots)
    common = have & want
    out: list[Finding] = []
    target = spec.family.upper() if spec.family != "unknown" else "this model"
    if not common:
        got = ", ".join(f"{s} {emb.vectors[s].shape[1]}" for s in emb.slots)
        out.append(
            Finding(
                "width-mismatch",
                "error",
                f"{ctx.label} ({got} wide) does not fit {spec.describe()}: A1111 skips it silently, ComfyUI drops it with a log "
                f"line, diffusers raises a shape error. No faithful port exists between these encoders; use a version of this embedding made for {target}.",
            )
        )
        return out
    for slot in sorted(common, key=emb.slots.index):
        width, need = emb.vectors[slot].shape[1], spec.slots[slot].width
        if width != need:
            where = spec.slots[slot].component or "its text encoder"
            out.append(
                Finding(
                    "width-mismatch",
                    "error",
                    f"{slot} vectors are {width} wide, but {where} of {spec.describe()} takes {need}: hosts skip or reject it. Use a version trained for this model.",
                    slot=slot,
                )
            )
    for slot in spec.slots:
        if slot in have:
            continue
        is_t5 = slot == "t5"
        port = f"embkit edit {ctx.fix_path} -o OUT --port sdxl" if spec.family == "sdxl" and have == {"clip_l"} else None
        if port and spec.kind == "folder":
            # the target folder holds both token matrices: nearest-token transfer beats a zero CLIP-G half
            port += f" --via {_quote(spec.source)}"
            msg = f"{ctx.label}: on SDXL only the CLIP-L half would apply (A1111 skips it entirely); port it with `{port}`."
        elif port:
            msg = f"{ctx.label}: on SDXL only the CLIP-L half would apply (A1111 skips it entirely); port it with `{port}` (add `--via MODEL` for nearest-token transfer)."
        else:
            msg = f"{ctx.label} has no {SLOT_TITLES[slot]} vectors: on {target} only the {', '.join(SLOT_TITLES[s] for s in sorted(common, key=emb.slots.index))} part would apply"
            msg += "; the prompt still works without the T5 part, but the embedding is weaker." if is_t5 else " (A1111 skips such files); use a version made for this model."
        out.append(Finding("missing-slot", "warning" if is_t5 else "error", msg, slot=slot, fix=port))
    for slot in emb.slots:
        if slot in want:
            continue
        port = f"embkit edit {ctx.fix_path} -o OUT --port sd1" if spec.family == "sd1" and "clip_l" in have else None
        msg = f"{ctx.label}: {target} has no {SLOT_TITLES[slot]} encoder, so the {slot} vectors would be ignored (A1111 skips files it cannot fully apply)"
        msg += f"; keep only the CLIP-L half with `{port}`." if port else "."
        out.append(Finding("extra-slot", "warning", msg, slot=slot, fix=port))
    counts = {s: emb.vectors[s].shape[0] for s in emb.slots}
    if len(set(counts.values())) > 1:
        low = min(counts.values())
        fix = f"embkit edit {ctx.fix_path} -o OUT --select 0:{low}"
        out.append(
            Finding(
                "vector-count-mismatch",
                "error",
                f"slots hold different vector counts ({', '.join(f'{s} {n}' for s, n in counts.items())}); every prompt position needs a vector "
                f"in each encoder. Crop to {low} with `{fix}` (or pad the shorter slot).",
                fix=fix,
            )
        )
    return out


def _rows(indices: np.ndarray) -> str:
    shown = ", ".join(str(int(i)) for i in indices[:8])
    return shown + (f" and {len(indices) - 8} more" if len(indices) > 8 else "")


def _check_values(ctx: _Context) -> list[Finding]:
    emb, spec = ctx.emb, ctx.spec
    out: list[Finding] = []
    for slot, arr in emb.vectors.items():
        values = arr.astype(np.float64)
        finite = np.isfinite(values).all(axis=1)
        bad = np.flatnonzero(~finite)
        if bad.size:
            out.append(
                Finding(
                    "nan-inf",
                    "error",
                    f"{slot} row(s) {_rows(bad)} hold NaN or Inf: the prompt's conditioning becomes NaN and renders turn black. "
                    f"Training diverged or the file is damaged; drop the rows (`embkit edit {ctx.fix_path} -o OUT --select ...`) or retrain.",
                    slot=slot,
                    index=int(bad[0]),
                )
            )
        norms = np.linalg.norm(np.where(np.isfinite(values), values, 0.0), axis=1)
        zero = np.flatnonzero(finite & np.all(values == 0.0, axis=1))
        if zero.size and slot in emb.slots:  # OneTrainer's *_out vectors are added to outputs: zero is harmless there
            fix = f"embkit edit {ctx.fix_path} -o OUT --drop-zero"
            out.append(
                Finding(
                    "zero-vector",
                    "warning",
                    f"{slot} row(s) {_rows(zero)} are all zeros: they use prompt tokens and add nothing. Drop them with `{fix}`.",
                    slot=slot,
                    index=int(zero[0]),
                    fix=fix,
                )
            )
        if slot not in spec.slots or spec.slots[slot].token_norms is None or spec.slots[slot].width != arr.shape[1]:
            continue
        ref = spec.slots[slot].token_norms
        hi, lo = ref.median * NORM_HIGH_FACTOR, ref.median / NORM_LOW_FACTOR
        live = finite & (norms > 0)
        high = np.flatnonzero(live & (norms > hi))
        low = np.flatnonzero(live & (norms < lo))
        basis = "this model's token embeddings" if ref.source == "matrix" else f"the documented {slot} prior"
        if high.size:
            scale = round(float(hi / norms[high].max()) * 0.9, 3)
            fix = f"embkit edit {ctx.fix_path} -o OUT --scale-slot {slot}={scale}"
            out.append(
                Finding(
                    "norm-outlier",
                    "warning",
                    f"{slot} row(s) {_rows(high)} are {norms[high].max():.3g} long, over {NORM_HIGH_FACTOR:g}x the median token norm "
                    f"{ref.median:.3g} ({basis}): the embedding will overpower the prompt or burn the image. Scale it down, e.g. `{fix}`.",
                    slot=slot,
                    index=int(high[0]),
                    fix=fix,
                )
            )
        if low.size:
            out.append(
                Finding(
                    "norm-outlier",
                    "warning",
                    f"{slot} row(s) {_rows(low)} are only {norms[low].min():.3g} long, under 1/{NORM_LOW_FACTOR:g} of the median token norm "
                    f"{ref.median:.3g} ({basis}): they will barely affect the image. Check the training, or scale up with `--scale-slot`.",
                    slot=slot,
                    index=int(low[0]),
                )
            )
    return out


def _check_budget(ctx: _Context) -> list[Finding]:
    emb, spec = ctx.emb, ctx.spec
    common = [s for s in emb.slots if s in spec.slots]
    if not common:
        return []
    n = emb.num_vectors
    slot = min(common, key=lambda s: spec.slots[s].token_limit)
    limit = spec.slots[slot].token_limit
    if n > limit:
        fix = f"embkit edit {ctx.fix_path} -o OUT --select 0:{limit}"
        return [Finding("prompt-budget", "error", f"uses {n} prompt tokens, more than the {limit} a {slot} prompt holds: hosts truncate it. Trim it with `{fix}`.", slot=slot, fix=fix)]
    if n > limit // 2:
        fix = f"embkit edit {ctx.fix_path} -o OUT --select 0:{max(1, limit // 4)}"
        return [
            Finding(
                "prompt-budget",
                "warning",
                f"uses {n} of {limit} prompt tokens, leaving {limit - n} for the rest of the prompt. Consider trimming vectors (`{fix}`).",
                slot=slot,
                fix=fix,
            )
        ]
    return [Finding("prompt-budget", "info", f"uses {n} of {limit} prompt tokens.", slot=slot)]


class _CallableModule(types.ModuleType):
    """``embkit.validate`` is both this module and the function: importing the submodule makes
    Python set the package attribute to the module, so the module itself must be callable."""

    def __call__(self, embedding, target, *, loaded=()):
        return validate(embedding, target, loaded=loaded)


sys.modules[__name__].__class__ = _CallableModule
