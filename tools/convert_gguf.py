#!/usr/bin/env python3
"""Converts a GGUF checkpoint into a Hugging Face model directory.

Uses the ecosystem's own readers (transformers' GGUF loader, which dequantizes through gguf-py), so no
dequantization is written here. Writes config.json, model.safetensors (float32: dequantized Q4_1 values
are exact in float32), tokenizer.json, tokenizer_config.json (with the chat template) and
generation_config.json.
"""
import argparse
import hashlib
import json
import os
import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("gguf", help="path to the .gguf file")
    parser.add_argument("out", help="output directory")
    args = parser.parse_args()

    folder, name = os.path.split(os.path.abspath(args.gguf))
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    # The GGUF stores no end-of-turn id for generation; the chat template ends turns with <|im_end|>.
    eos = [tokenizer.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>")
           if t in tokenizer.get_vocab()]
    model.generation_config.eos_token_id = eos or model.generation_config.eos_token_id
    # The weights are already dequantized in memory; drop the GGUF marker that blocks saving them.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    os.makedirs(args.out, exist_ok=True)
    model.save_pretrained(args.out, safe_serialization=True)
    tokenizer.save_pretrained(args.out)
    # Older readers (and ours) look for the chat template inside tokenizer_config.json.
    config_path = os.path.join(args.out, "tokenizer_config.json")
    with open(config_path) as f:
        tokenizer_config = json.load(f)
    tokenizer_config["chat_template"] = tokenizer.chat_template
    with open(config_path, "w") as f:
        json.dump(tokenizer_config, f, indent=2, ensure_ascii=False)
        f.write("\n")
    for file in sorted(os.listdir(args.out)):
        print(f"{sha256(os.path.join(args.out, file))}  {file}")


if __name__ == "__main__":
    sys.exit(main())
