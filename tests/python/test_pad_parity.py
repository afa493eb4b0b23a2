"""PAD decoding (build/tests/pad_probe) against the authors' rule as pad_reference.py writes it with
transformers and peft.

The PRM is a peft LoRA adapter made here on SmolLM2-135M-Instruct (the policy's own backbone: the shared
backbone case) with a random value head. The reference recomputes both models on the whole sequence; the
64-step parity checks replay the rule at every position of our continuation (one forward per model, see
pad_reference.replay), and one case also runs the reference's own step-by-step loop.
"""
import json
import shutil
import subprocess

import numpy as np
import pytest
import torch
import transformers
from peft import LoraConfig, get_peft_model
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM

import pad_reference as ref
from conftest import probe

pytestmark = pytest.mark.cpu_dependent

ALL_PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
VOCAB = 49152  # SmolLM2
MAX_PROMPT_TOKENS = 2048


def run_probe(request):
    result = subprocess.run([probe("pad_probe")], input=json.dumps(request), capture_output=True, text=True,
                            timeout=900)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def make_adapter(model_dir, path, seed, lora_std, **lora):
    """A PEFT LoRA adapter directory with value_head.safetensors: B drawn at random, not peft's zeros, so that
    the PRM differs from its backbone; the value head is the identity plus noise."""
    torch.manual_seed(seed)
    base = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    model = get_peft_model(base, LoraConfig(r=8, lora_alpha=16, **lora))
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0.0, lora_std)
    model.save_pretrained(str(path))
    hidden = base.config.hidden_size
    save_file({"v_head.summary.weight": torch.eye(hidden) + 0.01 * torch.randn(hidden, hidden),
               "v_head.summary.bias": 0.01 * torch.randn(hidden)}, str(path / "value_head.safetensors"))
    return path


@pytest.fixture(scope="module")
def adapter(model_dir, tmp_path_factory):
    return make_adapter(model_dir, tmp_path_factory.mktemp("prm_all_projections"), 1, 0.01,
                        target_modules=ALL_PROJECTIONS)


@pytest.fixture(scope="module")
def rslora_adapter(model_dir, tmp_path_factory):
    return make_adapter(model_dir, tmp_path_factory.mktemp("prm_rslora_qv"), 2, 0.01, use_rslora=True,
                        target_modules=["q_proj", "v_proj"])


@pytest.fixture(scope="module")
def tiny_model(model_dir, tmp_path_factory):
    """A random two-layer Llama with SmolLM2's vocabulary, tokenizer and chat template, and its PRM adapter:
    for the tests that need many decode steps but no reference."""
    config = transformers.LlamaConfig(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=8192, tie_word_embeddings=True, bos_token_id=1,
        eos_token_id=2, pad_token_id=2)
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config).eval()
    with torch.no_grad():  # larger than the default init: spread-out logits, so no near-ties between rows
        for parameter in model.parameters():
            if parameter.dim() > 1:
                parameter.mul_(4.0)
    path = tmp_path_factory.mktemp("tiny_llama")
    model.save_pretrained(str(path))
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "generation_config.json"):
        shutil.copy(model_dir / name, path / name)
    adapter_dir = make_adapter(path, tmp_path_factory.mktemp("tiny_prm"), 3, 0.05, target_modules=ALL_PROJECTIONS)
    return path, adapter_dir


def reward_models(model_dir, adapter_dir):
    return [{"name": "default", "backbone": str(model_dir), "adapter": str(adapter_dir),
             "value_head": str(adapter_dir / "value_head.safetensors")}]


def generate(model_dir, adapter_dir, requests, batched=True, kv=None, **options):
    """The results of decoding `requests`; `kv` (a dict) receives the decoder's KV counters."""
    answer = run_probe({"command": "generate", "policy": str(model_dir), "dtype": "float32",
                        "reward_models": reward_models(model_dir, adapter_dir), "requests": requests,
                        "batched": batched, **options})
    assert len(answer["results"]) == len(requests)
    if kv is not None:
        kv.update(answer["kv"])
    if options.get("cuda_graphs"):  # the fixed-shape steps ran (on the CPU nothing is recorded)
        assert answer["fixed_shape_steps"] > 0 and answer["graphs_recorded"] == 0, answer
    return answer["results"]


def tokens_of(result):
    assert "error" not in result, result
    return result["tokens"]


@pytest.fixture(scope="module")
def formatter(model_dir):
    return ref.Formatter(model_dir)


