"""Text a database can store as given: no NUL, no other control characters, no lone surrogates.

PostgreSQL refuses NUL in text and lone surrogates cannot be encoded as UTF-8; the other C0
controls (all but tab, newline and carriage return) are refused too, as no prompt, id or
cursor holds one. Every string from a client is checked at the edge, naming its field.
"""

from __future__ import annotations

import re

from shared.errors import InvalidInput

UNSTORABLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")


def check_storable(text: str, *, param: str) -> str:
    """`text` unchanged, or InvalidInput naming `param`, the character and where it is."""
    found = UNSTORABLE.search(text)
    if found is None:
        return text
    char = found.group()
    raise InvalidInput(
        f"{param} holds the character U+{ord(char):04X} at position {found.start()}; NUL, "
        "other control characters (except tab, newline and carriage return) and lone "
        "surrogates are not allowed",
        param=param,
        code="invalid_character",
    )
