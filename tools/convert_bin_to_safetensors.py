#!/usr/bin/env python3
"""Converts a PyTorch checkpoint (pytorch_model.bin, or sharded pytorch_model-*.bin with
pytorch_model.bin.index.json) to safetensors, which is the only weight format lethe reads.

Usage (needs torch and safetensors, e.g. the venv at /opt/lethe-venv):

    python tools/convert_bin_to_safetensors.py MODEL_DIR            # writes MODEL_DIR/model.safetensors
    python tools/convert_bin_to_safetensors.py path/pytorch_model.bin --output out.safetensors
    python tools/convert_bin_to_safetensors.py MODEL_DIR --force    # overwrite existing output

- Files are loaded with torch.load(weights_only=True): no pickled code runs.
- Tensors that share storage (tied weights, e.g. OPT's lm_head.weight and
  model.decoder.embed_tokens.weight) are written once; each dropped name is recorded in
  __metadata__ as {"dropped name": "kept name"}, as HuggingFace's converter does. The name kept
  is the one not ending in "lm_head.weight", else the shortest, else the first alphabetically.
  Tensors that are different views of one storage are copied so each is saved on its own.
- Metadata always has {"format": "pt"} so transformers' from_pretrained accepts the file.
- A sharded .bin checkpoint becomes model-0000i-of-0000N.safetensors shards plus
  model.safetensors.index.json (same shard split). Ties are resolved within a shard.
- After writing, every tensor is read back with safetensors.safe_open and compared.
Other files (config.json, tokenizer files) are left as they are.
"""
import argparse
import json
import os
import sys


def load_state_dict(path):
    import torch
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:  # legacy (non-zip) format cannot be mmapped
        sd = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise SystemExit(f"{path}: expected a dict of tensors, got {type(sd).__name__}")
    bad = [k for k, v in sd.items() if not hasattr(v, "untyped_storage")]
    if bad:
        raise SystemExit(f"{path}: entries that are not tensors: {bad[:5]}")
    return sd


def keep_order(name):
    return (name.endswith("lm_head.weight"), len(name), name)


def dedup(sd):
    """Returns (tensors to save, {dropped: kept}) with shared storage resolved."""
    by_storage = {}
    for name, t in sd.items():
        if t.numel() == 0:
            continue
        by_storage.setdefault(t.untyped_storage().data_ptr(), []).append(name)
    out, dropped = dict(sd), {}
    for names in by_storage.values():
        if len(names) < 2:
            continue
        # Identical views (same offset, shape, strides, dtype) are true ties: save one.
        groups = {}
        for n in names:
            t = sd[n]
            key = (t.storage_offset(), tuple(t.shape), tuple(t.stride()), t.dtype)
            groups.setdefault(key, []).append(n)
        for same in groups.values():
            same.sort(key=keep_order)
            for n in same[1:]:
                dropped[n] = same[0]
                del out[n]
        if len(groups) > 1:  # different views of one buffer: give each its own copy
            for same in groups.values():
                out[same[0]] = sd[same[0]].clone()
    out = {k: v.contiguous() for k, v in out.items()}
    return out, dropped


def convert_file(src, dst, force):
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file
    if os.path.exists(dst) and not force:
        raise SystemExit(f"{dst} exists (use --force to overwrite)")
    sd = load_state_dict(src)
    tensors, dropped = dedup(sd)
    metadata = {"format": "pt"}
    metadata.update(dropped)
    unsupported = sorted({str(t.dtype) for t in tensors.values()} -
                         {"torch.float16", "torch.bfloat16", "torch.float32", "torch.float64",
                          "torch.int64", "torch.int32", "torch.uint8", "torch.bool"})
    if unsupported:
        print(f"warning: {src}: dtypes lethe cannot read: {unsupported}", file=sys.stderr)
    tmp = dst + ".tmp"
    save_file(tensors, tmp, metadata=metadata)
    with safe_open(tmp, framework="pt") as f:
        for name, t in sd.items():
            got = f.get_tensor(dropped.get(name, name))
            if not torch.equal(got, t):
                os.remove(tmp)
                raise SystemExit(f"{src}: tensor '{name}' differs after conversion")
    os.replace(tmp, dst)
    size = sum(t.numel() * t.element_size() for t in tensors.values())
    print(f"{src} -> {dst}: {len(tensors)} tensors, {size / 1e6:.1f} MB, "
          f"dropped {len(dropped)} tied: {dropped}")
    return tensors, size


def main():
    ap = argparse.ArgumentParser(description="Convert pytorch_model.bin to safetensors")
    ap.add_argument("src", help="a model directory or a .bin file")
    ap.add_argument("--output", help="output .safetensors (single-file input only)")
    ap.add_argument("--force", action="store_true", help="overwrite existing output")
    args = ap.parse_args()

    if os.path.isfile(args.src):
        out = args.output or os.path.join(os.path.dirname(args.src) or ".", "model.safetensors")
        convert_file(args.src, out, args.force)
        return
    d = args.src
    index_path = os.path.join(d, "pytorch_model.bin.index.json")
    if os.path.isfile(os.path.join(d, "pytorch_model.bin")):
        convert_file(os.path.join(d, "pytorch_model.bin"),
                     args.output or os.path.join(d, "model.safetensors"), args.force)
    elif os.path.isfile(index_path):
        with open(index_path) as f:
            index = json.load(f)
        bins = sorted(set(index["weight_map"].values()))
        weight_map, total = {}, 0
        for i, b in enumerate(bins):
            shard = f"model-{i + 1:05d}-of-{len(bins):05d}.safetensors"
            tensors, size = convert_file(os.path.join(d, b), os.path.join(d, shard), args.force)
            total += size
            for name in tensors:
                weight_map[name] = shard
        out = os.path.join(d, "model.safetensors.index.json")
        with open(out + ".tmp", "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))},
                      f, indent=2)
            f.write("\n")
        os.replace(out + ".tmp", out)
        print(f"wrote {out}: {len(bins)} shards")
    else:
        raise SystemExit(f"{d}: no pytorch_model.bin or pytorch_model.bin.index.json")


if __name__ == "__main__":
    main()