@pytest.fixture(scope="module")
def policy(model_dir):
    return ref.Policy(model_dir)


@pytest.fixture(scope="module")
def prm(model_dir, adapter):
    return ref.RewardModel(model_dir, adapter, adapter / "value_head.safetensors")


def relative_error(ours, theirs):
    return float(np.abs(ours - theirs).max() / np.abs(theirs).max())


# ---------------------------------------------------------------------------------------------------------
# The PRM's logits: the adapter directory as peft loads it.


@pytest.mark.parametrize("which", ["all_projections", "rslora_qv"])
def test_prm_logits_match_peft(model_dir, formatter, request, tmp_path, which):
    adapter_dir = request.getfixturevalue("adapter" if which == "all_projections" else "rslora_adapter")
    reward_model = ref.RewardModel(model_dir, adapter_dir, adapter_dir / "value_head.safetensors")
    sequences = [formatter.encode({"messages": [{"role": "user", "content": "How do I boil an egg?"}]},
                                  ["humor"]),
                 formatter.encode({"prompt": "1, 2, 3, 5, 8, 13,"}, None),
                 np.random.default_rng(3).integers(0, VOCAB, size=40).tolist()]
    output = tmp_path / "prm_logits.bin"
    answer = run_probe({"command": "prm_logits", "policy": str(model_dir), "dtype": "float32",
                        "reward_models": reward_models(model_dir, adapter_dir), "reward_model": "default",
                        "sequences": sequences, "output": str(output)})
    assert answer["vocab"] == VOCAB and answer["rows"] == [len(s) for s in sequences]
    flat = np.fromfile(output, dtype=np.float32).reshape(-1, VOCAB)
    bounds = np.cumsum([0] + answer["rows"])
    for i, sequence in enumerate(sequences):
        theirs = reward_model.logits(sequence).numpy()
        assert relative_error(flat[bounds[i]:bounds[i + 1]], theirs) <= 1e-4, i
        # Not vacuous: the LoRA moves the logits far more than the tolerance.
        with reward_model.model.disable_adapter():
            without_lora = reward_model.logits(sequence).numpy()
        assert relative_error(without_lora, theirs) >= 1e-2


def test_reference_reads_the_normed_hidden_state(policy, prm, formatter):
    """The reference's PRM path is right: transformers' last_hidden_state is after the final RMSNorm, so with
    the adapter off and no value head, lm_head(h) is the backbone's own logits."""
    ids = formatter.encode({"prompt": "The capital of France is"}, None)
    with prm.model.disable_adapter(), torch.no_grad():
        hidden = prm.causal_lm.model(input_ids=torch.tensor([ids])).last_hidden_state[0]
        logits = prm.causal_lm.lm_head(hidden)
    assert relative_error(logits.numpy(), policy.logits(ids).numpy()) <= 1e-6


# ---------------------------------------------------------------------------------------------------------
# Greedy decoding: the official rule, 64 steps.

WEIGHTED = ["humor", "harmless", "helpfulness"]
PARITY_CASES = [
    # (instruction, PROMPT-composition request fields, WEIGHTED weights)
    ({"messages": [{"role": "user", "content": "Tell me about cats."}]},
     {"principles": ["humor"]}, [0.5, 0.3, 0.2]),
    ({"messages": [{"role": "system", "content": "You answer briefly."},
                   {"role": "user", "content": "How do I boil an egg?"}]},
     {"principles": ["concise", "formal"], "top_k": 5, "beta": 0.5}, [0.2, 0.2, 0.6]),
    ({"prompt": "Write a short story about a robot who learns to paint."},
     {"principles": WEIGHTED, "top_k": 20, "beta": 1.5}, [0.1, 0.7, 0.2]),
]
STEPS = 64


