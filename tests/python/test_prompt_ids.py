"""The exact ids PadDecoder::Prepare gives each model, against transformers' apply_chat_template(tokenize=True),
for each template family: ChatML (SmolLM2) and Llama-3, whose template writes <|begin_of_text|> itself.

Llama-3's tokenizer is the real one (tools/convert_llama3_tokenizer.py, from installed packages) over a tiny
random Llama-3-vocabulary model, since pad_probe loads a policy to prepare requests.
"""
import json
import pathlib
import subprocess
import sys

import pytest
import torch
import transformers
from transformers import AutoTokenizer

from conftest import ROOT, probe
from pad_reference import guideline_text

SYSTEM = {"role": "system", "content": "You are a terse assistant."}
CASES = {
    "user": [{"role": "user", "content": "Tell me about owls."}],
    "system": [SYSTEM, {"role": "user", "content": "Tell me about owls."}],
    "multi-turn": [SYSTEM, {"role": "user", "content": "Hi!"}, {"role": "assistant", "content": "Hello."},
                   {"role": "user", "content": "Tell me about owls."}],
}
PRINCIPLES = ["concise", "humorous"]


@pytest.fixture(scope="module")
def llama3_policy(tmp_path_factory):
    out = tmp_path_factory.mktemp("llama3_policy")
    subprocess.run([sys.executable, str(ROOT / "tools" / "convert_llama3_tokenizer.py"), str(out)], check=True)
    tokenizer = AutoTokenizer.from_pretrained(str(out))
    config = transformers.LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    transformers.LlamaForCausalLM(config).save_pretrained(out)
    return out


def prepared(policy_dir, requests):
    answer = subprocess.run([probe("pad_probe")], capture_output=True, text=True, timeout=600, input=json.dumps(
        {"command": "prepare", "policy": str(policy_dir), "reward_models": [{"name": "default"}],
         "requests": requests}))
    assert answer.returncode == 0, answer.stderr
    return json.loads(answer.stdout)["results"]


def guided(messages, principles):
    out = [dict(m) for m in messages]
    out[-1]["content"] = guideline_text(principles, out[-1]["content"])
    return out


@pytest.mark.parametrize("family", ["chatml", "llama3"])
def test_prompt_ids_are_apply_chat_template(family, model_dir, request):
    policy_dir = model_dir if family == "chatml" else request.getfixturevalue("llama3_policy")
    tokenizer = AutoTokenizer.from_pretrained(str(policy_dir))

    def template_ids(messages):
        return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                             return_dict=True)["input_ids"]

    requests, expected = [], []
    for messages in CASES.values():
        requests.append({"messages": messages, "mode": "vanilla", "max_new_tokens": 1})
        expected.append((template_ids(messages), []))
        requests.append({"messages": messages, "mode": "preference_prompt", "principles": PRINCIPLES,
                         "max_new_tokens": 1})
        expected.append((template_ids(guided(messages, PRINCIPLES)), []))
        requests.append({"messages": messages, "mode": "pad", "principles": PRINCIPLES, "composition": "weighted",
                         "max_new_tokens": 1})
        expected.append((template_ids(guided(messages, PRINCIPLES)),
                         [template_ids(guided(messages, [p])) for p in PRINCIPLES]))
    # A raw prompt has no template: the tokenizer's own special tokens, as tokenizer(text) adds them.
    requests.append({"prompt": "Tell me about owls.", "mode": "vanilla", "max_new_tokens": 1})
    expected.append((tokenizer("Tell me about owls.")["input_ids"], []))

    results = prepared(policy_dir, requests)
    for req, result, (policy_ids, prm_ids) in zip(requests, results, expected):
        assert result["policy_ids"] == policy_ids, req
        assert result["prm_ids"] == prm_ids, req
    if family == "llama3":  # the case the template's own BOS used to double
        bos = tokenizer.bos_token_id
        assert all(r["policy_ids"][:2] == [bos, tokenizer.convert_tokens_to_ids("<|start_header_id|>")]
                   for r in results[:-1])
        assert results[-1]["policy_ids"][:1] == [bos] and results[-1]["policy_ids"].count(bos) == 1


def test_token_id_prompts_go_in_unchanged(model_dir):
    """prompt_ids (VANILLA only) reach the policy as given; PAD, out-of-vocabulary ids and a second prompt are
    refused naming the field."""
    ids = [1, 9690, 198, 3681, 17]
    results = prepared(model_dir, [
        {"prompt_ids": ids, "mode": "vanilla", "max_new_tokens": 1},
        {"prompt_ids": ids, "mode": "pad", "principles": ["concise"], "max_new_tokens": 1},
        {"prompt_ids": [1, 49152], "mode": "vanilla", "max_new_tokens": 1},
        {"prompt_ids": ids, "prompt": "Hi", "mode": "vanilla", "max_new_tokens": 1},
    ])
    assert results[0]["policy_ids"] == ids and results[0]["prm_ids"] == []
    assert results[1]["error"]["message"].startswith("prompt_ids: only VANILLA mode takes token ids")
    assert results[2]["error"]["message"] == "prompt_ids[1]: 49152 is not in [0, 49152)"
    assert results[3]["error"]["message"].startswith("prompt_ids: exactly one of prompt, messages and prompt_ids")
