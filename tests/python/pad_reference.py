"""PAD as the authors' code runs it, written with transformers and peft: the reference for test_pad_parity.py.

Nothing here is shared with the C++ side. The policy is a transformers LlamaForCausalLM, the personalized
reward model (PRM) a peft PeftModel over its own copy of the backbone (LoRA unmerged) followed by the value
head from value_head.safetensors and the backbone's lm_head: z_r = lm_head(W_v h + b_v), h the final normed
hidden state. Both models run in float32 on the whole sequence at every step, with no KV cache, as the
official code does (DESIGN.md section 1). The GENARM mode (genarm_step) is the same token reward over the
whole vocabulary, the candidates being the top k by score: no code of GenARM's authors is involved.

`generate` is that loop. `replay` applies the same rule at every position of a given continuation from one
forward pass per model over the whole of it: the rule's choice after each prefix, and its candidates,
rewards and scores. If every choice equals the given token, `generate` would have produced that
continuation (causal attention: the logits at position t depend on tokens <= t only; the two differ only by
float rounding, about 2e-5 on SmolLM2's scores), so a 64-step parity check costs two forwards instead of 128.
"""
import collections
import dataclasses

import torch
from peft import PeftModel
from safetensors.torch import load_file
from tokenizers import Tokenizer
from transformers import AutoModelForCausalLM, AutoTokenizer

GUIDELINE = ("[Guidelines] Your task is to generate response by considering the following principle. "
             "[Principles] {principles} [Instruction] {instruction}")


def guideline_text(principles, instruction):
    return GUIDELINE.format(principles=" and ".join(principles), instruction=instruction)


class Formatter:
    """Request -> token ids: the chat template through transformers, ids through the tokenizers library."""

    def __init__(self, model_dir):
        self.template = AutoTokenizer.from_pretrained(str(model_dir))
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))

    def encode(self, request, principles):
        """Ids of the request's prompt, with a guideline naming `principles` in front of it (None: none)."""
        if "messages" in request:
            messages = [dict(m) for m in request["messages"]]
            if principles is not None:
                last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
                messages[last_user]["content"] = guideline_text(principles, messages[last_user]["content"])
            text = self.template.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            # The template wrote the special tokens (Llama-3's BOS), as apply_chat_template(tokenize=True).
            return self.tokenizer.encode(text, add_special_tokens=False).ids
        text = request["prompt"] if principles is None else guideline_text(principles, request["prompt"])
        return self.tokenizer.encode(text, add_special_tokens=True).ids

    def decode(self, ids):
        return self.tokenizer.decode(ids, skip_special_tokens=False)


@dataclasses.dataclass
class Contexts:
    """What each model sees for one request: the policy's ids, one id list per PRM row and its weight."""
    policy: list
    prm: list  # [rows][ids]
    weights: list  # [rows]


def contexts(formatter, request):
    mode = request.get("mode", "pad")
    principles = request.get("principles", [])
    if mode == "vanilla":
        return Contexts(formatter.encode(request, None), [], [])
    guided = formatter.encode(request, principles)
    if mode == "preference_prompt":
        return Contexts(guided, [], [])
    policy = guided if request.get("policy_sees_guideline", True) else formatter.encode(request, None)
    if request.get("composition", "prompt") == "weighted":
        weights = request.get("weights", [1.0 / len(principles)] * len(principles))
        return Contexts(policy, [formatter.encode(request, [p]) for p in principles], list(weights))
    return Contexts(policy, [guided], [1.0])


class Policy:
    def __init__(self, model_dir):
        self.model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()

    @torch.no_grad()
    def logits(self, ids, last_only=False):
        """[len(ids), vocab] float32 logits of every position ([1, vocab] with last_only)."""
        return self.model(torch.tensor([ids]), logits_to_keep=1 if last_only else 0).logits[0].float()


class RewardModel:
    """peft LoRA over a fresh copy of the backbone, then the value head, then the backbone's lm_head."""

    def __init__(self, backbone_dir, adapter_dir, value_head_path):
        base = AutoModelForCausalLM.from_pretrained(str(backbone_dir), dtype=torch.float32)
        self.model = (PeftModel.from_pretrained(base, str(adapter_dir)) if adapter_dir else base).eval()
        self.causal_lm = base  # peft injected its LoRA layers into `base` in place
        head = load_file(str(value_head_path))
        self.v_weight = head["v_head.summary.weight"].float()  # [hidden, hidden]
        self.v_bias = head["v_head.summary.bias"].float()  # [hidden]

    @torch.no_grad()
    def logits(self, ids, last_only=False):
        """[len(ids), vocab] float32: lm_head(W_v h + b_v) at every position ([1, vocab] with last_only)."""
        # LlamaModel.forward applies the final RMSNorm before it returns last_hidden_state.
        hidden = self.causal_lm.model(input_ids=torch.tensor([ids])).last_hidden_state[0]
        hidden = hidden[-1:] if last_only else hidden
        return self.causal_lm.lm_head(torch.nn.functional.linear(hidden, self.v_weight, self.v_bias)).float()