def parity_requests():
    """(label, request) for every greedy case: PAD in both compositions, the policy without the guideline,
    and the two PRM-free baselines of each instruction."""
    common = {"max_new_tokens": STEPS, "ignore_eos": True, "diagnostics": True, "temperature": 0.0}
    cases = []
    for i, (instruction, prompt_fields, weights) in enumerate(PARITY_CASES):
        cases.append((f"prompt{i}", {**instruction, **common, **prompt_fields}))
        cases.append((f"weighted{i}", {**instruction, **common, "composition": "weighted",
                                       "principles": WEIGHTED, "weights": weights,
                                       "beta": prompt_fields.get("beta", 1.0)}))
        cases.append((f"vanilla{i}", {**instruction, **common, "mode": "vanilla"}))
        cases.append((f"preference_prompt{i}", {**instruction, **common, "mode": "preference_prompt",
                                                "principles": prompt_fields["principles"]}))
    cases.append(("unguided_policy", {**PARITY_CASES[0][0], **common, "principles": ["humor"],
                                      "policy_sees_guideline": False}))
    # OpenAI's penalties, off in every case above.
    penalties = {"presence_penalty": 0.4, "frequency_penalty": 0.3}
    cases.append(("penalized_pad", {**PARITY_CASES[0][0], **common, **PARITY_CASES[0][1], **penalties}))
    cases.append(("penalized_vanilla", {**PARITY_CASES[0][0], **common, "mode": "vanilla", **penalties}))
    # GENARM: the reward over the whole vocabulary, in the same batch as PAD's rows, each composition. At
    # beta 2 it reaches past the policy's top k (test_genarm_reaches_beyond_the_policys_top_k).
    for i, (instruction, prompt_fields, weights) in enumerate(PARITY_CASES[:2]):
        cases.append((f"genarm{i}", {**instruction, **common, **prompt_fields, "mode": "genarm", "beta": 2.0 * i}))
    cases.append(("genarm_weighted", {**PARITY_CASES[2][0], **common, "mode": "genarm", "composition": "weighted",
                                      "principles": WEIGHTED, "weights": PARITY_CASES[2][2], "beta": 0.7}))
    cases.append(("genarm_penalized", {**PARITY_CASES[0][0], **common, **PARITY_CASES[0][1], **penalties,
                                       "mode": "genarm"}))
    return cases


@pytest.fixture(scope="module")
def parity_results(model_dir, adapter):
    cases = parity_requests()
    # One batch: 19 policy rows and 20 PRM rows on the shared backbone, more KV slots than the default.
    results = generate(model_dir, adapter, [request for _, request in cases], batched=True, kv_slots=48,
                       max_seq_len=512)
    return {label: (request, result) for (label, request), result in zip(cases, results)}


@pytest.mark.parametrize("label", [label for label, _ in parity_requests()])
def test_greedy_matches_official_rule(parity_results, policy, prm, formatter, label):
    request, result = parity_results[label]
    tokens = tokens_of(result)
    assert len(tokens) == STEPS and result["finish_reason"] == "length"
    assert result["prompt_tokens"] == len(ref.contexts(formatter, request).policy)
    steps = ref.replay(policy, prm, formatter, request, tokens)
    choices = [s.token for s in steps]
    first = next((t for t in range(STEPS) if choices[t] != tokens[t]), None)
    assert first is None, (f"step {first}: ours {tokens[first]}, reference {choices[first]} after "
                           f"{formatter.decode(tokens[:first])!r}; reference scores "
                           f"{dict(zip(steps[first].candidates, steps[first].scores))}")
    assert len(result["diagnostics"]) == STEPS
    for t, (ours, theirs) in enumerate(zip(result["diagnostics"], steps)):
        assert ours["token"] == tokens[t]
        if request.get("mode", "pad") not in ("pad", "genarm"):
            continue
        assert sorted(ours["candidates"]) == sorted(theirs.candidates), t
        assert abs(ours["reward"] - theirs.reward) <= 1e-4, (t, ours["reward"], theirs.reward)
        expected = dict(zip(theirs.candidates, zip(theirs.policy_logits, theirs.rewards, theirs.scores)))
        for a, z_b, r, score in zip(ours["candidates"], ours["policy_logits"], ours["rewards"], ours["scores"]):
            want = expected[a]
            assert abs(z_b - want[0]) <= 1e-4 * max(1.0, abs(want[0])), (t, a)
            assert abs(r - want[1]) <= 1e-4, (t, a)
            assert abs(score - want[2]) <= 1e-4 * max(1.0, abs(want[2])), (t, a)


def test_greedy_matches_official_loop(parity_results, policy, prm, formatter):
    """The reference's own step-by-step loop (no KV cache) agrees too, over its first steps."""
    request, result = parity_results["prompt0"]
    steps = ref.generate(policy, prm, formatter, {**request, "max_new_tokens": 16})
    assert [s.token for s in steps] == tokens_of(result)[:16]
    for ours, theirs in zip(result["diagnostics"], steps):
        assert abs(ours["reward"] - theirs.reward) <= 1e-4


