"""Tokenization: a folder's ``tokenizer.json`` is run by the ``tokenizers`` library when it is
installed; embkit's own CLIP BPE (the fallback, and the reader of ``vocab.json`` + ``merges.txt``)
agrees with ``tokenizers`` on a list of hard strings, and on every single character Python's
Unicode database knows.

The reference tokenizer.json files are the ones the tools write: transformers' ``save_pretrained``
of a CLIP tokenizer (5.x), and the pipeline transformers 4.x's ``CLIPConverter`` built (NFC,
whitespace runs to a space, lower case; split on CLIP's pattern; byte-level BPE with ``</w>``),
built here with the tokenizers API. The vocabulary is embkit's CLIP-shaped one at real size
(``embkit.diffusers.tiny.clip_vocab``: every byte, letter merges).
"""

from __future__ import annotations

import json
import subprocess
import sys
import unicodedata

import pytest

from embkit.diffusers.tiny import clip_vocab
from embkit.model.vocab import Vocab, byte_encoder, clip_words, read_tokenizer_folder

tokenizers = pytest.importorskip("tokenizers")

HARD = [
    # digits outside ASCII: superscripts, fractions, Roman numerals, other scripts' digits, circled
    "x²", "x³y²", "½ cup", "Ⅻ", "٣٤", "१२३", "①②", "⁴²", "𝟙𝟚", "e=mc²", "H₂O",
    # emoji: plain, skin tone, ZWJ family, flags, keycaps
    "🙂", "👍🏽", "👨\u200d👩\u200d👧", "🇫🇷", "1️⃣", "cat🐱dog",
    # CJK and other scripts
    "猫の写真", "中文字符", "한국어", "Ελληνικά ΣΑΣ", "русский", "עברית", "عربي",
    # accents: composed, decomposed (NFC), stacked marks, ligatures, title case
    "café", "cafe\u0301", "naïve Ångström", "e\u0301\u0301", "ﬁne", "ǅemal", "İstanbul", "straße", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
    # apostrophes and contractions
    "don't", "it's", "rock'n'roll", "'s", "’s", "dog's'", "''", "I'LL", "we're'd", "!'s",
    # spaces of every kind
    "a   b", " lead and trail ", "\ttab\nnewline\r\n", "no\u00a0break", "ideo\u3000graphic", "zero\u200bwidth",
    "thin\u2009space", "sep\x1cchars\x1f", "para\u2029line\u2028",
    # trigger-shaped names and special tokens
    "EasyNegative", "bad-hands-5", "whatever-2000", "<cat-toy>", "a_b", "snake_case_name", "(masterpiece:1.2)",
    "<|endoftext|>", "a<|endoftext|>b", "<|ENDOFTEXT|>", "<|startoftext|>hi", "™…©", "a.b,c!d?", "$100.00",
]


