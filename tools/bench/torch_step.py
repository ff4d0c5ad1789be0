#!/usr/bin/env python3
"""The step of `lethe bench step` in PyTorch + transformers: one NGDiff unlearning step (forget
and retain micro-batches of 4 x 128 tokens) or one SFT step (--method sft: one batch of 4 x 128,
its NLL) on an opt-125m-shaped OPTForCausalLM (or --model smollm-135m: a SmolLM-135M-shaped
LlamaForCausalLM) with random weights, AdamW.

Run:  /opt/lethe-venv/bin/python tools/bench/torch_step.py --threads 2 [--method sft] [--dtype bf16]
      [--device cuda --model 1.3b --batch 8 --seq 512]   (the GPU shapes of issue 22)
Prints a table on stderr and one JSON line on stdout with the fields of `lethe bench step`
("impl": "torch"). Each step is what docs/methods.md says NGDiff computes, written as a PyTorch
user would at PyTorch's best CPU settings:
  g_F = torch.autograd.grad(nll(forget))        (a second gradient copy, no .grad)
  nll(retain).backward()                        (g_R in .grad)
  .grad <- g_R/(|g_R|+eps) - g_F/(|g_F|+eps)    (global norms, torch._foreach_* ops)
  torch.optim.AdamW(fused=True).step()          (HF Trainer's groups: no decay on biases, LN)
The model runs in training mode (dropout 0.1 as opt-125m), labels are shifted inside the model
(labels = input ids, first token -100), the token ids are the ones lethe draws.
--dtype bf16: torch.autocast (cpu or cuda) with bfloat16 around the forwards, f32 master weights
(as tools/bench/torch_ops.py). On CUDA each step is timed between torch.cuda.synchronize() calls;
attention is SDPA (flash backend on an H100), AdamW fused.

Compare:  python3 tools/bench/torch_step.py --compare lethe.jsonl torch.jsonl
prints the Markdown table of docs/perf.md; when a file holds several rounds, each (impl, dtype)
takes its round with the lowest median step time (the one least disturbed on a shared machine).
"""
import argparse
import json
import resource
import statistics
import sys
import time

# facebook/opt-1.3b's shape (--model 1.3b); 125m is OPTConfig's default.
SHAPES = {"125m": {}, "1.3b": {"hidden_size": 2048, "word_embed_proj_dim": 2048, "ffn_dim": 8192,
                              "num_attention_heads": 32}}
# HuggingFaceTB/SmolLM-135M's shape (--model smollm-135m): a Llama, as cmd_bench.cpp's.
SMOLLM = dict(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_attention_heads=9,
              num_key_value_heads=3, head_dim=64, max_position_embeddings=2048, rms_norm_eps=1e-5,
              tie_word_embeddings=True, bos_token_id=0, eos_token_id=0)


def vocab_of(model):
    return SMOLLM["vocab_size"] if model == "smollm-135m" else 50272


def sample_ids(which, index, seq_len, vocab):
    """Sample `index` of set `which` (0 forget, 1 retain): the LCG of cmd_bench.cpp."""
    x = (which << 32) + index + 1
    ids = []
    for _ in range(seq_len):
        x = (x * 6364136223846793005 + 1442695040888963407) & 0xFFFFFFFFFFFFFFFF
        ids.append(4 + (x >> 33) % (vocab - 4))
    return ids


def batches(torch, which, count, batch, seq_len, device, vocab):
    out = []
    for b in range(count):
        ids = torch.tensor([sample_ids(which, b * batch + j, seq_len, vocab) for j in range(batch)])
        labels = ids.clone()
        labels[:, 0] = -100
        out.append((ids.to(device), torch.ones_like(ids).to(device), labels.to(device)))
    return out


