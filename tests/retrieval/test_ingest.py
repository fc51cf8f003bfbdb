import datetime as dt
import json
from pathlib import Path

import pytest

from retrieval import ingest as _ingest
from retrieval.errors import IngestError
from retrieval.ingest import SUPPORTED_SUFFIXES, discover, parse_text_article, read_articles
from retrieval.models import Article
from tests.conftest import SEEDS

NEWSMAX = SEEDS / "000_13573c5537cf727e.txt"
DATED = SEEDS / "002_7474c7b7afbde563.txt"


def only_article(path) -> Article:
    items = read_articles(path)
    assert len(items) == 1 and isinstance(items[0], Article), items
    return items[0]


def only_error(path) -> IngestError:
    items = read_articles(path)
    assert len(items) == 1 and isinstance(items[0], IngestError), items
    return items[0]


def parse(raw: str) -> Article:
    return parse_text_article(raw, key="k", path=None)


# --- the seeds --------------------------------------------------------------------------------


def test_newsmax_seed_has_outlet_and_author_and_no_boilerplate():
    article = only_article(NEWSMAX)
    assert (article.outlet, article.author, article.published, article.title) == ("Newsmax", "Solange Reyner", None, None)
    assert article.key == str(NEWSMAX.resolve()) == article.path
    assert article.text.startswith("NATO will bolster its ranks")
    assert article.text.endswith("Information from the Associated Press was used in this report.")
    for boilerplate in ("©", "All rights reserved", "✉", "is a writer and editor", "Solange Reyner"):
        assert boilerplate not in article.text


def test_dated_seed_has_date_and_keeps_the_body_byte_for_byte():
    article = only_article(DATED)
    assert article.published == dt.date(2022, 3, 23)
    assert (article.outlet, article.author, article.title) == (None, None, None)
    assert article.text.startswith("NATO leaders are seeking to approve")
    assert article.text.endswith("Smith said.")
    assert "AP Photo" not in article.text and "date 2022" not in article.text
    raw = DATED.read_text(encoding="utf-8")
    # quotes and apostrophes untouched, so offsets into the text stay meaningful
    assert article.text == raw[raw.index("NATO leaders") :]


# --- plain-text variants ----------------------------------------------------------------------


def test_headline_byline_named_month_date_credits_and_copyright():
    article = parse(
        "Stoltenberg Says NATO Will Double Its Eastern Battle Groups\n\n"
        "By Jane Doe and John Roe\n"
        "Published: March 23, 2022\n\n"
        "NATO will set up four new battle groups, Stoltenberg said.\n\n"
        "Soldiers arrive in Romania. (Getty Images)\n"
        "Photo by Sam Poe\n\n"
        "The forces will remain in place.\n\n"
        "Copyright 2024 The Daily Planet\n"
    )
    assert article.title == "Stoltenberg Says NATO Will Double Its Eastern Battle Groups"
    assert article.author == "Jane Doe and John Roe"
    assert article.published == dt.date(2022, 3, 23)
    assert article.outlet == "The Daily Planet"
    assert article.text == "NATO will set up four new battle groups, Stoltenberg said.\n\nThe forces will remain in place."


def test_markdown_heading_and_day_first_published_line():
    article = parse("# NATO doubles its battle groups\n\nPublished 23 March 2022\n\nBody text here.\n")
    assert article.title == "NATO doubles its battle groups"
    assert article.published == dt.date(2022, 3, 23)
    assert article.text == "Body text here."


def test_header_block_is_metadata_not_text():
    article = parse(
        "Title: NATO doubles its battle groups\n"
        "Date: 2022-03-23\n"
        "Author: Jane Doe\n"
        "Source: Reuters\n"
        "URL: https://example.com/nato\n\n"
        "Body text here. Source: the alliance.\n"
    )
    assert (article.title, article.published, article.author, article.outlet, article.url) == (
        "NATO doubles its battle groups", dt.date(2022, 3, 23), "Jane Doe", "Reuters", "https://example.com/nato",
    )
    assert article.text == "Body text here. Source: the alliance."


def test_copyright_year_is_not_the_date_and_nothing_is_invented():
    article = parse("NATO will grow.\nIt said so on Wednesday.\n\n© 2026 Newsmax. All rights reserved.")
    assert article.published is None and article.title is None and article.author is None
    assert article.outlet == "Newsmax"
    assert article.text == "NATO will grow.\nIt said so on Wednesday."