def test_pad_is_not_vanilla(parity_results):
    """The PRM changes the text: PAD differs from the same policy without it, and from vanilla."""
    differs_from_vanilla = differs_from_prompting = 0
    for i in range(len(PARITY_CASES)):
        for composition in ("prompt", "weighted"):
            pad = tokens_of(parity_results[f"{composition}{i}"][1])
            differs_from_vanilla += pad != tokens_of(parity_results[f"vanilla{i}"][1])
            differs_from_prompting += pad != tokens_of(parity_results[f"preference_prompt{i}"][1])
    assert differs_from_vanilla >= 1 and differs_from_prompting >= 1
    # And at many single steps, the PRM's pick is not the policy's favourite.
    overridden = sum(d["token"] != d["candidates"][int(np.argmax(d["policy_logits"]))]
                     for label, (request, result) in parity_results.items()
                     if request.get("mode", "pad") == "pad" for d in result["diagnostics"])
    assert overridden >= 10


def test_genarm_reaches_beyond_the_policys_top_k(parity_results, policy, formatter):
    """What sets GENARM apart from PAD: some of its tokens are not among the policy's top k, which PAD's never
    leave; at beta 0 it is the policy's own greedy answer, shown the guideline."""
    assert tokens_of(parity_results["genarm0"][1]) == tokens_of(parity_results["preference_prompt0"][1])
    outside = 0
    for label in ("genarm0", "genarm1", "genarm_weighted"):
        request, result = parity_results[label]
        tokens = tokens_of(result)
        context = ref.contexts(formatter, request).policy
        z_b = policy.logits(context + tokens)[len(context) - 1:len(context) - 1 + len(tokens)]  # [steps, vocab]
        top = torch.topk(z_b, request.get("top_k", 10)).indices.tolist()
        outside += sum(token not in top[t] for t, token in enumerate(tokens))
    assert outside >= 1


def test_penalties_change_the_answer(parity_results):
    """The penalties have force: with them, PAD's and VANILLA's answers differ (and still equal the reference's,
    test_greedy_matches_official_rule)."""
    for penalized, plain in (("penalized_pad", "prompt0"), ("penalized_vanilla", "vanilla0")):
        assert tokens_of(parity_results[penalized][1]) != tokens_of(parity_results[plain][1]), penalized


# Two policy logits closer than this (relative) are a tie: the fixed-shape and eager steps reach the logits
# through different kernels on some CPUs (fused products in one, LibTorch's in the other), whose last bits
# differ by up to about 1e-6 relative (SmolLM2, float32), so either may rank a tie's two tokens first.
TIE = 1e-5


def tied(a, b):
    return abs(a - b) <= TIE * max(1.0, abs(a), abs(b))


def assert_same_step(ours, theirs, where):
    """One decode step's diagnostics equal up to ties: the same token, the same candidates in the same order
    (a tied pair may swap, and a tie at the top-k boundary may bring in the other token), each with its
    policy logit and score. Returns whether a tie changed the candidates."""
    assert ours["token"] == theirs["token"], where
    proven = dict(zip(theirs["candidates"], zip(theirs["policy_logits"], theirs["scores"])))
    mine = dict(zip(ours["candidates"], zip(ours["policy_logits"], ours["scores"])))
    for a in proven.keys() & mine.keys():
        assert np.allclose(mine[a], proven[a], rtol=1e-4, atol=1e-4), (where, a, mine[a], proven[a])
    for extra, others in ((mine.keys() - proven.keys(), theirs), (proven.keys() - mine.keys(), ours)):
        for a in extra:  # in one top-k only: only where it ties with the other's last candidate
            logit = (mine | proven)[a][0]
            assert tied(logit, others["policy_logits"][-1]), (where, a, logit, others["policy_logits"])
    for a, b in zip(ours["candidates"], theirs["candidates"]):
        if a != b:
            assert tied((mine | proven)[a][0], (mine | proven)[b][0]), (where, a, b, mine, proven)
    return ours["candidates"] != theirs["candidates"]