def run(args):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, OPTConfig, OPTForCausalLM

    torch.set_num_threads(args.threads)
    torch.manual_seed(1)
    llama = args.model == "smollm-135m"
    if llama:
        config = LlamaConfig(num_hidden_layers=args.layers, attn_implementation=args.attn, **SMOLLM)
        model = LlamaForCausalLM(config)
        targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    else:
        config = OPTConfig(num_hidden_layers=args.layers, dropout=0.1, attention_dropout=0.0,
                           attn_implementation=args.attn, **SHAPES[args.model])
        model = OPTForCausalLM(config)
        targets = ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"]
    if args.lora > 0:  # peft, as lethe's lora.*: every linear layer, alpha 2r, no dropout
        from peft import LoraConfig, get_peft_model
        model = get_peft_model(model, LoraConfig(
            r=args.lora, lora_alpha=2 * args.lora, lora_dropout=0.0, bias="none",
            target_modules=targets))
    model.to(args.device)
    model.train()
    cuda = args.device.startswith("cuda")
    params = [p for p in model.parameters() if p.requires_grad]
    no_decay = {id(p) for n, p in model.named_parameters()
                if n.endswith(".bias") or "layer_norm" in n or "norm.weight" in n}
    groups = [{"params": [p for p in params if id(p) not in no_decay], "weight_decay": 0.01},
              {"params": [p for p in params if id(p) in no_decay], "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=1e-5, fused=True)
    eps = 1e-8
    kind = "cuda" if cuda else "cpu"
    autocast = (lambda: torch.autocast(kind, dtype=torch.bfloat16)) if args.dtype == "bf16" \
        else (lambda: torch.autocast(kind, enabled=False))

    def nll(batch):
        ids, mask, labels = batch
        with autocast():
            return model(input_ids=ids, attention_mask=mask, labels=labels).loss

    def global_norm(tensors):
        return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(tensors))).item()

    def sft_step(forget, retain):
        optimizer.zero_grad(set_to_none=True)
        nll(forget).backward()
        optimizer.step()

    def step(forget, retain):
        optimizer.zero_grad(set_to_none=True)
        g_forget = torch.autograd.grad(nll(forget), params)
        nll(retain).backward()
        g_retain = [p.grad for p in params]
        n_forget, n_retain = global_norm(g_forget), global_norm(g_retain)
        torch._foreach_mul_(g_retain, 1.0 / (n_retain + eps))
        torch._foreach_add_(g_retain, g_forget, alpha=-1.0 / (n_forget + eps))
        del g_forget
        optimizer.step()

    n = 1 + args.steps
    forget = batches(torch, 0, n, args.batch, args.seq, args.device, vocab_of(args.model))
    retain = batches(torch, 1, n, args.batch, args.seq, args.device, vocab_of(args.model))
    ms = []
    run_step = sft_step if args.method == "sft" else step
    for s in range(n):
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        run_step(forget[s], retain[s])
        if cuda:
            torch.cuda.synchronize()
        ms.append((time.perf_counter() - t0) * 1e3)
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux
    peak_device_mb = torch.cuda.max_memory_allocated() / 2**20 if cuda else 0.0

    timed = ms[1:]
    tokens = (1 if args.method == "sft" else 2) * args.batch * args.seq
    median = statistics.median(timed)
    nparams = sum(p.numel() for p in model.parameters())
    tflop_s = 6.0 * nparams * tokens / (median / 1e3) / 1e12
    if not args.json:
        print(f"torch_step: {args.method}, OPT-{args.model} shape, {args.layers} layers "
              f"({nparams / 1e6:.1f}M parameters), "
              f"{1 if args.method == 'sft' else 2} x {args.batch} x {args.seq} tokens, "
              f"{args.device}, {args.dtype}, {args.threads} thread(s), "
              f"attention {args.attn}; torch {torch.__version__}", file=sys.stderr)
        for i, v in enumerate(ms):
            print(f"  step {i + 1:2d} {'(warm-up)' if i == 0 else ' ' * 9} {v:10.1f} ms",
                  file=sys.stderr)
        print(f"  median {median:.1f} ms, mean {statistics.mean(timed):.1f} ms: "
              f"{tokens / (median / 1e3):.1f} tokens/s, {tflop_s:.3f} model TFLOP/s; "
              f"peak RSS {peak_rss_mb:.0f} MB, peak device memory {peak_device_mb:.0f} MB",
              file=sys.stderr)
    print(json.dumps({
        "bench": "step", "impl": "torch", "method": args.method, "device": args.device,
        "model": args.model, "dtype": args.dtype, "threads": args.threads, "layers": args.layers,
        "batch": args.batch, "seq": args.seq, "attn": args.attn, "lora": args.lora,
        "tokens_per_step": tokens, "steps": args.steps, "step_ms_median": median,
        "step_ms_min": min(timed), "step_ms_mean": statistics.mean(timed),
        "tokens_per_s": tokens / (median / 1e3), "model_tflop_s": tflop_s,
        "peak_rss_mb": peak_rss_mb, "peak_device_mb": peak_device_mb}), flush=True)


