"""Text for the Dagster UI, which renders descriptions as Markdown with HTML: a bare
`TC-<account>-<site>` is read as two HTML tags and shows as "TC--". `ui_text` puts every word
holding angle brackets in a code span (shown as written, also where text is not rendered), and
leaves existing code spans alone."""

import re

_WORD = re.compile(r"[^\s`]*<[A-Za-z/!][^\s`<>]*>[^\s`]*")
_TRAILING = ".,;:)"


def _quote(match: re.Match) -> str:
    word = match.group(0)
    core = word.rstrip(_TRAILING)
    return f"`{core}`{word[len(core) :]}"


def ui_text(text: str | None) -> str | None:
    if not text or "<" not in text:
        return text
    parts = text.split("`")  # odd parts are inside code spans
    return "`".join(part if i % 2 else _WORD.sub(_quote, part) for i, part in enumerate(parts))


def outside_code(text: str) -> str:
    """The text outside code spans (what a test checks for bare angle brackets)."""
    return " ".join(text.split("`")[0::2])
