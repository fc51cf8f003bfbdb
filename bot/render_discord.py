"""Answer -> Discord message parts, trimmed to Discord's limits. Pure: builds dicts and strings, sends nothing.

Article text is hostile input. Everything that comes from an article (titles, outlets, passages) goes
through `escape`, and every URL through `safe_url`. `escape` strips control characters and leaves no
markdown construct live: markdown characters and brackets get a backslash (no bold, spoiler, code or
masked link), `://` loses its autolink, a heading, subtext, quote or list marker at a line's start is
escaped, and every `<` and `@` is followed by a zero-width space, so no mention, channel, role, emoji
or timestamp can form, whatever text ends up next to it. Each piece of article text is escaped before
our own markup goes around it and trimmed after, never inside an escape; the bot also sends every
message with no mentions allowed. Sizes are counted in UTF-16 code units, which is never less than
Discord's own count.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit, urlunsplit

import discord

from bot.controls import DISCORD
from retrieval.models import Answer, Passage, Source, Version

if TYPE_CHECKING:  # the real types; fakes in tests only need the same attributes
    from retrieval.pipeline import IngestReport
    from retrieval.backends.base import SourceRow

MESSAGE_LIMIT = 2000
TITLE_LIMIT = 256
DESCRIPTION_LIMIT = 4096
FIELDS_LIMIT = 25
FIELD_NAME_LIMIT = 256
FIELD_VALUE_LIMIT = 1024
FOOTER_LIMIT = 2048
AUTHOR_LIMIT = 256
EMBED_TOTAL_LIMIT = 6000
# "Show all sources" sends at most this many messages; the last says what was left out.
ALL_SOURCES_MAX_MESSAGES = 10
# A longer URL gets no link: it would crowd out the passage it belongs to.
URL_LIMIT = 512

ELLIPSIS = "…"
ZWSP = "\u200b"
COLOUR = 0x2F6DB5
FOOTER = "Reply to this answer to ask a follow-up."
NOT_FOUND = "I could not find that in the indexed articles."
DIFFER = "Sources differ"
NOT_SHOWN = "`citebot sources` lists every indexed article."
# A field value shrinks no further than this before fields are dropped instead.
MIN_FIELD_VALUE = 80
# Room kept in the last "Show all sources" message for the line saying what was left out, and the
# least room worth starting a quote in rather than in the next message.
_TAIL_ROOM = 120
_MIN_PIECE = 200
# Of a text shown in n units, at most the first 32n + 4096 characters are read (more than any text
# but a flood of spaces or control characters needs; see `_window`), and only the first n + 16 of
# those, squashed onto one line, are escaped: a huge article costs no more to show than a short one.
_MARGIN = 16


def size(text: str) -> int:
    """Length as Discord's clients count it (UTF-16 code units); never less than the code point count."""
    return len(text.encode("utf-16-le")) // 2


def _fit(text: str, units: int) -> str:
    """The longest start of `text` within `units` (a character outside the basic plane counts two)."""
    return text[:units].encode("utf-16-le")[: 2 * units].decode("utf-16-le", errors="ignore")


def _safe_cut(text: str, cut: int) -> int:
    """`cut` moved back, if need be, so that it falls between escapes, never inside one."""
    if 0 < cut < len(text) and text[cut] == ZWSP and text[cut - 1] in "<@":
        cut -= 1
    start = cut
    while start > 0 and text[start - 1] == "\\":
        start -= 1
    return cut - (cut - start) % 2  # an odd run of backslashes ends in one that escapes text[cut]


def trim(text: str, limit: int) -> str:
    """`text` if it fits in `limit`, else its start and an ellipsis, in `limit` at most; never cut inside an escape."""
    if len(text) <= limit and size(text) <= limit:
        return text
    if limit < 1:
        return ""
    cut = len(_fit(text, limit - 1))
    while (shorter := _safe_cut(text, len(text[:cut].rstrip()))) != cut:
        cut = shorter
    return text[:cut] + ELLIPSIS


# Line breaks a client may honour become "\n", so the line-start escaping sees every line; separators
# become spaces. One character for one, so offsets into the text still hold.
_BREAKS = str.maketrans(dict.fromkeys("\r\x85\u2028\u2029", "\n") | dict.fromkeys("\x0b\x0c\x1c\x1d\x1e\x1f", " "))


def _cleaned(text: str) -> tuple[str, Callable[[int], int]]:
    """`text` without control characters, and the map from offsets in `text` to offsets in the result."""
    return DISCORD.strip_mapped(text.translate(_BREAKS))


