"""Does an embedding fit a target model? Pure checks: Embedding × ModelSpec → a :class:`Report`.

Each :class:`Finding` has a stable kebab-case ``code`` (listed in :data:`CODES` and docs/validate.md),
a severity (``error``: the embedding would be skipped or break; ``warning``: it loads but something
is likely wrong; ``info``), a message that says what to do, and the slot / vector row it is about.
Nothing here prints, and nothing imports torch unless the target is a live pipeline.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Iterable

import numpy as np

from ..schema import Embedding
from ..model.resolve import resolve_target
from ..model.spec import ModelSpec
from .findings import SEVERITIES, Finding, Report
from .hostcheck import check_hosts, host_names

#: A row whose L2 norm is past HIGH × (median token norm), or under (median token norm) / LOW, is an
#: outlier. Trained embeddings are legitimately several times longer than vocabulary tokens (the
#: well-used bad-hands-5 is about 10x CLIP-L's median), so the band is wide on purpose.
NORM_HIGH_FACTOR = 15.0
NORM_LOW_FACTOR = 20.0
SLOT_TITLES = {"clip_l": "CLIP-L", "clip_h": "CLIP-H", "clip_g": "CLIP-G", "t5": "T5"}


def validate(
    embedding: Embedding | str | os.PathLike,
    target: object,
    *,
    loaded: Iterable[Embedding | str] = (),
    hosts: Iterable[str] | str | None = None,
) -> Report:
    """Check ``embedding`` against ``target`` (anything :func:`embkit.model.resolve.resolve_target`
    accepts: a family name, a folder, a ``.safetensors`` checkpoint, a pipeline, a Hub id).

    ``loaded`` are the other embeddings (or bare trigger names) to be loaded alongside, for the
    name-collision checks. ``hosts`` (ids from :data:`embkit.hosts.HOST_IDS`, or ``"all"``) asks
    what those hosts would do: trigger names are checked as each host triggers the file, each
    finding names the hosts it concerns (:meth:`Report.view`), and a host that would skip,
    partly apply or fail on the file adds a ``host-*`` finding. The default is the ``embkit`` host:
    how :func:`embkit.diffusers.apply` treats the file. Returns a :class:`Report`; raises only when
    the target or the file cannot be read.
    """
    from ..hosts import resolve_hosts

    if not isinstance(embedding, Embedding):
        from ..io import read

        embedding = read(embedding)
    spec = resolve_target(target)
    host_ids = resolve_hosts(hosts) or ("embkit",)
    findings: list[Finding] = []
    ctx = _Context(embedding, spec)
    if "embkit" in host_ids:  # the other hosts' slot rules come from their verdicts
        findings += [replace(f, hosts=("embkit",)) for f in _check_slots(ctx)]
    findings += [replace(f, hosts=host_ids) for f in _check_values(ctx) + _check_budget(ctx)]
    findings += host_names(embedding, spec, loaded, host_ids)
    host_findings, verdicts = check_hosts(embedding, spec, host_ids)
    findings += host_findings
    findings.sort(key=lambda f: SEVERITIES.index(f.severity))  # stable: errors first, then warnings, then notes
    return Report(embedding.name, spec.describe(), tuple(findings), embedding.source.path if embedding.source else None, embedding.family, host_ids, verdicts)


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
