"""A PRM that does not fit its backbone is refused at load time with an error naming the file and field."""
import json
import shutil
import subprocess

import peft
import pytest
import torch
import transformers
from safetensors.torch import load_file, save_file

from conftest import probe

TINY = dict(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2)


@pytest.fixture(scope="module")
def backbone(tmp_path_factory, model_dir):
    """A tiny random policy; SmolLM2's tokenizer makes it a whole model directory, as the probe loads one."""
    path = tmp_path_factory.mktemp("backbone")
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**TINY))
    model.save_pretrained(path)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(model_dir / name, path / name)
    return path


def adapter_for(config_kwargs, path, **lora):
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**config_kwargs))
    config = peft.LoraConfig(r=4, lora_alpha=8, init_lora_weights=False,
                             **({"target_modules": ["q_proj", "v_proj"]} | lora))
    peft.get_peft_model(model, config).save_pretrained(path)
    return path


def load_error(backbone, adapter, value_head=""):
    request = {"command": "prm_logits", "policy": str(backbone), "reward_model": "default",
               "reward_models": [{"name": "default", "backbone": str(backbone), "adapter": str(adapter),
                                  "value_head": value_head}],
               "sequences": [[1, 2, 3]], "output": "/dev/null"}
    result = subprocess.run([probe("pad_probe")], input=json.dumps(request), capture_output=True, text=True,
                            timeout=120)
    return result.returncode, result.stderr.strip()


def test_fitting_adapter_loads(backbone, tmp_path):
    code, message = load_error(backbone, adapter_for(TINY, tmp_path / "a"))
    assert code == 0, message


def test_adapter_for_other_shapes(backbone, tmp_path):
    adapter = adapter_for(TINY | {"hidden_size": 48, "num_attention_heads": 4}, tmp_path / "a")
    code, message = load_error(backbone, adapter)
    assert code == 1
    assert message == (f"pad_probe: INVALID_ARGUMENT: {adapter}/adapter_model.safetensors: tensor "
                       "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight: shape [4, 48], expected [4, 32]")


def test_adapter_with_more_layers(backbone, tmp_path):
    adapter = adapter_for(TINY | {"num_hidden_layers": 3}, tmp_path / "a")
    code, message = load_error(backbone, adapter)
    assert message.startswith(f"pad_probe: INVALID_ARGUMENT: {adapter}/adapter_model.safetensors: tensor "
                              "base_model.model.model.layers.2.")
    assert message.endswith("is not a LoRA update of a q/k/v/o/gate/up/down projection of this 2-layer model")


def test_unknown_target_module(backbone, tmp_path):
    adapter = adapter_for(TINY, tmp_path / "a")
    config = json.loads((adapter / "adapter_config.json").read_text())
    config["target_modules"] = ["q_proj", "lm_head"]
    (adapter / "adapter_config.json").write_text(json.dumps(config))
    code, message = load_error(backbone, adapter)
    assert message == (f'pad_probe: INVALID_ARGUMENT: {adapter}/adapter_config.json: target_modules "lm_head" '
                       "names no q/k/v/o/gate/up/down projection of this model")


def test_adapter_for_other_architecture(backbone, tmp_path):
    adapter = adapter_for(TINY, tmp_path / "a")
    config = json.loads((adapter / "adapter_config.json").read_text())
    config["auto_mapping"] = {"base_model_class": "GPT2LMHeadModel", "parent_library": "transformers"}
    (adapter / "adapter_config.json").write_text(json.dumps(config))
    code, message = load_error(backbone, adapter)
    assert message == (f'pad_probe: INVALID_ARGUMENT: {adapter}/adapter_config.json: auto_mapping.base_model_class '
                       '"GPT2LMHeadModel" is not a Llama-architecture model')


def test_dora_refused(backbone, tmp_path):
    adapter = adapter_for(TINY, tmp_path / "a", use_dora=True)
    code, message = load_error(backbone, adapter)
    assert message == f"pad_probe: INVALID_ARGUMENT: {adapter}/adapter_config.json: use_dora is not supported"


def test_value_head_shape(backbone, tmp_path):
    adapter = adapter_for(TINY, tmp_path / "a")
    save_file({"v_head.summary.weight": torch.zeros(16, 32), "v_head.summary.bias": torch.zeros(32)},
              adapter / "value_head.safetensors")
    code, message = load_error(backbone, adapter)
    assert message == (f"pad_probe: INVALID_ARGUMENT: {adapter}/value_head.safetensors: tensor "
                       "v_head.summary.weight: shape [16, 32], expected [32, 32]")


@pytest.mark.parametrize("edit, why", [
    (lambda c: [c], "must hold a JSON object"),
    (lambda c: c | {"use_rslora": "yes"}, "use_rslora must be true or false"),
    (lambda c: c | {"fan_in_fan_out": 0}, "fan_in_fan_out must be true or false"),
    (lambda c: c | {"bias": 3}, "bias must be a string"),
    (lambda c: c | {"peft_type": ["LORA"]}, "peft_type must be a string"),
    (lambda c: c | {"target_modules": {"q_proj": 1}}, 'target_modules must be a list of module names or "all-linear"'),
])
def test_mistyped_adapter_config_is_named(backbone, tmp_path, edit, why):
    """A mistyped field is an error naming the file and field, not an exception out of the loader."""
    adapter = adapter_for(TINY, tmp_path / "a")
    config = json.loads((adapter / "adapter_config.json").read_text())
    (adapter / "adapter_config.json").write_text(json.dumps(edit(config)))
    code, message = load_error(backbone, adapter)
    assert (code, message) == (1, f"pad_probe: INVALID_ARGUMENT: {adapter}/adapter_config.json: {why}")


def test_null_optional_fields_mean_their_defaults(backbone, tmp_path):
    adapter = adapter_for(TINY, tmp_path / "a")
    config = json.loads((adapter / "adapter_config.json").read_text())
    config |= {"use_rslora": None, "use_dora": None, "bias": None, "auto_mapping": None}
    (adapter / "adapter_config.json").write_text(json.dumps(config))
    code, message = load_error(backbone, adapter)
    assert code == 0, message