def _clean(text: str) -> str:
    return DISCORD.strip(text.replace("\r\n", "\n").translate(_BREAKS))


def _one_line(text: str) -> str:
    return " ".join(_clean(text).split())


_INLINE = str.maketrans({c: "\\" + c for c in "\\*_~|`[]"} | {"<": "<" + ZWSP, "@": "@" + ZWSP})
# Headings and subtext (#, -#), quotes (>) and list items (-, +, 1. or 1)) at a line's start.
_LINE_START = r"([^\S\n]*)([#>+-]|[0-9]+[.)])"
_EVERY_LINE = re.compile("(?m)^" + _LINE_START)
_LATER_LINES = re.compile(r"(?<=\n)" + _LINE_START)
_FIRST_LINE = re.compile("^" + _LINE_START)


def _line_start(match: re.Match) -> str:
    indent, mark = match.groups()
    return indent + mark[:-1] + "\\" + mark[-1]


def escape(text: str, *, at_line_start: bool = True) -> str:
    """Article text made inert: control characters gone, every markdown construct and mention escaped.

    With `at_line_start` false the text goes after other text on its line, so only its later lines
    can start a heading, quote or list.
    """
    text = _clean(text).translate(_INLINE).replace("://", "\\://")
    return (_EVERY_LINE if at_line_start else _LATER_LINES).sub(_line_start, text)


def _window(limit: int) -> int:
    return 32 * limit + 4096


def _inert(text: str, limit: int, *, at_line_start: bool = True) -> str:
    """Article text on one line, escaped, in `limit` units."""
    line = _one_line(text[: _window(limit)])
    if len(text) > _window(limit):
        line += " " + ELLIPSIS  # shown only if the spaces and controls squashed away left room for it
    return trim(escape(line[: limit + _MARGIN], at_line_start=at_line_start), limit)


def _date(value: dt.date | None) -> str:
    return value.isoformat() if value else "date unknown"


def source_heading(source: Source) -> str:
    """`Title — Outlet, 2022-03-23`, escaped; unknown parts said as such; `(from …)` when not from the article."""
    title = _inert(source.label, 400, at_line_start=False)
    outlet = _inert(source.outlet or "outlet unknown", 200, at_line_start=False)
    via = f" (from {_inert(source.via, 200, at_line_start=False)})" if source.via else ""
    return f"{title} — {outlet}, {_date(source.published)}{via}"


# Printable ASCII but what could end a link or an autolink early, or ping: those are percent-encoded.
_URL_SAFE = "".join(c for c in map(chr, range(0x21, 0x7F)) if c not in "()<>@\\\"'`")
_HOST = re.compile(r"[a-z0-9.:-]+")


def _safe_link(url: str | None) -> tuple[str, str] | None:
    """(the URL, safe to put in a link, and the host it really goes to) for an http(s) URL, or None.

    The host comes from the parsed URL, never from the text before it: `https://www.reuters.com@evil.example/`
    goes to evil.example, and says so; the user part is dropped from the link too. A host is shown
    in ASCII (punycode), so lookalike letters cannot pass for a known outlet.
    """
    url = (url or "").strip()
    if not url or len(url) > URL_LIMIT or not all(c.isprintable() and not c.isspace() for c in url):
        return None
    if "\\" in url:
        return None  # a "/" to browsers but not to urlsplit: they would disagree on the host
    try:
        parts = urlsplit(url)
        port = parts.port
        host = (parts.hostname or "").encode("idna").decode("ascii")
    except (ValueError, UnicodeError):
        return None
    if parts.scheme not in ("http", "https") or not _HOST.fullmatch(host):
        return None
    netloc = (f"[{host}]" if ":" in host else host) + (f":{port}" if port is not None else "")
    safe = quote(urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment)), safe=_URL_SAFE)
    return safe, host.removeprefix("www.")


def safe_url(url: str | None) -> str | None:
    """An http(s) URL that cannot break out of a markdown link or an autolink, or None."""
    link = _safe_link(url)
    return link[0] if link else None


def _link(source: Source) -> str:
    link = _safe_link(source.url)
    if link is None:
        return ""
    url, host = link
    return f"[{escape(host, at_line_start=False)}]({url})"


