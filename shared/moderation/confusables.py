"""Homoglyph and leetspeak tables: characters that look like Latin letters, mapped to them."""

from __future__ import annotations

# Letters from other scripts that render like a Latin letter (after NFKC and casefold, so
# only lower case is listed). Written from the Unicode charts of Cyrillic, Greek, Armenian,
# Cherokee-free Latin extensions and IPA; NFKC already folds fullwidth and mathematical forms.
HOMOGLYPHS: dict[str, str] = {
    # Cyrillic
    "а": "a", "в": "b", "е": "e", "ё": "e", "є": "e", "з": "3", "и": "u", "і": "i",
    "ї": "i", "ј": "j", "к": "k", "л": "n", "м": "m", "н": "h", "о": "o", "п": "n",
    "р": "p", "с": "c", "т": "t", "у": "y", "ф": "o", "х": "x", "ц": "u", "ч": "4",
    "ш": "w", "щ": "w", "ъ": "b", "ь": "b", "ѕ": "s", "ԁ": "d", "ԛ": "q", "ԝ": "w",
    "һ": "h", "ӏ": "l", "ү": "y", "ґ": "r", "г": "r", "д": "d", "я": "r", "ы": "bi",
    # Greek
    "α": "a", "β": "b", "γ": "y", "δ": "d", "ε": "e", "ζ": "z", "η": "n", "θ": "o",
    "ι": "i", "κ": "k", "λ": "l", "μ": "u", "ν": "v", "ξ": "e", "ο": "o", "π": "n",
    "ρ": "p", "σ": "o", "ς": "c", "τ": "t", "υ": "u", "φ": "o", "χ": "x", "ψ": "w",
    "ω": "w", "ϲ": "c", "ϳ": "j",
    # Armenian
    "օ": "o", "ս": "u", "հ": "h", "ո": "n", "զ": "q", "ց": "g", "ք": "p", "ա": "w",
    # Latin lookalikes outside ASCII that NFKD does not decompose
    "ı": "i", "ȷ": "j", "ɑ": "a", "ɡ": "g", "ɩ": "i", "ɪ": "i", "ʀ": "r", "ʏ": "y",
    "ᴀ": "a", "ʙ": "b", "ᴄ": "c", "ᴅ": "d", "ᴇ": "e", "ɢ": "g", "ʜ": "h", "ᴊ": "j",
    "ᴋ": "k", "ʟ": "l", "ᴍ": "m", "ɴ": "n", "ᴏ": "o", "ᴘ": "p", "ᴛ": "t", "ᴜ": "u",
    "ᴠ": "v", "ᴡ": "w", "ᴢ": "z", "ø": "o", "đ": "d", "ħ": "h", "ł": "l", "ŧ": "t",
    "ß": "ss", "æ": "ae", "œ": "oe", "þ": "p", "ƒ": "f", "ǝ": "e", "ɛ": "e", "ɔ": "c",
    # Symbols used as letters
    "¢": "c", "€": "e", "£": "l", "¥": "y", "©": "c", "®": "r", "∂": "d", "∑": "e",
    "√": "v", "×": "x", "∆": "a", "ℓ": "l",
}

# Characters that render as nothing; removed before anything else.
INVISIBLE = frozenset(
    "\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180e\u200b\u200c\u200d\u200e\u200f"
    "\u202a\u202b\u202c\u202d\u202e\u2060\u2061\u2062\u2063\u2064\u206a\u206b\u206c"
    "\u206d\u206e\u206f\u3164\ufe0f\ufeff\uffa0"
)

# Digits and symbols read as letters inside a word ("s3x", "k1ll", "@ss", "pr0n").
LEET: dict[str, str] = {
    "0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "6": "g", "7": "t", "8": "b",
    "9": "g", "@": "a", "$": "s", "!": "i", "|": "l", "+": "t", "¡": "i",
}
# "1" and "|" read as "l" as often as "i": the second reading is tried as a variant.
LEET_ALTERNATIVES: dict[str, str] = {"1": "l", "!": "l", "|": "i"}