@dataclasses.dataclass
class Step:
    token: int
    candidates: list  # [k] ids: the policy's top k, best first (genarm: the top k by score)
    policy_logits: list  # [k] z_b over the candidates
    rewards: list  # [k] r(a), summed over PRM rows with their weights
    scores: list  # [k] z_b + beta * r

    @property
    def reward(self):
        return self.rewards[self.candidates.index(self.token)]


def pad_step(z_b, z_r_rows, weights, top_k, beta):
    """One decode step: z_b [vocab] policy logits, z_r_rows [rows, vocab] PRM logits -> (ids, z_b, r, score)."""
    policy_top, candidates = torch.topk(z_b, top_k)
    reward = torch.zeros(top_k)
    for z_r, w in zip(z_r_rows, weights):
        reward += w * (torch.log_softmax(z_r[candidates], -1) - torch.log_softmax(policy_top, -1))
    return candidates, policy_top, reward, policy_top + beta * reward


def genarm_step(z_b, z_r_rows, weights, top_k, beta):
    """GENARM: PAD's reward over the whole vocabulary, r(a) = log_softmax_V(z_r)[a] - log_softmax_V(z_b)[a];
    the candidates are the top k tokens by score z_b + beta * r."""
    reward = torch.zeros_like(z_b)
    for z_r, w in zip(z_r_rows, weights):
        reward += w * (torch.log_softmax(z_r, -1) - torch.log_softmax(z_b, -1))
    scores, candidates = torch.topk(z_b + beta * reward, top_k)
    return candidates, z_b[candidates], reward[candidates], scores


def penalized(scores, candidates, request, generated):
    """OpenAI's presence and frequency penalties on the candidates' scores [k] (float32), given the tokens
    generated so far: score(a) - presence * [c(a) > 0] - frequency * c(a), the penalty summed in float64."""
    counts = collections.Counter(generated)
    c = torch.tensor([counts[int(a)] for a in candidates], dtype=torch.float64)
    penalty = request.get("presence_penalty", 0.0) * (c > 0) + request.get("frequency_penalty", 0.0) * c
    return scores - penalty.to(scores.dtype)


def rule(request, z_b, z_r_rows, weights, generated=()):
    """The greedy Step for one state, after the tokens `generated`. Vanilla and preference_prompt: the policy's
    top k scored by its own logits."""
    k = request.get("top_k", 10)
    mode = request.get("mode", "pad")
    if mode in ("pad", "genarm"):
        step = pad_step if mode == "pad" else genarm_step
        candidates, top, reward, scores = step(z_b, z_r_rows, weights, k, request.get("beta", 1.0))
    else:
        top, candidates = torch.topk(z_b, k)
        reward, scores = torch.zeros(k), top
    scores = penalized(scores, candidates, request, generated)
    token = int(candidates[int(torch.argmax(scores))])
    return Step(token, candidates.tolist(), top.tolist(), reward.tolist(), scores.tolist())


def sampling_probabilities(scores, temperature):
    """What a sampled step draws from: softmax(score / T) over the candidates."""
    return torch.softmax(torch.as_tensor(scores, dtype=torch.float64) / temperature, -1)


def eos_ids(model):
    eos = model.generation_config.eos_token_id
    return set(eos if isinstance(eos, list) else [eos])


def generate(policy, prm, formatter, request):
    """The official loop, greedy: both models on the whole sequence every step. Returns the Steps taken.

    Sampled runs are compared in distribution (sampling_probabilities), not token by token.
    """
    assert request.get("temperature", 0.0) == 0.0
    ctx = contexts(formatter, request)
    eos = set() if request.get("ignore_eos", False) else eos_ids(policy.model)
    steps, generated = [], []
    for _ in range(request.get("max_new_tokens", 128)):
        z_b = policy.logits(ctx.policy + generated, last_only=True)[-1]
        z_r = [prm.logits(ids + generated, last_only=True)[-1] for ids in ctx.prm]
        steps.append(rule(request, z_b, z_r, ctx.weights, generated))
        generated.append(steps[-1].token)
        if generated[-1] in eos:
            break
    return steps


def replay(policy, prm, formatter, request, tokens):
    """The rule's Step after each prefix tokens[:t], t = 0..len(tokens)-1, from one forward per model row.

    Step.token is the rule's greedy choice, which need not equal tokens[t].
    """
    ctx = contexts(formatter, request)
    n = len(tokens)
    z_b_all = policy.logits(ctx.policy + tokens)[len(ctx.policy) - 1:len(ctx.policy) - 1 + n]
    z_r_all = [prm.logits(ids + tokens)[len(ids) - 1:len(ids) - 1 + n] for ids in ctx.prm]
    return [rule(request, z_b_all[t], [z[t] for z in z_r_all], ctx.weights, tokens[:t]) for t in range(n)]
