"""Our Llama runtime against transformers: logits (fp32, bf16, int8), KV-cache decoding, greedy generation.

The model side runs through build/tests/model_probe, and generation through the server's own decoding loop
(build/tests/pad_probe); transformers is the reference. Prompts are encoded
with the `tokenizers` library so that these tests are independent of our tokenizer.
"""
import json
import os
import pathlib
import re
import subprocess

import numpy as np
import pytest
import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

from conftest import probe

pytestmark = pytest.mark.cpu_dependent

PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):\n    if n < 2:\n        return n\n",
    "Écris une phrase en français sur les chats, s'il te plaît. 猫はかわいい。",
    "1, 2, 3, 5, 8, 13,",
    "Explain why the sky is blue in one sentence.",
]


def run_probe(request, cap=None):
    env = dict(os.environ)
    if cap is not None:
        env["PAD_CPU_CAPABILITY"] = cap
    result = subprocess.run([probe("model_probe")], input=json.dumps(request), capture_output=True, text=True,
                            timeout=600, env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def our_logits(model_dir, sequences, dtype, tmp_path, prefill=0, slots=None, chunk=1, quantization="none",
               cap=None, answer_out=None, **options):
    """Per sequence, our float32 logits of every position computed: [len, vocab]. `options` go to the probe
    (block_size, fragment, one_at_a_time, prefix_cache); `cap` caps the CPU kernels (none: LibTorch's
    operations)."""
    output = tmp_path / "logits.bin"
    request = {"command": "logits", "model": str(model_dir), "dtype": dtype, "sequences": sequences,
               "prefill": prefill, "chunk": chunk, "output": str(output), "quantization": quantization, **options}
    if slots is not None:
        request["slots"] = slots
    answer = run_probe(request, cap)
    if answer_out is not None:
        answer_out.update(answer)
    flat = np.fromfile(output, dtype=np.float32).reshape(-1, answer["vocab"])
    bounds = np.cumsum([0] + answer["rows"])
    return [flat[bounds[i]:bounds[i + 1]] for i in range(len(sequences))]


def reference_logits(model, sequence):
    with torch.no_grad():
        return model(torch.tensor([sequence])).logits[0].float().numpy()


def relative_error(ours, theirs):
    return float(np.abs(ours - theirs).max() / np.abs(theirs).max())


@pytest.fixture(scope="module")
def smol_sequences(model_dir):
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    return [tokenizer(p)["input_ids"] for p in PROMPTS]


@pytest.fixture(scope="module")
def smol_fp32(model_dir):
    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()


def host_kernels():
    """The CPU kernels this host runs, as lib/model/cpu_kernels.cc detects them, under PAD_CPU_CAPABILITY's cap."""
    flags = set(re.search(r"^flags\s*:(.*)$", pathlib.Path("/proc/cpuinfo").read_text(), re.M).group(1).split())
    have = ["none"]
    if {"avx2", "fma"} <= flags:
        have.append("avx2")
    if {"avx512f", "avx512bw", "avx512vl"} <= flags:
        have.append("avx512")
        if "avx512_bf16" in flags:
            have.append("avx512_bf16")
    cap = os.environ.get("PAD_CPU_CAPABILITY")
    return cap if cap in have else have[-1]


def test_the_kernels_are_the_hosts_or_the_cap(model_dir, tmp_path):
    """What runs is what the host has, or PAD_CPU_CAPABILITY's cap: scripts/test.sh's AVX2 run is AVX2's."""
    answer = run_probe({"command": "logits", "model": str(model_dir), "dtype": "float32", "sequences": [[1, 2]],
                        "output": str(tmp_path / "logits.bin")})
    assert answer["cpu_kernels"] == host_kernels()


def test_smollm2_fp32_logits_batched_prefill(model_dir, smol_fp32, smol_sequences, tmp_path):
    ours = our_logits(model_dir, smol_sequences, "float32", tmp_path)
    for sequence, logits in zip(smol_sequences, ours):
        assert relative_error(logits, reference_logits(smol_fp32, sequence)) <= 1e-4


def test_smollm2_fp32_logits_through_kv_cache(model_dir, smol_fp32, smol_sequences, tmp_path):
    # Three tokens of prefill, then one decode step per token: every step reads the cache.
    ours = our_logits(model_dir, smol_sequences, "float32", tmp_path, prefill=3)
    for sequence, logits in zip(smol_sequences, ours):
        assert relative_error(logits, reference_logits(smol_fp32, sequence)) <= 1e-4


def test_smollm2_fp32_logits_prefilled_in_chunks(model_dir, smol_fp32, smol_sequences, tmp_path):
    # Chunked prefill: after the first 4 tokens, 5 at a time, each chunk attending to the cached ones.
    ours = our_logits(model_dir, smol_sequences, "float32", tmp_path, prefill=4, chunk=5)
    for sequence, logits in zip(smol_sequences, ours):
        assert relative_error(logits, reference_logits(smol_fp32, sequence)) <= 1e-4


@pytest.mark.parametrize("slots", [[3, 0, 4, 2, 1], [9, 1, 14, 5, 7]], ids=["one_run_out_of_order", "scattered"])
def test_smollm2_fp32_logits_in_any_slots(model_dir, smol_fp32, smol_sequences, tmp_path, slots):
    # Attention reads a run of slots in place whatever the rows' order, and gathers scattered slots.
    ours = our_logits(model_dir, smol_sequences, "float32", tmp_path, prefill=3, slots=slots)
    for sequence, logits in zip(smol_sequences, ours):
        assert relative_error(logits, reference_logits(smol_fp32, sequence)) <= 1e-4


@pytest.mark.parametrize("cap", [None, "none"], ids=["kernels", "libtorch"])
def test_smollm2_fp32_logits_through_interleaved_blocks(model_dir, smol_fp32, smol_sequences, tmp_path, cap):
    # Blocks of 4 tokens taken from the pool backwards and interleaved between the sequences as they decode
    # together: a kernel that read keys past a block's end, or by slot instead of by block table, would read
    # another sequence's keys. Both attention paths: our CPU kernels, and LibTorch's operations.
    ours = our_logits(model_dir, smol_sequences, "float32", tmp_path, prefill=3, chunk=2, block_size=4,
                      fragment=64, cap=cap)
    for sequence, logits in zip(smol_sequences, ours):
        assert relative_error(logits, reference_logits(smol_fp32, sequence)) <= 1e-4


@pytest.mark.parametrize("prefix_cache", [True, False])
def test_smollm2_fp32_logits_with_a_cached_prefix(model_dir, smol_fp32, tmp_path, prefix_cache):
    # Requests one after another that share a system prompt: the later ones reuse its full blocks and compute
    # only the rest, whose logits are transformers'; without the prefix cache they compute everything.
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    system = tokenizer("You are a helpful assistant who answers briefly and kindly. ")["input_ids"]
    sequences = [system + tokenizer(p)["input_ids"] for p in PROMPTS[:3]] + [system[:5]]
    answer = {}
    ours = our_logits(model_dir, sequences, "float32", tmp_path, block_size=4, one_at_a_time=True,
                      prefix_cache=prefix_cache, answer_out=answer)
    shared = len(system) // 4 * 4
    if prefix_cache:
        assert answer["first"] == [0, shared, shared, 4]  # the last: its own last token is always computed
        assert answer["prefix_hit_tokens"] == 2 * shared + 4
    else:
        assert answer["first"] == [0, 0, 0, 0] and answer["prefix_hit_tokens"] == 0
    for sequence, first, logits in zip(sequences, answer["first"], ours):
        assert relative_error(logits, reference_logits(smol_fp32, sequence)[first:]) <= 1e-4


def test_smollm2_bf16_logits(model_dir, smol_sequences, tmp_path):
    reference = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16).eval()
    exact = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    ours = our_logits(model_dir, smol_sequences, "bfloat16", tmp_path, prefill=4)
    for sequence, logits in zip(smol_sequences, ours):
        theirs = reference_logits(reference, sequence)
        # bf16 keeps 8 bits of mantissa: we must be as close to transformers-in-bf16 as it is to fp32.
        budget = relative_error(theirs, reference_logits(exact, sequence))
        assert relative_error(logits, theirs) <= max(2 * budget, 1e-2)
        assert (logits.argmax(-1) == theirs.argmax(-1)).mean() >= 0.9


