"""Which follow-ups are questions (bot/followup.py)."""

from __future__ import annotations

import pytest

from bot.followup import classify


@pytest.mark.parametrize("text", [
    "thanks", "Thanks!!", "thank you so much", "ty", "thx 🙏", "ok", "OK 👍", "okay, got it", "cool", "nice one",
    "👍", "🙏🙏", "<:pepe_thanks:123456789012345678>", "!!!", "k", "lol", "great, thanks a lot for the help",
    "really?", "ok?", "<@123456789012345678> thanks", "makes sense", "I see", "yes", "no", "hm",
])
def test_acknowledgements_emoji_and_tiny_messages_are_chatter(text):
    assert classify(text) == "chatter"


@pytest.mark.parametrize("text", [
    "and when?", "when?", "why", "where exactly", "who said that", "how many are there", "which countries",
    "and Romania", "tell me more", "is it in Poland", "what about Hungary", "thanks, and since when?",
    "2022?", "Slovakia?", "who’s the minister", "more about the troops",
])
def test_questions_and_requests_are_questions(text):
    assert classify(text) == "question"


@pytest.mark.parametrize("text", ["the ones in Romania", "I read it was 2023", "Slovakia and Hungary maybe"])
def test_other_sentences_are_statements(text):
    assert classify(text) == "statement"
