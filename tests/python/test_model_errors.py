"""Malformed model directories give a clear error naming the file and tensor, never a crash."""
import json
import shutil
import subprocess

import pytest
import torch
import transformers
from safetensors.torch import load_file, save_file

from conftest import probe


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    config = transformers.LlamaConfig(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False)
    path = tmp_path_factory.mktemp("tiny")
    transformers.LlamaForCausalLM(config).save_pretrained(path)
    return path


def load_error(model_dir):
    request = {"command": "logits", "model": str(model_dir), "sequences": [[1, 2]], "output": "/dev/null"}
    result = subprocess.run([probe("model_probe")], input=json.dumps(request), capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 1, result.stdout
    return result.stderr.strip()


def copy_of(tiny_model, tmp_path):
    target = tmp_path / "model"
    shutil.copytree(tiny_model, target)
    return target


def test_loads_when_intact(tiny_model, tmp_path):
    request = {"command": "logits", "model": str(tiny_model), "sequences": [[1, 2]], "output": str(tmp_path / "o")}
    result = subprocess.run([probe("model_probe")], input=json.dumps(request), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_unknown_architecture(tiny_model, tmp_path):
    model = copy_of(tiny_model, tmp_path)
    config = json.loads((model / "config.json").read_text())
    config["architectures"] = ["FalconForCausalLM"]
    (model / "config.json").write_text(json.dumps(config))
    assert load_error(model) == (f'model_probe: INVALID_ARGUMENT: {model}/config.json: architectures '
                                 '"FalconForCausalLM" is not supported (LlamaForCausalLM, MistralForCausalLM)')


def test_missing_tensor(tiny_model, tmp_path):
    model = copy_of(tiny_model, tmp_path)
    tensors = load_file(model / "model.safetensors")
    del tensors["model.layers.1.mlp.up_proj.weight"]
    save_file(tensors, model / "model.safetensors")
    assert load_error(model) == (f"model_probe: NOT_FOUND: {model}/model.safetensors: "
                                 "tensor model.layers.1.mlp.up_proj.weight is missing")


def test_shape_mismatch(tiny_model, tmp_path):
    model = copy_of(tiny_model, tmp_path)
    tensors = load_file(model / "model.safetensors")
    tensors["model.layers.0.self_attn.k_proj.weight"] = torch.zeros(8, 32)
    save_file(tensors, model / "model.safetensors")
    assert load_error(model) == (f"model_probe: INVALID_ARGUMENT: {model}/model.safetensors: "
                                 "tensor model.layers.0.self_attn.k_proj.weight: shape [8, 32], expected [16, 32]")


def test_integer_weights(tiny_model, tmp_path):
    model = copy_of(tiny_model, tmp_path)
    tensors = load_file(model / "model.safetensors")
    tensors["model.norm.weight"] = torch.ones(32, dtype=torch.int32)
    save_file(tensors, model / "model.safetensors")
    assert load_error(model) == (f"model_probe: INVALID_ARGUMENT: {model}/model.safetensors: "
                                 "tensor model.norm.weight: dtype I32 is not a supported weight dtype")


def test_truncated_file(tiny_model, tmp_path):
    model = copy_of(tiny_model, tmp_path)
    path = model / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    message = load_error(model)
    assert message.startswith(f"model_probe: DATA_LOSS: {path}: tensor ")
    assert "(truncated file?)" in message