def _quote(passage: Passage, budget: int) -> str:
    """The passage as one quoted line in `budget` units, its highlighted span bold when that fits.

    The text either side of the highlight and the highlight itself are escaped each on its own, and
    only then joined with the bold markers, so no piece can pair with them or rebuild a construct
    (`<` and `#123>`, say) across them.
    """
    light = passage.highlight
    if light is None or not 0 <= light.start < light.end <= min(len(passage.text), _window(budget)):
        return "> " + _inert(passage.text, budget - 2)
    text, where = _cleaned(passage.text[: _window(budget)])
    if len(passage.text) > _window(budget):
        text += " " + ELLIPSIS
    start, end = where(light.start), where(light.end)
    # Marked with characters the cleaned text cannot hold, then squashed onto one line.
    line = " ".join((text[:start] + "\x00" + text[start:end] + "\x01" + text[end:]).split())
    before, rest = line.split("\x00")
    inside, after = rest.split("\x01")
    core = inside.strip()
    if core:
        left = " " if before and (before.endswith(" ") or inside.startswith(" ")) else ""
        right = " " if after.strip() and (after.startswith(" ") or inside.endswith(" ")) else ""
        room = budget + _MARGIN
        head = (
            f"> {escape(before.rstrip()[:room])}{left}"
            f"**{escape(core[:room], at_line_start=False)}**{right}"
        )
        if size(head) < budget:
            return trim(head + escape(after.strip()[:room], at_line_start=False), budget)
    return "> " + _inert(passage.text, budget - 2)


def _field_name(passage: Passage) -> str:
    first = passage.sources[0] if passage.sources else None
    return trim(f"[{passage.n}] " + (source_heading(first) if first else "source unknown"), FIELD_NAME_LIMIT)


def passage_field(passage: Passage, value_budget: int = FIELD_VALUE_LIMIT) -> dict[str, Any]:
    """One numbered source: `[n] Title — Outlet, date` over its link and the quoted passage."""
    first = passage.sources[0] if passage.sources else None
    link = _link(first) if first else ""
    head = link + "\n" if link else ""
    if len(passage.sources) > 1:
        # A wire story or a shared quote: one passage, every outlet that carries it.
        outlets = ", ".join(_inert(s.outlet or s.label, 100, at_line_start=False) for s in passage.sources)
        head += trim(f"Carried by {len(passage.sources)} outlets: {outlets}", 300) + "\n"
    budget = min(value_budget, FIELD_VALUE_LIMIT)
    quote = _quote(passage, max(budget - size(head), 3))
    return {"name": _field_name(passage), "value": trim(head + quote, FIELD_VALUE_LIMIT), "inline": False}


def version_text(version: Version) -> str:
    """`— Newsmax, date unknown: Hungary, Slovakia [1]`, escaped: who says what, and where it is quoted."""
    who = "; ".join(f"{s.outlet or 'outlet unknown'}, {_date(s.published)}" for s in version.sources)
    said = _inert(f"— {who}: {', '.join(version.values)}", FIELD_VALUE_LIMIT, at_line_start=False)
    return f"{said} [{version.passage}]" + (" (the latest report)" if version.newest else "")


def versions_field(answer: Answer) -> dict[str, Any]:
    """The "Sources differ" field: one line per version, trimmed to a field's limit."""
    value = "\n".join(version_text(v) for v in answer.versions)
    return {"name": DIFFER, "value": trim(value, FIELD_VALUE_LIMIT), "inline": False}


def _description(answer: Answer) -> str:
    """The phrase asked for, bold, over its sentence; or the sentence bold when there is no phrase."""
    span, phrase = answer.answer, answer.phrase
    if span is None:
        return _inert(answer.message or "Here is what the articles say:", DESCRIPTION_LIMIT)
    asked = _inert(phrase.text, 1000, at_line_start=False) if phrase is not None else ""
    if not asked:  # no phrase, or nothing of it left to show: "****" would be no bold at all
        said = _inert(span.text, DESCRIPTION_LIMIT - 20, at_line_start=False)
        return f"**{said}** [{span.passage}]" if said else f"[{span.passage}]"
    head = f"**{asked}** [{span.passage}]"
    return head + "\n> " + _inert(span.text, DESCRIPTION_LIMIT - size(head) - 3)