def test_fixed_shape_steps_equal_the_proven_ones(parity_results, model_dir, adapter):
    """Decode steps in fixed shapes (cuda_graphs: on the CPU their twin, the same arithmetic run directly)
    choose the tokens the official rule chooses above, among the same candidates with the same scores."""
    labels = list(parity_results)
    results = generate(model_dir, adapter, [parity_results[label][0] for label in labels], batched=True,
                       kv_slots=48, max_seq_len=512, cuda_graphs=True)
    steps = ties = 0
    for label, result in zip(labels, results):
        proven = parity_results[label][1]
        assert tokens_of(result) == tokens_of(proven), label
        assert len(result["diagnostics"]) == len(proven["diagnostics"]) == STEPS, label
        for t, (ours, theirs) in enumerate(zip(result["diagnostics"], proven["diagnostics"])):
            steps += 1
            ties += assert_same_step(ours, theirs, (label, t))
    # Ties are rare, or the tolerance would hide a wrong order: one step in a hundred at most.
    assert ties <= steps // 100, (ties, steps)


def test_a_wrong_step_is_not_a_tie():
    """The comparison above has teeth: a swap of candidates that do not tie, a token outside the boundary's
    tie, a score off or another token fails; only a tied pair may swap."""
    theirs = {"token": 5, "candidates": [5, 7, 9], "policy_logits": [30.0, 23.136035, 23.136026],
              "scores": [1.0, 0.5, 0.2]}
    tie_swapped = {**theirs, "candidates": [5, 9, 7], "policy_logits": [30.0, 23.136030, 23.136029],
                   "scores": [1.0, 0.2, 0.5]}
    assert assert_same_step(tie_swapped, theirs, "tie")
    assert not assert_same_step(theirs, theirs, "same")
    assert assert_same_step({**theirs, "candidates": [5, 7, 11]}, theirs, "tie at the boundary")
    apart = {**theirs, "policy_logits": [30.0, 23.136035, 23.1]}
    with pytest.raises(AssertionError):
        assert_same_step({**apart, "candidates": [5, 9, 7], "policy_logits": [30.0, 23.1, 23.136035],
                          "scores": [1.0, 0.2, 0.5]}, apart, "swap")
    with pytest.raises(AssertionError):
        assert_same_step({**apart, "candidates": [5, 7, 11], "policy_logits": [30.0, 23.136035, 23.0]}, apart,
                         "boundary")
    with pytest.raises(AssertionError):
        assert_same_step({**theirs, "scores": [1.0, 0.5, 0.25]}, theirs, "score")
    with pytest.raises(AssertionError):
        assert_same_step({**theirs, "token": 7}, theirs, "token")


# ---------------------------------------------------------------------------------------------------------
# Batching: a request's tokens do not depend on what it is decoded with.

# On the tiny random model: its text is noise, so the stop strings "e" and "a" end rows early, at different steps.
BATCH_REQUESTS = [
    {"messages": [{"role": "user", "content": "Tell me a joke about computers."}], "principles": ["humor"],
     "max_new_tokens": 24},
    {"prompt": "The best way to learn a language is", "mode": "vanilla", "max_new_tokens": 10},
    {"messages": [{"role": "user", "content": "What is 2 + 2?"}], "principles": ["concise", "formal"],
     "top_k": 3, "beta": 2.0, "max_new_tokens": 20, "stop": ["e"]},
    {"messages": [{"role": "user", "content": "Name a color."}], "mode": "preference_prompt",
     "principles": ["poetic"], "max_new_tokens": 16},
    {"messages": [{"role": "user", "content": "Give me advice on sleeping well."}], "composition": "weighted",
     "principles": WEIGHTED, "weights": [0.6, 0.1, 0.3], "top_k": 15, "beta": 0.8, "max_new_tokens": 24},
    {"prompt": "Once upon a time", "principles": ["harmless"], "top_k": 1, "max_new_tokens": 12, "stop": ["a"]},
    {"messages": [{"role": "user", "content": "Describe the moon."}], "principles": ["vivid"],
     "policy_sees_guideline": False, "beta": 0.3, "max_new_tokens": 18},
    {"messages": [{"role": "user", "content": "Suggest a name for a cat."}], "principles": ["creative"],
     "temperature": 0.9, "seed": 11, "top_k": 12, "max_new_tokens": 20},
]


def test_batched_equals_one_at_a_time(tiny_model):
    alone = generate(*tiny_model, BATCH_REQUESTS, batched=False)
    together = generate(*tiny_model, BATCH_REQUESTS, batched=True)
    for request, a, b in zip(BATCH_REQUESTS, alone, together):
        assert tokens_of(a) and tokens_of(a) == tokens_of(b), request
        assert (a["text"], a["finish_reason"], a["prompt_tokens"]) == (b["text"], b["finish_reason"],
                                                                        b["prompt_tokens"]), request
    assert {r["finish_reason"] for r in alone} == {"stop", "length"}
    assert len({len(r["tokens"]) for r in alone}) >= 5  # rows leave the batch at different steps


