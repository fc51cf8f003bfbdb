"""Hostile input at the terminal (issue 13): article text that tries to steer the terminal, bytes that
are not UTF-8, a full disk, a broken Discord token, and a second writer.

Fast: a fake answerer, no model. Each console prints without colour (color_system=None), so any ESC
in the output came from an article.
"""

from __future__ import annotations

import datetime as dt
import errno
import fcntl
import io
import json
import logging
import os
import re
import sqlite3
import subprocess
import sys
import unicodedata

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir
from rich.console import Console

import bot.cli as cli
import bot.console as console
from bot.render import clean, clean_line, render_answer, render_sources, version_line
from retrieval.models import Answer, Version
from tests.bot.conftest import FakeAnswerer, FakeSourceRow, make_answer, make_passage, make_source
from tests.conftest import ROOT

CLEAR = "\x1b[2J\x1b[H"
LINK = "\x1b]8;;https://evil.example/\x1b\\"  # OSC 8: the words after it become a hidden link
UNLINK = "\x1b]8;;\x1b\\"
WINDOW = "\x1b]0;you have been pwned\x07"  # OSC 0: sets the window title
DCS = "\x1bP1$tx\x1b\\"
C1 = "\x9b31m\x85\x9d2;c1 title\x9c"  # C1 CSI, NEL, and a C1 OSC ... ST

TITLE = f"NATO{CLEAR} plan [bold red]loud[/bold red] {LINK}click{UNLINK}{WINDOW} here\x07"
OUTLET = f"Reu{C1}ters\x1b[31m [link=https://evil.example]x[/link]"
AUTHOR = "Jane\x08\x08\x08\x08Evil Doe\x00"
URL = f"https://example.com/a{CLEAR}"
SENTENCE = "The battlegroups are in Slovakia and Hungary."
BODY = f"Intro{CLEAR} one.\rLine two{WINDOW} with{DCS} a{C1} bell\x07. {SENTENCE} After {LINK}that{UNLINK}."

SHOWN_TITLE = "NATO plan [bold red]loud[/bold red] click here"
SHOWN_OUTLET = "Reuters [link=https://evil.example]x[/link]"
SHOWN_BODY = f"Intro one.Line two with a bell. {SENTENCE} After that."


def hostile_answer() -> Answer:
    at = BODY.index(SENTENCE)
    source = make_source(1, title=TITLE, outlet=OUTLET, author=AUTHOR, url=URL, published=dt.date(2022, 3, 23))
    return make_answer("where?", [make_passage(1, BODY, sources=[source], highlight=(at, at + len(SENTENCE)))])


HOSTILE_ROW = FakeSourceRow("d" * 16, TITLE, OUTLET, dt.date(2022, 3, 23), 3, f"/news/{CLEAR}a.txt", TITLE)


def printed(renderable, *, width: int = 400) -> str:
    console = Console(file=io.StringIO(), width=width, color_system=None)
    console.print(renderable)
    return console.file.getvalue()


def assert_inert(text: str) -> None:
    """Nothing in `text` a terminal would obey, and no leftovers of what was taken out."""
    assert "\x1b" not in text and "\x07" not in text and "\r" not in text and "\x08" not in text
    assert not [c for c in text if "\x80" <= c <= "\x9f"]
    assert not [c for c in text if unicodedata.category(c) == "Cc" and c != "\n"]
    for residue in ("[2J", "[H", "]8;", "]0;", "pwned", "[31m", "1$tx", "2;c1"):
        assert residue not in text


# -- rendering -------------------------------------------------------------------------------------

def test_escape_sequences_in_title_outlet_author_url_and_text_are_taken_out_whole():
    lines = printed(render_answer(hostile_answer(), full=True)).splitlines()
    assert_inert("\n".join(lines))
    assert lines[0] == SENTENCE + " [1]"
    assert lines[2] == f"[1] {SHOWN_TITLE} — {SHOWN_OUTLET}, 2022-03-23, by JaneEvil Doe"
    assert lines[3] == "    https://example.com/a"
    assert lines[5].rstrip() == "    " + SHOWN_BODY


