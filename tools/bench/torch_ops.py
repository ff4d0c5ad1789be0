#!/usr/bin/env python3
"""The ops of `lethe bench ops`, at the same sizes, timed with PyTorch on the CPU or a GPU.

Run:  /opt/lethe-venv/bin/python tools/bench/torch_ops.py --threads 2 [--dtype bf16] [--repeat 10]
      [--device cuda]   (each call timed between torch.cuda.synchronize() calls; SDPA picks its
                         flash backend where it can, as on an H100)
Prints the same table on stderr and the same JSON Lines on stdout as `lethe bench ops`
("impl": "torch"), so the two can be joined on (op, pass, shape, dtype). FLOP and byte formulas
are the ones in docs/perf.md and tools/cli/cmd_bench.cpp.

--dtype bf16 runs every op inside torch.autocast("cpu", dtype=torch.bfloat16) with f32 inputs:
matmul/linear (and whatever else autocast lists as lower-precision ops) compute with bf16
operands and f32 accumulation and return bf16; ops autocast keeps in f32 stay f32. This is the
closest PyTorch counterpart of lethe's set_matmul_precision(bf16) (bf16 GEMM operands, f32
accumulation, f32 tensors everywhere else). Needs only torch.

Compare:  python3 tools/bench/torch_ops.py --compare lethe.jsonl torch.jsonl
prints the Markdown table of docs/perf.md (ms per call, lethe/torch ratio). When a file holds
several rounds of the same op (runs appended), the round with the lowest median is used: on a
shared machine that is the round least disturbed by other work.
"""
import argparse
import json
import math
import statistics
import sys
import time

torch = F = None  # imported in main(): --compare needs no torch
DEVICE = "cpu"


def dims(*d, sep="x"):
    return sep.join(str(v) for v in d)


def rand(*shape, scale=1.0, grad=False, seed=1):
    g = torch.Generator().manual_seed(seed)
    t = ((torch.rand(*shape, generator=g) - 0.5) * 2 * scale).to(DEVICE)
    return t.requires_grad_(grad)


def make_cases(small):
    """Yields (op, pass, shape, flops, bytes, make) with make() -> the call to time."""
    cases = []
    mm = [(64, 32, 48)] if small else [(2048, 768, 3072), (2048, 3072, 768), (2048, 768, 768)]
    for m, k, n in mm:
        def make(m=m, k=k, n=n):
            a, b = rand(m, k), rand(k, n, seed=2)
            return lambda: torch.matmul(a, b)
        cases.append(("matmul", "fwd", f"{dims(m, k)} @ {dims(k, n)}", 2.0 * m * n * k, 0, make))

    lm, lk, ln = (64, 32, 48) if small else (2048, 768, 3072)
    lshape = f"{dims(lm, lk)} -> {ln}"

    def make_linear_fwd():
        x, w, b = rand(lm, lk), rand(ln, lk, scale=0.05, seed=2), rand(ln, seed=3)
        return lambda: F.linear(x, w, b)

    def make_linear_bwd():
        x, w = rand(lm, lk, grad=True), rand(ln, lk, scale=0.05, grad=True, seed=2)
        b, dy = rand(ln, grad=True, seed=3), rand(lm, ln, seed=4)

        def call():
            x.grad = w.grad = b.grad = None
            y = F.linear(x, w, b)
            y.backward(dy.to(y.dtype))
        return call
    cases.append(("linear", "fwd", lshape, 2.0 * lm * ln * lk, 0, make_linear_fwd))
    cases.append(("linear", "fwd+bwd", lshape, 6.0 * lm * ln * lk, 0, make_linear_bwd))

    B, H, T, D = (1, 2, 16, 8) if small else (4, 12, 256, 64)
    attn_flops = 3.5 * 2.0 * B * H * T * T * D
    for masked in (False, True):
        def make_attn(masked=masked):
            q, k, v = (rand(B, H, T, D, grad=True, seed=s) for s in (1, 2, 3))
            dout = rand(B, H, T, D, seed=4)
            mask = None
            if masked:  # odd batch rows: the last quarter of the keys is padding (as lethe)
                keys = torch.ones(B, T, dtype=torch.bool)
                keys[1::2, T - T // 4:] = False
                causal = torch.ones(T, T, dtype=torch.bool).tril()
                mask = (causal[None, None] & keys[:, None, None, :]).to(DEVICE)
            scale = 1.0 / math.sqrt(D)

            def call():
                q.grad = k.grad = v.grad = None
                if mask is None:
                    out = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale)
                else:
                    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
                out.backward(dout.to(out.dtype))
            return call
        cases.append(("attention_masked" if masked else "attention", "fwd+bwd", dims(B, H, T, D),
                      attn_flops, 0, make_attn))

    R, C = (16, 32) if small else (2048, 768)

    def make_ln():
        x, w, b = rand(R, C, grad=True), rand(C, grad=True, seed=2), rand(C, grad=True, seed=3)
        dy = rand(R, C, seed=4)

        def call():
            x.grad = w.grad = b.grad = None
            y = F.layer_norm(x, (C,), w, b, 1e-5)
            y.backward(dy.to(y.dtype))
        return call
    cases.append(("layer_norm", "fwd+bwd", dims(R, C), 20.0 * R * C, 5.0 * R * C * 4, make_ln))

    N, V = (8, 100) if small else (1024, 50272)

    def make_ce():
        logits = rand(N, V, scale=4, grad=True)
        targets = torch.tensor([(i * 7919) % V for i in range(N)], dtype=torch.long).to(DEVICE)

        def call():
            logits.grad = None
            F.cross_entropy(logits, targets).backward()
        return call
    cases.append(("cross_entropy", "fwd+bwd", dims(N, V), 5.0 * N * V, 3.0 * N * V * 4, make_ce))
    return cases


