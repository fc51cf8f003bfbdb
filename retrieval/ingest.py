"""Files -> Article: the only module that reads article files.

Plain text and markdown go through `parse_text_article`, which pulls out what a reader would cite
(title, outlet, date, author) and strips boilerplate (bylines, bios, photo credits, copyright lines).
HTML goes through trafilatura first; JSON records are taken as given. Bad input never raises: it
comes back as an `IngestError`, so one broken file or record does not stop a batch. Only regular
files are opened (a named pipe would block the ingest forever), and a file's reading can be held
to a time budget (retrieval/budget.py).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from dateutil import parser as dateparser

from retrieval.budget import OverBudget, TimeBudget, running
from retrieval.errors import IngestError
from retrieval.models import Article

SUPPORTED_SUFFIXES = {".txt", ".md", ".html", ".htm", ".json", ".jsonl"}
_SUFFIX_HINT = "give .txt, .md, .html, .json or .jsonl"
_NOT_REGULAR = "not a regular file (a named pipe, a socket, a device or a folder): skipped unread"

# --- patterns for plain text -------------------------------------------------------------------

# 2-4 capitalised words, with the particles names carry: "Solange Reyner", "Maria de Vries",
# "Ludwig van der Berg", "Omar al-Sharif".
_PARTICLE = r"(?:de|da|di|du|del|della|der|den|van|von|ter|ten|la|le|dos|das|bin|ibn|ben)"
_NAME_WORD = r"(?:[A-Z][\w.'’-]*|(?:al|el)-[A-Z][\w'’-]*)"
_NAME = rf"[A-Z][\w.'’-]*(?:\s+(?:{_PARTICLE}\s+){{0,2}}{_NAME_WORD}){{1,3}}"
_MONTH = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec)[a-z]*\.?"
_DATE_IN_TEXT = re.compile(
    rf"\b(\d{{4}}-\d{{2}}-\d{{2}})(?=T\d|\b)|\b({_MONTH}\s+\d{{1,2}},?\s+\d{{4}})\b|\b(\d{{1,2}}\s+{_MONTH},?\s+\d{{4}})\b"
)
_HEADER = re.compile(
    r"^(title|headline|date|published|updated|last updated|modified|author|by|source|outlet|publisher|url)"
    r"\s*:\s*(.+)$", re.IGNORECASE
)
_HEADER_FIELD = {"title": "title", "headline": "title", "date": "published", "published": "published",
                 "updated": "updated", "last updated": "updated", "modified": "updated",
                 "author": "author", "by": "author", "source": "outlet", "outlet": "outlet",
                 "publisher": "outlet", "url": "url"}
# 04.03.2025 is 4 March in Europe and April 3 in the US: a date written only in numbers is not guessed.
_NUMERIC_DATE = re.compile(r"^\s*\d{1,2}\s*[./-]\s*\d{1,2}\s*[./-]\s*\d{2,4}\b")
_DATEPARSER = {"STRICT_PARSING": True, "REQUIRE_PARTS": ["day", "month", "year"], "RETURN_AS_TIMEZONE_AWARE": False,
               "PARSERS": ["absolute-time"]}
# "Published 23 March 2022" / "Posted on March 23, 2022": a date line without a colon.
_DATE_LINE = re.compile(r"^(?:date|published|posted)(?:\s+on)?\s+(.+)$", re.IGNORECASE)
_MD_HEADING = re.compile(r"^#\s+(.+?)\s*#*$")
_BY_LINE = re.compile(rf"^By\s+({_NAME}(?:\s*(?:,|\band\b|&)\s*{_NAME})*)\s*(?:[,|–—-].{{0,40}})?$")
# A byline on its own line: the name, then an envelope or an e-mail address.
_NAME_LINE = re.compile(rf"^({_NAME})\s*(✉|<?[\w.+-]+@[\w.-]+>?)?$")
_BIO = re.compile(rf"^({_NAME}) is an? ")
_BIO_JOB = re.compile(r"\b(writer|reporter|journalist|editor|correspondent|contributor|columnist)\b", re.I)
_BIO_OUTLET = re.compile(r"\b(?:for|at)\s+((?:[A-Z][\w&'’.-]*\s?)+)")
_COPYRIGHT = re.compile(
    r"^(?:©|\(c\)|copyright\s*©?)\s*(?:\d{4}(?:\s*[-–]\s*\d{4})?)?,?\s*(.*?)[.,]?\s*(?:all rights reserved\.?)?$",
    re.IGNORECASE,
)
# A caption's credit: "(Getty Images)", "(AP Photo/…)", "(Reuters/Gleb Garanich)". A bare "(Reuters)" or
# "(AFP)" closing a paragraph is a wire attribution of its text, not a caption: that paragraph stays.
_PHOTO_CREDIT = re.compile(
    r"^(?:photo|image|picture|credit)s?\s*(?::|by\b)|\bAP Photo/|"
    r"\((?:[^()]*\b(?:Getty Images|AP Photo|Shutterstock)\b[^()]*|[^()]*\b(?:Reuters|AFP)\s*/[^()]*"
    r"|[^()]*/\s*(?:Reuters|AFP)\b[^()]*)\)\s*$",
    re.IGNORECASE,
)
_SENTENCE_END = ".!?:;,\"”'’)"


def _normalise(raw: str) -> str:
    """Unix line ends, no trailing spaces, at most one blank line in a row; text otherwise unchanged."""
    lines = [line.rstrip() for line in raw.replace("\r\n", "\n").replace("\r", "\n").lstrip("\ufeff").split("\n")]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines))
    return text.strip("\n")


def _parse_date(value: str, *, whole: bool = False) -> dt.date | None:
    """The first ISO or named-month date in `value`; a bare year (a copyright line) is not a date.

    With `whole` (a header's value, e.g. `Updated: March 4, 2025, 9:12 a.m. EST`), forms the pattern
    misses go to dateparser, absolute dates only: never "last week", never a numbers-only date. The
    date is the one written, in the writer's time zone.
    """
    match = _DATE_IN_TEXT.search(value)
    if match:
        try:
            return dateparser.parse(match.group(0)).date()
        except (ValueError, OverflowError):
            return None
    if not whole or _NUMERIC_DATE.match(value) or len(value) > 80:
        return None
    import dateparser as named_dates  # imported on first use: about 0.1 s

    try:
        found = named_dates.parse(value, languages=["en"], settings=_DATEPARSER)
    except (ValueError, OverflowError, TypeError):
        return None
    return found.date() if found else None


_MONTHS = {m: n for n, m in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov",
                                        "dec"), start=1)}
_DAY = r"(0?[1-9]|[12]\d|3[01])"
# The dates news sites put in their URLs: /2022/06/19/, /2022/jun/19/, /2022-06-19/ or slug-2022-06-19,
# /20220619/. A year and month alone (/2022/06/) are not a day: not taken.
_URL_DATES = (
    re.compile(rf"/((?:19|20)\d{{2}})/(0?[1-9]|1[0-2])/{_DAY}(?=/|$|[-_.])"),
    re.compile(rf"/((?:19|20)\d{{2}})/([a-z]{{3}})[a-z]*/{_DAY}(?=/|$|[-_.])", re.IGNORECASE),
    re.compile(rf"[/_-]((?:19|20)\d{{2}})-(0[1-9]|1[0-2])-{_DAY}(?=/|$|[-_.])"),
    re.compile(r"/((?:19|20)\d{2})(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])(?=/|$)"),
)


def date_from_url(url: str | None, *, today: dt.date | None = None) -> dt.date | None:
    """The publication day a news URL's path carries (`…/2022/06/19/middleeast/…`), as htmldate reads pages'
    URLs; None when it carries none, or a day that does not exist or is still to come."""
    if not url:
        return None
    from urllib.parse import unquote, urlsplit

    path = urlsplit(url).path if "://" in url else unquote(url)
    today = today or dt.datetime.now(dt.timezone.utc).date()
    for pattern in _URL_DATES:
        for match in pattern.finditer(path):
            year, month, day = match.groups()
            month = _MONTHS.get(month[:3].lower()) if not month.isdigit() else int(month)
            try:
                found = dt.date(int(year), month or 0, int(day))
            except ValueError:
                continue
            if dt.date(1990, 1, 1) <= found <= today + dt.timedelta(days=1):
                return found
    return None


def _url_named(name: str) -> str | None:
    """A file named after the page it holds (`https%3A%2F%2Fwww.cnn.com%2F2022%2F06%2F19%2F…html`, or with `_`
    for `/`, as archivers save them), as that URL; None for any other name."""
    from urllib.parse import unquote

    text = unquote(name)
    if not re.match(r"(?:https?[:_]+|www\.)", text, re.IGNORECASE):
        return None
    return "/" + re.sub(r"^https?[:_/]+", "", text).replace("_", "/")


def _is_photo_credit(line: str) -> bool:
    return bool(_PHOTO_CREDIT.search(line)) and len(line.split()) <= 40


def _clean(raw: str, *, find_title: bool = True, budget: TimeBudget | None = None) -> tuple[str, dict[str, Any]]:
    """Boilerplate-free text and the metadata found on the way (fields absent when not found)."""
    lines = _normalise(raw).split("\n")
    meta: dict[str, Any] = {}
    bio_names = {m.group(1) for line in lines if (m := _BIO.match(line.strip())) and _BIO_JOB.search(line)}
    bio_outlet = None
    # Bios close an article: without a byline to match, only the last few lines may be one.
    tail = [i for i, line in enumerate(lines) if line.strip()][-3:]
    kept: list[str] = []
    top = True  # still in the header block above the first body line

    def first(field: str, value: Any) -> None:
        if value:
            meta.setdefault(field, value)

    for i, line in enumerate(lines):
        if budget is not None:
            budget.check()
        s = line.strip()
        if not s:
            kept.append("")
            continue
        if top:
            if (m := _HEADER.match(s)) and len(m.group(2).split()) <= 25:
                field = _HEADER_FIELD[m.group(1).lower()]
                value = m.group(2).strip()
                if field in ("published", "updated"):
                    value = _parse_date(value, whole=True)
                    if value is None:  # "Date: soon" is not a header we understand; keep it as text
                        top = False
                        kept.append(line)
                        continue
                first(field, value)
                continue
            if (m := _DATE_LINE.match(s)) and (date := _parse_date(m.group(1))):
                # The seeds' " date 2022-03-23 AP Photo/..." carries a photo credit: drop the whole line.
                first("published", date)
                continue
            if _DATE_IN_TEXT.fullmatch(s):
                first("published", _parse_date(s))
                continue
            if find_title and "title" not in meta and (m := _MD_HEADING.match(s)):
                meta["title"] = m.group(1)
                continue
        if m := _BY_LINE.match(s):
            first("author", m.group(1))
            continue
        if (m := _NAME_LINE.match(s)) and (m.group(2) or m.group(1) in bio_names):
            first("author", m.group(1))
            continue
        if (m := _BIO.match(s)) and (m.group(1) == meta.get("author") or (i in tail and _BIO_JOB.search(s))):
            # "Solange Reyner is a writer and editor for Newsmax." is about the author, not the news.
            first("author", m.group(1))
            if bio_outlet is None and (o := _BIO_OUTLET.search(s.split(". ")[0])):
                bio_outlet = o.group(1).strip().rstrip(".") or None
            continue
        if (s.startswith("©") or re.match(r"(?:\(c\)|copyright)\s*©?\s*\d{4}", s, re.I)) and len(s.split()) <= 15:
            m = _COPYRIGHT.match(s)
            first("outlet", m.group(1).strip() if m else None)
            continue
        if re.fullmatch(r".{0,80}all rights reserved\.?", s, re.IGNORECASE):
            continue
        if _is_photo_credit(s):
            continue
        if top and find_title and "title" not in meta and _is_headline(s, lines[i + 1 :]):
            meta["title"] = s
            continue
        top = False
        kept.append(line)
    if bio_outlet:  # a © line names the outlet more surely than a bio does
        first("outlet", bio_outlet)
    _foot_dates(kept, first)
    updated = meta.pop("updated", None)
    if updated is not None:  # the update's date stands in only for a publication date the article lacks
        first("published", updated)
    return _normalise("\n".join(kept)), meta


def _foot_dates(kept: list[str], first) -> None:
    """A labelled date among an article's last three lines ("Published 23 March 2022", "Updated: March 24,
    2022 9:12 a.m.", "date 2022-03-23"), as pages print them at the foot: taken like a header's, and the line
    dropped. Only a short line that is the label and the date (whole), never a sentence that mentions one; a
    copyright year is no date."""
    tail = [i for i, line in enumerate(kept) if line.strip()][-3:]
    for i in reversed(tail):
        line = kept[i].strip()
        match = _HEADER.match(line) or _DATE_LINE.match(line)
        if match is None or len(line.split()) > 10:
            continue
        field = _HEADER_FIELD[match.group(1).lower()] if match.re is _HEADER else "published"
        if field not in ("published", "updated"):
            continue
        value = _parse_date(match.group(match.re.groups), whole=True)
        if value is not None:
            first(field, value)
            del kept[i]


def _is_headline(line: str, rest: list[str]) -> bool:
    """A short first line without a sentence-final period, followed by a blank line and more text."""
    if len(line.split()) > 20 or line.endswith(tuple(_SENTENCE_END)):
        return False
    return bool(rest) and rest[0].strip() == "" and any(r.strip() for r in rest)


def parse_text_article(raw: str, *, key: str, path: str | None, budget: TimeBudget | None = None) -> Article:
    """Plain-text or markdown article -> Article, metadata pulled out and boilerplate stripped.

    Args:
        raw: the file's text.
        key: the article's key (for a file, its resolved absolute path).
        path: the file path to cite, if any.
        budget: the file's time budget, checked line by line; OverBudget is raised once it is spent.

    Returns:
        An Article whose text may be empty when the file held only boilerplate; fields that
        could not be found stay None.
    """
    front, raw = _front_matter(raw)
    text, meta = _clean(raw, budget=budget, find_title="title" not in front)
    fields = {**meta, **front}
    if not fields.get("published") and path and (named := _url_named(Path(path).name)):
        fields["published"] = date_from_url(named)
    return Article(key=key, text=text, path=path, **fields)


_FRONT_FIELDS = {"title": "title", "headline": "title", "date": "published", "published": "published",
                 "pubdate": "published", "updated": "updated", "author": "author", "authors": "author",
                 "byline": "author", "source": "outlet", "outlet": "outlet", "publisher": "outlet",
                 "site_name": "outlet", "url": "url", "canonical_url": "url", "link": "url"}


def _front_matter(raw: str) -> tuple[dict[str, Any], str]:
    """YAML front matter (`---` … `---` at the top, as static sites and exporters write it) -> (fields, body).

    Read with python-frontmatter (safe YAML). Unknown keys are ignored; a block that is not valid YAML
    is left in the text, as written.
    """
    if not raw.lstrip("\ufeff").startswith("---"):
        return {}, raw
    import frontmatter

    try:
        post = frontmatter.loads(raw.lstrip("\ufeff"))
    except Exception:  # noqa: BLE001 - yaml raises several kinds on a malformed block
        return {}, raw
    found: dict[str, Any] = {}
    for name, value in post.metadata.items():
        field = _FRONT_FIELDS.get(str(name).lower())
        if field is None or value in (None, "", []):
            continue
        if isinstance(value, list):  # authors: [A, B]
            value = ", ".join(str(v) for v in value if v)
        if field in ("published", "updated"):
            if isinstance(value, dt.datetime):
                value = value.date()
            elif not isinstance(value, dt.date):
                value = _parse_date(str(value), whole=True)
            if value is None:
                continue
        elif not isinstance(value, str):
            value = str(value)
        found.setdefault(field, value.strip() if isinstance(value, str) else value)
    updated = found.pop("updated", None)
    if "published" not in found and updated is not None:
        found["published"] = updated
    return found, post.content


# --- files -------------------------------------------------------------------------------------


def discover(paths: Iterable[Path]) -> tuple[list[Path], list[IngestError]]:
    """Expand folders into the article files under them.

    Args:
        paths: files and folders as the user gave them.

    Returns:
        The files to read (resolved, sorted within each folder, each once) and an IngestError for
        each missing path or explicitly named file of an unsupported type. Inside folders, hidden
        entries and unsupported files are skipped silently: a folder of news has other files in it.
        A named pipe, socket or device is an IngestError wherever it is, and is never opened.
    """
    files: list[Path] = []
    errors: list[IngestError] = []
    for given in paths:
        path = Path(given).expanduser()
        if path.is_dir():
            for root, dirs, names in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(names):
                    if not name.startswith(".") and Path(name).suffix.lower() in SUPPORTED_SUFFIXES:
                        _add_resolved(Path(root) / name, files, errors)
        elif path.is_file():
            suffix = path.suffix.lower()
            if suffix in SUPPORTED_SUFFIXES:
                _add_resolved(path, files, errors)
            else:
                kind = suffix or "(no extension)"
                errors.append(IngestError(str(path), f"unsupported file type {kind}: {_SUFFIX_HINT}"))
        elif path.exists():
            errors.append(IngestError(str(path), "not a regular file or folder: give article files or folders"))
        elif path.is_symlink():
            errors.append(IngestError(str(path), "a symbolic link that loops or points nowhere: fix or remove it"))
        else:
            errors.append(IngestError(str(path), "no such file or folder: check the path"))
    return list(dict.fromkeys(files)), errors  # the same file named twice is read once


def _add_resolved(path: Path, files: list[Path], errors: list[IngestError]) -> None:
    try:
        resolved = path.resolve(strict=True)
        regular = stat.S_ISREG(resolved.stat().st_mode)  # a stat, not an open: a pipe's open blocks
    except RuntimeError:  # Python 3.11 reports a symlink loop so
        errors.append(IngestError(str(path), "a symbolic link that loops: fix or remove it"))
    except OSError as error:
        errors.append(IngestError(str(path), f"cannot be opened: {error.strerror or error}: check the path"))
    else:
        if regular:
            files.append(resolved)
        else:
            errors.append(IngestError(str(path), _NOT_REGULAR))


def read_articles(path: Path, *, max_bytes: int | None = None,
                  budget: TimeBudget | None = None) -> list[Article | IngestError]:
    """Read one file into Articles.

    Args:
        path: a file with one of SUPPORTED_SUFFIXES.
        max_bytes: a bigger file is refused before it is read (setting corpus.max_file_mb).
        budget: the file's time budget (setting corpus.max_file_seconds), counting the time spent
            here and checked line by line and record by record; a file over it is one IngestError.

    Returns:
        The file's Articles. A whole-file problem (not a regular file, unreadable, too big, too slow,
        not UTF-8, empty) is a single IngestError in the list; in JSON files a bad record is an
        IngestError naming its line or record number while the good records are still returned.
        Never raises for bad input.
    """
    path = Path(path)
    where = str(path)
    try:
        path = path.resolve(strict=True)
        where = str(path)
        data = _read_regular(path, max_bytes)
    except RuntimeError:
        return [IngestError(where, "a symbolic link that loops: fix or remove it")]
    except OSError as error:
        return [IngestError(where, f"cannot read: {error.strerror or error}: check the file's permissions")]
    if isinstance(data, IngestError):
        return [data]
    try:
        with running(budget):
            return _parse(data, path, where, budget)
    except OverBudget as error:
        return [IngestError(where, str(error))]


def _read_regular(path: Path, max_bytes: int | None) -> bytes | IngestError:
    """The file's bytes, if it is a regular file no bigger than max_bytes.

    Anything else is refused before it is opened: opening a named pipe waits for a writer. The
    open does not wait either, and the check is made again on the open file, so a file swapped
    for a pipe after `discover` saw it cannot hang the ingest.
    """
    if not stat.S_ISREG(path.stat().st_mode):
        return IngestError(str(path), _NOT_REGULAR)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    with open(fd, "rb") as handle:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return IngestError(str(path), _NOT_REGULAR)
        if max_bytes is not None and info.st_size > max_bytes:
            return IngestError(str(path), f"{info.st_size / 2**20:.1f} MB, more than the limit of "
                                          f"{max_bytes / 2**20:g} MB: split the file or raise corpus.max_file_mb")
        return handle.read()


def _parse(data: bytes, path: Path, where: str, budget: TimeBudget | None) -> list[Article | IngestError]:
    suffix = path.suffix.lower()
    try:
        if b"\x00" in data:  # no text file holds NULs, but UTF-16 and UTF-32 without a byte-order mark do
            raw = _wide_text(data)
            if raw is None:
                return [IngestError(where, "not UTF-8 text (it holds NUL bytes), nor UTF-16, UTF-32 or another "
                                           "encoding citebot could tell: save the file as UTF-8")]
        else:
            raw = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raw = _legacy_text(data) if suffix not in (".json", ".jsonl") else None  # JSON is UTF-8 by definition
        if raw is None:
            return [IngestError(where, f"not UTF-8 text (byte 0x{data[error.start]:02x} at offset {error.start}), "
                                       "nor text in another encoding citebot could tell: save the file as UTF-8")]
    if suffix == ".jsonl":
        items = _read_jsonl(raw, where, budget)
    elif suffix == ".json":
        items = _read_json(raw, where, budget)
    elif suffix in {".html", ".htm"}:
        items = [_read_html(raw, where, budget)]
    elif suffix in SUPPORTED_SUFFIXES:
        items = [parse_text_article(raw, key=where, path=where, budget=budget)]
    else:
        return [IngestError(where, f"unsupported file type {suffix or '(no extension)'}: {_SUFFIX_HINT}")]
    if not raw.strip() or not items:
        return [IngestError(where, "empty: no article text")]
    return [IngestError(where, "empty: no article text") if isinstance(i, Article) and not i.text else i
            for i in items]


def _wide_text(data: bytes) -> str | None:
    """Text in UTF-16 or UTF-32, with or without a byte-order mark, told by where its NULs sit (the high
    bytes of Latin letters); None when no reading gives printable text."""
    if len(data) < MIN_LEGACY_BYTES:  # too little to tell an encoding from noise
        return None
    for mark, encoding in ((b"\xff\xfe\x00\x00", "utf-32"), (b"\x00\x00\xfe\xff", "utf-32"),
                           (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16")):
        if data.startswith(mark):
            return _nul_free(data, encoding)
    sample = data[:8192]
    quads = [sample[i::4].count(0) / max(1, len(sample[i::4])) for i in range(4)]
    pairs = [sample[i::2].count(0) / max(1, len(sample[i::2])) for i in range(2)]
    guesses = []
    if min(quads[1], quads[2], quads[3]) > 0.9:
        guesses.append("utf-32-le")
    if min(quads[0], quads[1], quads[2]) > 0.9:
        guesses.append("utf-32-be")
    if pairs[1] > 0.3 and pairs[1] > 2 * pairs[0]:
        guesses.append("utf-16-le")
    if pairs[0] > 0.3 and pairs[0] > 2 * pairs[1]:
        guesses.append("utf-16-be")
    for encoding in guesses:
        text = _nul_free(data, encoding)
        if text is not None:
            return text
    return None


def _nul_free(data: bytes, encoding: str) -> str | None:
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError:
        return None
    text = text.lstrip("\ufeff")
    printable = sum(c.isprintable() or c in "\n\r\t" for c in text[:4096])
    return text if text and "\x00" not in text and printable >= 0.95 * len(text[:4096]) else None


# Western news archives are mostly Windows-1252; among equally good readings, it is taken first.
_PREFERRED_ENCODINGS = ("cp1252", "latin_1", "iso8859_15")
MAX_CHAOS = 0.2
MIN_LEGACY_BYTES = 32


def _legacy_text(data: bytes) -> str | None:
    """Text that is not UTF-8 (Windows-1252, Latin-1, UTF-16 with its mark, Cyrillic …), read by
    charset-normalizer; None for bytes that read as no text (a binary file with a text suffix)."""
    if len(data) < MIN_LEGACY_BYTES:  # too little to tell an encoding from noise
        return None
    from charset_normalizer import from_bytes

    matches = list(from_bytes(data))
    if not matches or matches[0].chaos > MAX_CHAOS:
        return None
    best = matches[0]
    tied = [m for m in matches if m.chaos <= best.chaos and m.coherence >= best.coherence]
    for encoding in _PREFERRED_ENCODINGS:
        for match in tied:
            if match.encoding == encoding:
                return str(match)
    return str(best)


def _read_html(raw: str, where: str, budget: TimeBudget | None = None) -> Article:
    import trafilatura  # imported on first use: it pulls in lxml and friends

    # original_date and no extensive search: take the date the page declares, never guess one from the text.
    doc = trafilatura.bare_extraction(
        raw, with_metadata=True, include_comments=False, include_tables=True,
        date_extraction_params={"extensive_search": False, "original_date": True},
    )
    if budget is not None:  # after, not during: one call that cannot be stopped midway
        budget.check()
    if doc is None or not (doc.text or "").strip():
        return Article(key=where, text="", path=where)
    title = (doc.title or "").strip() or None
    body = _normalise(doc.text)
    if title and body.split("\n", 1)[0].strip() == title:  # the page's <h1> repeats the title
        body = body.split("\n", 1)[1] if "\n" in body else ""
    text, meta = _clean(body, find_title=False, budget=budget)
    found = {"title": title, "outlet": doc.sitename, "author": doc.author, "url": doc.url,
             "published": _parse_date(doc.date or "") or meta.get("published")
             or date_from_url(doc.url) or date_from_url(where if "://" in where else None)}
    fields = {k: (v.strip() if isinstance(v, str) else v) or meta.get(k) for k, v in found.items()}
    return Article(key=where, text=text, path=where, **fields)


def _read_jsonl(raw: str, where: str, budget: TimeBudget | None = None) -> list[Article | IngestError]:
    items: list[Article | IngestError] = []
    for n, line in enumerate(raw.split("\n"), start=1):
        if budget is not None:
            budget.check()
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            items.append(IngestError(where, f"line {n}: not valid JSON ({error.msg} at column {error.colno})"))
            continue
        items.append(_record(record, where, n, f"line {n}"))
    return items


def _read_json(raw: str, where: str, budget: TimeBudget | None = None) -> list[Article | IngestError]:
    if not raw.strip():
        return []
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as error:
        return [IngestError(where, f"not valid JSON ({error.msg} at line {error.lineno} column {error.colno})")]
    if isinstance(data, dict):
        return [_record(data, where, 1, "record 1")]
    if isinstance(data, list):
        records = []
        for n, record in enumerate(data, start=1):
            if budget is not None:
                budget.check()
            records.append(_record(record, where, n, f"record {n}"))
        return records
    return [IngestError(where, "not an article: give a JSON object with a text (and a title), or a list of them")]


def _record(record: Any, where: str, n: int, label: str) -> Article | IngestError:
    """One JSON record -> Article; its text is taken as given (a feed is already clean)."""
    if not isinstance(record, dict):
        return IngestError(where, f"{label}: not a JSON object: give {{\"title\": ..., \"text\": ...}}")
    if not isinstance(record.get("text"), str) or not record["text"].strip():
        return IngestError(where, f"{label}: missing text: each record needs a text (a title, url, source, "
                                  "author and published date are taken when given)")
    published = record.get("published")
    if published not in (None, ""):
        try:
            published = _iso_date(published)
        except (TypeError, ValueError):
            return IngestError(where, f"{label}: published {published!r} is not an ISO date: use YYYY-MM-DD")
    record = {k: _without_surrogates(v) if isinstance(v, str) else v for k, v in record.items()}
    url, ident, title = _text_field(record.get("url")), record.get("id"), _text_field(record.get("title"))
    ident = str(ident).strip() if ident not in (None, "") and not isinstance(ident, (dict, list)) else None
    return Article(
        key=url or ident or f"{where}#{n}",  # a url or id lets a re-ingested feed update in place
        text=_normalise(record["text"]),
        title=title,  # None: cited by its opening words, as an untitled text file is
        outlet=_text_field(record.get("source")),
        published=published or date_from_url(url),  # a record without a date: its URL's, if it has one
        author=_text_field(record.get("author")),
        url=url,
        path=where,
    )


_SURROGATE = re.compile("[\ud800-\udfff]")


def _without_surrogates(value: str) -> str:
    """JSON may escape half a character ("\\ud800"), which no UTF-8 text can hold: it becomes U+FFFD."""
    return _SURROGATE.sub("\ufffd", value)


def _iso_date(value: Any) -> dt.date:
    if not isinstance(value, str):
        raise TypeError(value)
    value = value.strip()
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        return dt.datetime.fromisoformat(value).date()


def _text_field(value: Any) -> str | None:
    return value.strip() or None if isinstance(value, str) else None
