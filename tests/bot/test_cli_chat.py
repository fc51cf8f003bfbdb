"""`citebot chat` follow-ups: each question is asked with the conversation's earlier ones; /new starts over."""

from __future__ import annotations

import io
import os
import sys

import pytest
from rich.console import Console

import bot.cli as cli
import bot.console as console
from tests.bot.conftest import FakeAnswerer


class ChatAnswerer(FakeAnswerer):
    """Records each question and the context it was asked with (FakeAnswerer.calls)."""

    def is_empty(self) -> bool:
        return False


@pytest.fixture
def chat(monkeypatch, tmp_path):
    """Run `citebot chat` in this process with `lines` on stdin; returns the answerer."""
    for name in [n for n in os.environ if n.startswith("CITEBOT_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("CITEBOT_INDEX__DIR", str(tmp_path / "index"))
    answerer = ChatAnswerer()
    monkeypatch.setattr(cli, "_answerer", lambda settings: answerer)
    monkeypatch.setattr(cli, "out", Console(file=io.StringIO(), width=400, color_system=None, highlight=False))
    monkeypatch.setattr(console, "out", cli.out)  # cli prints through bot.console
    monkeypatch.setattr(cli, "err", Console(file=io.StringIO(), width=400, color_system=None, highlight=False))
    monkeypatch.setattr(console, "err", cli.err)  # cli prints through bot.console

    def run(*lines: str) -> ChatAnswerer:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO("".join(f"{line}\n" for line in lines).encode())))
        assert cli.main(["chat"]) == 0
        return answerer

    return run


def said() -> list[str]:
    return cli.err.file.getvalue().splitlines()


def test_a_follow_up_is_asked_with_the_earlier_questions(chat):
    answerer = chat("where are the new battlegroups?", "and when?", "  who decided?  ", "exit")

    assert [(c.question.strip(), c.context) for c in answerer.calls] == [
        ("where are the new battlegroups?", None),
        ("and when?", ["where are the new battlegroups?"]),
        ("who decided?", ["where are the new battlegroups?", "and when?"]),
    ]


def test_new_starts_a_new_conversation(chat):
    answerer = chat("where are the new battlegroups?", "and when?", "/new", "what did the minister say?", "and why?")

    assert [c.context for c in answerer.calls] == [
        None, ["where are the new battlegroups?"], None, ["what did the minister say?"]]
    assert "New conversation: earlier questions are forgotten." in said()


def test_the_banner_and_help_name_new(chat):
    answerer = chat("/help", "/frobnicate", "where?")

    banner, help_line, unknown = said()[:3]
    assert "/new starts over" in banner and "follow-up" in banner
    assert help_line == "/new starts a new conversation, /help shows this, exit leaves"
    assert unknown == "citebot: unknown command /frobnicate: /new starts a new conversation, /help shows this, exit leaves"
    assert [c.context for c in answerer.calls] == [None]  # commands are not questions


def test_a_refused_question_is_not_part_of_the_conversation(chat):
    answerer = chat("where?", "toolong question", "and when?")

    assert answerer.calls[-1].context == ["where?"]
    assert "citebot: the question is too long: ask it in at most 500 characters" in said()
    assert [c.question.strip() for c in answerer.calls] == ["where?", "toolong question", "and when?"]


def test_the_context_is_capped(chat):
    from bot.followup import CONTEXT_QUESTIONS

    answerer = chat(*[f"question {n}?" for n in range(CONTEXT_QUESTIONS + 5)])

    last = answerer.calls[-1].context
    assert len(last) == CONTEXT_QUESTIONS and last[-1] == f"question {CONTEXT_QUESTIONS + 3}?"
