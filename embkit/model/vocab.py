"""A text encoder's vocabulary and its tokenizer, read from a model folder's files: the ``tokenizers``
library running the folder's ``tokenizer.json`` when both are there, else a torch-free CLIP BPE.

Validation asks two questions of a vocabulary: "is this trigger already a token?" (diffusers refuses
to add it; A1111 would hijack the word) and "how would the tokenizer cut this trigger?" (A1111 and
kohya-style hosts match the cut pieces; diffusers adds the trigger as one new token). Answering them
must not import transformers: this module uses ``tokenizers`` (the library transformers' fast
tokenizers are) when it is installed, and otherwise reads ``vocab.json`` + ``merges.txt`` (or
``tokenizer.json``) itself and runs CLIP's byte-level BPE in plain Python, cut and normalised as
``tokenizers`` cuts and normalises (checked against it on a list of hard strings).
"""

from __future__ import annotations

import functools
import json
import os
import re
import unicodedata
from typing import Callable, Iterable, Iterator

from ..errors import TargetError

#: Tokenizer files larger than this are refused (the real CLIP vocab.json is about 1 MB,
#: tokenizer.json about 2 MB; T5's tokenizer.json about 2.5 MB).
MAX_TOKENIZER_BYTES = 64 * 1024 * 1024

#: Whitespace as CLIP's tokenizer.json normalizer reads ``\s`` (Unicode White_Space): runs of it
#: become one space, and spaces separate words. Python's ``str.isspace`` also counts U+001C–U+001F,
#: which CLIP keeps as characters.
_WHITESPACE = frozenset("\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
                        "\u200a\u2028\u2029\u202f\u205f\u3000")
#: CLIP's special tokens: taken whole where they stand exactly (case included), as added tokens are.
_SPECIAL = ("<|startoftext|>", "<|endoftext|>")
_SPECIAL_SPLIT = "(" + "|".join(re.escape(t) for t in _SPECIAL) + ")"
_CONTRACTIONS = ("'s", "'t", "'re", "'ve", "'m", "'ll", "'d")


def clip_words(text: str) -> list[str]:
    """The pieces CLIP's pre-tokenizer cuts ``text`` into (normalised, before BPE), as the
    ``tokenizers`` library does with a CLIP ``tokenizer.json``: the special tokens
    ``<|startoftext|>`` and ``<|endoftext|>`` where they stand exactly as written; the rest NFC
    normalised, whitespace runs made one space, lower-cased character by character, then cut into
    the contractions ``'s 't 're 've 'm 'll 'd``, runs of letters (``\\p{L}``), single numbers
    (``\\p{N}``: ``2``, ``²``, ``½``, ``Ⅻ``), and runs of anything else but spaces.

    Every piece becomes at least one token, so a trigger that yields several pieces is split by any
    CLIP tokenizer whatever its vocabulary.
    """
    words: list[str] = []
    for part in re.split(_SPECIAL_SPLIT, text):
        if part in _SPECIAL:
            words.append(part)
        elif part:
            words += _plain_words(part)
    return words


def _plain_words(text: str) -> list[str]:
    text = "".join(" " if ch in _WHITESPACE else ch for ch in unicodedata.normalize("NFC", text))
    text = "".join(ch.lower() for ch in text)  # per character: no final-sigma rule, as tokenizers' Lowercase
    words: list[str] = []
    i, n = 0, len(text)
    while i < n:
        if text[i] == " ":
            i += 1
            continue
        contraction = next((w for w in _CONTRACTIONS if text.startswith(w, i)), None)
        if contraction is not None:
            words.append(contraction)
            i += len(contraction)
            continue
        kind = _kind(text[i])
        j = i + 1
        if kind != "N":  # numbers are single characters; letters and others run on
            while j < n and text[j] != " " and _kind(text[j]) == kind:
                j += 1
        words.append(text[i:j])
        i = j
    return words


def _kind(ch: str) -> str:
    """``L`` (letter), ``N`` (number) or ``O`` (anything else) by Unicode category."""
    first = unicodedata.category(ch)[0]
    return first if first in "LN" else "O"