def test_the_highlight_stays_on_its_words_when_control_characters_before_it_are_taken_out():
    passage = render_answer(hostile_answer(), full=True).renderables[-1].renderable
    highlighted = [passage.plain[s.start : s.end] for s in passage.spans if "yellow" in str(s.style)]
    assert highlighted == [SENTENCE]


def test_the_excerpt_is_cleaned_too():
    text = printed(render_answer(hostile_answer()))
    assert_inert(text)
    assert f"… Line two with a bell. {SENTENCE} After that." in text


def test_rich_markup_in_article_text_prints_as_written():
    console = Console(file=io.StringIO(), width=400, color_system="truecolor", force_terminal=True)
    console.print(render_answer(hostile_answer()))
    console.print(render_sources([HOSTILE_ROW]))
    coloured = console.file.getvalue()
    assert "\x1b]8;" not in coloured  # no hyperlink made from [link=…]
    assert "[bold red]loud[/bold red]" in coloured and "[link=https://evil.example]x[/link]" in coloured


def test_sources_table_shows_cleaned_titles_outlets_and_paths():
    text = printed(render_sources([HOSTILE_ROW]))
    assert_inert(text)
    row = next(line for line in text.splitlines() if "dddddddddd" in line)
    cells = [cell.strip() for cell in row.strip("│ ").split("│")]
    assert cells == ["dddddddddd", SHOWN_TITLE, SHOWN_OUTLET, "2022-03-23", "3", "/news/a.txt"]


def test_differing_sources_are_cleaned():
    source = make_source(2, outlet=OUTLET)
    version = Version(text="x", values=[f"Hung{CLEAR}ary", f"Slova\nkia{WINDOW}"], passage=2, sources=[source])
    assert version_line(version) == f"— {SHOWN_OUTLET}, 2022-03-23: Hungary, Slova kia [2]"


def test_a_title_that_is_only_control_falls_back_to_the_document_id():
    source = make_source(1, title=CLEAR + WINDOW, lead="")
    answer = make_answer("q", [make_passage(1, "Some text.", sources=[source], highlight=(0, 10))])
    assert printed(render_answer(answer)).splitlines()[2].startswith("[1] doc1 — Reuters")


def test_clean_keeps_ordinary_text_tabs_and_newlines_and_clean_line_makes_one_line():
    text = "Zürich, “quoted” — 東京 [x] \\ ;\tcol\nnext"
    assert clean(text) == text
    assert clean_line(text) == "Zürich, “quoted” — 東京 [x] \\ ; col next"
    assert clean("unterminated \x1b]0;title\nrest") == "unterminated \nrest"


SAFE_PIECES = ["\x1b", "[", "]", "\\", "\x07", "\x9b", "\x9c", "\x9d", "\x90", "P", "8;;", "0;", "2J", "m", ";",
               "\r", "\n", "\t", "\x00", "\x08", "\x7f", "\x85", "a", " ", ". ", "[bold]", "[/x]", "[link=u]"]
hostile_text = st.lists(st.one_of(st.sampled_from(SAFE_PIECES), st.characters(codec="utf-8")), max_size=40).map("".join)


def test_random_article_text_never_puts_a_control_character_on_the_terminal(tmp_path):
    @settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
    @given(title=hostile_text, outlet=hostile_text, author=hostile_text, url=hostile_text, before=hostile_text,
           after=hostile_text, full=st.booleans())
    def check(title, outlet, author, url, before, after, full):
        text = before + "\n" + SENTENCE + "\n" + after  # no sequence runs over a line break into the sentence
        at = len(before) + 1
        source = make_source(1, title=title or None, outlet=outlet or None, author=author or None, url=url or None,
                             lead=title)
        answer = make_answer("q", [make_passage(1, text, sources=[source, make_source(2, title=after)],
                                                highlight=(at, at + len(SENTENCE)))])
        rendered = render_answer(answer, full=full)
        assert_output_inert(printed(rendered))
        passage = rendered.renderables[-1].renderable
        assert [passage.plain[s.start : s.end] for s in passage.spans if "yellow" in str(s.style)] == [SENTENCE]
        row = FakeSourceRow("d" * 16, title or None, outlet or None, None, 1, url or None, title or "x")
        assert_output_inert(printed(render_sources([row]), width=120))

    set_hypothesis_home_dir(tmp_path / ".hypothesis")  # writes nothing into the project
    try:
        check()
    finally:
        set_hypothesis_home_dir(None)


