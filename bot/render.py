"""Answer -> terminal text (rich). Pure: builds renderables, prints nothing."""

from __future__ import annotations

from rich.console import Group
from rich.padding import Padding
from rich.text import Text

from retrieval.models import Answer, Passage, Source


def source_line(source: Source) -> str:
    """`Title — Outlet, 2022-03-23, by Author`, leaving out what is unknown."""
    parts = [source.outlet or "outlet unknown", source.published.isoformat() if source.published else "date unknown"]
    if source.author:
        parts.append(f"by {source.author}")
    return f"{source.label} — {', '.join(parts)}"


def _passage_text(passage: Passage) -> Text:
    text = Text(passage.text)
    if passage.highlight is not None:
        text.stylize("bold yellow", passage.highlight.start, passage.highlight.end)
    return text


def render_answer(answer: Answer) -> Group:
    if not answer.found:
        return Group(Text(answer.message, style="bold red"))
    parts: list = []
    head = Text(answer.answer.text, style="bold yellow") if answer.answer else Text("")
    head.append(f" [{answer.answer.passage}]" if answer.answer else "", style="cyan")
    parts += [head, Text("")]
    for passage in answer.passages:
        lines = Text()
        lines.append(f"[{passage.n}] ", style="bold cyan")
        if len(passage.sources) > 1:
            lines.append(f"carried by {len(passage.sources)} sources\n", style="magenta")
        for i, source in enumerate(passage.sources):
            lines.append(("    " if i or len(passage.sources) > 1 else "") + source_line(source), style="bold")
            if source.location:
                lines.append(f"\n    {source.location}", style="dim")
            lines.append("\n")
        parts.append(lines)
        parts.append(Padding(_passage_text(passage), (0, 0, 1, 4)))
    return Group(*parts)
