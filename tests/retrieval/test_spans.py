"""The phrase inside an answering sentence: what the question's form asks for, found with spaCy."""

from concurrent.futures import ThreadPoolExecutor

import pytest

from retrieval.spans import AGENTS, NUMBERS, PLACES, TIMES, NoPhrase, SpacyPhraseFinder, asked_labels, normalise

SEED_LIST = (
    "Four new battle groups consisting of 1,000-1,500 troops are being set up in Hungary, Slovakia, "
    "Romania, Latvia, Estonia, Lithuania and Bulgaria, he said."
)
AMBASSADOR = (
    "In addition to increasing the presence of NATO troops on the eastern flank, the U.S. Ambassador to "
    "NATO, Julianne Smith, said that the organization is considering a longer-term stationing of forces."
)
SHIPS = "The alliance also has 140 warships at sea and 130 aircraft on high alert."


@pytest.mark.parametrize(
    ("question", "labels"),
    [
        ("where are the new battlegroups?", PLACES),
        ("Who is the US ambassador to NATO?", AGENTS),
        ("when is the summit?", TIMES),
        ("how many warships are at sea?", NUMBERS),
        ("How much did it cost?", NUMBERS),
        ("what year was the treaty signed?", {"DATE"}),
        ("which countries get battle groups?", {"GPE"}),
        ("which Baltic country hosts them?", {"GPE"}),
        ("which person leads NATO?", {"PERSON"}),
        ("who said how many troops would go?", AGENTS),  # the first asking words decide
        ("why is NATO doing this?", None),
        ("what did Stoltenberg say about somewhat chemical weapons?", None),
    ],
)
def test_the_question_form_says_what_kind_of_thing_is_asked(question, labels):
    assert asked_labels(question) == (frozenset(labels) if labels is not None else None)


def test_values_compare_without_case_dots_or_a_leading_the():
    assert normalise("the U.S.") == normalise("US") == "us"
    assert normalise("  Hungary ") == "hungary"


def test_no_phrase_never_finds_one():
    assert NoPhrase().find("where are the new battlegroups?", SEED_LIST) is None


@pytest.fixture(scope="module")
def finder():
    return SpacyPhraseFinder()


def phrase(finder, question, sentence):
    found = finder.find(question, sentence)
    return None if found is None else sentence[found.start : found.end]


@pytest.mark.slow
def test_where_gives_the_whole_list_of_places_as_one_phrase(finder):
    found = finder.find("where are the new battlegroups?", SEED_LIST)
    assert SEED_LIST[found.start : found.end] == "Hungary, Slovakia, Romania, Latvia, Estonia, Lithuania and Bulgaria"
    assert found.values == ("Hungary", "Slovakia", "Romania", "Latvia", "Estonia", "Lithuania", "Bulgaria")
    assert found.coverage == 1.0  # "battle groups" in the sentence meets "battlegroups" in the question
    other = "Stoltenberg indicated that four new battle groups will be established in Bulgaria, Hungary, Romania, and Slovakia."
    assert phrase(finder, "where are the new battlegroups?", other) == "Bulgaria, Hungary, Romania, and Slovakia"


@pytest.mark.slow
def test_a_list_stays_whole_when_spacy_calls_one_country_an_organisation(finder):
    sentence = "Four new battle groups are being set up in Bulgaria, Hungary, Romania, and Slovakia, he said."
    assert phrase(finder, "where are the new battlegroups?", sentence) == "Bulgaria, Hungary, Romania, and Slovakia"


@pytest.mark.slow
def test_who_skips_what_the_question_already_names(finder):
    # "NATO" and "U.S." are in the sentence too, and NATO is even glued to the name by a comma.
    assert phrase(finder, "who is the US ambassador to NATO?", AMBASSADOR) == "Julianne Smith"
    assert phrase(finder, "who leads NATO?", "NATO Secretary-General Jens Stoltenberg spoke in Brussels.") == "Jens Stoltenberg"


@pytest.mark.slow
def test_when_gives_the_date(finder):
    sentence = "Russia's military buildup on Ukraine's border began in October, officials said."
    assert phrase(finder, "when did the buildup begin?", sentence) == "October"
    assert phrase(finder, "what year was the treaty signed?", "The treaty was signed in 1949 in Washington.") == "1949"


