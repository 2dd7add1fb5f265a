"""Findings: what validation says about an embedding on a target, each with a code, a severity
and (where there is one) the command that fixes it. Every finding code is listed once, here."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import ValidationFailed

if TYPE_CHECKING:  # for the annotation only: validation fills it from the hosts table
    from ..hosts.common import HostVerdict

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
    "host-skips": ("error", "the host does not apply the embedding on this model (silently or with a log line)"),
    "host-partial": ("warning", "the host applies only part of the embedding (some text encoders get nothing)"),
    "host-error": ("error", "the host fails to load the file, or its trigger cannot be typed there"),
    "host-ignores": ("error", "the host never reads such a file (its extension, a preview, an empty file)"),
    "host-old-release": ("warning", "an older release of the host refuses the file (A1111 before 1.10)"),
    "host-unknown": ("info", "embkit has no facts on what the host does with this model family"),
}

#: verdict status of a host (embkit.hosts) → the finding that reports it
STATUS_CODES = {"skipped": "host-skips", "partial": "host-partial", "error": "host-error", "ignored": "host-ignores", "unknown": "host-unknown"}


@dataclass(frozen=True)
class Finding:
    """One problem (or note) about an embedding on a target."""

    code: str
    severity: str
    message: str
    slot: str | None = None
    index: int | None = None
    fix: str | None = None
    #: the hosts (``embkit.hosts`` ids) the finding concerns: a host's view shows only its own
    hosts: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {"code": self.code, "severity": self.severity, "message": self.message, "slot": self.slot, "index": self.index, "fix": self.fix, "hosts": list(self.hosts)}

    def concerns(self, host: str) -> bool:
        """Whether this finding is about ``host`` (a finding naming no host concerns every host)."""
        return not self.hosts or host in self.hosts


@dataclass(frozen=True)
class Report:
    """Every finding for one embedding on one target. ``ok`` means no errors."""

    name: str
    target: str
    findings: tuple[Finding, ...]
    path: str | None = None
    family: str = "unknown"
    #: the hosts the findings were computed for (``("embkit",)`` unless asked)
    hosts: tuple[str, ...] = ("embkit",)
    #: host id → :class:`embkit.hosts.HostVerdict` on the target's family
    verdicts: dict[str, HostVerdict] = field(default_factory=dict, compare=False, repr=False)

    def view(self, host: str) -> "Report":
        """The report as one host sees it: only the findings that concern ``host``."""
        import dataclasses

        mine = tuple(f for f in self.findings if f.concerns(host))
        verdicts = {host: self.verdicts[host]} if host in self.verdicts else {}
        return dataclasses.replace(self, findings=mine, hosts=(host,), verdicts=verdicts)

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
            "hosts": {h: v.to_dict() for h, v in self.verdicts.items()},
        }
