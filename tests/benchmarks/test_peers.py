"""benchmarks/peers.py: its pure parts only (no LangChain, no model, no subprocess)."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import peers  # noqa: E402
from peers import (  # noqa: E402
    ask_figures,
    breakdown_figures,
    corpus_files,
    ingest_figures,
    make_corpus,
    news_articles,
    parse_args,
    pick_question,
    pinned_versions,
    ratio,
    top_imports,
)


def _paragraph(words: int, tag: str) -> dict:
    return {"context": " ".join([tag] * words), "qas": [{"question": f"what is {tag}?", "id": tag, "answers": []}]}


SQUAD = {"version": "1.1", "data": [
    {"title": "First_Title", "paragraphs": [_paragraph(400, "a"), _paragraph(300, "b"), _paragraph(500, "c"),
                                            _paragraph(100, "d")]},
    {"title": "Second", "paragraphs": [_paragraph(250, "e")]},
]}


# -- arguments ---------------------------------------------------------------------------------
def test_defaults_run_every_part_five_times_over_the_seeds():
    args = parse_args([])
    assert (args.runs, args.warmup, args.json, args.corpus, args.make_corpus) == (5, 1, False, None, None)
    assert args.only == ("ask", "ingest", "breakdown")


def test_only_keeps_the_parts_in_their_running_order():
    assert parse_args(["--only", "breakdown", "--only", "ask"]).only == ("ask", "breakdown")


def test_flags_are_read():
    args = parse_args(["--runs", "3", "--json", "--make-corpus", "20", "--question", "why?", "--rendered"])
    assert (args.runs, args.json, args.make_corpus, args.question, args.rendered) == (3, True, 20, "why?", True)


@pytest.mark.parametrize("argv", [["--runs", "0"], ["--make-corpus", "0"], ["--warmup", "-1"],
                                  ["--corpus", "x", "--make-corpus", "3"], ["--only", "everything"]])
def test_bad_arguments_are_refused(argv, capsys):
    with pytest.raises(SystemExit) as stopped:
        parse_args(argv)
    assert stopped.value.code == 2
    assert "error" in capsys.readouterr().err


# -- the corpus --------------------------------------------------------------------------------
def test_articles_are_whole_paragraphs_of_about_the_asked_length():
    articles = news_articles(SQUAD, words=600)
    # a+b reach 700 words; c alone is 500, and the short tail d (100 < 300) joins it.
    first = [a for a in articles if a.title.startswith("First Title")]
    assert [a.words for a in first] == [700, 600]
    assert [a.title for a in first] == ["First Title, part 1 of 2", "First Title, part 2 of 2"]
    assert first[1].questions == ("what is c?", "what is d?")


def test_titles_take_turns_so_a_small_corpus_spans_subjects():
    titles = [a.title for a in news_articles(SQUAD, words=600)]
    assert titles == ["First Title, part 1 of 2", "Second, part 1 of 1", "First Title, part 2 of 2"]


def test_the_corpus_is_txt_files_both_sides_read_alike(tmp_path):
    squad = tmp_path / "squad.json"
    squad.write_text(json.dumps(SQUAD), encoding="utf-8")
    files, question = make_corpus(2, tmp_path / "corpus", squad)
    assert [f.name for f in files] == ["000_first_title_part_1_of_2.txt", "001_second_part_1_of_1.txt"]
    assert question == "what is a?"
    text = files[0].read_text(encoding="utf-8")
    assert text.startswith("First Title, part 1 of 2\n\n" + "a " * 399 + "a\n\nb ")
    assert corpus_files(tmp_path / "corpus") == files


def test_the_question_asks_for_a_phrase_when_one_does():
    assert pick_question(("what is it?", "where did it happen?", "who?")) == "where did it happen?"
    assert pick_question(("what is it?", "why?")) == "what is it?"


def test_more_articles_than_the_file_makes_is_refused(tmp_path):
    squad = tmp_path / "squad.json"
    squad.write_text(json.dumps(SQUAD), encoding="utf-8")
    with pytest.raises(SystemExit, match="1 to 3 articles"):
        make_corpus(4, tmp_path / "corpus", squad)


def test_a_corpus_with_files_textloader_reads_differently_is_refused(tmp_path):
    (tmp_path / "a.txt").write_text("text", encoding="utf-8")
    (tmp_path / "b.html").write_text("<p>text</p>", encoding="utf-8")
    with pytest.raises(SystemExit, match="b.html"):
        corpus_files(tmp_path)


def test_hidden_files_are_skipped_as_citebot_skips_them(tmp_path):
    (tmp_path / "a.txt").write_text("text", encoding="utf-8")
    (tmp_path / ".hidden.txt").write_text("text", encoding="utf-8")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "b.txt").write_text("text", encoding="utf-8")
    assert corpus_files(tmp_path) == [tmp_path / "a.txt"]


def test_the_seeds_are_a_valid_corpus():
    assert len(corpus_files(peers.SEEDS)) >= 2


# -- arithmetic --------------------------------------------------------------------------------
def test_ratio_rounds_and_survives_zero():
    assert ratio(6.0, 1.5) == 4.0
    assert ratio(1.0, 3.0) == 0.33
    assert ratio(1.0, 0.0) is None


def test_cold_ask_compares_medians():
    figures = ask_figures([1.0, 1.2, 9.0], [5.0, 6.0, 4.0])
    assert figures["citebot_median_s"] == 1.2 and figures["langchain_median_s"] == 5.0
    assert figures["langchain_over_citebot"] == 4.17
    assert figures["target_met"] is True


@pytest.mark.parametrize("citebot, langchain", [([1.6], [10.0]), ([1.0], [3.9])])
def test_the_ask_target_needs_both_the_time_and_the_ratio(citebot, langchain):
    assert ask_figures(citebot, langchain)["target_met"] is False


def test_ingest_throughput_is_per_run_then_median():
    figures = ingest_figures([(10.0, 100), (20.0, 100), (5.0, 100)], [(10.0, 50), (10.0, 50), (30.0, 50)],
                             characters=40_000)
    assert figures["citebot"] == {"chunks": 100, "median_s": 10.0, "chunks_per_s": 10.0,
                                  "characters_per_s": 4000.0, "characters_per_chunk": 400.0}
    assert figures["langchain"]["chunks_per_s"] == 5.0
    assert figures["chunks_per_s_ratio"] == 2.0 and figures["target_met"] is True
    assert figures["characters_per_s_ratio"] == 1.0


def test_more_chunks_alone_does_not_make_the_ingest_faster_per_character():
    figures = ingest_figures([(10.0, 140)], [(10.0, 100)], characters=1000)
    assert figures["chunks_per_s_ratio"] == 1.4 and figures["target_met"] is False
    assert figures["characters_per_s_ratio"] == 1.0


def _breakdown_run(scale: float) -> dict:
    return {"ms": {name: scale for name in peers.BREAKDOWN_PARTS}, "total_ms": 11 * scale,
            "question_embedder": "OnnxEmbedder", "torch_imported_in": None, "modules": ["onnxruntime"],
            "spacy_needed": True, "spacy_loaded": True,
            "top_imports_ms": {}}


def test_breakdown_takes_each_parts_median():
    figures = breakdown_figures([_breakdown_run(1.0), _breakdown_run(5.0), _breakdown_run(2.0)])
    assert list(figures["ms"]) == list(peers.BREAKDOWN_PARTS)
    assert set(figures["ms"].values()) == {2.0}
    assert figures["total_ms"] == 22.0


def test_the_report_and_its_json_line_have_every_key(capsys):
    figures = {
        "runs": 3, "corpus": {"path": "/c", "documents": 2, "characters": 4000}, "question": "q?",
        "citebot_ask": "--json", "peers": {"langchain-core": "1.0"},
        "ask": ask_figures([1.0], [5.0]),
        "ingest": ingest_figures([(2.0, 10)], [(2.0, 5)], characters=4000),
        "breakdown": breakdown_figures([_breakdown_run(1.0)]),
    }
    peers.print_report(figures)
    printed = capsys.readouterr().out
    assert "LangChain/citebot 5.0×" in printed and "2.0×" in printed and "question_model" in printed
    line = json.loads(json.dumps(figures))
    assert set(line) == {"runs", "corpus", "question", "citebot_ask", "peers", "ask", "ingest", "breakdown"}
    assert {"citebot_median_s", "langchain_median_s", "langchain_over_citebot", "target_met"} <= set(line["ask"])
    assert {"chunks_per_s_ratio", "characters_per_s_ratio", "target_met"} <= set(line["ingest"])
    assert {"ms", "total_ms", "question_embedder", "torch_imported_in", "modules"} <= set(line["breakdown"])


# -- reading what tools print ------------------------------------------------------------------
def test_top_imports_keeps_top_level_packages_by_cumulative_time():
    printed = "\n".join([
        "import time: self [us] | cumulative | imported package",
        "import time:        50 |         50 |     torch._C",
        "import time:      1000 |    2500000 |   torch",
        "import time:      5000 |    3000000 | spacy",
        "import time:       200 |      12000 | faiss",
        "import time:       100 |       2000 | json",
    ])
    assert top_imports(printed, n=2) == {"spacy": 3000.0, "faiss": 12.0}


def test_pinned_versions_reads_pip_freeze():
    freeze = "langchain-core==1.8.3\nlangchain_community==0.4.2\ntorch==2.13.0+cpu\n-e git+x#egg=y\nother==1\n"
    assert pinned_versions(freeze) == {"langchain-core": "1.8.3", "langchain-community": "0.4.2",
                                       "torch": "2.13.0+cpu"}