@pytest.mark.slow
def test_how_many_gives_the_number_of_the_thing_counted(finder):
    assert phrase(finder, "how many warships at sea?", SHIPS) == "140"
    assert phrase(finder, "how many aircraft are on alert?", SHIPS) == "130"
    # a range spaCy cuts in two is kept whole, and "four" counts battle groups, not troops
    assert phrase(finder, "how many troops are in the battle groups?", SEED_LIST) == "1,000-1,500"
    assert phrase(finder, "how many new battle groups?", SEED_LIST) == "Four"
    assert phrase(finder, "how many tanks are there?", SHIPS) is None


@pytest.mark.slow
def test_nothing_of_the_asked_kind_means_no_phrase(finder):
    assert finder.find("who said it?", "The forces will remain in place as long as necessary.") is None
    assert finder.find("why is NATO doing this?", SEED_LIST) is None
    assert finder.find("where in Brussels did they meet?", "They met in Brussels.") is None  # the question's own
    assert finder.find("where?", "") is None


@pytest.mark.slow
def test_a_list_loses_only_the_places_the_question_names(finder):
    sentence = "Battle groups are in Hungary, Slovakia and Romania."
    assert phrase(finder, "where are battle groups besides Hungary?", sentence) == "Slovakia and Romania"


@pytest.mark.slow
def test_coverage_is_low_for_a_sentence_about_something_else(finder):
    other = "President Joe Biden will attend Thursday's emergency summit in Brussels, said Stoltenberg."
    found = finder.find("who is the US ambassador to NATO?", other)
    assert found is not None and found.coverage < 0.66
    # the question's words are in the sentence, but in another clause than the place it names
    long = (
        "NATO is thinking more about a medium and longer-term force presence in NATO territory on that "
        "eastern flank, Smith stated, arguing that such a move would send a pretty clear message to Moscow."
    )
    found = finder.find("where are existing NATO forces?", long)
    assert found.values == ("Moscow",) and found.coverage == 0.0


@pytest.mark.slow
def test_one_finder_serves_many_threads():
    fresh = SpacyPhraseFinder()  # loads on first use, from whichever thread comes first
    questions = ["where are the new battlegroups?", "how many warships at sea?"] * 4
    sentences = [SEED_LIST, SHIPS] * 4
    with ThreadPoolExecutor(max_workers=4) as pool:
        found = list(pool.map(lambda qs: phrase(fresh, *qs), zip(questions, sentences)))
    assert found == ["Hungary, Slovakia, Romania, Latvia, Estonia, Lithuania and Bulgaria", "140"] * 4


@pytest.mark.slow
def test_loading_spacy_does_not_import_torch():
    import subprocess
    import sys

    code = ("import sys; from retrieval.spans import SpacyPhraseFinder; f = SpacyPhraseFinder(); f.warm_up(); "
            "print(f.find('where are the troops?', 'Troops are in Hungary and Slovakia.') is not None, "
            "'torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                            cwd=__import__("tests.conftest", fromlist=["ROOT"]).ROOT)
    assert result.stdout.split() == ["True", "False"], result.stderr


@pytest.mark.slow
def test_spacy_loads_without_its_cli_and_the_real_cli_still_imports_after():
    import subprocess
    import sys

    code = ("import sys; from retrieval.spans import SpacyPhraseFinder; f = SpacyPhraseFinder(); f.warm_up(); "
            "print(f.find('where are the troops?', 'Troops are in Hungary and Slovakia.') is not None, "
            "'spacy.cli._util' in sys.modules, sys.modules.get('spacy.cli') is not None); "
            "import spacy.cli; print(hasattr(spacy.cli, 'download'))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                            cwd=__import__("tests.conftest", fromlist=["ROOT"]).ROOT)
    assert result.stdout.split() == ["True", "False", "False", "True"], result.stderr


@pytest.mark.slow
def test_prefetch_loads_in_the_background_only_for_questions_that_want_a_phrase():
    import subprocess
    import sys

    code = ("import threading; from retrieval.spans import SpacyPhraseFinder; f = SpacyPhraseFinder(); "
            "f.prefetch('why is it so?'); print(f._nlp is None and not f._prefetching); "
            "f.prefetch('where are the troops?'); "
            "print(any(t.name == 'citebot-spacy' for t in threading.enumerate()) or f._nlp is not None); "
            "print(f.find('where are the troops?', 'Troops are in Hungary and Slovakia.').values)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                            cwd=__import__("tests.conftest", fromlist=["ROOT"]).ROOT)
    assert result.stdout.splitlines() == ["True", "True", "('Hungary', 'Slovakia')"], result.stderr
