#!/usr/bin/env python3
"""CPU forward throughput of an opt-125m-shaped OPTForCausalLM with random weights (transformers),
the reference for build/tests/opt/opt_forward_bench. Same shape, batch, ids and best-of-N timing.

    /opt/lethe-venv/bin/python tools/bench/hf_opt_forward.py [batch] [seq] [iters] [threads]
"""
import json
import sys
import time

import torch
from transformers import OPTConfig, OPTForCausalLM


def main():
    batch = int(sys.argv[1]) if len(sys.argv) > 1 else 4
    seq = int(sys.argv[2]) if len(sys.argv) > 2 else 128
    iters = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    threads = int(sys.argv[4]) if len(sys.argv) > 4 else 2
    torch.set_num_threads(threads)
    torch.manual_seed(1)
    model = OPTForCausalLM(OPTConfig()).eval()  # OPTConfig() defaults are opt-125m's shape
    ids = torch.tensor([[3 + (i * 7919) % 50000 for i in range(b * seq, (b + 1) * seq)]
                        for b in range(batch)])
    mask = torch.ones_like(ids)
    with torch.no_grad():
        model(input_ids=ids, attention_mask=mask)  # warm-up
        best = float("inf")
        for _ in range(iters):
            t0 = time.perf_counter()
            model(input_ids=ids, attention_mask=mask)
            best = min(best, time.perf_counter() - t0)
    print(json.dumps({"impl": "transformers", "torch": torch.__version__, "batch": batch,
                      "seq": seq, "threads": threads, "best_s": round(best, 4),
                      "tokens_per_s": round(batch * seq / best, 1)}))


if __name__ == "__main__":
    main()