def assert_output_inert(text: str) -> None:
    assert not [c for c in text if unicodedata.category(c) == "Cc" and c != "\n"], repr(text)


# -- the commands ----------------------------------------------------------------------------------

class HostileAnswerer(FakeAnswerer):
    """Answers every question with the hostile answer; lists the hostile row."""

    def is_empty(self) -> bool:
        return False

    def check_question(self, question: str) -> str:
        return question

    def answer(self, question: str, **kwargs) -> Answer:
        super().answer(question, **kwargs)
        return hostile_answer()

    def sources(self):
        return [HOSTILE_ROW]


@pytest.fixture
def fake(monkeypatch, tmp_path):
    """`citebot` run in this process over a HostileAnswerer, printing to uncoloured consoles."""
    for name in [n for n in os.environ if n.startswith("CITEBOT_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("CITEBOT_INDEX__DIR", str(tmp_path / "index"))
    answerer = HostileAnswerer()
    monkeypatch.setattr(cli, "_answerer", lambda settings: answerer)
    for name in ("out", "err"):  # the command's console is bot.console's, which cli imports by name
        made = Console(file=io.StringIO(), width=400, color_system=None, highlight=False)
        monkeypatch.setattr(cli, name, made)
        monkeypatch.setattr(console, name, made)
    return answerer


def err_lines() -> list[str]:
    """What `citebot` said on stderr, without the blank line a finished progress bar leaves."""
    return [line for line in cli.err.file.getvalue().splitlines() if line]


def test_ask_prints_article_text_inert(fake):
    assert cli.main(["ask", "where?"]) == 0
    text = cli.out.file.getvalue()
    assert_inert(text)
    assert f"[1] {SHOWN_TITLE} — {SHOWN_OUTLET}" in text and SENTENCE in text


def test_chat_prints_article_text_inert(fake, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"where?\nexit\n")))
    assert cli.main(["chat"]) == 0
    text = cli.out.file.getvalue()
    assert_inert(text)
    assert f"[1] {SHOWN_TITLE} — {SHOWN_OUTLET}" in text


def test_sources_prints_article_text_inert(fake):
    assert cli.main(["sources"]) == 0
    text = cli.out.file.getvalue()
    assert_inert(text)
    assert SHOWN_TITLE in text and "/news/a.txt" in text


def test_json_keeps_the_data_as_stored_with_every_control_character_escaped(fake, capsys):
    assert cli.main(["ask", "--json", "where?"]) == 0
    dumped = capsys.readouterr().out
    assert not [c for c in dumped if unicodedata.category(c) == "Cc" and c != "\n"]
    assert json.loads(dumped) == hostile_answer().model_dump(mode="json")

    assert cli.main(["sources", "--json"]) == 0
    dumped = capsys.readouterr().out
    assert not [c for c in dumped if unicodedata.category(c) == "Cc" and c != "\n"]
    assert json.loads(dumped)[0]["title"] == TITLE and json.loads(dumped)[0]["outlet"] == OUTLET