def _clip_v4_json(vocab: dict[str, int], merges: list[tuple[str, str]]) -> str:
    """A CLIP tokenizer.json as transformers 4.x's CLIPConverter builds it."""
    from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers
    from tokenizers.models import BPE

    tok = Tokenizer(BPE(vocab=vocab, merges=merges, dropout=None, continuing_subword_prefix="", end_of_word_suffix="</w>",
                        fuse_unk=False, unk_token="<|endoftext|>"))
    tok.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""), behavior="removed", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False),
    ])
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(["<|startoftext|>", "<|endoftext|>"])
    return tok.to_str()


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """``{name: folder}``: ``files`` (vocab.json + merges.txt only), ``v4`` and ``v5`` (tokenizer.json only)."""
    vocab, merges = clip_vocab(49408)
    root = tmp_path_factory.mktemp("tok")
    files = root / "files"
    files.mkdir()
    (files / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (files / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8")
    out = {"files": files}
    v4 = root / "v4"
    v4.mkdir()
    (v4 / "tokenizer.json").write_text(_clip_v4_json(vocab, merges), encoding="utf-8")
    out["v4"] = v4
    try:
        from transformers import CLIPTokenizer

        if int(__import__("transformers").__version__.split(".")[0]) >= 5:
            saved = root / "v5"
            CLIPTokenizer(str(files / "vocab.json"), str(files / "merges.txt")).save_pretrained(saved)
            out["v5"] = saved
    except ImportError:
        pass
    return out


def _reference(folder) -> "tokenizers.Tokenizer":
    return tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json"))


@pytest.mark.parametrize("kind", ["v4", "v5"])
def test_own_clip_bpe_agrees_with_tokenizers_on_hard_strings(folders, kind):
    if kind not in folders:
        pytest.skip("transformers 5 is not installed to save a tokenizer.json")
    own = read_tokenizer_folder(str(folders["files"]))
    assert own is not None and own.backend == "embkit"
    ref = _reference(folders[kind])
    wrong = {text: (own.tokenize(text), ref.encode(text, add_special_tokens=False).tokens) for text in HARD
             if own.tokenize(text) != ref.encode(text, add_special_tokens=False).tokens}
    assert wrong == {}


def test_digits_outside_ascii_are_single_numbers():
    """Regression: ``x²`` was one word ("²" counted as a letter); CLIP cuts numbers one by one."""
    assert clip_words("x²") == ["x", "²"]
    assert clip_words("½Ⅻ٣") == ["½", "ⅻ", "٣"]
    assert clip_words("cafe\u0301 ΣΑΣ") == ["café", "σασ"]  # NFC; per-character lower case, no final sigma
    assert clip_words("<|endoftext|>x") == ["<|endoftext|>", "x"]
    assert clip_words("<|ENDOFTEXT|>") == ["<|", "endoftext", "|>"]


def test_own_pre_tokenizer_agrees_on_every_known_character(folders):
    """Each code point, between letters, between digits and after an apostrophe, cut the same way
    by embkit and by tokenizers' CLIP normaliser and pre-tokenizer. Code points Python's Unicode
    database (``unicodedata.unidata_version``) leaves unassigned are skipped: the Rust tables of
    tokenizers may be a newer Unicode, where some are letters. The large uniform blocks (other
    letters: CJK, Hangul, Tangut …; private use) are sampled, one in 16."""
    ref = _reference(folders["v4"])
    norm, pre = ref.normalizer, ref.pre_tokenizer
    enc = byte_encoder()
    wrong = []
    for cp in range(0x110000):
        ch = chr(cp)
        category = unicodedata.category(ch)
        if category in ("Cn", "Cs") or (category in ("Lo", "Co") and cp % 16):
            continue
        for text in (f"a{ch}b", f"1{ch}{ch}2 x", f"'{ch}s"):
            theirs = [p for p, _ in pre.pre_tokenize_str(norm.normalize_str(text))]
            mine = ["".join(enc[b] for b in w.encode("utf-8")) for w in clip_words(text)]
            if theirs != mine:
                wrong.append((hex(cp), text, theirs, mine))
                break
    assert wrong[:5] == [] and len(wrong) == 0


@pytest.mark.parametrize("kind", ["v4", "v5"])
def test_a_tokenizer_json_is_run_by_tokenizers(folders, kind, tmp_path):
    """With tokenizer.json present, the vocabulary tokenizes through the tokenizers library: an
    added token (a textual inversion saved into the tokenizer) comes out whole, as the host's
    tokenizer gives it, where embkit's BPE would cut it into pieces."""
    if kind not in folders:
        pytest.skip("transformers 5 is not installed to save a tokenizer.json")
    tok = _reference(folders[kind])
    tok.add_tokens(["<my-ti>"])
    tok.save(str(tmp_path / "tokenizer.json"))
    vocab = read_tokenizer_folder(str(tmp_path))
    assert vocab is not None and vocab.backend == "tokenizers" and vocab.can_tokenize
    assert vocab.tokenize("a <my-ti> b") == ["a</w>", "<my-ti>", "b</w>"]
    assert "<my-ti>" in vocab and "a</w>" in vocab
    for text in HARD:
        assert vocab.tokenize(text) == tok.encode(text, add_special_tokens=False).tokens, text


def test_without_tokenizers_the_own_bpe_reads_tokenizer_json(folders):
    """embkit's core does not need tokenizers: with it unimportable, the same tokenizer.json is
    tokenized by the own BPE, with the same result on the hard strings."""
    code = (
        "import json, sys\n"
        "sys.modules['tokenizers'] = None  # not installed\n"
        "from embkit.model.vocab import read_tokenizer_folder\n"
        f"v = read_tokenizer_folder({str(folders['v4'])!r})\n"
        f"print(json.dumps([v.backend, [v.tokenize(t) for t in {HARD!r}]]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    backend, tokens = json.loads(proc.stdout)
    ref = _reference(folders["v4"])
    assert backend == "embkit"
    assert tokens == [ref.encode(t, add_special_tokens=False).tokens for t in HARD]


def test_a_tokenizer_json_tokenizers_cannot_load_falls_back(tmp_path):
    # a normaliser this tokenizers release does not know (a newer save): it refuses the whole file
    (tmp_path / "tokenizer.json").write_text(json.dumps({"normalizer": {"type": "FromTheFuture"},
                                                         "model": {"type": "BPE", "vocab": {"a</w>": 0, "a": 1}, "merges": []}}))
    with pytest.raises(Exception):
        tokenizers.Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    vocab = read_tokenizer_folder(str(tmp_path))
    assert isinstance(vocab, Vocab) and vocab.backend == "embkit" and vocab.tokenize("a") == ["a</w>"]
