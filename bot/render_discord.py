"""Answer -> Discord message parts, trimmed to Discord's limits. Pure: builds dicts and strings, sends nothing.

Everything that comes from an article (titles, outlets, passages) goes through `escape`, so a passage
cannot bold half the embed, fake a masked link or ping anyone; the bot also sends every message with
no mentions allowed. Sizes are counted in UTF-16 code units, which is never less than Discord's own count.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import discord

from retrieval.models import Answer, Passage, Source, Version

if TYPE_CHECKING:  # the real types; fakes in tests only need the same attributes
    from retrieval.pipeline import IngestReport
    from retrieval.store import SourceRow

MESSAGE_LIMIT = 2000
TITLE_LIMIT = 256
DESCRIPTION_LIMIT = 4096
FIELDS_LIMIT = 25
FIELD_NAME_LIMIT = 256
FIELD_VALUE_LIMIT = 1024
FOOTER_LIMIT = 2048
AUTHOR_LIMIT = 256
EMBED_TOTAL_LIMIT = 6000

ELLIPSIS = "…"
ZWSP = "\u200b"
COLOUR = 0x2F6DB5
FOOTER = "Reply to this answer to ask a follow-up."
NOT_FOUND = "I could not find that in the indexed articles."
DIFFER = "Sources differ"
# A field value shrinks no further than this before fields are dropped instead.
MIN_FIELD_VALUE = 80


def size(text: str) -> int:
    """Length as Discord's clients count it (UTF-16 code units); never less than the code point count."""
    return len(text.encode("utf-16-le")) // 2


def trim(text: str, limit: int) -> str:
    """`text` if it fits in `limit`, else its start and an ellipsis, in `limit` at most."""
    if size(text) <= limit:
        return text
    if limit < 1:
        return ""
    head = text.encode("utf-16-le")[: 2 * (limit - 1)].decode("utf-16-le", errors="ignore")
    head = head.rstrip()
    if (len(head) - len(head.rstrip("\\"))) % 2:
        head = head[:-1]  # a lone trailing backslash would escape the ellipsis
    return head + ELLIPSIS


def escape(text: str) -> str:
    """Article text made inert: markdown escaped, mentions and channel links broken by a zero-width space."""
    text = discord.utils.escape_markdown(text)
    return text.replace("@", "@" + ZWSP).replace("<#", "<" + ZWSP + "#")


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _date(value: dt.date | None) -> str:
    return value.isoformat() if value else "date unknown"


def source_heading(source: Source) -> str:
    """`Title — Outlet, 2022-03-23`, escaped; unknown parts said as such."""
    return escape(f"{_one_line(source.label)} — {_one_line(source.outlet or 'outlet unknown')}, {_date(source.published)}")


def safe_url(url: str | None) -> str | None:
    """An http(s) URL that cannot break out of a markdown link, or None."""
    if not url:
        return None
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or any(c.isspace() for c in url):
        return None
    return url.replace("(", "%28").replace(")", "%29").replace("<", "%3C").replace(">", "%3E")


def _link(source: Source) -> str:
    url = safe_url(source.url)
    if url is None:
        return ""
    host = urlsplit(url).netloc.removeprefix("www.")
    return f"[{escape(host)}]({url})"


def _quote(passage: Passage, budget: int) -> str:
    """The passage as one quoted line in `budget` units, its highlighted span bold when that fits."""
    text = passage.text
    light = passage.highlight
    if light is not None and 0 <= light.start < light.end <= len(text):
        # Escape the whole passage once, with the highlight marked by private-use characters.
        marked = text[: light.start] + _OPEN + text[light.start : light.end] + _CLOSE + text[light.end :]
        body = escape(_one_line(marked))
        before, rest = body.split(_OPEN, 1)
        inside, after = rest.split(_CLOSE, 1)
        head = f"> {before}**{inside.strip()}**"
        if size(head) < budget:
            return trim(head + after, budget)
        return trim(f"> {before}{inside}{after}", budget)
    return trim("> " + escape(_one_line(text)), budget)


_OPEN, _CLOSE = "\ue000", "\ue001"


def passage_field(passage: Passage, value_budget: int = FIELD_VALUE_LIMIT) -> dict[str, Any]:
    """One numbered source: `[n] Title — Outlet, date` over its link and the quoted passage."""
    first = passage.sources[0] if passage.sources else None
    name = f"[{passage.n}] " + (source_heading(first) if first else "source unknown")
    link = _link(first) if first else ""
    head = link + "\n" if link else ""
    if len(passage.sources) > 1:
        # A wire story or a shared quote: one passage, every outlet that carries it.
        outlets = ", ".join(_one_line(s.outlet or s.label) for s in passage.sources)
        head += trim(f"Carried by {len(passage.sources)} outlets: {escape(outlets)}", 300) + "\n"
    budget = min(value_budget, FIELD_VALUE_LIMIT)
    quote = _quote(passage, max(budget - size(head), 3))
    return {"name": trim(name, FIELD_NAME_LIMIT), "value": trim(head + quote, FIELD_VALUE_LIMIT), "inline": False}


