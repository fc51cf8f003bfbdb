"""Follow-ups: which messages in a conversation with the bot are questions, and how much context to pass.

Pure and shared by both doors. In a thread the bot opened, people also say "thanks", "ok 👍" or
talk among themselves; `classify` sorts a message into
- "chatter": an acknowledgement ("thanks!", "ok 👍", "got it", "really?"), emoji only, or a word too
  short to ask anything: not answered at all;
- "question": it asks (a "?", or it opens with a question word or a request such as "tell me more"):
  answered, "not found" included;
- "statement": anything else ("the one in Romania", "I read it was 2023"): answered when the index
  answers it; when it does not, the bot stays silent rather than post a public "not found".
"""

from __future__ import annotations

import re
from typing import Literal

Kind = Literal["chatter", "question", "statement"]

# The earlier questions handed to the Answerer as context; the reader itself uses the last two.
CONTEXT_QUESTIONS = 10

# Words that make up an acknowledgement when a message holds nothing else.
_ACKNOWLEDGEMENTS = frozenset("""
    thanks thank thx thnx tnx ty tysm tyvm cheers ta you u ya so much very lot lots a for that this the it
    ok okay okey k kk oki okie alright right fine sure yes yeah yep yup aye no nope nah
    cool nice great good awesome perfect brilliant excellent amazing wonderful lovely neat sweet helpful
    interesting fascinating wow whoa oh ah aha ahh ooh hmm hm mm huh lol lmao haha hah hehe heh rofl xd
    got gotcha i see understood noted makes sense clear appreciated appreciate love bot citebot
    help info answer answers reply quick bye goodbye gg np thats that's is was really indeed true agreed
    same exactly one
""".split())

# Words that open a question on their own ("why", "where exactly").
_QUESTION_WORDS = frozenset("""
    what whats what's when whens when's where wheres where's who whos who's whom whose which why how hows how's
""".split())

# Words that open a question or a request when more follows ("is it …", "tell me …", "and Romania").
_OPENINGS = frozenset("""
    is are was were do does did can could will would should shall has have had may might
    isn't aren't wasn't weren't don't doesn't didn't can't couldn't won't wouldn't hasn't haven't
    tell show explain list give describe compare summarise summarize name find any anything more
    and or but also
""".split())

# Discord's own markup: custom emoji and mentions of users, roles and channels say nothing to answer.
_MARKUP = re.compile(r"<a?:\w+:\d+>|<@[!&]?\d+>|<#\d+>")
_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")
# Fewer letters than this, without a "?", ask nothing ("k", "xy").
_SHORTEST_QUESTION = 3


def classify(text: str) -> Kind:
    """Whether a follow-up message is chatter, a question or a statement (see the module docstring)."""
    text = _MARKUP.sub(" ", text)
    words = [word.replace("’", "'") for word in _WORD.findall(text.casefold())]
    if not words or all(word in _ACKNOWLEDGEMENTS for word in words):
        return "chatter"  # emoji and punctuation only, or an acknowledgement, asked back or not
    if "?" in text or "？" in text:
        return "question"
    if words[0] in _QUESTION_WORDS or (words[0] in _OPENINGS and len(words) > 1):
        return "question"
    if sum(len(word) for word in words) < _SHORTEST_QUESTION:
        return "chatter"
    return "statement"