def answer_embed_dict(answer: Answer) -> dict[str, Any]:
    """A found answer as an embed dict: the answer first, whether sources differ, then one field per passage.

    The "Sources differ" field comes first among the fields, so trimming (which drops trailing
    fields) takes passages before it; the date the answer holds as of leads the footer.
    """
    title = _inert(answer.question, TITLE_LIMIT)
    description = _description(answer)
    footer = f"As of {answer.as_of.isoformat()} · {FOOTER}" if answer.as_of else FOOTER
    if answer.preferred is not None:
        footer = f"{answer.preferred.describe()} · {footer}"
    extra = [versions_field(answer)] if answer.disagreement and answer.versions else []
    passages = answer.passages[: FIELDS_LIMIT - len(extra)]
    fixed = size(title) + size(description) + size(footer) + sum(size(f["name"]) + size(f["value"]) for f in extra)
    names = [_field_name(p) for p in passages]
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
    return trim(escape((answer.message or NOT_FOUND)[: MESSAGE_LIMIT + _MARGIN]), MESSAGE_LIMIT)


def _cut_line(line: str, room: int, prefix: str = "") -> tuple[str, str]:
    """A line too long for `room` cut at a space into a piece that fits and the rest, which goes on with `prefix`.

    The cut never falls inside an escape, and the rest, now at the start of a line, has a heading,
    quote or list marker at its start escaped. `room` must leave space for more than `prefix`.
    """
    head = _fit(line, room)
    cut = _safe_cut(line, head.rfind(" ", len(prefix) + 1))
    if cut <= len(prefix):
        cut = _safe_cut(line, len(head))
    return line[:cut].rstrip(), prefix + _FIRST_LINE.sub(_line_start, line[cut:].lstrip(), count=1)


def _all_sources_lines(answer: Answer, budget: int) -> Iterator[tuple[str | None, str]]:
    """(doc id of the source it names, or None; line) for every line of "Show all sources", as needed."""
    for i, passage in enumerate(answer.passages):
        if i:
            yield None, ""
        for j, source in enumerate(passage.sources):
            lead = f"**[{passage.n}]** " if j == 0 else "also in: "
            url = safe_url(source.url)
            where = f" <{url}>" if url else ""
            yield source.doc_id, lead + source_heading(source) + where
        yield None, "> " + _inert(passage.text, budget)  # no passage needs more than all the messages hold


def _not_shown(answer: Answer, shown: set[str]) -> str:
    left = len({source.doc_id for source in answer.sources} - shown)
    if not left:
        return f"… and the rest of the passages not shown; {NOT_SHOWN}"
    return f"… and {left} more source{'' if left == 1 else 's'} not shown; {NOT_SHOWN}"


def all_sources_messages(answer: Answer, *, max_messages: int = ALL_SOURCES_MAX_MESSAGES) -> list[str]:
    """Every passage in full with all its sources, as messages of at most 2,000 characters each.

    At most `max_messages` of them: when the passages need more, the last message ends by saying how
    many sources were left out. A quote that does not fit goes on in the next message; lines are made
    only as they are needed, so a huge answer costs no more than the messages it fills.
    """
    lines = _all_sources_lines(answer, max_messages * MESSAGE_LIMIT)
    messages: list[str] = []
    current, used = "", 0
    shown: set[str] = set()
    item = next(lines, None)
    while item is not None:
        following = next(lines, None)
        doc_id, line = item
        prefix = "> " if line.startswith("> ") else ""
        while line or current:
            last = len(messages) + 1 >= max_messages
            reserve = _TAIL_ROOM if last else 0
            room = MESSAGE_LIMIT - used - (1 if current else 0) - reserve
            piece = None
            if size(line) <= room + (reserve if following is None else 0):
                piece, line = line, ""
            elif (prefix and room >= _MIN_PIECE) or (not current and room > len(prefix) + 2):
                piece, line = _cut_line(line, room, prefix)
            if piece is not None:
                used += (1 if current else 0) + size(piece)
                current = f"{current}\n{piece}" if current else piece
                if doc_id is not None:
                    shown.add(doc_id)
                if not line:
                    break
            if last:
                messages.append((current + "\n" if current else "") + _not_shown(answer, shown))
                return messages
            messages.append(current.rstrip("\n"))
            current, used = "", 0
        item = following
    if current:
        messages.append(current.rstrip("\n"))
    return messages or [NOT_FOUND]


def sources_messages(rows: Sequence[SourceRow], *, max_messages: int = 5) -> list[str]:
    """The indexed articles, one line each, in at most `max_messages` messages."""
    if not rows:
        return ["The index is empty: an admin can run /reindex."]
    lines = []
    for row in rows:
        where = f" <{url}>" if (url := safe_url(row.location)) else ""
        title = _inert(row.label, 300, at_line_start=False)
        outlet = _inert(row.outlet or "outlet unknown", 100, at_line_start=False)
        lines.append(trim(f"• {title} — {outlet}, {_date(row.published)} · {row.chunks} passages", 400) + where)
    return paged(f"{len(rows)} articles indexed:", lines, max_messages=max_messages)