def version_text(version: Version) -> str:
    """`— Newsmax, date unknown: Hungary, Slovakia [1]`, escaped: who says what, and where it is quoted."""
    who = "; ".join(f"{_one_line(s.outlet or 'outlet unknown')}, {_date(s.published)}" for s in version.sources)
    return escape(f"— {who}: {_one_line(', '.join(version.values))}") + f" [{version.passage}]"


def versions_field(answer: Answer) -> dict[str, Any]:
    """The "Sources differ" field: one line per version, trimmed to a field's limit."""
    value = "\n".join(version_text(v) for v in answer.versions)
    return {"name": DIFFER, "value": trim(value, FIELD_VALUE_LIMIT), "inline": False}


def _description(answer: Answer) -> str:
    """The phrase asked for, bold, over its sentence; or the sentence bold when there is no phrase."""
    span, phrase = answer.answer, answer.phrase
    if span is None:
        return trim(escape(_one_line(answer.message or "Here is what the articles say:")), DESCRIPTION_LIMIT)
    if phrase is None:
        return f"**{trim(escape(_one_line(span.text)), DESCRIPTION_LIMIT - 20)}** [{span.passage}]"
    head = f"**{trim(escape(_one_line(phrase.text)), 1000)}** [{span.passage}]"
    return head + "\n" + trim("> " + escape(_one_line(span.text)), DESCRIPTION_LIMIT - size(head) - 1)