def test_fixed_shape_steps_with_rows_coming_and_going(tiny_model):
    """With cuda_graphs, rows leave at different steps, prompts prefill in chunks beside decoding rows and
    the caches repack: the tokens are those of the eager steps."""
    eager = generate(*tiny_model, BATCH_REQUESTS, batched=True, max_batch_tokens=40)
    fixed = generate(*tiny_model, BATCH_REQUESTS, batched=True, max_batch_tokens=40, cuda_graphs=True)
    for request, a, b in zip(BATCH_REQUESTS, eager, fixed):
        assert tokens_of(a) == tokens_of(b), request
        assert (a["text"], a["finish_reason"]) == (b["text"], b["finish_reason"]), request


def tiny_pool(blocks, block_size=8):
    """A pool of `blocks` blocks of the tiny model (2 (keys, values) x 2 layers x 2 KV heads x 16 x 4 bytes a
    token), and max_seq_len as long as the pool: it must hold one sequence at its longest."""
    return {"kv_cache_bytes": blocks * block_size * 2 * 2 * 2 * 16 * 4, "kv_block_size": block_size,
            "max_seq_len": blocks * block_size}


@pytest.mark.parametrize("cuda_graphs", [False, True])
def test_preempted_sequences_are_recomputed_to_the_same_tokens(tiny_model, cuda_graphs):
    """A pool too small for the batch: when the running sequences need blocks that are not free, the youngest
    is preempted (its blocks given back) and later recomputed from its tokens; every answer is the one decoded
    with room to spare, and no request fails."""
    roomy = generate(*tiny_model, BATCH_REQUESTS, batched=True, cuda_graphs=cuda_graphs)
    kv = {}
    tight = generate(*tiny_model, BATCH_REQUESTS, batched=True, kv=kv, cuda_graphs=cuda_graphs, **tiny_pool(48))
    assert kv["blocks_total"] == 48 and kv["preemptions"] >= 2, kv
    for request, a, b in zip(BATCH_REQUESTS, roomy, tight):
        assert tokens_of(a) == tokens_of(b), request
        assert (a["text"], a["finish_reason"], a["prompt_tokens"]) == (b["text"], b["finish_reason"],
                                                                        b["prompt_tokens"]), request


def test_a_request_that_cannot_fit_the_pool_alone_is_refused(tiny_model):
    # 4 PRM rows and the policy's, each of its prompt plus 200 new tokens, in a pool of 48 blocks of 8.
    request = {**BATCH_REQUESTS[4], "max_new_tokens": 200}
    [result] = generate(*tiny_model, [request], **tiny_pool(48))
    assert result["error"]["code"] == "INVALID_ARGUMENT"
    assert "max_new_tokens: the prompts of its 4 rows plus 200 new tokens need" in result["error"]["message"]
    assert "more than the 48 the cache holds" in result["error"]["message"], result


def test_prefix_cache_computes_shared_prompts_once_and_keeps_the_tokens(tiny_model):
    """Requests one after another share the chat template's system prompt, and PAD rows the guideline: with
    the prefix cache their full blocks are computed once, without it every time; the tokens are the same,
    alone or batched, for VANILLA, PREFERENCE_PROMPT and PAD (PROMPT and WEIGHTED)."""
    cached, uncached = {}, {}
    with_cache = generate(*tiny_model, BATCH_REQUESTS, batched=False, kv=cached, kv_block_size=8)
    without = generate(*tiny_model, BATCH_REQUESTS, batched=False, kv=uncached, kv_block_size=8,
                       prefix_cache=False)
    batched = generate(*tiny_model, BATCH_REQUESTS, batched=True, kv_block_size=8)
    for request, a, b, c in zip(BATCH_REQUESTS, with_cache, without, batched):
        assert tokens_of(a) == tokens_of(b) == tokens_of(c), request
    assert uncached["prefix_hit_tokens"] == 0
    assert cached["prefix_hit_tokens"] > 0
    assert cached["prefill_tokens"] + cached["prefix_hit_tokens"] == uncached["prefill_tokens"], (cached, uncached)
    assert cached["prefill_tokens"] < 0.7 * uncached["prefill_tokens"], (cached, uncached)


