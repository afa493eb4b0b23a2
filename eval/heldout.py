"""Policy accuracy on held-out preference pairs: does PAD's token score rank `chosen` above `rejected`?

For a pair (principle, prompt, chosen, rejected), both models see the guideline prompt (render_prompt); the
completion is the stripped answer's tokens followed by the end-of-turn token (the tokenizer's EOS,
<|im_end|> for SmolLM2), as TRL's DPO rows that trained the PRM have it (train/prm_data.dpo_rows).
PAD's rule, without its top-k cut, is score(a) = (1 - beta) z_b + beta z_r + const (DESIGN:
z_b + beta (log_softmax z_r - log_softmax z_b)), so a completion's score is
sum_t log_softmax((1 - beta) z_b + beta z_r)[a_t]. The pair counts as ranked right when chosen's summed score
exceeds rejected's. beta = 0 is the policy alone on the same guideline prompt; beta = 1 is the PRM alone.
Summed log-probabilities favour the shorter answer, so "concise" pairs are easy even for the policy.

The PRM is loaded here with transformers + peft, not from tests/: LoRA over a fresh copy of the policy's
backbone, then z_r = lm_head(W_v h + b_v) with h the final normed hidden state and (W_v, b_v) from
value_head.safetensors.
"""
import pathlib
import sys

import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
GUIDELINE = ("[Guidelines] Your task is to generate response by considering the following principle. "
             "[Principles] {principles} [Instruction] {prompt}")


def _local_render_prompt(tokenizer, principles, prompt):
    """The server's rendering: the guideline text as the user message, chat template, generation prompt."""
    content = GUIDELINE.format(principles=" and ".join(principles), prompt=prompt)
    return tokenizer.apply_chat_template([{"role": "user", "content": content}], tokenize=False,
                                         add_generation_prompt=True)


def find_render_prompt():
    """(render_prompt, prompt_ids, where): train/prm_data.py's when it imports, else this module's copies.

    prompt_ids(tokenizer, principles, pair) -> the ids the PRM row holds for the pair's request.
    """
    train = ROOT / "train"
    if (train / "prm_data.py").exists():
        if str(train) not in sys.path:
            sys.path.insert(0, str(train))
        try:
            from prm_data import prompt_ids, render_prompt  # noqa: PLC0415
            return render_prompt, prompt_ids, "train/prm_data.py"
        except ImportError as e:
            print(f"heldout: cannot import train/prm_data ({e}); using eval/heldout.py's rendering", flush=True)

    def local_prompt_ids(tokenizer, principles, pair):
        return tokenizer(_local_render_prompt(tokenizer, principles, pair["prompt"]))["input_ids"]
    return _local_render_prompt, local_prompt_ids, "eval/heldout.py (train/prm_data.py absent)"


class Scorer:
    """Policy and PRM in float32 on the CPU; call from one thread."""

    def __init__(self, policy_dir, adapter_dir):
        from peft import PeftModel  # noqa: PLC0415
        from safetensors.torch import load_file  # noqa: PLC0415
        from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: PLC0415
        self.tokenizer = AutoTokenizer.from_pretrained(str(policy_dir))
        self.policy = AutoModelForCausalLM.from_pretrained(str(policy_dir), dtype=torch.float32).eval()
        base = AutoModelForCausalLM.from_pretrained(str(policy_dir), dtype=torch.float32)
        self.prm = PeftModel.from_pretrained(base, str(adapter_dir)).eval()
        self.prm_lm = base  # peft injected its LoRA layers into `base` in place
        head = load_file(str(pathlib.Path(adapter_dir) / "value_head.safetensors"))
        self.v_weight = head["v_head.summary.weight"].float()  # [hidden, hidden]
        self.v_bias = head["v_head.summary.bias"].float()  # [hidden]
        self.render_prompt, self.prompt_ids, self.render_source = find_render_prompt()
        self.end_of_turn = self.tokenizer.eos_token_id

    @torch.no_grad()
    def _logits(self, prompt_ids, completion):
        """(z_b, z_r), each [len(completion), vocab]: the logits that predict each completion token."""
        ids = torch.tensor([prompt_ids + completion])
        span = slice(len(prompt_ids) - 1, len(prompt_ids) - 1 + len(completion))
        z_b = self.policy(ids).logits[0, span].float()
        h = self.prm_lm.model(input_ids=ids).last_hidden_state[0, span]
        z_r = self.prm_lm.lm_head(torch.nn.functional.linear(h, self.v_weight, self.v_bias)).float()
        return z_b, z_r

    def pair_scores(self, pair, betas):
        """{beta: (score(chosen), score(rejected))} for one held-out pair."""
        prompt_ids = list(self.prompt_ids(self.tokenizer, [pair["principle"]], pair))
        out = {beta: [] for beta in betas}
        for answer in (pair["chosen"], pair["rejected"]):
            completion = self.tokenizer(answer.strip(), add_special_tokens=False).input_ids + [self.end_of_turn]
            z_b, z_r = self._logits(prompt_ids, completion)
            target = torch.tensor(completion)
            for beta in betas:
                logp = torch.log_softmax((1 - beta) * z_b + beta * z_r, -1)
                out[beta].append(float(logp.gather(1, target[:, None]).sum()))
        return {beta: tuple(v) for beta, v in out.items()}
