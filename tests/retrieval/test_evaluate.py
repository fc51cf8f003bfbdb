import json
import os
import subprocess
import sys

import pytest

from retrieval.evaluate import f1, normalize, questions_for, write_articles
from tests.conftest import ROOT

SQUAD = {"data": [
    {"title": "Baltic_Sea", "paragraphs": [
        {"context": "The Baltic Sea is an arm of the Atlantic Ocean. Its ports freeze in winter.",
         "qas": [{"id": "q1", "question": "What is the Baltic Sea an arm of?",
                  "answers": [{"text": "the Atlantic Ocean", "answer_start": 28}]}]},
        {"context": " Riga is the largest city on the Baltic coast.",
         "qas": [{"id": "q2", "question": "Which is the largest city on the Baltic coast?",
                  "answers": [{"text": "Riga", "answer_start": 1}]}]},
    ]},
    {"title": "Sourdough", "paragraphs": [
        {"context": "Sourdough bread is leavened by wild yeast and lactic acid bacteria.",
         "qas": [{"id": "q3", "question": "What leavens sourdough bread?",
                  "answers": [{"text": "wild yeast and lactic acid bacteria", "answer_start": 31}]}]},
    ]},
]}


def test_gold_offsets_land_on_the_answer_in_the_stored_text(tmp_path):
    path = write_articles(SQUAD["data"], tmp_path)
    records = [json.loads(line) for line in path.read_text().splitlines()]
    texts = {r["id"]: r["text"] for r in records}
    questions, unplaced = questions_for(SQUAD["data"], texts)
    assert unplaced == 0 and len(questions) == 3
    for q in questions:
        (start, end), = q.gold
        assert texts[q.key][start:end] == q.answers[0]


def test_normalize_and_f1():
    assert normalize("The Atlantic  Ocean!") == "atlantic ocean"
    assert f1("the Atlantic", "Atlantic Ocean") == pytest.approx(2 / 3)
    assert f1("Pacific", "Atlantic Ocean") == 0.0


@pytest.mark.slow
def test_eval_squad_cli_ends_with_one_json_object(tmp_path):
    squad = tmp_path / "tiny.json"
    squad.write_text(json.dumps(SQUAD))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITEBOT_")}
    result = subprocess.run([sys.executable, "-m", "bot.cli", "eval", "squad", str(squad), "--json"], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    for key in ("questions", "recall@1", "recall@5", "recall@10", "mrr@10", "answer_in_citations", "p50_ms",
                "p95_ms"):
        assert key in figures
    assert figures["questions"] == 3
    assert figures["recall@10"] == 1.0  # three articles' worth of text: every answer is retrieved
    assert 0 < figures["recall@1"] <= 1 and figures["p95_ms"] >= figures["p50_ms"] > 0


def test_limit_samples_across_articles_with_a_fixed_seed():
    from retrieval.evaluate import sample

    questions = [(article, n) for article in range(20) for n in range(50)]  # in file order, as questions_for gives
    chosen = sample(questions, 100)
    assert chosen == sample(questions, 100) and len(chosen) == 100
    assert chosen == sorted(chosen)  # file order kept
    assert len({article for article, _ in chosen}) == 20  # questions[:100] would be 2 articles
    assert sample(questions, None) is questions and sample(questions, 5000) is questions


def test_progress_in_a_pipe_is_a_line_at_each_tenth():
    import io

    from rich.console import Console

    from retrieval.evaluate import _bar

    err = Console(file=io.StringIO(), width=200)
    assert not err.is_terminal
    with _bar(err, "asking", 50, quiet=True) as update:
        for done in range(1, 51):
            update(done)
    lines = err.file.getvalue().splitlines()
    assert len(lines) == 10 and lines[0].startswith("asking 5/50 (10%), about ")
    assert lines[-1].startswith("asking 50/50 (100%), done in ")


@pytest.mark.slow
def test_eval_abstention_reports_the_deciding_signal_first(tmp_path):
    squad = tmp_path / "tiny.json"
    squad.write_text(json.dumps(SQUAD))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITEBOT_")}
    result = subprocess.run([sys.executable, "-m", "bot.cli", "eval", "squad", str(squad), "--abstention", "--json"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    # Baltic Sea indexed (its two questions answerable), Sourdough held out (one unanswerable)
    assert (figures["answerable"], figures["unanswerable"]) == (2, 1)
    assert figures["signal"] == "support score"  # config/default.toml sets reranker.support_weights
    from retrieval.settings import load_settings

    assert figures["threshold"] == load_settings().answer.min_support
    assert list(figures["by_false_abstention"]) == ["support", "mixed", "sentence"]
    assert figures["abstained_unanswerable"] in (0.0, 1.0) and 0 <= figures["false_abstention"] <= 1
