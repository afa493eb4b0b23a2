"""The PRM as pad_server serves it, as a trainable peft model, and its export to the files the server loads.

The PRM (DESIGN.md 1): the frozen backbone with LoRA on its projections, and a value head, a square
Linear(hidden, hidden) with bias initialised to the identity, between the final RMSNorm and lm_head:
z_r = lm_head(W_v h + b_v). The head sits inside the backbone (after `model.norm`) because TRL computes
log-probs from the backbone's last hidden state and lm_head's weight without calling lm_head's forward.

peft holds the head as a module to save: with adapters disabled it runs the original, identity head, so
TRL's DPO reference (adapters off) is exactly the policy.
"""
import json
import pathlib

import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM

# The paper's setting: LoRA on all seven projections of every layer.
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
VALUE_HEAD_KEYS = ("v_head.summary.weight", "v_head.summary.bias")


class ValueHead(torch.nn.Module):
    """`summary`: Linear(hidden, hidden) with bias, the identity at first (the names are the file's keys)."""

    def __init__(self, hidden_size):
        super().__init__()
        self.summary = torch.nn.Linear(hidden_size, hidden_size, bias=True)
        with torch.no_grad():
            self.summary.weight.copy_(torch.eye(hidden_size))
            self.summary.bias.zero_()

    def forward(self, hidden):  # [batch, seq, hidden] -> [batch, seq, hidden]
        return self.summary(hidden)


class NormThenValueHead(torch.nn.Module):
    """The backbone's final RMSNorm followed by the value head; replaces `model.norm`."""

    def __init__(self, norm, hidden_size):
        super().__init__()
        self.norm = norm
        self.v_head = ValueHead(hidden_size).to(norm.weight.dtype)

    def forward(self, hidden):  # [batch, seq, hidden] -> [batch, seq, hidden]
        return self.v_head(self.norm(hidden))


def value_head_of(model):
    """The trainable (adapter-side) ValueHead of a model made by `build_prm`."""
    wrapper = model.get_base_model().model.norm.v_head
    return wrapper.modules_to_save[wrapper.active_adapter] if hasattr(wrapper, "modules_to_save") else wrapper


def backbone_with_value_head(backbone_dir, dtype=torch.float32):
    """A fresh copy of the backbone at `backbone_dir` with the identity value head after its final norm."""
    model = AutoModelForCausalLM.from_pretrained(str(backbone_dir), dtype=dtype)
    if model.config.model_type not in ("llama", "mistral"):
        raise ValueError(f"{backbone_dir}/config.json: model_type: {model.config.model_type!r} is not a "
                         "Llama-architecture model (pad_server serves LlamaForCausalLM)")
    model.model.norm = NormThenValueHead(model.model.norm, model.config.hidden_size)
    return model


def lora_config(rank=8, alpha=16, dropout=0.0, targets=LORA_TARGETS):
    """LoRA on `targets`, the value head trained whole; everything else frozen."""
    return LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(targets),
                      modules_to_save=["v_head"], bias="none", task_type="CAUSAL_LM")


def build_prm(backbone_dir, **lora):
    """The trainable PRM as one peft model (TRL builds the same from backbone_with_value_head + lora_config)."""
    return get_peft_model(backbone_with_value_head(backbone_dir), lora_config(**lora))


def export_prm(model, out_dir, dtype=torch.bfloat16):
    """Writes what pad_server loads: adapter_config.json and adapter_model.safetensors (LoRA only, peft's
    layout) and value_head.safetensors (v_head.summary.weight [hidden, hidden], v_head.summary.bias
    [hidden]). Returns the paths written."""
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    adapter_name = model.active_adapter
    lora = {}
    for name, tensor in model.state_dict().items():
        if f".lora_A.{adapter_name}." in name or f".lora_B.{adapter_name}." in name:
            # peft's file keys drop the adapter name: ...q_proj.lora_A.default.weight -> ...q_proj.lora_A.weight
            key = name.replace(f".{adapter_name}.", ".")
            lora[key] = tensor.detach().to(dtype).contiguous()
    head = value_head_of(model)
    value_head = {
        "v_head.summary.weight": head.summary.weight.detach().to(dtype).contiguous(),
        "v_head.summary.bias": head.summary.bias.detach().to(dtype).contiguous(),
    }
    config = model.peft_config[adapter_name].to_dict()
    # The server applies LoRA itself and reads the head from its own file; it refuses modules_to_save.
    config["modules_to_save"] = None
    config["target_modules"] = sorted(config["target_modules"])
    config["base_model_name_or_path"] = pathlib.Path(config.get("base_model_name_or_path") or "").name
    save_file(lora, str(out / "adapter_model.safetensors"), metadata={"format": "pt"})
    save_file(value_head, str(out / "value_head.safetensors"), metadata={"format": "pt"})
    (out / "adapter_config.json").write_text(json.dumps(config, indent=2, sort_keys=True, default=list) + "\n")
    return [out / "adapter_config.json", out / "adapter_model.safetensors", out / "value_head.safetensors"]