@functools.lru_cache(maxsize=1)
def byte_encoder() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte → printable character map."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


class Vocab:
    """A vocabulary: ``token in vocab`` and, when merges are known, :meth:`tokenize`.

    Built from files (:func:`read_tokenizer_folder`), from a set of strings, or around a live
    tokenizer's ``tokenize`` function (:meth:`from_callable`).
    """

    #: Who tokenizes: ``"embkit"`` (the CLIP BPE here), ``"tokenizers"`` (a ``tokenizer.json`` run by
    #: the tokenizers library) or ``"live"`` (a loaded tokenizer's own function).
    backend = "embkit"

    def __init__(self, tokens: Iterable[str], merges: list[tuple[str, str]] | None = None, *, kind: str = "clip", added: Iterable[str] = ()):
        self._tokens = frozenset(tokens)
        self._added = frozenset(added)
        self._ranks = {pair: i for i, pair in enumerate(merges)} if merges is not None else None
        self._tokenize_fn: Callable[[str], list[str]] | None = None
        self.kind = kind
        self._cache: dict[str, tuple[str, ...]] = {}

    @classmethod
    def from_callable(cls, tokens: Iterable[str], tokenize: Callable[[str], list[str]], *, kind: str = "clip", added: Iterable[str] = ()) -> "Vocab":
        """A vocabulary whose :meth:`tokenize` is a live tokenizer's (used for pipelines)."""
        vocab = cls(tokens, None, kind=kind, added=added)
        vocab._tokenize_fn = tokenize
        vocab.backend = "live"
        return vocab

    def __contains__(self, token: object) -> bool:
        return token in self._tokens or token in self._added

    def __len__(self) -> int:
        return len(self._tokens | self._added)

    def __iter__(self) -> Iterator[str]:
        return iter(self._tokens | self._added)

    @property
    def added(self) -> frozenset[str]:
        """Tokens added on top of the base vocabulary (embeddings already loaded, special tokens)."""
        return self._added

    def has_word(self, word: str) -> bool:
        """True when ``word`` is already one token: as typed, or as CLIP's word-final ``word</w>``."""
        low = word.lower()
        return any(t in self for t in (word, low, low + "</w>"))

    @property
    def can_tokenize(self) -> bool:
        """Whether :meth:`tokenize` can run (CLIP merges or a live tokenizer are known)."""
        return self._tokenize_fn is not None or (self._ranks is not None and self.kind == "clip")

    def tokenize(self, text: str) -> list[str]:
        """The tokens ``text`` becomes as plain prompt text, without start/end tokens."""
        if self._tokenize_fn is not None:
            return list(self._tokenize_fn(text))
        if not self.can_tokenize:
            raise TargetError(f"this {self.kind} vocabulary has no merges: it cannot tokenize")
        enc = byte_encoder()
        out: list[str] = []
        for word in clip_words(text):
            if word in _SPECIAL:
                out.append(word)
            else:
                out.extend(self._bpe("".join(enc[b] for b in word.encode("utf-8"))))
        return out

    def _bpe(self, token: str) -> tuple[str, ...]:
        # CLIP's BPE (openai/CLIP simple_tokenizer.py): the last character carries "</w>",
        # the lowest-ranked adjacent pair is merged until no known pair is left.
        if token in self._cache:
            return self._cache[token]
        ranks = self._ranks or {}
        word = list(token[:-1]) + [token[-1] + "</w>"]
        while len(word) > 1:
            pairs = [(ranks.get((a, b), None), i) for i, (a, b) in enumerate(zip(word, word[1:]))]
            known = [(r, i) for r, i in pairs if r is not None]
            if not known:
                break
            best = min(known)[0]
            first, second = next((word[i], word[i + 1]) for r, i in known if r == best)
            merged: list[str] = []
            i = 0
            while i < len(word):
                if i < len(word) - 1 and word[i] == first and word[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = merged
        result = tuple(word)
        self._cache[token] = result
        return result


def load_tokenizer_json(path: str) -> object:
    """A tokenizer's JSON file (``vocab.json``, ``tokenizer.json``), refused past
    :data:`MAX_TOKENIZER_BYTES` and as a :class:`~embkit.errors.TargetError` when unreadable."""
    if os.path.getsize(path) > MAX_TOKENIZER_BYTES:
        raise TargetError(f"tokenizer file is larger than {MAX_TOKENIZER_BYTES} bytes", path=path)
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError) as exc:
        raise TargetError(f"cannot read tokenizer file ({exc})", path=path) from None


