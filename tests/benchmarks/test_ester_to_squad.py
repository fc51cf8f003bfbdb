"""benchmarks/ester_to_squad.py on a made-up folder of ESTER's shape (ESTER itself is not in the repository)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_ester_records_become_squad_articles_with_placed_answers(tmp_path):
    news = "The union called a strike on Monday after talks failed. The port closed for three days."
    other = "Ferries were cancelled because of the storm."
    start = news.index("after talks failed")
    (tmp_path / "final_dev_ans_gen.json").write_text(json.dumps([
        {"context": news, "question": "Why was the strike called?", "answer_texts": ["after talks failed"],
         "answer_indices": [f"({start},{start + 18})"]},
        {"context": news, "question": "A misplaced span?", "answer_texts": ["talks"], "answer_indices": ["(0,5)"]},
    ]))
    (tmp_path / "final_train_ans_gen_500original.json").write_text(json.dumps([
        {"context": other, "question": "Why were ferries cancelled?", "answer_texts": ["because of the storm"],
         "answer_indices": [f"({other.index('because')},{other.index('because') + 20})"]}]))
    (tmp_path / "final_test_ans_gen.json").write_text(json.dumps([
        {"context": "A distractor passage about cranes.", "question": "?", "answer_texts": [], "answer_indices": []}]))
    out = tmp_path / "squad.json"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "ester_to_squad.py"), str(tmp_path), str(out)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"passages": 3, "questions": 2}
    data = json.loads(out.read_text())["data"]
    [qa] = data[0]["paragraphs"][0]["qas"]  # the misplaced span is left out
    answer = qa["answers"][0]
    assert news[answer["answer_start"]:answer["answer_start"] + len(answer["text"])] == "after talks failed"
    assert data[2]["paragraphs"][0]["qas"] == []  # a distractor
