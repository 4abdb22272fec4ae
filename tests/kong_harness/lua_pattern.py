"""Translate Lua patterns (used by Kong's `match*` schema validators) to `re`.

Kong validates `match`, `not_match`, `match_all`, `match_none`, `match_any`
with `string.match`, i.e. Lua patterns, not PCRE. Supported: character
classes (%a %c %d %g %l %p %s %u %w %x and their complements), escapes, sets,
`.`, anchors, quantifiers `* + - ?`, captures and back-references. `%b` and
`%f` have no `re` equivalent and raise.
"""

from __future__ import annotations

import functools
import re
import string

_CLASSES = {
    "a": "A-Za-z",
    "c": "\\x00-\\x1f\\x7f",
    "d": "0-9",
    "g": "\\x21-\\x7e",
    "l": "a-z",
    "p": "".join("\\" + c for c in string.punctuation),
    "s": " \\t\\n\\r\\f\\v",
    "u": "A-Z",
    "w": "A-Za-z0-9",
    "x": "0-9A-Fa-f",
}


class LuaPatternError(ValueError):
    pass


def _class(letter: str, in_set: bool) -> str:
    body = _CLASSES[letter.lower()]
    if in_set:
        if letter.isupper():
            raise LuaPatternError(f"complemented class %{letter} inside a set is not supported")
        return body
    return f"[^{body}]" if letter.isupper() else f"[{body}]"


def _set_literal(ch: str) -> str:
    return "\\" + ch if ch in "\\]^-[" else ch


@functools.lru_cache(maxsize=256)
def compile_lua_pattern(pattern: str) -> re.Pattern[str]:
    out: list[str] = []
    i = 0
    n = len(pattern)
    if pattern.startswith("^"):
        out.append("\\A")
        i = 1
    while i < n:
        ch = pattern[i]
        single: str | None = None
        if ch == "%":
            if i + 1 >= n:
                raise LuaPatternError("malformed pattern (ends with '%')")
            nxt = pattern[i + 1]
            if nxt in "bf":
                raise LuaPatternError(f"%{nxt} is not supported by the harness")
            if nxt.isdigit():
                out.append(f"(?:\\{nxt})")
                i += 2
                continue
            single = _class(nxt, False) if nxt.lower() in _CLASSES else re.escape(nxt)
            i += 2
        elif ch == "[":
            j = i + 1
            parts = ["["]
            if j < n and pattern[j] == "^":
                parts.append("^")
                j += 1
            first = True
            while j < n and (pattern[j] != "]" or first):
                first = False
                c = pattern[j]
                if c == "%" and j + 1 < n:
                    nxt = pattern[j + 1]
                    parts.append(_class(nxt, True) if nxt.lower() in _CLASSES else _set_literal(nxt))
                    j += 2
                elif j + 2 < n and pattern[j + 1] == "-" and pattern[j + 2] != "]":
                    parts.append(f"{_set_literal(c)}-{_set_literal(pattern[j + 2])}")
                    j += 3
                else:
                    parts.append(_set_literal(c))
                    j += 1
            if j >= n:
                raise LuaPatternError("malformed pattern (missing ']')")
            parts.append("]")
            single = "".join(parts)
            i = j + 1
        elif ch == "(":
            if pattern.startswith("()", i):
                out.append("()")  # position capture: close enough for matching
                i += 2
                continue
            out.append("(")
            i += 1
            continue
        elif ch == ")":
            out.append(")")
            i += 1
            continue
        elif ch == "$" and i == n - 1:
            out.append("\\Z")
            i += 1
            continue
        elif ch == ".":
            single = "[\\s\\S]"
            i += 1
        else:
            single = re.escape(ch)
            i += 1
        # A quantifier applies to the single-character class just read.
        if i < n and pattern[i] in "*+-?":
            quant = pattern[i]
            out.append(single + {"*": "*", "+": "+", "-": "*?", "?": "?"}[quant])
            i += 1
        else:
            out.append(single)
    return re.compile("".join(out))


def lua_match(value: str, pattern: str) -> bool:
    """True when `string.match(value, pattern)` would return non-nil."""
    return compile_lua_pattern(pattern).search(value) is not None