def _merge_pairs(lines: Iterable[object], path: str) -> list[tuple[str, str]]:
    pairs = []
    for line in lines:
        if isinstance(line, str):
            if line.startswith("#version") or not line.strip():
                continue
            parts = line.split()
        else:
            parts = list(line) if isinstance(line, (list, tuple)) else []
        if len(parts) != 2 or not all(isinstance(p, str) for p in parts):
            raise TargetError(f"bad merge rule {line!r:.60}", path=path)
        pairs.append((parts[0], parts[1]))
    return pairs


def read_tokenizer_folder(folder: str) -> Vocab | None:
    """The vocabulary in a tokenizer folder, or ``None`` when it holds no file embkit can read.

    A ``tokenizer.json`` (newer CLIP saves; T5, whose Unigram model is a vocabulary list) is run by
    the ``tokenizers`` library when it is installed (it comes with transformers): the folder's own
    normaliser, pre-tokenizer, model and added tokens, exactly as the host's tokenizer runs them.
    Without it, or without a ``tokenizer.json``, CLIP folders are tokenized by embkit's own CLIP BPE
    (``vocab.json`` + ``merges.txt``, or the BPE section of ``tokenizer.json``), which agrees with
    ``tokenizers`` (tests/test_tokenize.py); a T5 vocabulary then only answers membership
    (``spiece.model`` alone is not read). Tokens added on top (``added_tokens``) are included.
    """
    vocab_json = os.path.join(folder, "vocab.json")
    merges_txt = os.path.join(folder, "merges.txt")
    tok_json = os.path.join(folder, "tokenizer.json")
    added = _added_tokens(folder)
    spec = None
    if os.path.isfile(tok_json):
        spec = load_tokenizer_json(tok_json)
        fast = _with_tokenizers(tok_json, spec, added)
        if fast is not None:
            return fast
    if os.path.isfile(vocab_json):
        tokens = load_tokenizer_json(vocab_json)
        if not isinstance(tokens, dict):
            raise TargetError("vocab.json is not a JSON object", path=vocab_json)
        merges = None
        if os.path.isfile(merges_txt):
            if os.path.getsize(merges_txt) > MAX_TOKENIZER_BYTES:
                raise TargetError(f"merges.txt is larger than {MAX_TOKENIZER_BYTES} bytes", path=merges_txt)
            with open(merges_txt, encoding="utf-8") as fh:
                merges = _merge_pairs(fh.read().splitlines(), merges_txt)
        return Vocab(tokens, merges, kind="clip", added=added)
    if spec is not None:
        tokens, merges, kind, added = _tokenizer_json(spec, tok_json, added)
        return Vocab(tokens, merges, kind=kind, added=added)
    return None


def _tokenizer_json(spec: object, path: str, added: set[str]) -> tuple[Iterable[str], list[tuple[str, str]] | None, str, set[str]]:
    """``(tokens, merges, kind, added tokens)`` of a ``tokenizer.json``'s model section."""
    model = spec.get("model") if isinstance(spec, dict) else None
    if not isinstance(spec, dict) or not isinstance(model, dict):
        raise TargetError("tokenizer.json has no model section", path=path)
    added = set(added) | {t.get("content") for t in spec.get("added_tokens") or [] if isinstance(t, dict) and isinstance(t.get("content"), str)}
    if model.get("type") == "BPE" and isinstance(model.get("vocab"), dict):
        return model["vocab"], _merge_pairs(model.get("merges") or [], path), "clip", added
    if model.get("type") == "Unigram" and isinstance(model.get("vocab"), list):
        return [p[0] for p in model["vocab"] if isinstance(p, list) and p and isinstance(p[0], str)], None, "t5", added
    raise TargetError(f"tokenizer.json model type {model.get('type')!r} is not one embkit reads", path=path)


