"""The expression language of the case format: 32-bit sequence arithmetic, a strict whitelist, clear errors."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conformance.model.expr import Expr, ExprError
from conformance.tcp import SEQ_MOD as MOD
from conformance.tcp import seq_diff

u32 = st.integers(min_value=0, max_value=MOD - 1)


def ev(text: str, **env: int) -> int:
    return Expr.parse(text).evaluate(env)


# ---- arithmetic modulo 2**32 ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ("l_isn - 1", {"l_isn": 0}, 4294967295),
        ("l_isn + 1", {"l_isn": 4294967295}, 0),
        ("a + b", {"a": 4294967295, "b": 4294967295}, 4294967294),
        ("0 - 5", {}, MOD - 5),
        ("-1", {}, MOD - 1),
        ("4294967296", {}, 0),
        ("4294967296 + 7", {}, 7),
        ("a * 2", {"a": 1 << 31}, 0),
        ("a * 3", {"a": 1 << 31}, 1 << 31),
        ("t_isn + 1", {"t_isn": 12345}, 12346),
    ],
)
def test_results_wrap_at_2_32(text: str, env: dict[str, int], expected: int) -> None:
    assert Expr.parse(text).evaluate(env) == expected


def test_unwrapped_evaluation_keeps_the_sign() -> None:
    # Ports and option values are evaluated without the reduction.
    assert Expr.parse("l_isn - 1").evaluate({"l_isn": 0}, wrap=False) == -1
    assert Expr.parse("a + 1").evaluate({"a": MOD - 1}, wrap=False) == MOD


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1 + 2 * 3", 7),
        ("(1 + 2) * 3", 9),
        ("10 - 4 - 3", 3),  # left-associative
        ("10 - (4 - 3)", 9),
        ("2 * 3 % 4", 2),
        ("100 // 7 * 7", 98),
        ("1 << 4 + 1", 32),  # + binds tighter than <<
        ("(1 << 4) + 1", 17),
        ("6 & 3 | 8", 10),  # & binds tighter than |
        ("6 & (3 | 8)", 2),
        ("1 + 2 & 3", 3),  # + binds tighter than &
        ("-2 * 3", MOD - 6),
        ("-(2 + 3)", MOD - 5),
        ("7 - -2", 9),
        ("+5", 5),
        ("((((3))))", 3),
        (" 1 +  2 ", 3),
    ],
)
def test_precedence_and_parentheses(text: str, expected: int) -> None:
    assert ev(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0x10", 16), ("0XFF", 255), ("0xffffffff", MOD - 1), ("0xffffffff + 2", 1), ("0x1_0000", 65536)],
)
def test_hex_literals(text: str, expected: int) -> None:
    assert ev(text) == expected


def test_hex_literal_mixed_with_names() -> None:
    assert ev("l_isn + 0x100", l_isn=0xFFFFFF00) == 0


def test_min_and_max() -> None:
    assert ev("min(a, b)", a=7, b=3) == 3
    assert ev("max(a, b)", a=7, b=3) == 7
    assert ev("max(a, b, 9)", a=7, b=3) == 9
    assert ev("min(5, 3) + max(1, 2)") == 5
    assert ev("min(t_nxt + 10, 0xffff)", t_nxt=100) == 110
    assert ev("max(min(a, 4), 2)", a=1) == 2


def test_min_needs_an_argument() -> None:
    with pytest.raises(ExprError, match="min"):
        Expr.parse("min()")


def test_min_of_one_argument_is_that_argument() -> None:
    assert ev("min(7)") == 7
    assert ev("max(a)", a=3) == 3


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ("1 << 31", {}, 1 << 31),
        ("1 << 32", {}, 0),  # wraps
        ("3 << 31", {}, 1 << 31),
        ("a >> 16", {"a": 0xABCD1234}, 0xABCD),
        ("a >> 0", {"a": 5}, 5),
        ("(a >> 8) & 0xff", {"a": 0x12345678}, 0x56),
    ],
)
def test_shifts(text: str, env: dict[str, int], expected: int) -> None:
    assert Expr.parse(text).evaluate(env) == expected


@pytest.mark.parametrize("text", ["1 << 65", "1 >> 100", "1 << -1", "a << b"])
def test_shift_out_of_range_is_an_expr_error(text: str) -> None:
    with pytest.raises(ExprError, match="shift"):
        Expr.parse(text).evaluate({"a": 1, "b": 1000})


@pytest.mark.parametrize("text", ["a // 0", "a % 0", "a // b", "a % (b - b)"])
def test_division_by_zero_is_an_expr_error(text: str) -> None:
    with pytest.raises(ExprError, match="division by zero"):
        Expr.parse(text).evaluate({"a": 10, "b": 0})


def test_division_and_modulo() -> None:
    assert ev("a // 3", a=10) == 3
    assert ev("a % 3", a=10) == 1


# ---- names -----------------------------------------------------------------------------------------


def test_unbound_name_is_named_in_the_error() -> None:
    expr = Expr.parse("t_isn + 1")
    with pytest.raises(ExprError, match=r"'t_isn' is not bound") as info:
        expr.evaluate({"l_isn": 5, "l_nxt": 6})
    # The message also lists what is bound, so a typo is easy to spot.
    assert "l_isn" in str(info.value) and "l_nxt" in str(info.value)


def test_unbound_name_with_empty_environment() -> None:
    with pytest.raises(ExprError, match=r"'nope'"):
        Expr.parse("max(1, nope)").evaluate({})


def test_names_lists_variables_but_not_functions() -> None:
    assert Expr.parse("a + min(b, c) - max(c, 1)").names == frozenset({"a", "b", "c"})
    assert Expr.parse("42").names == frozenset()


def test_text_is_kept_for_reports() -> None:
    expr = Expr.parse("  l_isn + 1 ")
    assert str(expr) == "l_isn + 1"
    assert Expr.parse(5).evaluate({}) == 5
    assert str(Expr.parse(5)) == "5"


# ---- the whitelist: rejected at parse time ---------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "a.b",
        "l_isn.bit_length()",
        "__import__('os')",
        "__import__('os').system('true')",
        "open('/etc/passwd')",
        "abs(a)",
        "min(a, key=b)",
        "min(*a)",
        "a[0]",
        "a[1:2]",
        "lambda: 1",
        "(lambda x: x)(1)",
        "a < b",
        "a == b",
        "a != b",
        "1 < 2 < 3",
        "'x'",
        "b'x'",
        "f'{a}'",
        "1.5",
        "1e3",
        "1j",
        "True",
        "False",
        "None",
        "...",
        "2 ** 3",
        "a ** b",
        "a / b",
        "a ^ b",
        "a @ b",
        "~a",
        "not a",
        "a and b",
        "a or b",
        "a if b else c",
        "[1, 2]",
        "(1, 2)",
        "{1: 2}",
        "{1}",
        "[x for x in a]",
        "(a := 1)",
        "min",
        "max + 1",
        "",
        "   ",
        "1 +",
        "a b",
        "1\n+ 1",
    ],
)
def test_forbidden_constructs_are_rejected_at_parse_time(text: str) -> None:
    # Expr.parse takes no environment: if it raises, it raised before any evaluation.
    with pytest.raises(ExprError):
        Expr.parse(text)


@pytest.mark.parametrize("value", [True, False])
def test_booleans_are_not_numbers(value: bool) -> None:
    with pytest.raises(ExprError, match="boolean"):
        Expr.parse(value)


@pytest.mark.parametrize("value", [1.5, None, [1, 2]])
def test_non_text_values_are_rejected_with_expr_error(value: object) -> None:
    with pytest.raises(ExprError):
        Expr.parse(value)  # type: ignore[arg-type]


def test_rejection_messages_name_the_construct() -> None:
    with pytest.raises(ExprError, match="Attribute"):
        Expr.parse("a.b")
    with pytest.raises(ExprError, match=r"min\(\.\.\.\) and max\(\.\.\.\)"):
        Expr.parse("__import__('os')")
    with pytest.raises(ExprError, match="Pow"):
        Expr.parse("2 ** 3")
    with pytest.raises(ExprError, match="integer literals"):
        Expr.parse("1.5")


def test_long_expression_never_raises_anything_but_expr_error() -> None:
    text = "+".join(["1"] * 1500)
    try:
        value = Expr.parse(text).evaluate({})
    except ExprError:
        return
    assert value == 1500


# ---- seq_diff: signed distance in sequence space -----------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (1, 0, 1),
        (0, 1, -1),
        (7, 7, 0),
        (0, MOD - 1, 1),  # across the wrap: 0 comes right after 2**32 - 1
        (MOD - 1, 0, -1),
        (5, MOD - 5, 10),
        (MOD - 5, 5, -10),
        ((1 << 31) - 1, 0, (1 << 31) - 1),  # the farthest "ahead"
        (1 << 31, 0, -(1 << 31)),  # exactly half way counts as behind
    ],
)
def test_seq_diff(a: int, b: int, expected: int) -> None:
    assert seq_diff(a, b) == expected


# ---- properties ------------------------------------------------------------------------------------


@given(u32, u32)
def test_addition_is_modulo_2_32(a: int, b: int) -> None:
    assert Expr.parse("a + b").evaluate({"a": a, "b": b}) == (a + b) % 2**32


@given(u32, u32)
def test_subtraction_is_modulo_2_32(a: int, b: int) -> None:
    assert Expr.parse("a - b").evaluate({"a": a, "b": b}) == (a - b) % 2**32


@given(u32, st.integers(min_value=-(1 << 31) + 1, max_value=(1 << 31) - 1))
def test_seq_diff_recovers_the_offset_across_the_wrap(a: int, d: int) -> None:
    assert seq_diff((a + d) % MOD, a) == d
    assert seq_diff(a, (a + d) % MOD) == -d