def compare(lethe_path, torch_path):
    """Markdown table: one row per (op, pass, shape, dtype), best median of each side."""
    def best(path):
        rows = {}
        with open(path) as f:
            for line in f:
                j = json.loads(line)
                if j.get("status") != "ok":
                    continue
                device = j.get("device", "cpu")
                device = "cuda:0" if device == "cuda" else device  # lethe names the index
                key = (j["op"], j["pass"], j["shape"], j["dtype"], device)
                if key not in rows or j["ms"] < rows[key]["ms"]:
                    rows[key] = j
        return rows
    ours, ref = best(lethe_path), best(torch_path)
    print("| op | pass | shape | dtype | device | lethe ms | torch ms | lethe GFLOP/s "
          "| torch GFLOP/s | lethe / torch time |")
    print("|---|---|---|---|---|---:|---:|---:|---:|---:|")
    for key, a in ours.items():
        b = ref.get(key)
        if b is None:
            continue
        print(f"| {key[0]} | {key[1]} | {key[2]} | {key[3]} | {key[4]} | {a['ms']:.2f} "
              f"| {b['ms']:.2f} "
              f"| {a['gflops']:.1f} | {b['gflops']:.1f} | {a['ms'] / b['ms']:.2f} |")


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "--compare":
        compare(sys.argv[2], sys.argv[3])
        return
    global torch, F, DEVICE
    import torch
    import torch.nn.functional as F
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dtype", choices=["f32", "bf16"], default="f32")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--repeat", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--sizes", choices=["full", "small"], default="full")
    p.add_argument("--op", default="", help="comma-separated op names")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--json", action="store_true", help="JSON Lines only: no table on stderr")
    a = p.parse_args()
    DEVICE = a.device
    cuda = a.device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    threads = torch.get_num_threads()
    only = [s for s in a.op.split(",") if s]
    cases = [c for c in make_cases(a.sizes == "small") if not only or c[0] in only]
    if not a.json:
        print(f"torch {torch.__version__} ops: {a.device}, {a.dtype}, {threads} thread(s), "
              f"median of {a.repeat} (warm-up {a.warmup})", file=sys.stderr)
        print(f"{'op':17} {'pass':8} {'shape':24} {'ms':>10} {'GFLOP/s':>10} {'GB/s':>9}  status",
              file=sys.stderr)
    for op, pss, shape, flops, nbytes, make in cases:
        with torch.autocast("cuda" if cuda else "cpu", dtype=torch.bfloat16,
                            enabled=a.dtype == "bf16"):
            call = make()
            for _ in range(a.warmup):
                call()
            ms = []
            for _ in range(a.repeat):
                sync()
                t0 = time.perf_counter()
                call()
                sync()
                ms.append((time.perf_counter() - t0) * 1e3)
        med = statistics.median(ms)
        line = {"bench": "ops", "impl": "torch", "op": op, "pass": pss, "shape": shape,
                "dtype": a.dtype, "device": a.device, "threads": threads, "repeat": a.repeat,
                "status": "ok", "ms": med, "ms_min": min(ms), "flops": flops,
                "gflops": flops / (med * 1e6)}
        gb = "-"
        if nbytes:
            line["gbps"] = nbytes / (med * 1e6)
            gb = f"{line['gbps']:.1f}"
        if not a.json:
            print(f"{op:17} {pss:8} {shape:24} {med:10.3f} {line['gflops']:10.1f} {gb:>9}  ok",
                  file=sys.stderr)
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