def compare(lethe_path, torch_path):
    """The Markdown table of docs/perf.md from JSON Lines of both tools (best round each)."""
    best = {}
    for path in (lethe_path, torch_path):
        with open(path) as f:
            for line in f:
                if not line.strip():
                    continue
                r = json.loads(line)
                if r.get("bench") != "step" or r.get("auto_lr"):
                    continue
                key = (r["impl"], r.get("method", "ngdiff"), r["dtype"], r.get("lora", 0),
                       r.get("device", "cpu"), r.get("model", "125m"))
                if key not in best or r["step_ms_median"] < best[key]["step_ms_median"]:
                    best[key] = r
    print("| step | device | model | dtype | training | lethe ms/step | torch ms/step | lethe tokens/s "
          "| torch tokens/s | lethe / torch tokens/s | lethe peak RSS MB | torch peak RSS MB "
          "| lethe / torch RSS |")
    print("|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for method, dtype, lora, device, model in sorted({k[1:] for k in best}):
        a = best.get(("lethe", method, dtype, lora, device, model))
        b = best.get(("torch", method, dtype, lora, device, model))
        if not a or not b:
            continue
        what = f"LoRA r {lora}" if lora else "full"
        print(f"| {method} | {device} | {model} | {dtype} | {what} "
              f"| {a['step_ms_median']:.0f} | {b['step_ms_median']:.0f} "
              f"| {a['tokens_per_s']:.0f} | {b['tokens_per_s']:.0f} "
              f"| {a['tokens_per_s'] / b['tokens_per_s']:.2f} "
              f"| {a['peak_rss_mb']:.0f} | {b['peak_rss_mb']:.0f} "
              f"| {a['peak_rss_mb'] / b['peak_rss_mb']:.2f} |")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--method", choices=["ngdiff", "sft"], default="ngdiff")
    p.add_argument("--dtype", choices=["f32", "bf16"], default="f32")
    p.add_argument("--steps", type=int, default=5, help="timed steps after one warm-up step")
    p.add_argument("--attn", choices=["sdpa", "eager"], default="sdpa",
                   help="transformers' attention implementation (docs/perf.md: the faster here)")
    p.add_argument("--layers", type=int, default=12, help="12: opt-125m; fewer for a quick check")
    p.add_argument("--lora", type=int, default=0,
                   help="LoRA rank (peft) on every linear layer, alpha 2r; 0: full fine-tuning")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--model", choices=sorted(SHAPES) + ["smollm-135m"], default="125m",
                   help="the random model's shape: OPT-125m, OPT-1.3b or SmolLM-135M (a Llama)")
    p.add_argument("--batch", type=int, default=4, help="samples per micro-batch")
    p.add_argument("--seq", type=int, default=128, help="tokens per sample")
    p.add_argument("--json", action="store_true", help="JSON Lines only: no table on stderr")
    p.add_argument("--compare", nargs=2, metavar=("LETHE_JSONL", "TORCH_JSONL"))
    args = p.parse_args()
    if min(args.threads, args.steps, args.layers, args.batch) < 1 or args.seq < 2:
        p.error("--threads, --steps, --layers and --batch must be at least 1, --seq at least 2")
    if args.compare:
        compare(*args.compare)
    else:
        run(args)


if __name__ == "__main__":
    main()
