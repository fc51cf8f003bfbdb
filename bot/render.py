"""Answer -> terminal text (rich). Pure: builds renderables, prints nothing.

Article text is hostile input: every piece of it shown here goes through `clean` or `clean_line`
first, so an escape sequence in a title cannot clear the screen or retitle the window, and it
enters rich as Text, never as markup.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from rich.console import Group
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from bot.controls import TERMINAL
from retrieval.chunk import split_sentences
from retrieval.models import Answer, Passage, Source, Span, Version

_BREAKS = re.compile(r"[\t\n]+")


def clean(text: str) -> str:
    """`text` without terminal control sequences or control characters; tabs and newlines kept."""
    return TERMINAL.strip(text)


def clean_line(text: str) -> str:
    """`clean`, and tabs and line breaks as single spaces: for a title, an outlet, a path on one line."""
    return _BREAKS.sub(" ", clean(text))


def _date(source: Source) -> str:
    return source.published.isoformat() if source.published else "date unknown"


def source_line(source: Source) -> str:
    """`Title — Outlet, 2022-03-23, by Author`, leaving out what is unknown."""
    parts = [clean_line(source.outlet or "") or "outlet unknown", _date(source)]
    author = clean_line(source.author or "")
    if author:
        parts.append(f"by {author}")
    if source.via:
        parts.append(f"from {clean_line(source.via)}")
    return f"{clean_line(source.label) or source.doc_id} — {', '.join(parts)}"


def version_line(version: Version) -> str:
    """`— Newsmax, date unknown: Hungary, Slovakia [1]`: who says what, and where it is quoted."""
    who = "; ".join(f"{clean_line(s.outlet or '') or 'outlet unknown'}, {_date(s)}" for s in version.sources)
    latest = " (the latest report)" if version.newest else ""
    return f"— {who}: {', '.join(clean_line(v) for v in version.values)} [{version.passage}]{latest}"


def _head(answer: Answer) -> Text:
    """The answer sentence with its phrase reversed, the phrase again on its own, and the date."""
    span = answer.answer
    sentence, at = TERMINAL.strip_mapped(span.text if span else "")
    head = Text(sentence, style="bold yellow")
    phrase = answer.phrase
    if span and phrase and phrase.passage == span.passage and span.start <= phrase.start < phrase.end <= span.end:
        head.stylize("reverse", at(phrase.start - span.start), at(phrase.end - span.start))
    head.append(f" [{span.passage}]" if span else "", style="cyan")
    if phrase is not None:
        head.append("\n→ ")
        head.append(clean(phrase.text), style="bold reverse")
    if answer.as_of is not None:
        head.append("  " if phrase is not None else "\n")
        head.append(f"as of {answer.as_of.isoformat()}", style="dim")
    if answer.preferred is not None:
        head.append("\n" + answer.preferred.describe(), style="dim")
    return head


def _differ(answer: Answer) -> Text:
    block = Text("Sources differ:", style="bold magenta")
    for version in answer.versions:
        block.append("\n  " + version_line(version))
    return block


def excerpt_bounds(passage: Passage, context: int = 1) -> tuple[int, int]:
    """The highlighted sentence with `context` sentences either side, as offsets into the passage."""
    if passage.highlight is None:
        return 0, len(passage.text)
    spans = split_sentences(passage.text)
    at = next((i for i, (s, e) in enumerate(spans) if s <= passage.highlight.start < e), None)
    if at is None:
        return 0, len(passage.text)
    start = min(spans[max(0, at - context)][0], passage.highlight.start)
    end = max(spans[min(len(spans) - 1, at + context)][1], passage.highlight.end)
    return start, end


def _passage_text(passage: Passage, phrase: Span | None, *, full: bool) -> Text:
    start, end = (0, len(passage.text)) if full else excerpt_bounds(passage)
    body, at = TERMINAL.strip_mapped(passage.text[start:end])
    text = Text(("… " if start > 0 else "") + body + (" …" if end < len(passage.text) else ""))
    shift = 2 if start > 0 else 0
    if passage.highlight is not None:
        highlight = passage.highlight
        text.stylize("bold yellow", at(highlight.start - start) + shift, at(highlight.end - start) + shift)
    if phrase is not None and phrase.passage == passage.n:
        text.stylize("reverse", at(phrase.start - start) + shift, at(phrase.end - start) + shift)
    return text


def render_answer(answer: Answer, *, full: bool = False) -> Group:
    """The answer, then each cited passage: the answering sentence with a sentence either side,
    or the whole passage with `full`."""
    if not answer.found:
        return Group(Text(clean(answer.message), style="bold red"))
    parts: list = [_head(answer), Text("")]
    if answer.disagreement and answer.versions:
        parts += [_differ(answer), Text("")]
    for passage in answer.passages:
        lines = Text()
        lines.append(f"[{passage.n}] ", style="bold cyan")
        if len(passage.sources) > 1:
            lines.append(f"carried by {len(passage.sources)} outlets\n", style="magenta")
        for i, source in enumerate(passage.sources):
            lines.append(("    " if i or len(passage.sources) > 1 else "") + source_line(source), style="bold")
            location = clean_line(source.location or "")
            if location:
                lines.append(f"\n    {location}", style="dim")
            lines.append("\n")
        parts.append(lines)
        parts.append(Padding(_passage_text(passage, answer.phrase, full=full), (0, 0, 1, 4)))
    return Group(*parts)


def render_sources(rows: Sequence) -> Table:
    """The indexed documents (store.SourceRow) as a table: id, title, outlet, date, chunks, location."""
    table = Table("id", "title", "outlet", "date", "chunks", "location")
    for r in rows:
        # Text cells: a str cell would be read as markup, and "[bold red]" in a title is only words.
        table.add_row(Text(r.doc_id[:10]), Text(clean_line(r.label) or r.doc_id[:10]),
                      Text(clean_line(r.outlet or "") or "—"), r.published.isoformat() if r.published else "—",
                      str(r.chunks), Text(clean_line(r.location or "")))
    return table
