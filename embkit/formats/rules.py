"""The refusal rules: one id per way a file can be hostile or ambiguous, shared by the reader
(which refuses the file with :class:`~embkit.errors.UnsafeFileError` carrying the rule) and
``embkit scan`` (which names every rule that fired). docs/safety.md lists each rule with the case
that tests it; ``tests/test_hostile_docs.py`` checks that the two agree.

A rule is about *ambiguity* as much as about code: a container that two parsers can read
differently (Python's :mod:`zipfile` and torch's miniz, a tar reader and a pickle reader) lets a
scanner see one file while a loader runs another, so such a file is refused even when the part
embkit would read is harmless.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import TooLargeError, UnsafeFileError

#: rule id → what it refuses (the sentence docs/safety.md shows).
RULES: dict[str, str] = {
    # pickles
    "global": "a pickle, anywhere in the file, names a global outside embkit's allow-list",
    "global-misuse": "an allow-listed global is given arguments, state or a persistent id the reader refuses",
    "pickle-frame": "a pickle opcode runs across the end of its protocol-4 FRAME (the C unpickler and pickletools read different opcodes)",
    "pickle-trailing-data": "bytes after the STOP of the one pickle torch reads (torch ignores them, scanners read them)",
    "legacy-trailing-data": "bytes after the last storage of a legacy (pre-zip) torch stream",
    # zip containers: each is a way miniz (torch) and zipfile (scanners) read different members
    "zip-layout": "zip records not laid end to end from byte 0 to the central directory (prepended data, gaps, overlaps, orphan or shared local headers, concatenated archives)",
    "zip-end-record": "a zip end record with a comment, bytes after it, several disks, or counts and sizes that disagree",
    "zip64-mismatch": "a zip64 locator or record that disagrees with the end record or does not sit right before it",
    "zip-header-mismatch": "a local header that disagrees with its central entry (name, flags, method, sizes, CRC, data descriptor)",
    "zip-crc": "a member whose CRC-32 does not match (torch skips the check and loads it; zipfile and scanners refuse it)",
    "zip-flags": "general-purpose flag bits other than data descriptor and UTF-8 (encryption, patches), or a version zipfile refuses",
    "zip-sizes": "a stored member whose compressed and uncompressed sizes differ, or an unknown compression method",
    "zip-duplicate-name": "two members with the same name (miniz and zipfile pick different ones)",
    "zip-case-collision": "two member names equal after ASCII case folding (miniz looks names up ignoring case)",
    "zip-name": "a member name that is absolute, has '..', '\\', a drive, control characters, empty parts or an undeclared encoding",
    "zip-prefix": "a member outside the archive's top folder (the folder of its first entry)",
    "zip-extra-pickle": "a pickle member besides <top>/data.pkl (DATA.PKL, constants.pkl, TorchScript code) or pickle bytes in another member",
    # polyglots
    "tar-polyglot": "a file whose first block is a valid tar header (torch.load of a path opens it as a legacy tar archive first)",
    "zip-polyglot": "a file that is not a zip but holds a zip end record zipfile would open",
    "extension-mismatch": "a torch pickle named .safetensors (torch.load and scanners dispatch such a name to safetensors)",
    # caps
    "size-cap": "a size past one of embkit's caps (members, tensors, opcodes, expansion, JSON values)",
}


def refuse(rule: str, message: str, path: str | Path | None = None) -> UnsafeFileError:
    """An :class:`UnsafeFileError` for ``rule`` (one of :data:`RULES`), message naming it."""
    if rule not in RULES:
        raise KeyError(f"unknown refusal rule {rule!r}")
    exc = UnsafeFileError(f"{message} [{rule}]", path=path)
    exc.rule = rule
    return exc


def too_large(message: str, path: str | Path | None = None) -> TooLargeError:
    """A :class:`TooLargeError` carrying the ``size-cap`` rule."""
    exc = TooLargeError(message, path=path)
    exc.rule = "size-cap"
    return exc


def rule_of(exc: UnsafeFileError) -> str:
    """The rule an unsafe-file error stands for: its own, else ``size-cap`` for a too-large
    error, else ``global-misuse`` (the allow-list unpickler's refusals of allowed names)."""
    rule = getattr(exc, "rule", None)
    if rule:
        return rule
    return "size-cap" if isinstance(exc, TooLargeError) else "global-misuse"


__all__ = ["RULES", "refuse", "too_large", "rule_of"]
