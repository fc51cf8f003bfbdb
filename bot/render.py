"""Answer -> terminal text (rich). Pure: builds renderables, prints nothing."""

from __future__ import annotations

from rich.console import Group
from rich.padding import Padding
from rich.text import Text

from retrieval.chunk import split_sentences
from retrieval.models import Answer, Passage, Source, Span, Version


def _date(source: Source) -> str:
    return source.published.isoformat() if source.published else "date unknown"


def source_line(source: Source) -> str:
    """`Title — Outlet, 2022-03-23, by Author`, leaving out what is unknown."""
    parts = [source.outlet or "outlet unknown", _date(source)]
    if source.author:
        parts.append(f"by {source.author}")
    return f"{source.label} — {', '.join(parts)}"


def version_line(version: Version) -> str:
    """`— Newsmax, date unknown: Hungary, Slovakia [1]`: who says what, and where it is quoted."""
    who = "; ".join(f"{s.outlet or 'outlet unknown'}, {_date(s)}" for s in version.sources)
    return f"— {who}: {', '.join(version.values)} [{version.passage}]"


def _head(answer: Answer) -> Text:
    """The answer sentence with its phrase reversed, the phrase again on its own, and the date."""
    span = answer.answer
    head = Text(span.text, style="bold yellow") if span else Text("")
    phrase = answer.phrase
    if span and phrase and phrase.passage == span.passage and span.start <= phrase.start < phrase.end <= span.end:
        head.stylize("reverse", phrase.start - span.start, phrase.end - span.start)
    head.append(f" [{span.passage}]" if span else "", style="cyan")
    if phrase is not None:
        head.append("\n→ ")
        head.append(phrase.text, style="bold reverse")
    if answer.as_of is not None:
        head.append("  " if phrase is not None else "\n")
        head.append(f"as of {answer.as_of.isoformat()}", style="dim")
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
    text = Text(("… " if start > 0 else "") + passage.text[start:end] + (" …" if end < len(passage.text) else ""))
    shift = (2 if start > 0 else 0) - start
    if passage.highlight is not None:
        text.stylize("bold yellow", passage.highlight.start + shift, passage.highlight.end + shift)
    if phrase is not None and phrase.passage == passage.n:
        text.stylize("reverse", phrase.start + shift, phrase.end + shift)
    return text


def render_answer(answer: Answer, *, full: bool = False) -> Group:
    """The answer, then each cited passage: the answering sentence with a sentence either side,
    or the whole passage with `full`."""
    if not answer.found:
        return Group(Text(answer.message, style="bold red"))
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
            if source.location:
                lines.append(f"\n    {source.location}", style="dim")
            lines.append("\n")
        parts.append(lines)
        parts.append(Padding(_passage_text(passage, answer.phrase, full=full), (0, 0, 1, 4)))
    return Group(*parts)