def answer_embed_dict(answer: Answer) -> dict[str, Any]:
    """A found answer as an embed dict: the answer first, whether sources differ, then one field per passage.

    The "Sources differ" field comes first among the fields, so trimming (which drops trailing
    fields) takes passages before it; the date the answer holds as of leads the footer.
    """
    title = trim(escape(_one_line(answer.question)), TITLE_LIMIT)
    description = _description(answer)
    footer = f"As of {answer.as_of.isoformat()} · {FOOTER}" if answer.as_of else FOOTER
    extra = [versions_field(answer)] if answer.disagreement and answer.versions else []
    passages = answer.passages[: FIELDS_LIMIT - len(extra)]
    fixed = size(title) + size(description) + size(footer) + sum(size(f["name"]) + size(f["value"]) for f in extra)
    names = [passage_field(p, MIN_FIELD_VALUE)["name"] for p in passages]
    room = EMBED_TOTAL_LIMIT - fixed - sum(size(n) for n in names)
    per_field = min(FIELD_VALUE_LIMIT, room // len(passages)) if passages else FIELD_VALUE_LIMIT
    embed = {
        "title": title,
        "description": description,
        "color": COLOUR,
        "fields": extra + [passage_field(p, per_field) for p in passages],
        "footer": {"text": footer},
    }
    return fit_embed(embed)


def embed_size(embed: dict[str, Any]) -> int:
    """What Discord counts towards the 6,000 total: title, description, field names and values, footer, author."""
    total = size(embed.get("title") or "") + size(embed.get("description") or "")
    total += size((embed.get("footer") or {}).get("text") or "") + size((embed.get("author") or {}).get("name") or "")
    for field in embed.get("fields") or []:
        total += size(field.get("name") or "") + size(field.get("value") or "")
    return total


def fit_embed(embed: dict[str, Any]) -> dict[str, Any]:
    """A copy of `embed` within every Discord limit: each part trimmed, at most 25 fields, 6,000 in all.

    Long field values shrink first (the longest first), then trailing fields go, then the description.
    """
    out = dict(embed)
    if out.get("title"):
        out["title"] = trim(out["title"], TITLE_LIMIT)
    if out.get("description"):
        out["description"] = trim(out["description"], DESCRIPTION_LIMIT)
    if out.get("footer"):
        out["footer"] = {**out["footer"], "text": trim(out["footer"].get("text") or "", FOOTER_LIMIT)}
    if out.get("author"):
        out["author"] = {**out["author"], "name": trim(out["author"].get("name") or "", AUTHOR_LIMIT)}
    fields = [
        {**f, "name": trim(f.get("name") or ZWSP, FIELD_NAME_LIMIT) or ZWSP,
         "value": trim(f.get("value") or ZWSP, FIELD_VALUE_LIMIT) or ZWSP}
        for f in (out.get("fields") or [])[:FIELDS_LIMIT]
    ]
    out["fields"] = fields
    while (over := embed_size(out) - EMBED_TOTAL_LIMIT) > 0:
        longest = max(range(len(fields)), key=lambda i: size(fields[i]["value"]), default=None)
        if longest is not None and size(fields[longest]["value"]) > MIN_FIELD_VALUE:
            value = fields[longest]["value"]
            fields[longest]["value"] = trim(value, max(MIN_FIELD_VALUE, size(value) - over))
        elif fields:
            fields.pop()
        elif size(out.get("description") or "") > 1:
            out["description"] = trim(out["description"], max(1, size(out["description"]) - over))
        elif out.get("footer"):
            out.pop("footer")
        else:
            out["title"] = trim(out.get("title") or "", max(0, size(out.get("title") or "") - over))
    if not fields:
        out.pop("fields")
    return out


def answer_embed(answer: Answer) -> discord.Embed:
    return discord.Embed.from_dict(answer_embed_dict(answer))


def not_found_text(answer: Answer) -> str:
    """A 'not found' answer said plainly, as on the command line."""
    return trim(escape(answer.message or NOT_FOUND), MESSAGE_LIMIT)


def _split_line(line: str, limit: int, prefix: str = "") -> list[str]:
    """A long line cut at spaces into pieces of at most `limit`, each continuing with `prefix`."""
    pieces: list[str] = []
    while size(line) > limit:
        head = line.encode("utf-16-le")[: 2 * limit].decode("utf-16-le", errors="ignore")
        cut = head.rfind(" ", len(prefix) + 1)
        if cut <= len(prefix):
            cut = len(head)
        while cut > len(prefix) + 1 and head[cut - 1] == "\\":
            cut -= 1  # never split an escape from the character it escapes
        pieces.append(line[:cut].rstrip())
        line = prefix + line[cut:].lstrip()
    pieces.append(line)
    return pieces


def pack(lines: Iterable[str], limit: int = MESSAGE_LIMIT) -> list[str]:
    """Lines joined into as few messages as possible, none over `limit`; over-long lines are split."""
    messages: list[str] = []
    current = ""
    for line in lines:
        prefix = "> " if line.startswith("> ") else ""
        for piece in _split_line(line, limit, prefix):
            joined = f"{current}\n{piece}" if current else piece
            if size(joined) <= limit:
                current = joined
            else:
                messages.append(current)
                current = piece
    if current:
        messages.append(current)
    return messages


def all_sources_messages(answer: Answer) -> list[str]:
    """Every passage in full with all its sources, as messages of at most 2,000 characters each."""
    lines: list[str] = []
    for passage in answer.passages:
        for i, source in enumerate(passage.sources):
            lead = f"**[{passage.n}]** " if i == 0 else "also in: "
            url = safe_url(source.url)
            where = f" <{url}>" if url else ""
            lines.append(lead + source_heading(source) + where)
        lines.append("> " + escape(_one_line(passage.text)))
        lines.append("")
    while lines and not lines[-1]:
        lines.pop()
    return pack(lines) or [NOT_FOUND]


def sources_messages(rows: Sequence[SourceRow], *, max_messages: int = 5) -> list[str]:
    """The indexed articles, one line each, in at most `max_messages` messages."""
    if not rows:
        return ["The index is empty: an admin can run /reindex."]
    reserve = 40  # room left in each message for the "… and N more." line
    messages: list[str] = []
    current = f"{len(rows)} articles indexed:"
    for shown, row in enumerate(rows):
        where = f" <{url}>" if (url := safe_url(row.location)) else ""
        line = trim(
            f"• {escape(_one_line(row.label))} — {escape(_one_line(row.outlet or 'outlet unknown'))}, "
            f"{_date(row.published)} · {row.chunks} passages{where}",
            400,
        )
        if size(current) + 1 + size(line) <= MESSAGE_LIMIT - reserve:
            current += "\n" + line
            continue
        if len(messages) + 1 == max_messages:
            messages.append(current + f"\n… and {len(rows) - shown} more.")
            return messages
        messages.append(current)
        current = line
    messages.append(current)
    return messages


def ingest_progress_text(done: int, total: int, path: str) -> str:
    return trim(f"Reindexing: {done}/{total} files · {escape(_one_line(path))}", MESSAGE_LIMIT)


def ingest_report_text(report: IngestReport, *, max_errors: int = 10) -> str:
    head = (
        f"Reindex finished: {report.added} added, {report.updated} updated, {report.unchanged} unchanged, "
        f"{report.removed} removed, {report.failed} failed."
    )
    errors = [f"• {escape(_one_line(line))}" for line in report.errors[:max_errors]]
    if len(report.errors) > max_errors:
        errors.append(f"… and {len(report.errors) - max_errors} more.")
    return trim("\n".join([head, *errors]), MESSAGE_LIMIT)


_MENTION = re.compile(r"<@!?(\d+)>")


def strip_mentions(content: str, user_id: int) -> str:
    """A message's text without the bot's own mention(s)."""
    return " ".join(_MENTION.sub(lambda m: "" if int(m.group(1)) == user_id else m.group(0), content).split())