def test_a_lead_paragraph_is_not_a_headline():
    # ends with a period, and the short line after has no blank line following it
    assert parse("NATO will grow.\n\nMore text.").title is None
    assert parse("Short opening words\nstill the same paragraph.").title is None
    long_line = " ".join(["word"] * 21)
    assert parse(f"{long_line}\n\nMore text.").title is None


def test_bio_gives_the_outlet_when_there_is_no_copyright_line():
    article = parse(
        "NATO will grow.\n\nJane Doe <jane@planet.example>\n\n"
        "Jane Doe is a reporter for The Daily Planet. She covers defence."
    )
    assert (article.author, article.outlet) == ("Jane Doe", "The Daily Planet")
    assert article.text == "NATO will grow."


def test_a_person_described_in_the_body_is_not_a_bio():
    text = "Julianne Smith is a former editor who now leads the mission.\n\nShe spoke on Tuesday.\n\nMore.\n\nEnd."
    article = parse(text)
    assert article.text == text and article.author is None


def test_whitespace_is_normalised_but_paragraphs_kept():
    article = parse("First line.  \r\nSame paragraph.\r\n\r\n\r\n\r\nSecond paragraph.\t\n\n")
    assert article.text == "First line.\nSame paragraph.\n\nSecond paragraph."


# --- HTML -------------------------------------------------------------------------------------

PAGE = """<!doctype html>
<html><head>
<title>NATO to double battle groups | Daily Planet</title>
<meta property="og:title" content="NATO to double battle groups in the east">
<meta property="og:site_name" content="Daily Planet">
<meta property="article:published_time" content="2022-03-23T10:00:00Z">
<meta name="author" content="Jane Doe">
<link rel="canonical" href="https://planet.example/nato-battle-groups">
</head><body>
<nav><ul><li><a href="/">Home</a></li><li><a href="/world">World news menu</a></li></ul></nav>
<aside class="sidebar"><h3>Most read</h3><ul><li><a href="/x">Celebrity chef opens bakery</a></li></ul></aside>
<main><article>
<h1>NATO to double battle groups in the east</h1>
<p>NATO will set up four new battle groups in Hungary, Slovakia, Romania and Bulgaria,
Secretary-General Jens Stoltenberg said on Wednesday in Brussels.</p>
<p>"I expect leaders will agree to strengthen NATO's posture in all domains," Stoltenberg told
reporters ahead of the summit, adding that the alliance had 140 warships at sea.</p>
<p>The forces will remain in place as long as necessary, he said, and the alliance will also send
equipment to help Ukraine defend itself against chemical threats.</p>
</article></main>
<footer><p>Contact us | Privacy policy | Terms of service</p><p>© 2024 Daily Planet. All rights reserved.</p></footer>
</body></html>
"""


def test_html_main_text_and_metadata(tmp_path):
    path = tmp_path / "page.html"
    path.write_text(PAGE, encoding="utf-8")
    article = only_article(path)
    assert article.title == "NATO to double battle groups in the east"
    assert article.published == dt.date(2022, 3, 23)
    assert (article.outlet, article.author) == ("Daily Planet", "Jane Doe")
    assert article.url == "https://planet.example/nato-battle-groups"
    assert article.key == str(path.resolve())
    assert article.text.startswith("NATO will set up four new battle groups")
    assert "140 warships at sea" in article.text
    for chrome in ("World news menu", "Celebrity chef", "Privacy policy", "All rights reserved", "©"):
        assert chrome not in article.text


# --- JSON -------------------------------------------------------------------------------------


