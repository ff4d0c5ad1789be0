#!/usr/bin/env python3
"""Trains the embedded demo's byte-level BPE vocabulary on the TOFU text (data/tofu), with
HuggingFace `tokenizers` (the library behind GPT-2's and OPT's tokenizers), and writes it in OPT's
layout to data/demo/: vocab.json, merges.txt, tokenizer_config.json, special_tokens_map.json.

OPT's special tokens and ids: <s>=0, <pad>=1, </s>=2 (BOS = EOS, as OPT), <unk>=3; the rest are
the 256 byte tokens and the learned merges, up to VOCAB_SIZE.

    /opt/lethe-venv/bin/python tools/demo/train_demo_tokenizer.py        # (re)writes data/demo/

Deterministic: the same data gives the same files.
"""
import json
import os

from tokenizers import ByteLevelBPETokenizer

VOCAB_SIZE = 2048
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "data", "demo")


def texts():
    tofu = os.path.join(ROOT, "data", "tofu")
    for name in ["full.json", "real_authors_perturbed.json", "world_facts_perturbed.json",
                 "retain_perturbed.json", "forget10_perturbed.json"]:
        with open(os.path.join(tofu, name), encoding="utf-8") as f:
            for line in f:
                r = json.loads(line)
                for k in ["question", "answer", "paraphrased_answer", "paraphrased_question"]:
                    if isinstance(r.get(k), str):
                        yield r[k]
                for p in r.get("perturbed_answer", []) or []:
                    yield p


def main():
    tok = ByteLevelBPETokenizer(add_prefix_space=False)
    tok.train_from_iterator(texts(), vocab_size=VOCAB_SIZE, min_frequency=2,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>"], show_progress=False)
    os.makedirs(OUT, exist_ok=True)
    tok.save_model(OUT)  # vocab.json, merges.txt
    with open(os.path.join(OUT, "vocab.json"), encoding="utf-8") as f:
        vocab = json.load(f)
    assert vocab["<s>"] == 0 and vocab["<pad>"] == 1 and vocab["</s>"] == 2, vocab
    special = {"bos_token": "</s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"}
    with open(os.path.join(OUT, "special_tokens_map.json"), "w", encoding="utf-8") as f:
        json.dump(special, f, indent=2)
        f.write("\n")
    config = dict(special, add_bos_token=True, add_prefix_space=False, errors="replace",
                  model_max_length=256, tokenizer_class="GPT2Tokenizer")
    with open(os.path.join(OUT, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    print(f"wrote {OUT}: {len(vocab)} tokens")


if __name__ == "__main__":
    main()
