"""Normalisation: the tricks people use to hide a word all read back as the word."""

from __future__ import annotations

import pytest

from shared.moderation.normalise import normalise


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("A Shot of ESPRESSO!", "a shot of espresso"),
        ("ｎｕｄｅ beach", "nude beach"),  # fullwidth (NFKC)
        ("n\u0430ked", "naked"),  # Cyrillic a
        ("\u03bd\u03bf\u03b4\u03b5", "vode"),  # Greek letters map to their lookalikes
        ("nu\u200bde", "nude"),  # zero-width space
        ("n\u00fcde", "nude"),  # accent
        ("s3x", "sex"),
        ("$ex", "sex"),
        ("n a k e d man", "naked man"),
        ("n.u.d.e", "nude"),
        ("k-i-l-l", "kill"),
    ],
)
def test_normalise_reads_hidden_words(raw: str, expected: str) -> None:
    assert expected in normalise(raw).variants


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("a 4k photo of the 1990s!", "a 4k photo of the 1990s"), ("hi! a b", "hi a b")],
)
def test_normalise_leaves_numbers_and_punctuation_of_plain_text(raw: str, expected: str) -> None:
    assert normalise(raw).text == expected


def test_normalise_reads_one_as_l_in_a_variant() -> None:
    assert "kill" in normalise("k1ll").variants
    assert "kill" in normalise("ki1l").variants  # "1" read as "l"


def test_normalise_squeezes_stretched_letters() -> None:
    assert "nude" in normalise("nuuuuude").variants
    assert "kill" in normalise("killllll").variants