def _with_tokenizers(path: str, spec: object, added: set[str]) -> Vocab | None:
    """A vocabulary whose :meth:`Vocab.tokenize` is the ``tokenizers`` library running ``path``;
    ``None`` when the library is not installed (embkit's core does not require it) or will not load
    the file."""
    try:
        from tokenizers import Tokenizer
    except ImportError:
        return None
    tokens, _merges, kind, added = _tokenizer_json(spec, path, added)
    try:
        tok = Tokenizer.from_file(path)
        tok.no_padding()
        tok.no_truncation()
    except BaseException as exc:  # a Rust panic arrives as pyo3's PanicException, a BaseException
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        return None  # a file tokenizers will not load (a partial save): embkit reads what it can of it

    def tokenize(text: str) -> list[str]:
        return list(tok.encode(text, add_special_tokens=False).tokens)

    vocab = Vocab.from_callable(tokens, tokenize, kind=kind, added=added)
    vocab.backend = "tokenizers"
    return vocab


def _added_tokens(folder: str) -> set[str]:
    # added_tokens.json: older transformers saves of tokenizers with textual inversions baked in.
    path = os.path.join(folder, "added_tokens.json")
    if not os.path.isfile(path):
        return set()
    data = load_tokenizer_json(path)
    return {k for k in data if isinstance(k, str)} if isinstance(data, dict) else set()


def token_names(folder: str) -> list[str | None] | None:
    """Each token id's name in a tokenizer folder (``None`` for an id no file names), or ``None``
    when the folder holds no file embkit can read. CLIP names are decoded from byte-level BPE to
    text, keeping the end-of-word mark as Embedding Inspector shows it (``cat</w>``)."""
    vocab_json = os.path.join(folder, "vocab.json")
    tok_json = os.path.join(folder, "tokenizer.json")
    ids: dict[str, int] = {}
    if os.path.isfile(vocab_json):
        data = load_tokenizer_json(vocab_json)
        ids = {k: v for k, v in data.items() if type(v) is int} if isinstance(data, dict) else {}
    elif os.path.isfile(tok_json):
        spec = load_tokenizer_json(tok_json)
        model = spec.get("model") if isinstance(spec, dict) else None
        vocab = model.get("vocab") if isinstance(model, dict) else None
        if isinstance(vocab, dict):
            ids = {k: v for k, v in vocab.items() if type(v) is int}
        elif isinstance(vocab, list):  # Unigram (T5): the index is the id
            ids = {p[0]: i for i, p in enumerate(vocab) if isinstance(p, list) and p and isinstance(p[0], str)}
        for t in spec.get("added_tokens") or [] if isinstance(spec, dict) else []:
            if isinstance(t, dict) and isinstance(t.get("content"), str) and type(t.get("id")) is int:
                ids.setdefault(t["content"], t["id"])
    else:
        return None
    added = os.path.join(folder, "added_tokens.json")
    if os.path.isfile(added):
        extra = load_tokenizer_json(added)
        ids.update({k: v for k, v in extra.items() if isinstance(k, str) and type(v) is int} if isinstance(extra, dict) else {})
    if not ids or max(ids.values()) > 10_000_000 or min(ids.values()) < 0:
        raise TargetError("tokenizer ids are out of range", path=folder)
    names: list[str | None] = [None] * (max(ids.values()) + 1)
    decoder = {c: b for b, c in byte_encoder().items()}
    for token, i in ids.items():
        names[i] = _readable(token, decoder)
    return names


def _readable(token: str, decoder: dict[str, int]) -> str:
    """A byte-level BPE token as text (``Ġ``-style characters back to bytes), ``</w>`` kept."""
    word, end = (token[:-4], "</w>") if token.endswith("</w>") else (token, "")
    if not all(c in decoder for c in word) or token.startswith("<|"):
        return token
    return bytes(decoder[c] for c in word).decode("utf-8", "backslashreplace") + end