def test_ingest_failures_and_removed_keys_are_printed_inert(fake, monkeypatch, tmp_path):
    from retrieval.writer import IngestReport

    bad = f"/news/{CLEAR}[/x]{WINDOW}.txt"
    not_utf8 = os.fsdecode(b"/news/b\xffd.txt")  # a file name in another encoding
    monkeypatch.setattr(fake, "ingest", lambda paths, progress=None, rebuild=False, sync=False: IngestReport(
        failed=2, errors=[f"{bad}: not UTF-8 text\x07", f"{not_utf8}: empty"]), raising=False)
    monkeypatch.setattr(fake, "remove", lambda refs, **kw: [bad], raising=False)
    assert cli.main(["ingest", str(tmp_path)]) == 1
    assert cli.main(["remove", "x"]) == 0
    assert err_lines() == ["failed: /news/[/x].txt: not UTF-8 text", "failed: /news/b\\xffd.txt: empty",
                           "0 added, 0 updated, 0 unchanged, 2 failed", "removed /news/[/x].txt"]


# -- bytes that are not UTF-8 ------------------------------------------------------------------------

def test_a_question_that_is_not_utf8_is_one_line_before_anything_loads(fake, monkeypatch):
    monkeypatch.setattr(cli, "_answerer", lambda settings: pytest.fail("the answerer was built"))
    # Python hands argv bytes that are not UTF-8 over as lone surrogates (surrogateescape).
    assert cli.main(["ask", os.fsdecode(b"\xff\xfe")]) == 2
    assert cli.err.file.getvalue().splitlines() == [
        "citebot: the question is not valid UTF-8 (it holds the bytes \\xff\\xfe): set the terminal to UTF-8 "
        "(e.g. LANG=C.UTF-8) and type it again"]


def test_a_flag_that_is_not_utf8_is_named(fake):
    assert cli.main(["ask", "where?", "--outlet", os.fsdecode(b"Reu\xe9ters")]) == 2
    assert cli.err.file.getvalue().startswith("citebot: --outlet is not valid UTF-8 (it holds the bytes \\xe9)")


def test_citebot_ask_with_bytes_that_are_not_utf8_exits_with_one_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITEBOT_")}
    env["CITEBOT_INDEX__DIR"] = str(tmp_path)
    result = subprocess.run([sys.executable, "-m", "bot.cli", "ask", b"\xff\xfe"], cwd=ROOT, env=env,
                            capture_output=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.decode().splitlines() == [
        "citebot: the question is not valid UTF-8 (it holds the bytes \\xff\\xfe): set the terminal to UTF-8 "
        "(e.g. LANG=C.UTF-8) and type it again"]
    assert not any(tmp_path.iterdir())  # nothing was opened, let alone a model


def test_chat_refuses_a_line_that_is_not_utf8_and_goes_on(fake, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"wh\xffere?\nwhere now?\nexit\n")))
    assert cli.main(["chat"]) == 0
    assert [call.question for call in fake.calls] == ["where now?\n"]
    assert "citebot: that question is not valid UTF-8 (it holds the bytes \\xff)" in cli.err.file.getvalue()


# -- a full disk -----------------------------------------------------------------------------------

FULL = "citebot: the disk is full (no space left on device{}): free some space there and run the command again"


def test_a_full_disk_writing_a_file_is_one_line(fake, monkeypatch, tmp_path):
    def ingest(paths, progress=None, rebuild=False, sync=False):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/index/seg-000007.faiss")

    monkeypatch.setattr(fake, "ingest", ingest, raising=False)
    assert cli.main(["ingest", str(tmp_path)]) == 1
    assert err_lines() == [FULL.format(" writing /index/seg-000007.faiss")]


