#!/usr/bin/env python3
"""Single-threaded HF `tokenizers` encode throughput, the reference for tokenizer_throughput.

Usage (repository root):
    /opt/lethe-venv/bin/python tools/bench/hf_tokenizer_bench.py [tokenizer-dir] [text-file] [MB]
Same input and document split as tests/tokenizer/tokenizer_throughput.cpp: the fixture corpus
repeated to ~5 MB, cut into ~1 kB documents at newlines, encoded one call per document
(no encode_batch, TOKENIZERS_PARALLELISM=false), no special tokens added, best of 3.
"""
import os
import sys
import time

os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ["RAYON_NUM_THREADS"] = "1"

from tokenizers import Tokenizer  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIX = os.path.join(ROOT, "tests", "tokenizer", "fixtures")


def main():
    tok_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(FIX, "bpe")
    path = sys.argv[2] if len(sys.argv) > 2 else os.path.join(FIX, "corpus.txt")
    mb = float(sys.argv[3]) if len(sys.argv) > 3 else 5.0
    tok = Tokenizer.from_file(os.path.join(tok_dir, "tokenizer.json"))
    with open(path, "rb") as f:
        unit = f.read()
    data = b""
    while len(data) < mb * 1e6:
        data += unit
    # Split on bytes exactly as the C++ tool does, then decode each document.
    docs, pos = [], 0
    while pos < len(data):
        end = min(len(data), pos + 1000)
        while end < len(data) and data[end] != 0x0A:
            end += 1
        docs.append(data[pos:end].decode("utf-8"))
        pos = end
    best, tokens = 1e30, 0
    for _ in range(3):
        t0 = time.perf_counter()
        tokens = 0
        for d in docs:
            tokens += len(tok.encode(d, add_special_tokens=False).ids)
        best = min(best, time.perf_counter() - t0)
    print(f"HF tokenizers {__import__('tokenizers').__version__}: {len(data) / 1e6:.2f} MB in "
          f"{len(docs)} docs, {tokens} tokens, best of 3: {best:.3f} s = "
          f"{len(data) / 1e6 / best:.2f} MB/s, {tokens / 1e6 / best:.2f} M tokens/s")


if __name__ == "__main__":
    main()
