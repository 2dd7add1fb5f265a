"""embkit.diffusers.prompt.expand: multi-vector trigger expansion where diffusers' str.replace goes wrong."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from embkit.errors import OperationError
from embkit.diffusers.prompt import expand, find, token_names


def test_token_names_follow_diffusers():
    assert token_names("tok", 3) == ["tok", "tok_1", "tok_2"]
    assert token_names("tok", 1) == ["tok"]


def test_mixed_case_is_expanded_fully():
    # diffusers lower-cases through the tokenizer, then str.replace finds nothing in "EasyNegative"
    assert expand("EasyNegative, a cat", {"easynegative": 3}) == "EasyNegative EasyNegative_1 EasyNegative_2, a cat"
    assert expand("EASYNEGATIVE", {"EasyNegative": 2}) == "EASYNEGATIVE EASYNEGATIVE_1"


def test_prefix_trigger_does_not_corrupt_longer_one():
    # str.replace("tok", …) would rewrite the "tok" inside "tok2"
    out = expand("tok and tok2", {"tok": 2, "tok2": 3})
    assert out == "tok tok_1 and tok2 tok2_1 tok2_2"


def test_longest_trigger_wins_at_same_position():
    # '-' is not a word character, so "<emb>" could match inside "<emb>-v2" were it tried first
    assert expand("<emb>-v2 <emb>", {"<emb>": 2, "<emb>-v2": 2}) == "<emb>-v2 <emb>-v2_1 <emb> <emb>_1"


def test_whole_words_only():
    assert expand("concatok tok_x tokens xtok", {"tok": 2}) == "concatok tok_x tokens xtok"
    assert expand("(tok:1.2), [tok]", {"tok": 2}) == "(tok tok_1:1.2), [tok tok_1]"


def test_idempotent_on_expanded_prompt():
    once = expand("tok, TOK", {"tok": 3})
    assert once == "tok tok_1 tok_2, TOK TOK_1 TOK_2"
    assert expand(once, {"tok": 3}) == once


def test_single_vector_and_unknown_words_untouched():
    assert expand("a tok b", {"tok": 1}) == "a tok b"
    assert expand("nothing here", {"tok": 4}) == "nothing here"
    assert expand("", {"tok": 4}) == ""


def test_unicode_word_boundary():
    # a letter outside ASCII continues a word, as in the tokenizers library's single_word rule
    assert expand("tokü tok", {"tok": 2}) == "tokü tok tok_1"


def test_case_only_duplicates_are_refused():
    with pytest.raises(OperationError, match="differ only in case"):
        expand("x", {"Tok": 2, "tok": 2})


def test_find_reports_present_triggers():
    assert find("a TOK, b", ["tok", "zzz"]) == ["tok"]
    assert find("a tok2", {"tok": 2, "tok2": 1}) == ["tok2"]


@settings(max_examples=200, deadline=None)
@given(
    words=st.lists(st.sampled_from(["tok", "Tok", "tok2", "a", "tok_1", ",", "(", "x-tok", "tokx", "<e>", "<E>-2"]), max_size=12),
    n=st.integers(1, 5),
)
def test_expand_properties(words, n):
    triggers = {"tok": n, "tok2": 2, "<e>": 3}
    prompt = " ".join(words)
    out = expand(prompt, triggers)
    assert expand(out, triggers) == out  # idempotent
    # every whole-word "tok" became exactly n tokens: count them back
    plain = [w for w in prompt.split() if w.lower() == "tok"]
    if n > 1:
        assert out.lower().split().count(f"tok_{n - 1}") >= len(plain)


def test_prompt_module_is_torch_free():
    code = "import sys, embkit.diffusers.prompt, embkit.diffusers, embkit.diffusers.tiny, embkit.diffusers.render; print(any(m in sys.modules for m in ('torch', 'diffusers', 'transformers')))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