def test_a_full_disk_under_ingest_json_still_prints_the_json_report(fake, monkeypatch, tmp_path, capsys):
    def ingest(paths, progress=None, rebuild=False, sync=False):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/index/seg-000007.faiss")

    monkeypatch.setattr(fake, "ingest", ingest, raising=False)
    (tmp_path / "a.txt").write_text("The harbour opened at dawn.")
    assert cli.main(["ingest", "--json", str(tmp_path), str(tmp_path / "missing.txt")]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["error"] == FULL.format(" writing /index/seg-000007.faiss").removeprefix("citebot: ")
    assert (report["added"], report["failed"]) == (0, 1) and "missing.txt" in report["errors"][0]
    assert err_lines()[-1] == FULL.format(" writing /index/seg-000007.faiss")


def test_a_full_disk_under_sqlite_is_one_line(fake, monkeypatch, tmp_path):
    def ingest(paths, progress=None, rebuild=False, sync=False):
        db = sqlite3.connect(tmp_path / "small.sqlite")
        db.execute("PRAGMA max_page_count = 2")  # SQLite's own "database or disk is full", for real
        db.execute("CREATE TABLE t (x)")
        db.execute("INSERT INTO t VALUES (?)", ["x" * 100_000])

    monkeypatch.setattr(fake, "ingest", ingest, raising=False)
    assert cli.main(["ingest", str(tmp_path)]) == 1
    assert err_lines() == [FULL.format("")]


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_output_to_a_full_disk_is_reported_not_lost(fake, monkeypatch):
    saved, full = sys.stdout, open("/dev/full", "w")
    monkeypatch.setattr(sys, "stdout", full)
    try:
        assert cli.main(["sources", "--json"]) == 1
    finally:
        sys.stdout = saved
        try:
            full.close()
        except OSError:  # what it still holds cannot be written either
            pass
    assert err_lines() == [FULL.format("")]


# -- the Discord token -----------------------------------------------------------------------------

def test_a_token_with_a_line_break_is_one_line_and_never_shown(fake, monkeypatch, caplog, capsys):
    import bot.discord_app

    monkeypatch.setattr(bot.discord_app, "run_bot", lambda *a: pytest.fail("the bot started"))
    monkeypatch.setattr(cli, "_answerer", lambda settings: pytest.fail("the answerer was built"))
    monkeypatch.setenv("CITEBOT_DISCORD_TOKEN", "MTIzNDU2.first-half-Sx9\nsecond-half-Qz7")
    caplog.set_level(logging.DEBUG)
    assert cli.main(["-vv", "discord"]) == 2
    direct = capsys.readouterr()
    assert cli.err.file.getvalue().splitlines() == [
        "citebot: CITEBOT_DISCORD_TOKEN holds a line break: set it to the token alone, on one line, "
        "as the Developer Portal shows it (Bot → Token)"]
    shown = cli.err.file.getvalue() + cli.out.file.getvalue() + caplog.text + direct.err + direct.out
    assert "first-half" not in shown and "second-half" not in shown and "MTIzNDU2" not in shown


# -- a second writer -------------------------------------------------------------------------------

@pytest.mark.parametrize("command", [["ingest", "/news"], ["remove", "doc1"]])
def test_a_second_writer_is_refused_before_the_model_loads(fake, monkeypatch, tmp_path, command):
    monkeypatch.setenv("CITEBOT_INDEX__LOCK_WAIT_SECONDS", "0")  # refused at once, not after a wait
    index = tmp_path / "index"
    index.mkdir()
    built = []
    monkeypatch.setattr(cli, "_answerer", lambda settings: built.append(1) or pytest.fail("the answerer was built"))
    with open(index / "write.lock", "w") as held:  # another process's ingest, as flock sees it
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert cli.main(command) == 1
    assert built == []
    assert cli.err.file.getvalue().splitlines() == [
        f"citebot: another citebot process is writing to {index}: wait for it to finish and try again"]


def test_a_second_writer_waits_and_says_so(fake, monkeypatch, tmp_path):
    monkeypatch.setenv("CITEBOT_INDEX__LOCK_WAIT_SECONDS", "0.3")
    index = tmp_path / "index"
    index.mkdir()
    monkeypatch.setattr(cli, "_answerer", lambda settings: pytest.fail("the answerer was built"))
    with open(index / "write.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert cli.main(["ingest", "/news"]) == 1
    assert cli.err.file.getvalue().splitlines() == [
        f"another citebot process is writing to {index}: waiting up to 0.3 s for it",
        f"citebot: another citebot process has been writing to {index} for 0.3 s: try again when it is done, "
        "or raise index.lock_wait_seconds"]


def test_a_free_lock_lets_the_writer_on(fake, monkeypatch, tmp_path):
    (tmp_path / "index").mkdir()
    (tmp_path / "index" / "write.lock").write_text("")  # left by an earlier, finished ingest
    monkeypatch.setattr(fake, "remove", lambda refs, **kw: list(refs), raising=False)
    assert cli.main(["remove", "doc1"]) == 0
    assert cli.err.file.getvalue().splitlines() == ["removed doc1"]


def test_remove_passes_all_matching_and_refuses_an_ambiguous_ref_without_it(fake, monkeypatch):
    from retrieval.errors import QuestionError

    calls = []

    def remove(refs, *, all_matching=False):
        calls.append((list(refs), all_matching))
        if not all_matching:
            raise QuestionError("'abcdef' matches 2 documents (a, b); nothing was removed: give a longer id, "
                                "or add --all-matching to remove them all")
        return ["a", "b"]

    monkeypatch.setattr(fake, "remove", remove, raising=False)
    assert cli.main(["remove", "abcdef"]) == 2
    assert err_lines()[-1].startswith("citebot: 'abcdef' matches 2 documents")
    assert cli.main(["remove", "--all-matching", "abcdef"]) == 0
    assert calls == [(["abcdef"], False), (["abcdef"], True)] and err_lines()[-2:] == ["removed a", "removed b"]


def test_verbose_and_config_are_taken_after_the_command_too(fake, tmp_path, monkeypatch):
    config = tmp_path / "mine.toml"
    config.write_text("[search]\nk = 3\n", encoding="utf-8")
    seen = []
    real = cli.COMMANDS["sources"]
    monkeypatch.setitem(cli.COMMANDS, "sources", lambda args, settings: seen.append((args.verbose, settings.search.k))
                        or real(args, settings))
    assert cli.main(["sources", "-v", "--config", str(config)]) == 0
    assert cli.main(["--config", str(config), "-vv", "sources"]) == 0
    assert cli.main(["sources"]) == 0
    assert seen == [(1, 3), (2, 3), (0, 5)]


def test_remove_json_prints_the_keys_removed(fake, monkeypatch, capsys):
    monkeypatch.setattr(fake, "remove", lambda refs, *, all_matching=False: ["/news/a.txt"], raising=False)
    assert cli.main(["remove", "--json", "/news/a.txt"]) == 0
    assert json.loads(capsys.readouterr().out) == {"removed": ["/news/a.txt"]}


def test_a_reader_that_goes_away_ends_the_command_quietly(tmp_path):
    import subprocess

    env = {k: v for k, v in os.environ.items() if not k.startswith("CITEBOT_")}
    env["CITEBOT_INDEX__DIR"] = str(tmp_path / "index")
    root = __import__("tests.conftest", fromlist=["ROOT"]).ROOT
    read, write = os.pipe()
    os.close(read)  # `| head` that has already gone
    done = subprocess.run([sys.executable, "-m", "bot.cli", "sources", "--json"], stdout=write,
                          stderr=subprocess.PIPE, text=True, env=env, cwd=root, timeout=120)
    os.close(write)
    assert done.returncode == 141 and done.stderr == "", done.stderr


def test_a_missing_path_is_reported_before_the_model_loads(fake, monkeypatch, tmp_path):
    monkeypatch.setattr(cli, "_answerer", lambda settings: pytest.fail("the answerer was built"))
    assert cli.main(["ingest", str(tmp_path / "nope")]) == 1
    assert err_lines() == [f"failed: {tmp_path / 'nope'}: no such file or folder: check the path",
                           "0 added, 0 updated, 0 unchanged, 1 failed"]


def test_an_index_emptied_by_remove_is_not_filled_with_the_demo_articles_again(monkeypatch):
    from types import SimpleNamespace

    from retrieval.settings import load_settings

    ingested = []
    monkeypatch.setattr(cli, "_ingest_with_progress", lambda answerer, paths, **kw: ingested.append(paths)
                        or SimpleNamespace(errors=[]))
    settings = load_settings()
    emptied = SimpleNamespace(is_empty=lambda: True, store=SimpleNamespace(generation=7))
    assert cli._ready_answerer(settings, quiet=True, answerer=emptied) is emptied and ingested == []
    fresh = SimpleNamespace(is_empty=lambda: True, store=SimpleNamespace(generation=0))
    cli._ready_answerer(settings, quiet=True, answerer=fresh)
    assert ingested == [settings.corpus.paths]


def test_minus_v_leaves_out_faiss_loader_lines_and_the_bot_no_voice_warning():
    import logging

    import bot.discord_app  # noqa: F401 - importing it settles the voice warning

    import discord

    cli._logging(1)
    assert logging.getLogger("faiss").getEffectiveLevel() == logging.WARNING
    assert discord.VoiceClient.warn_nacl is False


def test_piped_output_is_unwrapped_without_trailing_spaces(fake, monkeypatch):
    long = "The alliance said that " + "many more troops would arrive " * 8 + "by the end of March."
    from rich.padding import Padding
    from rich.console import Group
    from rich.text import Text

    import bot.render as render

    monkeypatch.setattr(render, "render_answer", lambda answer, full=False: Group(
        Text(long + " [1]"), Padding(Text(long), (0, 0, 0, 4))))
    assert cli.main(["ask", "where?"]) == 0
    lines = cli.out.file.getvalue().splitlines()
    assert lines[:2] == [long + " [1]", "    " + long]
    assert all(line == line.rstrip() for line in lines)


def test_sources_tsv_is_one_clean_line_per_article_under_a_header(fake, capsys):
    assert cli.main(["sources", "--format", "tsv"]) == 0
    header, *rows = capsys.readouterr().out.splitlines()
    assert header.split("\t") == list(cli.TSV_COLUMNS)
    assert len(rows) == 1 and len(rows[0].split("\t")) == len(cli.TSV_COLUMNS)
    for cell in rows[0].split("\t"):
        assert_inert(cell)
    assert SHOWN_TITLE in rows[0] and "/news/a.txt" in rows[0]


def test_version(capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(["--version"])
    assert done.value.code == 0 and re.fullmatch(r"citebot \d+\.\d+\.\d+\S*\n", capsys.readouterr().out)


def test_a_line_says_the_model_is_loading_before_an_ingest_that_must_load_it(fake, monkeypatch, tmp_path):
    from types import SimpleNamespace

    from retrieval.writer import IngestReport

    monkeypatch.setattr(fake, "embedder", SimpleNamespace(_model=None), raising=False)
    monkeypatch.setattr(fake, "ingest", lambda paths, progress=None, rebuild=False, sync=False: IngestReport(added=1),
                        raising=False)
    assert cli.main(["ingest", str(tmp_path)]) == 0
    assert err_lines() == ["Loading the embedding model …", "1 added, 0 updated, 0 unchanged, 0 failed"]
    fake.embedder._model = object()  # loaded already: nothing to say
    assert cli.main(["ingest", str(tmp_path)]) == 0
    assert err_lines()[2:] == ["1 added, 0 updated, 0 unchanged, 0 failed"]


@pytest.mark.parametrize("verbose, shown", [(0, False), (1, True)])
def test_the_extractors_warnings_about_a_hostile_page_show_only_with_v(tmp_path, verbose, shown):
    page = tmp_path / "deep.html"
    page.write_text("<html><body>" + "<div>" * 100_000 + "<p>Deep text.</p>" + "</div>" * 100_000 + "</body></html>")
    code = (f"import sys; from bot import cli, console; from retrieval.ingest import read_articles; cli._logging({verbose}); "
            f"print(read_articles({str(page)!r}))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "empty: no article text" in result.stdout, result.stderr
    assert ("discarding data" in result.stderr) is shown, result.stderr