@pytest.mark.parametrize("budget", [24, 40])
def test_chunked_prefill_equals_whole_prefill(tiny_model, budget):
    # A step of at most `budget` tokens: the prompts (20 to 60 tokens per row, up to 4 rows each) are prefilled
    # in chunks over several steps, beside the rows already decoding.
    whole = generate(*tiny_model, BATCH_REQUESTS, batched=True)
    chunked = generate(*tiny_model, BATCH_REQUESTS, batched=True, max_batch_tokens=budget)
    for request, a, b in zip(BATCH_REQUESTS, whole, chunked):
        assert tokens_of(a) == tokens_of(b), request
        assert (a["text"], a["finish_reason"], a["prompt_tokens"]) == (b["text"], b["finish_reason"],
                                                                        b["prompt_tokens"]), request
    # Whole, every prompt is prefilled in the first step; chunked, the last ones wait several steps.
    assert {r["first_token_step"] for r in whole} == {0}
    assert max(r["first_token_step"] for r in chunked) >= 3


def test_prefill_beside_decoding_rows_is_limited_by_the_stall_ratio(tiny_model):
    # A ratio far below what any prompt token costs: while rows decode, every step prefills the least chunk,
    # 16 tokens, so the prompts that were not prefilled whole in the first step wait more steps than under
    # max_batch_tokens alone; the tokens are the same. A ratio far above changes nothing.
    budget = {"max_batch_tokens": 160}
    plain = generate(*tiny_model, BATCH_REQUESTS, batched=True, **budget)
    limited = generate(*tiny_model, BATCH_REQUESTS, batched=True, prefill_stall_ratio=1e-9, **budget)
    unlimited = generate(*tiny_model, BATCH_REQUESTS, batched=True, prefill_stall_ratio=1e9, **budget)
    for request, a, b, c in zip(BATCH_REQUESTS, plain, limited, unlimited):
        assert tokens_of(a) == tokens_of(b) == tokens_of(c), request
    steps = [[r["first_token_step"] for r in results] for results in (plain, limited, unlimited)]
    assert steps[2] == steps[0], steps
    assert max(steps[1]) > max(steps[0]) + 3, steps


def test_max_batch_tokens_below_the_slots_is_refused(tiny_model):
    # Else decode rows could take the whole budget while a prompt waits.
    request = {"command": "generate", "policy": str(tiny_model[0]), "kv_slots": 24, "max_batch_tokens": 23,
               "requests": []}
    result = subprocess.run([probe("pad_probe")], input=json.dumps(request), capture_output=True, text=True,
                            timeout=300)
    assert result.returncode != 0
    assert "max_batch_tokens: 23 is less than the KV slots of every cache, 24" in result.stderr, result.stderr


# ---------------------------------------------------------------------------------------------------------
# Sampling.


def sampled(seed):
    return {"messages": [{"role": "user", "content": "Write a sentence about the ocean."}],
            "principles": ["poetic"], "temperature": 1.0, "seed": seed, "max_new_tokens": 16, "ignore_eos": True}


def test_sampling_is_reproducible_per_seed(tiny_model):
    requests = [sampled(seed) for seed in (0, 1, 2, 3)]
    first = [tokens_of(r) for r in generate(*tiny_model, requests)]
    second = [tokens_of(r) for r in generate(*tiny_model, requests)]
    assert first == second
    assert len({tuple(t) for t in first}) >= 3


def chi_square_p_value(observed, expected):
    """Pearson's test, bins with expected count < 5 merged (smallest first)."""
    order = np.argsort(expected)
    observed, expected = list(np.asarray(observed, float)[order]), list(np.asarray(expected, float)[order])
    while len(expected) > 1 and expected[0] < 5:
        expected[1] += expected.pop(0)
        observed[1] += observed.pop(0)
    observed, expected = np.array(observed), np.array(expected)
    statistic = float(((observed - expected) ** 2 / expected).sum())
    dof = len(expected) - 1
    return float(torch.special.gammaincc(torch.tensor(dof / 2.0, dtype=torch.float64),
                                         torch.tensor(statistic / 2.0, dtype=torch.float64)))