def llama3_style_dir(tmp_path_factory, shard):
    """A random Llama-3.1-shaped model: GQA, llama3 rope scaling, untied head, vocabulary > 32k."""
    config = transformers.LlamaConfig(
        vocab_size=40000, hidden_size=64, intermediate_size=160, num_hidden_layers=3, num_attention_heads=8,
        num_key_value_heads=2, max_position_embeddings=4096, rms_norm_eps=1e-5, tie_word_embeddings=False,
        rope_theta=500000.0,
        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                      "original_max_position_embeddings": 64},
        bos_token_id=1, eos_token_id=[2, 3])
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config).eval()
    with torch.no_grad():  # larger than the default init so that attention patterns are not uniform
        for p in model.parameters():
            p.mul_(4.0) if p.dim() > 1 else None
    path = tmp_path_factory.mktemp("llama3_sharded" if shard else "llama3")
    model.save_pretrained(path, max_shard_size="2MB" if shard else "10GB")
    return path, model


@pytest.mark.parametrize("shard", [False, True])
def test_llama3_style_logits(tmp_path_factory, tmp_path, shard):
    path, model = llama3_style_dir(tmp_path_factory, shard)
    if shard:
        assert (path / "model.safetensors.index.json").exists()
    rng = np.random.default_rng(1)
    # Long enough (up to 300 positions) to reach every regime of the llama3 frequency scaling.
    sequences = [rng.integers(0, 40000, size=n).tolist() for n in (300, 17, 120)]
    ours = our_logits(path, sequences, "float32", tmp_path, prefill=100)
    for sequence, logits in zip(sequences, ours):
        assert relative_error(logits, reference_logits(model, sequence)) <= 1e-4