def test_jsonl_bad_lines_are_errors_and_good_records_still_come_back(tmp_path):
    path = tmp_path / "feed.jsonl"
    lines = [
        json.dumps({"title": "One", "text": "First story.", "source": "Reuters", "published": "2022-03-23T10:00:00Z",
                    "author": "Jane Doe", "extra": 1}),
        "",
        "{not json",
        json.dumps({"title": "No text"}),
        json.dumps({"title": "Two", "text": "Second story.", "url": "https://example.com/two"}),
        json.dumps({"title": "Three", "text": "Third story.", "id": 42}),
        json.dumps({"title": "Four", "text": "Fourth story.", "published": "last week"}),
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    items = read_articles(path)
    articles = [i for i in items if isinstance(i, Article)]
    errors = [i.reason for i in items if isinstance(i, IngestError)]
    assert [a.title for a in articles] == ["One", "Two", "Three"]
    first = articles[0]
    assert (first.key, first.outlet, first.published, first.author, first.path) == (
        f"{path.resolve()}#1", "Reuters", dt.date(2022, 3, 23), "Jane Doe", str(path.resolve()),
    )
    assert [a.key for a in articles[1:]] == ["https://example.com/two", "42"]
    assert articles[1].url == "https://example.com/two"
    assert len(errors) == 3
    assert errors[0].startswith("line 3: not valid JSON (")
    assert errors[1].startswith("line 4: missing text")
    assert errors[2].startswith("line 7: published 'last week' is not an ISO date")


def test_json_list_and_single_object(tmp_path):
    listed = tmp_path / "list.json"
    listed.write_text(json.dumps([{"title": "A", "text": "Alpha."}, {"title": "B", "text": "Beta.", "id": "b"}]))
    single = tmp_path / "one.json"
    single.write_text(json.dumps({"title": "C", "text": "Gamma.\n\n\n\nDelta.", "published": "2021-01-02"}))
    a, b = read_articles(listed)
    assert (a.key, a.title, a.text) == (f"{listed.resolve()}#1", "A", "Alpha.")
    assert b.key == "b"
    (c,) = read_articles(single)
    assert (c.title, c.text, c.published) == ("C", "Gamma.\n\nDelta.", dt.date(2021, 1, 2))


def test_json_that_is_not_an_article(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text("[1, ")
    assert only_error(path).reason.startswith("not valid JSON (")
    path.write_text("42")
    assert "JSON object with a text (and a title)" in only_error(path).reason


# --- whole-file problems ----------------------------------------------------------------------


def test_undecodable_bytes_are_an_error_not_an_exception(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes(b"\xff\xfe\x00bad")
    error = only_error(path)
    assert error.reason.startswith("not UTF-8 text")
    assert error.path == str(path.resolve())


def test_empty_and_boilerplate_only_files(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n\n\t\n")
    assert only_error(empty).reason == "empty: no article text"
    boiler = tmp_path / "boiler.md"
    boiler.write_text("Photo: AP\n\n© 2026 Newsmax. All rights reserved.\n")
    assert only_error(boiler).reason == "empty: no article text"
    blank_feed = tmp_path / "blank.jsonl"
    blank_feed.write_text("\n\n")
    assert only_error(blank_feed).reason == "empty: no article text"


def test_missing_file_is_an_error(tmp_path):
    assert only_error(tmp_path / "gone.txt").reason.startswith("cannot read")


# --- discover ---------------------------------------------------------------------------------


def test_discover_walks_folders_and_reports_bad_paths(tmp_path):
    folder = tmp_path / "news"
    (folder / "sub").mkdir(parents=True)
    (folder / ".git").mkdir()
    for name in ("b.txt", "a.MD", "sub/c.jsonl", ".hidden.txt", ".git/d.txt", "scan.pdf"):
        (folder / name).write_text("x")
    loose_pdf = tmp_path / "report.pdf"
    loose_pdf.write_text("x")
    files, errors = discover([folder, loose_pdf, tmp_path / "missing", folder / "b.txt"])
    assert [f.relative_to(folder.resolve()).as_posix() for f in files] == ["a.MD", "b.txt", "sub/c.jsonl"]
    assert all(f.is_absolute() for f in files)
    assert [(e.path, e.reason) for e in errors] == [
        (str(loose_pdf), "unsupported file type .pdf: give .txt, .md, .html, .json or .jsonl"),
        (str(tmp_path / "missing"), "no such file or folder: check the path"),
    ]


def test_supported_suffixes():
    assert SUPPORTED_SUFFIXES == {".txt", ".md", ".html", ".htm", ".json", ".jsonl"}


# --- hostile files ------------------------------------------------------------------------------


def test_a_symlink_loop_is_one_error_and_the_folder_goes_on(tmp_path):
    (tmp_path / "good.txt").write_text("NATO troops arrived in Latvia on Monday.", encoding="utf-8")
    (tmp_path / "loop.txt").symlink_to(tmp_path / "loop.txt")
    (tmp_path / "a.md").symlink_to(tmp_path / "b.md")
    (tmp_path / "b.md").symlink_to(tmp_path / "a.md")
    files, errors = discover([tmp_path, tmp_path / "loop.txt"])
    assert files == [(tmp_path / "good.txt").resolve()]
    assert sorted(e.path.rsplit("/", 1)[-1] for e in errors) == ["a.md", "b.md", "loop.txt", "loop.txt"]
    assert all("symbolic link that loops" in e.reason for e in errors), errors
    assert "symbolic link that loops" in only_error(tmp_path / "loop.txt").reason


def test_half_a_character_escaped_in_json_becomes_a_replacement_character(tmp_path):
    path = tmp_path / "feed.jsonl"
    path.write_text('{"title": "Bad \\ud800 title", "text": "Troops \\udc00 arrived.", "id": "x\\ud800"}\n'
                    '{"title": "Good", "text": "A smile \\ud83d\\ude00 stays whole."}\n', encoding="utf-8")
    bad, good = read_articles(path)
    assert (bad.title, bad.text, bad.key) == ("Bad \ufffd title", "Troops \ufffd arrived.", "x\ufffd")
    assert good.text == "A smile \U0001f600 stays whole."
    assert bad.doc_id and bad.text.encode("utf-8")  # hashable and storable


def test_a_file_over_the_size_limit_is_refused_unread(tmp_path):
    path = tmp_path / "big.txt"
    path.write_text("word " * 300_000, encoding="utf-8")  # 1.4 MB
    (error,) = read_articles(path, max_bytes=2**20)
    assert isinstance(error, IngestError) and "1.4 MB, more than the limit of 1 MB" in error.reason
    assert "corpus.max_file_mb" in error.reason
    assert isinstance(read_articles(path, max_bytes=2 * 2**20)[0], Article)


# -- metadata from libraries: front matter, dates as news sites write them, encodings, bylines ----------


def _one(name: str, data: bytes):
    [item] = _ingest._parse(data, Path(name), name, None)
    return item


def test_yaml_front_matter_gives_the_fields_and_is_not_text():
    article = _one("post.md", b"---\ntitle: Strike grows\ndate: 2025-03-03T10:00:00Z\nauthors: [Maria de Vries, "
                              b"Omar al-Sharif]\nsource: Harbour Herald\nurl: https://herald.example/strike\ntags: [x]\n"
                              b"---\n\n# Not the title\n\nDock workers walked out.\n")
    assert (article.title, article.published, article.author, article.outlet, article.url) == (
        "Strike grows", dt.date(2025, 3, 3), "Maria de Vries, Omar al-Sharif", "Harbour Herald",
        "https://herald.example/strike")
    assert "title:" not in article.text and "Dock workers walked out." in article.text
    broken = _one("bad.md", b"---\ntitle: [unclosed\n---\nBody.\n")
    assert "Body." in broken.text  # not YAML: left as written, nothing lost


@pytest.mark.parametrize("line, expected", [
    ("Published: 2025-03-03T10:00:00Z", dt.date(2025, 3, 3)),
    ("Date: March 3, 2025 10:45 AM ET", dt.date(2025, 3, 3)),
    ("Updated: March 4, 2025, 9:12 a.m. EST", dt.date(2025, 3, 4)),
    ("Published: Tuesday 4th of March 2025 at 10:00 CET", dt.date(2025, 3, 4)),
    ("Date: Tue, 04 Mar 2025 10:00:00 GMT", dt.date(2025, 3, 4)),
    ("Date: 04.03.2025", None),  # 4 March or April 3: not guessed
    ("Date: last week", None),
])
def test_dates_in_the_forms_news_sites_write_them(line, expected):
    article = _one("a.txt", f"Port talks\n\n{line}\n\nTalks resumed on Tuesday.\n".encode())
    assert article.published == expected


def test_an_update_date_stands_in_only_for_a_missing_publication_date():
    both = _one("a.txt", b"Port talks\n\nPublished: March 3, 2025\nUpdated: March 4, 2025\n\nTalks resumed.\n")
    assert both.published == dt.date(2025, 3, 3) and "Updated" not in both.text


@pytest.mark.parametrize("encoding, text", [
    ("cp1252", "Café crème at the harbour, said Müller. The strike in Rotterdam entered its third day."),
    ("utf-16", "Straße und Grüße aus München: the strike in Rotterdam entered its third day on Tuesday."),
    ("cp1251", "Забастовка в Роттердаме продолжается третий день, сообщил профсоюз во вторник утром."),
])
def test_text_that_is_not_utf8_is_read_in_its_own_encoding(encoding, text):
    assert _one("a.txt", f"Port news\n\n{text}\n".encode(encoding)).text == text


def test_bytes_that_are_no_text_in_any_encoding_are_one_line():
    error = _one("a.txt", bytes(range(256)) * 4)
    assert "not UTF-8 text" in error.reason and "save the file as UTF-8" in error.reason
    assert "not UTF-8" in _one("a.jsonl", "{\"text\": \"Caf\xe9\"}\n".encode("cp1252")).reason  # JSON is UTF-8


@pytest.mark.parametrize("byline, author", [
    ("By Maria de Vries", "Maria de Vries"),
    ("By Omar al-Sharif", "Omar al-Sharif"),
    ("By Ludwig van der Berg and Ana dos Santos", "Ludwig van der Berg and Ana dos Santos"),
    ("By Jean-Luc Picard", "Jean-Luc Picard"),
])
def test_bylines_with_particles(byline, author):
    article = _one("a.txt", f"Port talks\n\n{byline}\n\nTalks resumed on Tuesday at the harbour.\n".encode())
    assert article.author == author and byline not in article.text


def test_a_record_without_a_title_is_indexed_and_cited_by_its_opening_words(tmp_path, answerer):
    path = tmp_path / "feed.jsonl"
    path.write_text(json.dumps({"url": "https://example.com/a", "text": "Ferries were cancelled on Monday."}) + "\n"
                    + json.dumps({"title": "  ", "text": "A second untitled story."}) + "\n"
                    + json.dumps({"title": 7, "text": "A third, its title not text."}) + "\n")
    items = read_articles(path)
    assert all(isinstance(i, Article) for i in items), items
    assert [i.title for i in items] == [None, None, None]
    assert items[0].key == items[0].url == "https://example.com/a"
    report = answerer.ingest([path])
    assert (report.added, report.failed) == (3, 0), report.errors
    labels = {row.label for row in answerer.sources()}
    assert "“Ferries were cancelled on Monday.”" in labels, labels


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be", "utf-16", "utf-32"])
def test_utf16_and_utf32_with_or_without_a_byte_order_mark_are_read_as_text(tmp_path, encoding):
    text = "Title: Storm in the harbour\n\nA storm closed the harbour on Tuesday, officials said. Cafés shut early."
    path = tmp_path / "storm.txt"
    path.write_bytes(text.encode(encoding))
    [article] = read_articles(path)
    assert isinstance(article, Article), article
    assert article.title == "Storm in the harbour" and "\x00" not in article.text
    assert article.text.startswith("A storm closed the harbour") and article.text.endswith("Cafés shut early.")
    records = tmp_path / "records.jsonl"
    records.write_bytes((json.dumps({"title": "T", "text": "Zq wide JSON."}) + "\n").encode(encoding))
    [record] = read_articles(records)
    assert isinstance(record, Article) and record.text == "Zq wide JSON."


def test_bytes_with_nuls_that_read_as_no_text_are_refused_not_indexed_as_junk(tmp_path):
    path = tmp_path / "junk.txt"
    path.write_bytes(b"PK\x03\x04\x00\x00" + bytes(range(256)) * 8)
    [error] = read_articles(path)
    assert isinstance(error, IngestError) and "NUL bytes" in error.reason and "save the file as UTF-8" in error.reason


# -- dates a news article carries outside its header ---------------------------------------------------------

TODAY = dt.date(2026, 12, 8)


@pytest.mark.parametrize("url, day", [
    ("https://www.cnn.com/2022/06/19/middleeast/iran-talks/index.html", dt.date(2022, 6, 19)),
    ("https://eu.usatoday.com/story/news/politics/2022/01/10/irs-tax-season/9147161002/", dt.date(2022, 1, 10)),
    ("https://www.theguardian.com/world/2022/jun/19/colombia-election", dt.date(2022, 6, 19)),
    ("https://news.example/ports/strike-ends-2022-06-19.html", dt.date(2022, 6, 19)),
    ("https://news.example/20220619/strike.html", dt.date(2022, 6, 19)),
    ("https://news.example/2022/06/strike.html", None),  # a month is not a day
    ("https://news.example/2022/13/40/strike.html", None),  # no such day
    ("https://news.example/2027/01/01/strike.html", None),  # still to come
    ("https://news.example/strike?from=2022/06/19/", None),  # the query is not the path
    ("https://news.example/story/12345678/", None),
    (None, None),
])
def test_a_news_urls_path_gives_its_day(url, day):
    assert _ingest.date_from_url(url, today=TODAY) == day


def test_a_record_without_a_date_takes_its_urls_and_a_dated_one_keeps_its_own(tmp_path):
    path = tmp_path / "archive.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in [
        {"text": "The IRS said it would hire staff.", "url": "https://www.cnn.com/2022/06/19/politics/irs/index.html"},
        {"text": "The IRS said it would hire staff.", "url": "https://www.cnn.com/2022/06/19/politics/irs2/index.html",
         "published": "2022-06-20"},
        {"text": "The IRS said it would hire staff.", "url": "https://www.cnn.com/politics/irs3"},
    ]))
    assert [a.published for a in read_articles(path)] == [dt.date(2022, 6, 19), dt.date(2022, 6, 20), None]


def test_a_labelled_date_at_the_foot_is_the_articles_and_leaves_the_text(tmp_path):
    article = parse_text_article("Ferries\n\nAll ferries were cancelled on Monday.\nThe harbour reopened later.\n"
                                 "Published 23 March 2022\n© 2026 Newsmax. All rights reserved.", key="k", path=None)
    assert article.published == dt.date(2022, 3, 23) and article.outlet == "Newsmax"
    assert article.text == "All ferries were cancelled on Monday.\nThe harbour reopened later."
    updated = parse_text_article("Ferries\n\nAll ferries were cancelled.\nUpdated: March 24, 2022 9:12 a.m. EST",
                                 key="k", path=None)
    assert updated.published == dt.date(2022, 3, 24) and "Updated" not in updated.text


@pytest.mark.parametrize("foot", [
    "Published in 2019, the report found that ferries on March 3, 2019 ran late and the company apologised.",
    "© 2022 Harbour Herald. All rights reserved.",
    "Date: soon",
])
def test_a_sentence_a_copyright_year_or_a_bad_label_at_the_foot_is_no_date(foot):
    article = parse_text_article(f"Ferries\n\nAll ferries were cancelled on Monday.\n{foot}", key="k", path=None)
    assert article.published is None


def test_a_file_named_after_its_pages_url_takes_the_urls_day(tmp_path):
    for name in ("https%3A%2F%2Fwww.cnn.com%2F2022%2F06%2F19%2Fworld%2Fa.html.txt",
                 "https___www.cnn.com_2022_06_19_world_a.html.txt"):
        path = tmp_path / name
        path.write_text("Ferries\n\nAll ferries were cancelled on Monday.")
        [article] = read_articles(path)
        assert article.published == dt.date(2022, 6, 19), name
    plain = tmp_path / "2022_06_19_notes.txt"  # not a URL: the name says nothing
    plain.write_text("Ferries\n\nAll ferries were cancelled on Monday.")
    assert read_articles(plain)[0].published is None


@pytest.mark.parametrize("line, credit", [
    ("Soldiers arrive in Romania. (Reuters/Gleb Garanich)", True),
    ("A soldier in Kyiv on March 3, 2022. (AFP via Getty Images)", True),
    ("Soldiers arrive in Romania. (Photo: REUTERS/Stoyan Nenov)", True),
    ("Dock workers walked out on Tuesday, the union said in a statement. (Reuters)", False),
    ("Talks will resume on Thursday, officials said. (AFP)", False),
])
def test_a_captions_credit_is_dropped_and_a_wire_attribution_keeps_its_paragraph(line, credit):
    article = parse_text_article(f"Strike\n\nThe port was closed all week.\n\n{line}\n\nTalks go on.", key="k",
                                 path=None)
    assert (line not in article.text) == credit
