#!/usr/bin/env python3
"""Builds Llama-3's tokenizer.json and tokenizer_config.json from installed packages, without network.

Usage: convert_llama3_tokenizer.py OUT_DIR

The BPE ranks are the tiktoken `tokenizer.model` that PyPI `llama-models` ships; transformers' own
TikTokenConverter turns them into a `tokenizers` file with Llama-3's split regex and special tokens, as
Meta's published tokenizer.json was made. We add what that file has beyond the converter's output: a
TemplateProcessing post-processor that prepends <|begin_of_text|>, and the Meta-Llama-3-8B-Instruct
chat template in tokenizer_config.json.
"""
import json
import pathlib
import sys

from llama_models.llama3 import tokenizer as llama3_tokenizer
from tokenizers import processors
from transformers.convert_slow_tokenizer import TikTokenConverter

BOS = "<|begin_of_text|>"
EOT = "<|eot_id|>"

# Meta-Llama-3-8B-Instruct's tokenizer_config.json "chat_template", verbatim.
CHAT_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ "
    "message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)


def main(argv):
    if len(argv) != 2:
        sys.exit(f"usage: {argv[0]} OUT_DIR")
    out_dir = pathlib.Path(argv[1])
    out_dir.mkdir(parents=True, exist_ok=True)

    model_path = pathlib.Path(llama3_tokenizer.__file__).parent / "tokenizer.model"
    # llama_models' Tokenizer knows the pattern and the 256 special tokens with their ids.
    reference = llama3_tokenizer.Tokenizer(model_path)
    special_tokens = sorted(reference.special_tokens, key=reference.special_tokens.get)

    tokenizer = TikTokenConverter(
        vocab_file=str(model_path), pattern=reference.pat_str, extra_special_tokens=special_tokens
    ).converted()
    for token, expected in reference.special_tokens.items():
        if tokenizer.token_to_id(token) != expected:
            sys.exit(f"{token}: id {tokenizer.token_to_id(token)}, llama_models says {expected}")

    bos_id = reference.special_tokens[BOS]
    tokenizer.post_processor = processors.Sequence(
        [
            processors.ByteLevel(add_prefix_space=True, trim_offsets=False, use_regex=True),
            processors.TemplateProcessing(
                single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B:1", special_tokens=[(BOS, bos_id)]
            ),
        ]
    )
    tokenizer.save(str(out_dir / "tokenizer.json"))

    config = {
        "bos_token": BOS,
        "eos_token": EOT,
        "chat_template": CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": True,
        "model_input_names": ["input_ids", "attention_mask"],
        "model_max_length": 1000000000000000019884624838656,
        "tokenizer_class": "PreTrainedTokenizerFast",
    }
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main(sys.argv)