def reference_generate(model, prompt, max_new_tokens):
    with torch.no_grad():
        output = model.generate(torch.tensor([prompt]), do_sample=False, max_new_tokens=max_new_tokens,
                                attention_mask=torch.ones(1, len(prompt), dtype=torch.long))
    tokens = output[0, len(prompt):].tolist()
    eos = model.generation_config.eos_token_id
    eos = set(eos if isinstance(eos, list) else [eos])
    for i, token in enumerate(tokens):
        if token in eos:
            return tokens[:i + 1]
    return tokens


@pytest.fixture(scope="module")
def chat_prompts(model_dir):
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    questions = ["What is the capital of France?", "Write a short poem about the sea.",
                 "List three prime numbers.", "How do I reverse a list in Python?"]
    chats = [tokenizer.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True,
                                           return_dict=True)["input_ids"] for q in questions]
    return [list(c) for c in chats] + [tokenizer("Once upon a time")["input_ids"]]


@pytest.fixture(scope="module")
def reference_answers(smol_fp32, chat_prompts):
    return [reference_generate(smol_fp32, prompt, 64) for prompt in chat_prompts]


@pytest.mark.parametrize("batched", [False, True])
def test_smollm2_greedy_generation(model_dir, chat_prompts, reference_answers, batched):
    """The server's own decoding loop (PadDecoder, VANILLA on token ids) against transformers' generate()."""
    requests = [{"mode": "vanilla", "prompt_ids": prompt, "max_new_tokens": 64, "temperature": 0.0}
                for prompt in chat_prompts]
    request = {"command": "generate", "policy": str(model_dir), "dtype": "float32", "requests": requests,
               "batched": batched}
    result = subprocess.run([probe("pad_probe")], input=json.dumps(request), capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr
    answers = json.loads(result.stdout)["results"]
    assert [a["tokens"] for a in answers] == reference_answers


def q8_0(weight):
    """int8 weights as our loader makes them: groups of 32 along each row, the largest magnitude to ±127,
    round to nearest; returned dequantized, float32."""
    groups = weight.float().reshape(weight.shape[0], -1, 32)
    scales = groups.abs().amax(-1, keepdim=True) / 127
    return (torch.round(groups / scales.clamp_min(1e-30)) * scales).reshape(weight.shape)


def int16_groups(x):
    """x as our int8 products quantize it before multiplying: per group of 32, scale = largest magnitude /
    32767, values round(x * (1 / scale)); returned dequantized, float32."""
    groups = x.float().reshape(*x.shape[:-1], -1, 32)
    scales = groups.abs().amax(-1, keepdim=True) / torch.tensor(32767.0)
    inverse = torch.where(scales == 0, torch.zeros_like(scales), 1 / scales)
    return (torch.round(groups * inverse) * scales).reshape(x.shape)


@pytest.fixture(scope="module")
def smol_int8_reference(model_dir, tmp_path_factory):
    """transformers over SmolLM2 with every projection and lm_head replaced by its dequantized int8 (q8_0
    above, written in torch independently of our loader; the embedding stays float32, so lm_head is untied),
    every product's input quantized as ours quantizes it (int16_groups)."""
    import safetensors.torch
    weights = safetensors.torch.load_file(str(model_dir / "model.safetensors"))
    projections = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    out = {name: q8_0(w) if any(p in name for p in projections) else w.float() for name, w in weights.items()}
    out["lm_head.weight"] = q8_0(weights["model.embed_tokens.weight"])
    directory = tmp_path_factory.mktemp("smollm2-q8_0")
    safetensors.torch.save_file(out, str(directory / "model.safetensors"))
    config = json.loads((model_dir / "config.json").read_text())
    config["tie_word_embeddings"] = False
    (directory / "config.json").write_text(json.dumps(config))
    reference = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32).eval()
    for module in reference.modules():
        if isinstance(module, torch.nn.Linear):
            module.register_forward_pre_hook(lambda _, inputs: (int16_groups(inputs[0]),))
    return reference


def test_smollm2_int8_logits_equal_the_quantized_products(model_dir, smol_sequences, smol_fp32,
                                                          smol_int8_reference, tmp_path):
    """int8 quantization: our logits equal transformers' over the dequantized weights with each product's
    input quantized as ours (a 3-token prefill and decode steps on the int8 kernels; a prefill past their 256
    rows on LibTorch's GEMM), and differ from float32's by the quantization. The bound is 5e-4, not float32's
    1e-4: an input's rounding to a step turns float32's last-bit differences into whole steps through the
    layers (1-2e-4 here; each product alone is exact to 3e-7 in cpu_kernels_test)."""
    long = [token for _ in range(12) for token in smol_sequences[2]][:300]
    ours = our_logits(model_dir, smol_sequences, "float32", tmp_path, prefill=3, quantization="int8")
    ours += our_logits(model_dir, [long], "float32", tmp_path, quantization="int8")
    for sequence, logits in zip(smol_sequences + [long], ours):
        assert relative_error(logits, reference_logits(smol_int8_reference, sequence)) <= 5e-4
        float32 = reference_logits(smol_fp32, sequence)
        assert 1e-3 < relative_error(logits, float32) < 5e-2
        assert (logits.argmax(-1) == float32.argmax(-1)).mean() >= 0.9
