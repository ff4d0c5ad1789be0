#!/usr/bin/env python3
"""Single-threaded HF `tokenizers` encode throughput, the reference for tokenizer_throughput.

Usage (repository root):
    /opt/lethe-venv/bin/python tools/bench/hf_tokenizer_bench.py [tokenizer-dir] [text-file] [MB]
Same input and document split as tests/tokenizer/tokenizer_throughput.cpp: the fixture corpus
repeated to ~5 MB, cut into ~1 kB documents at newlines, encoded one call per document
(no encode_batch, TOKENIZERS_PARALLELISM=false), no special tokens added, best of 5.
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
    # Wall time, and this thread's CPU time (which a busy shared machine distorts less).
    best, best_cpu, tokens = 1e30, 1e30, 0
    for _ in range(5):
        c0, t0 = time.thread_time(), time.perf_counter()
        tokens = 0
        for d in docs:
            tokens += len(tok.encode(d, add_special_tokens=False).ids)
        best = min(best, time.perf_counter() - t0)
        best_cpu = min(best_cpu, time.thread_time() - c0)
    mb = len(data) / 1e6
    print(f"HF tokenizers {__import__('tokenizers').__version__}: {mb:.2f} MB in {len(docs)} docs, "
          f"{tokens} tokens, best of 5: wall {best:.3f} s = {mb / best:.2f} MB/s, cpu "
          f"{best_cpu:.3f} s = {mb / best_cpu:.2f} MB/s ({tokens / 1e6 / best_cpu:.2f} M tokens/s)")


if __name__ == "__main__":
    main()