@pytest.mark.parametrize("mode", ["pad", "genarm"])
def test_sampler_draws_softmax_of_scores(model_dir, adapter, policy, prm, formatter, mode):
    temperature, draws = 1.5, 4000
    request = {"messages": [{"role": "user", "content": "Tell me about cats."}], "principles": ["humor"],
               "top_k": 10, "beta": 1.0, "temperature": temperature, "mode": mode}
    answer = run_probe({"command": "sample", "policy": str(model_dir), "dtype": "float32",
                        "reward_models": reward_models(model_dir, adapter), "requests": [request],
                        "draws": draws})
    # The scores are the reference's...
    theirs = ref.generate(policy, prm, formatter, {**request, "temperature": 0.0, "max_new_tokens": 1})[0]
    assert sorted(answer["candidates"]) == sorted(theirs.candidates)
    expected_scores = dict(zip(theirs.candidates, theirs.scores))
    for a, score in zip(answer["candidates"], answer["scores"]):
        assert abs(score - expected_scores[a]) <= 1e-4 * max(1.0, abs(score))
    # ...and the draws follow softmax(score / T) over the candidates.
    assert len(answer["draws"]) == draws and set(answer["draws"]) <= set(answer["candidates"])
    probabilities = ref.sampling_probabilities(answer["scores"], temperature).numpy()
    assert probabilities.max() < 0.9  # several candidates carry weight, or the test proves little
    observed = [answer["draws"].count(a) for a in answer["candidates"]]
    assert chi_square_p_value(observed, draws * probabilities) > 1e-3


def test_chi_square_rejects_a_wrong_distribution():
    """The test above has power: 4000 draws from the wrong temperature fail it."""
    scores = np.array([3.0, 2.5, 2.0, 1.2, 1.0, 0.4, 0.0, -0.5, -1.0, -2.0])
    rng = np.random.default_rng(0)
    draws = rng.choice(10, size=4000, p=ref.sampling_probabilities(scores, 1.0).numpy())
    observed = np.bincount(draws, minlength=10)
    assert chi_square_p_value(observed, 4000 * ref.sampling_probabilities(scores, 1.0).numpy()) > 1e-3
    assert chi_square_p_value(observed, 4000 * ref.sampling_probabilities(scores, 1.5).numpy()) < 1e-6


# ---------------------------------------------------------------------------------------------------------
# Invalid requests: INVALID_ARGUMENT naming the field, the other requests of the batch unharmed.

VALID = {"prompt": "Hello there.", "principles": ["humor"], "max_new_tokens": 2}
INVALID = [
    ("top_k", {"top_k": 0}),
    ("top_k", {"top_k": -3}),
    ("top_k", {"top_k": VOCAB + 1}),
    ("beta", {"beta": "nan"}),
    ("beta", {"beta": "inf"}),
    ("beta", {"beta": "-inf"}),
    ("temperature", {"temperature": -0.5}),
    ("temperature", {"temperature": "nan"}),
    ("temperature", {"temperature": "inf"}),
    ("principles[0]", {"principles": [""]}),
    ("principles[1]", {"principles": ["humor", ""]}),
    ("weights", {"composition": "weighted", "principles": ["humor", "harmless"], "weights": [1.0]}),
    ("weights", {"composition": "weighted", "principles": WEIGHTED, "weights": [0.5, 0.3, 0.1, 0.1]}),
    ("principles", {"principles": []}),
    ("principles", {"principles": None}),  # None: the field is left out
    ("prompt", {"prompt": "hello " * (MAX_PROMPT_TOKENS + 100)}),
    ("reward_model", {"reward_model": "no_such_prm"}),
    ("prompt", {"prompt": ""}),
    ("max_new_tokens", {"max_new_tokens": 100000}),  # 0 is libpad's "default"; the API refuses a sent 0
    ("max_new_tokens", {"max_new_tokens": -1}),
    ("presence_penalty", {"presence_penalty": 2.5}),
    ("frequency_penalty", {"frequency_penalty": "nan"}),
]


def test_invalid_requests(model_dir, adapter):
    requests = []
    for _, fields in INVALID:
        request = {**VALID, **fields}
        requests.append({k: v for k, v in request.items() if v is not None})
    # Valid ones in between, the edges of the ranges among them.
    valid = [dict(VALID), {**VALID, "top_k": 1, "beta": 0.0},
             {**VALID, "composition": "weighted", "principles": ["humor", "harmless"]}]
    results = generate(model_dir, adapter, valid[:1] + requests[:10] + valid[1:2] + requests[10:] + valid[2:])
    answers = results[1:11] + results[12:-1]
    for result in (results[0], results[11], results[-1]):
        assert len(tokens_of(result)) == 2
    for (field, fields), answer in zip(INVALID, answers):
        assert "error" in answer, (field, fields)
        assert answer["error"]["code"] == "INVALID_ARGUMENT", answer
        assert field in answer["error"]["message"], (field, answer["error"]["message"])