def paged(head: str, lines: Sequence[str], *, max_messages: int) -> list[str]:
    """`head` and then `lines`, one a line, in at most `max_messages` messages; the last says how many were left out."""
    reserve = 40  # room left in each message for the "… and N more." line
    messages: list[str] = []
    current = head
    for shown, line in enumerate(lines):
        if size(current) + 1 + size(line) <= MESSAGE_LIMIT - reserve:
            current += "\n" + line
            continue
        if len(messages) + 1 == max_messages:
            messages.append(current + f"\n… and {len(lines) - shown} more.")
            return messages
        messages.append(current)
        current = line
    messages.append(current)
    return messages


def ingest_progress_text(done: int, total: int, path: str) -> str:
    return trim(f"Reindexing: {done}/{total} files · {_inert(path, MESSAGE_LIMIT, at_line_start=False)}",
                MESSAGE_LIMIT)


def ingest_report_text(report: IngestReport, *, max_errors: int = 10) -> str:
    head = (
        f"Reindex finished: {report.added} added, {report.updated} updated, {report.unchanged} unchanged, "
        f"{report.removed} removed, {report.failed} failed."
    )
    errors = [f"• {_inert(line, MESSAGE_LIMIT, at_line_start=False)}" for line in report.errors[:max_errors]]
    if len(report.errors) > max_errors:
        errors.append(f"… and {len(report.errors) - max_errors} more.")
    return trim("\n".join([head, *errors]), MESSAGE_LIMIT)


_MENTION = re.compile(r"<@!?(\d+)>")


def strip_mentions(content: str, user_id: int) -> str:
    """A message's text without the bot's own mention(s)."""
    return " ".join(_MENTION.sub(lambda m: "" if int(m.group(1)) == user_id else m.group(0), content).split())


def message_question(content: str, user_id: int, limit: int) -> str:
    """A message's text as a question ("Ask citebot about this"): the bot's mentions out, cut to `limit` at a word."""
    text = strip_mentions(content, user_id)
    if len(text) <= limit:
        return text
    cut = text.rfind(" ", 0, limit + 1)
    return text[: cut if cut > 0 else limit].rstrip()


def help_text(*, collection: str, message_content: bool, cooldown: float, roles_only: bool,
              max_concurrent: int, channel_rules: Sequence[str] = ()) -> str:
    """What /help says: what the bot does, how to ask, and the rules in force in this server."""
    lines = [
        "I answer questions from news articles, quoting the passages each answer rests on, with outlet and date.",
        "",
        "**How to ask**",
        "• `/ask question:` …, with options: `k` (how many passages to cite, 1-10), `outlet` (pick one as you type), "
        "`since` and `until` (2025-03-01, today, yesterday, 7d or 2w ago), `private:true` (only you see the "
        "answer; its **Share to channel** button posts it for everyone).",
        "• Mention me with a question: “@citebot where are the new battlegroups?”.",
        "• On any message: **Apps → Ask citebot about this** asks its text.",
        "• Follow-ups: reply to an answer, or write in the thread under it: “and when?”.",
        "• Under each answer: **Show all sources** (every passage in full, just for you) and 👍/👎.",
        "• Admins (Manage Server): `/collection` (which collection this server asks: a shared one, or its own), "
        "`/feeds add|remove|list` (the feeds of its own collection), `/channel set` (threads or inline replies, "
        "mentions only, a private “not found”, where I answer), `/sources` lists the articles, `/reindex` re-reads "
        "the article folders.",
        "",
        f"This server asks the collection **{escape(collection, at_line_start=False)}**.",
    ]
    rules = []
    if cooldown > 0:
        rules.append(f"one question every {cooldown:g} s per person")
    rules.append(f"at most {max_concurrent} questions answered at once in this server")
    if roles_only:
        rules.append("asking is for members with certain roles")
    rules.extend(channel_rules)
    lines.append("Here: " + "; ".join(rules) + ".")
    if not message_content:
        lines.append("I run without Discord's Message Content intent: I hear messages that mention me, but not "
                     "follow-ups in my threads or replies that do not mention me.")
    return trim("\n".join(lines), MESSAGE_LIMIT)
