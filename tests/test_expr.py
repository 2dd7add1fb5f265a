"""The blend expression parser: linear combinations only, never eval."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from embkit.errors import OperationError
from embkit.edit.expr import parse_weights, tokenize


@pytest.mark.parametrize(
    "text, expected",
    [
        ("0.7*a + 0.3*b", {"a": 0.7, "b": 0.3}),
        ("a", {"a": 1.0}),
        ("a*0.5 - b/4", {"a": 0.5, "b": -0.25}),
        ("(a + b) / 2", {"a": 0.5, "b": 0.5}),
        ("2*(a - 0.5*b) + c", {"a": 2.0, "b": -1.0, "c": 1.0}),
        ("-a + +b", {"a": -1.0, "b": 1.0}),
        ("1e-1*neg_x + .5*pos", {"neg_x": 0.1, "pos": 0.5}),
        ("a + a", {"a": 2.0}),
        ("a - a + b", {"a": 0.0, "b": 1.0}),
        ("2*3*a", {"a": 6.0}),
    ],
)
def test_parses_linear_blends(text, expected):
    assert parse_weights(text) == pytest.approx(expected)
    assert list(parse_weights(text)) == list(expected)  # order of first appearance


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "is empty"),
        ("a*b", "multiplies two embeddings"),
        ("2/a", "divides by an embedding"),
        ("a/0", "divides by zero"),
        ("a + 1", "without an embedding"),
        ("0.5", "without an embedding"),
        ("0.7*a +", "ends too early"),
        ("(a + b", "ends too early"),
        ("a b", "unexpected 'b'"),
        ("a)", "unexpected '\\)'"),
        ("__import__('os')", "unexpected"),
        ("a ** 2", "unexpected '\\*'"),
        ("a; b", "unexpected ';'"),
        ("1e400*a", "not finite"),
        ("(" * 60 + "a" + ")" * 60, "nests deeper"),
    ],
)
def test_refuses_bad_expressions(text, message):
    with pytest.raises(OperationError, match=message):
        parse_weights(text)


def test_unknown_names_listed():
    with pytest.raises(OperationError, match="unknown name 'c'; the inputs are a, b"):
        parse_weights("a + c", ["a", "b"])


def test_tokenize_positions():
    assert tokenize(" 0.7*a") == [("num", "0.7", 1), ("op", "*", 4), ("name", "a", 5)]


def test_too_long():
    with pytest.raises(OperationError, match="limit"):
        parse_weights("a+" * 2000 + "a")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(-100, 100, allow_nan=False).map(lambda x: round(x, 3)), st.sampled_from("abcde")), min_size=1, max_size=6))
def test_round_trip_of_written_sums(terms):
    text = " + ".join(f"({w!r})*{n}" for w, n in terms)
    expected: dict[str, float] = {}
    for w, n in terms:
        expected[n] = expected.get(n, 0.0) + w
    assert parse_weights(text) == pytest.approx(expected)


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet="ab01.+-*/() e", max_size=30))
def test_never_crashes_on_junk(text):
    try:
        weights = parse_weights(text)
    except OperationError:
        return
    assert weights and all(name.isidentifier() for name in weights)
