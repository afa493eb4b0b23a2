"""PRM training (train/): the pairs format, the prompt rendering against the server's, and a real TRL run whose
export peft loads and pad_server's library scores identically.

The reference for the exported files is pad_reference.RewardModel: peft's PeftModel.from_pretrained over a
fresh backbone, then the value head from value_head.safetensors, then lm_head. The server side is
build/tests/pad_probe, the same PadDecoder::Prepare and RewardModel that pad_server runs.
"""
import contextlib
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer

import pad_reference as ref
from conftest import ROOT, probe

sys.path.insert(0, str(ROOT / "train"))
import prm_data  # noqa: E402
import prm_model  # noqa: E402

DEMO_PRM = ROOT / "prm" / "SmolLM2-135M-PAD-demo"
VOCAB = 49152  # SmolLM2


def run_probe(request):
    result = subprocess.run([probe("pad_probe")], input=json.dumps(request), capture_output=True, text=True,
                            timeout=900)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def write_jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


GOOD = {"principle": "concise", "prompt": "Define owl.", "chosen": "A nocturnal bird of prey.",
        "rejected": "An owl is any bird of the order Strigiformes, " * 5, "source": "test"}


@pytest.mark.parametrize("line, message", [
    ("{not json", "not JSON"),
    (json.dumps([1]), "must be a JSON object"),
    (json.dumps({**GOOD, "principle": ""}), "principle: must be a non-empty string"),
    (json.dumps({k: v for k, v in GOOD.items() if k != "chosen"}), "chosen: must be a non-empty string"),
    (json.dumps({**GOOD, "rejected": 3}), "rejected: must be a non-empty string"),
    (json.dumps({k: v for k, v in GOOD.items() if k != "source"}), "source: must be a non-empty string"),
    (json.dumps({k: v for k, v in GOOD.items() if k != "prompt"}),
     "prompt: exactly one of prompt and messages must be given"),
    (json.dumps({**GOOD, "messages": [{"role": "user", "content": "x"}]}),
     "prompt: exactly one of prompt and messages must be given"),
    (json.dumps({**{k: v for k, v in GOOD.items() if k != "prompt"}, "messages": [{"role": "bot", "content": "x"}]}),
     "messages[0]: must be"),
    (json.dumps({**{k: v for k, v in GOOD.items() if k != "prompt"},
                 "messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]}),
     "messages: the last message must be the user's"),
    (json.dumps({**GOOD, "rejected": GOOD["chosen"]}), "rejected: equals chosen"),
    (json.dumps({**GOOD, "chosen_finished": "no"}), "chosen_finished: must be true or false"),
    (json.dumps({**GOOD, "score": 1}), "score: unknown field"),
])
def test_bad_pair_is_named_by_file_line_and_field(tmp_path, line, message):
    path = write_jsonl(tmp_path / "pairs.jsonl", [GOOD, "", line])
    with pytest.raises(prm_data.PairError) as error:
        prm_data.load_pairs(path)
    assert str(error.value).startswith(f"{path}:3: {message}"), str(error.value)


def test_good_pairs_load(tmp_path):
    chat = {**{k: v for k, v in GOOD.items() if k != "prompt"},
            "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Owl?"}]}
    assert prm_data.load_pairs(write_jsonl(tmp_path / "pairs.jsonl", [GOOD, chat])) == [GOOD, chat]
    with pytest.raises(prm_data.PairError, match="holds no pairs"):
        prm_data.load_pairs(write_jsonl(tmp_path / "empty.jsonl", []))


# ---------------------------------------------------------------------------------------------------------
# One implementation of the guideline text: the ids TRL trains on are the ids the server's PRM row holds.

RENDER_CASES = [
    ("concise", {"prompt": "Define owl."}),
    ("humorous", {"prompt": "What does \"serendipity\" mean?  Explain, with émojis 🦉 and\ttabs."}),
    ("harmless and positive", {"prompt": "How do I kill a Python process?\n\nThanks!"}),
    ("answer like a pirate", {"messages": [{"role": "system", "content": "You are terse."},
                                            {"role": "user", "content": "Hi"},
                                            {"role": "assistant", "content": "Hello."},
                                            {"role": "user", "content": "Tell me about rivers."}]}),
]


def server_prompt_ids(model_dir, cases):
    requests = [{"messages": prm_data.messages_of(pair), "principles": [principle], "mode": "pad",
                 "max_new_tokens": 1} for principle, pair in cases]
    answer = run_probe({"command": "prepare", "policy": str(model_dir), "reward_models": [{"name": "default"}],
                        "requests": requests})
    return [r["prm_ids"][0] for r in answer["results"]]


def dpo_prompt_ids(tokenizer, cases):
    """The prompt ids as TRL's DPOTrainer tokenizes the rows train_prm.py gives it."""
    rows = prm_data.dpo_rows(tokenizer, [{**pair, "principle": principle, "chosen": "a", "rejected": "b"}
                                         for principle, pair in cases])
    return [tokenizer(row["prompt"])["input_ids"] for row in rows]


def test_training_prompts_are_the_servers(model_dir):
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    assert dpo_prompt_ids(tokenizer, RENDER_CASES) == server_prompt_ids(model_dir, RENDER_CASES)
    # Not vacuous: the principle is in the ids.
    assert len(set(map(tuple, dpo_prompt_ids(tokenizer, RENDER_CASES[:1] + [("humorous", RENDER_CASES[0][1])])))) == 2


@pytest.mark.skipif(not (DEMO_PRM / "train_prompts.jsonl").exists(), reason="no demo PRM committed")
def test_every_demo_training_prompt_is_the_servers(model_dir):
    cases = [(row["principle"], {"messages": row["messages"]})
             for row in map(json.loads, (DEMO_PRM / "train_prompts.jsonl").read_text().splitlines())]
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    ours, theirs = dpo_prompt_ids(tokenizer, cases), server_prompt_ids(model_dir, cases)
    mismatches = [i for i in range(len(cases)) if ours[i] != theirs[i]]
    assert not mismatches, f"{len(mismatches)} of {len(cases)} differ, first: {cases[mismatches[0]]}"


# ---------------------------------------------------------------------------------------------------------
# A real DPO run, its export, and the PRM it makes as peft and as pad_server see it.


def test_unfinished_answers_are_trained_without_end_of_sequence(model_dir, tmp_path):
    """TRL appends the end-of-sequence token to every answer. An unfinished one (the start of an answer that
    the sampler's token limit cut) must not get it, or the PRM learns that answers end where sampling stopped
    and PAD cuts every answer short. Checked on the rows the trainer itself prepares."""
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer
    sys.path.insert(0, str(ROOT / "train"))
    import train_prm
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    pairs = [{**GOOD, "chosen_finished": False}, {**GOOD, "rejected_finished": False}, GOOD]
    config = DPOConfig(output_dir=str(tmp_path), use_cpu=True, report_to=[], per_device_train_batch_size=1)
    trainer = train_prm.prm_trainer_class(DPOTrainer)(
        model=prm_model.backbone_with_value_head(model_dir), args=config, processing_class=tokenizer,
        train_dataset=Dataset.from_list(prm_data.dpo_rows(tokenizer, pairs)),
        peft_config=prm_model.lora_config(8, 16, 0.0))
    rows = list(trainer.train_dataset)
    eos = tokenizer.eos_token_id
    assert [(r["chosen_ids"][-1] == eos, r["rejected_ids"][-1] == eos) for r in rows] == [
        (False, True), (True, False), (True, True)]
    whole = rows[2]
    assert rows[0]["chosen_ids"] == whole["chosen_ids"][:-1] and rows[1]["rejected_ids"] == whole["rejected_ids"][:-1]


@pytest.mark.parametrize("eos_trained_by", [("preference", "likelihood"), ("likelihood",), ("preference",), ()])
def test_end_of_sequence_is_trained_by_the_terms_named(model_dir, tmp_path, eos_trained_by):
    """--eos_trained_by names the loss terms that see an answer's end-of-sequence token: the DPO term sums each
    answer's log-ratio with or without it, the sft term is the chosen answers' mean negative log-likelihood
    with or without it. Computed here by hand from the model's logits and compared with the trainer's loss,
    on a batch the trainer itself collates."""
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer
    sys.path.insert(0, str(ROOT / "train"))
    import train_prm
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    pairs = [GOOD, {**GOOD, "prompt": "Define lamp.", "chosen": "A light.", "rejected": "A device that gives light."}]
    config = DPOConfig(output_dir=str(tmp_path), use_cpu=True, report_to=[], per_device_train_batch_size=2,
                       loss_type=["sigmoid", "sft"], beta=0.1)
    trainer = train_prm.prm_trainer_class(DPOTrainer)(
        model=prm_model.backbone_with_value_head(model_dir), args=config, processing_class=tokenizer,
        train_dataset=Dataset.from_list(prm_data.dpo_rows(tokenizer, pairs)),
        peft_config=prm_model.lora_config(8, 16, 0.0))
    trainer.eos_trained_by = eos_trained_by
    model = trainer.model
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0.0, 0.02)
    batch = next(iter(trainer.get_train_dataloader()))
    ids, attention = batch["input_ids"], batch["attention_mask"]  # [4, T]: 2 chosen rows, then 2 rejected
    answer = batch["completion_mask"][:, 1:].bool()  # [4, T-1]: the answer tokens, as predicted
    eos = (ids[:, 1:] == tokenizer.eos_token_id) & answer  # [4, T-1]
    assert eos.sum(dim=1).tolist() == [1, 1, 1, 1]

    def token_logps(adapters):  # [4, T-1]
        with torch.no_grad(), (contextlib.nullcontext() if adapters else model.disable_adapter()):
            logits = model(input_ids=ids, attention_mask=attention).logits[:, :-1].float()  # [4, T-1, vocab]
        return logits.log_softmax(-1).gather(-1, ids[:, 1:, None]).squeeze(-1)

    policy, reference = token_logps(True), token_logps(False)
    in_preference = answer if "preference" in eos_trained_by else answer & ~eos  # [4, T-1]
    in_likelihood = answer if "likelihood" in eos_trained_by else answer & ~eos  # [4, T-1]
    ratio = ((policy - reference) * in_preference).sum(dim=1)  # [4]
    preference = -torch.nn.functional.logsigmoid(0.1 * (ratio[:2] - ratio[2:])).mean()
    likelihood = -policy[:2][in_likelihood[:2]].mean()
    with torch.no_grad():
        loss = trainer.compute_loss(model, batch)
    torch.testing.assert_close(loss, preference + likelihood, rtol=0, atol=1e-4)
    # The batch tells the settings apart: TRL's own loss (the token in both terms) is another number.
    whole_ratio = ((policy - reference) * answer).sum(dim=1)  # [4]
    every_token = (-torch.nn.functional.logsigmoid(0.1 * (whole_ratio[:2] - whole_ratio[2:])).mean()
                   - policy[:2][answer[:2]].mean())
    assert (abs(loss - every_token) > 1e-3) == (len(eos_trained_by) < 2)


def test_reference_of_dpo_is_the_policy(model_dir):
    """With adapters disabled (TRL's DPO reference) the PRM model is the policy, even after training moved
    the LoRA and the value head."""
    from transformers import AutoModelForCausalLM
    model = prm_model.build_prm(model_dir)
    with torch.no_grad():
        head = prm_model.value_head_of(model)
        head.summary.bias.add_(0.3)
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0.0, 0.01)
    policy = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    ids = torch.tensor([[1, 4093, 198, 75, 46197, 77, 2789]])
    with torch.no_grad(), model.disable_adapter():
        reference = model(input_ids=ids).logits
    with torch.no_grad():
        trained = model(input_ids=ids).logits
        torch.testing.assert_close(reference, policy(input_ids=ids).logits, rtol=0, atol=1e-5)
    assert (trained - reference).abs().max() > 0.1


def train(tmp_path, model_dir, *extra):
    words = ["owl", "river", "lamp", "chair", "piano", "cloud"]
    pairs = [{"principle": "concise", "prompt": f"Define {w}.", "chosen": f"A {w}: a thing.",
              "rejected": f"The {w} is a thing which, as anyone will tell you at great length, is " * 3,
              "source": "test"} for w in words]
    write_jsonl(tmp_path / "train.jsonl", pairs[:4])
    write_jsonl(tmp_path / "heldout.jsonl", pairs[4:])
    out = tmp_path / "prm"
    result = subprocess.run(
        [sys.executable, str(ROOT / "train" / "train_prm.py"), "--backbone", str(model_dir),
         "--train", str(tmp_path / "train.jsonl"), "--heldout", str(tmp_path / "heldout.jsonl"),
         "--out", str(out), "--lr", "3e-3", "--batch_size", "2", "--effective_batch", "2",
         "--export_dtype", "float32", "--save_steps", "1", *extra],
        capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result.stdout


@pytest.fixture(scope="module")
def trained(model_dir, tmp_path_factory):
    return train(tmp_path_factory.mktemp("train"), model_dir, "--epochs", "1")


def test_training_logs_and_exports_what_the_server_loads(trained):
    out, stdout = trained
    log = [json.loads(line) for line in (out / "training_log.jsonl").read_text().splitlines()]
    steps = [r for r in log if "loss" in r]
    assert [r["step"] for r in steps] == [1, 2]
    assert all("rewards/accuracies" in r and "rewards/margins" in r for r in steps)
    assert any("eval_rewards/accuracies" in r for r in log)
    assert "[train_prm] step 2/2" in stdout
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["r"] == 8 and config["modules_to_save"] is None
    assert sorted(config["target_modules"]) == sorted(prm_model.LORA_TARGETS)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["train"]["pairs"] == 4 and manifest["optimizer_steps"] == 2
    assert set(manifest["files"]) == {"adapter_config.json", "adapter_model.safetensors", "value_head.safetensors"}


def test_resume_continues_from_the_last_checkpoint(tmp_path, model_dir):
    out, _ = train(tmp_path, model_dir, "--epochs", "1")
    assert (out / "checkpoints" / "checkpoint-2").is_dir()
    _, stdout = train(tmp_path, model_dir, "--epochs", "2", "--resume")
    steps = [json.loads(line)["step"] for line in (out / "training_log.jsonl").read_text().splitlines()
             if "\"loss\"" in line]
    assert steps == [1, 2, 3, 4], steps  # the second run logged only steps 3 and 4


def prm_logits_both_ways(model_dir, adapter_dir, tmp_path):
    """The PRM's logits on a few sequences from peft (pad_reference) and from our library (pad_probe)."""
    formatter = ref.Formatter(model_dir)
    sequences = [formatter.encode({"messages": [{"role": "user", "content": "Define owl."}]}, ["concise"]),
                 formatter.encode({"messages": [{"role": "user", "content": "Say something nice."}]},
                                  ["positive"]) + [504, 3251, 314]]
    output = tmp_path / "prm_logits.bin"
    answer = run_probe({"command": "prm_logits", "policy": str(model_dir), "dtype": "float32",
                        "reward_models": [{"name": "prm", "adapter": str(adapter_dir)}], "reward_model": "prm",
                        "sequences": sequences, "output": str(output)})
    ours = np.fromfile(output, dtype=np.float32).reshape(-1, VOCAB)
    bounds = np.cumsum([0] + answer["rows"])
    peft_prm = ref.RewardModel(model_dir, adapter_dir, adapter_dir / "value_head.safetensors")
    policy = ref.Policy(model_dir)
    return [(ours[bounds[i]:bounds[i + 1]], peft_prm.logits(s).numpy(), policy.logits(s).numpy())
            for i, s in enumerate(sequences)]


def relative_error(ours, theirs):
    return float(np.abs(ours - theirs).max() / np.abs(theirs).max())


def test_trained_prm_is_the_same_in_peft_and_in_the_server(trained, model_dir, tmp_path):
    out, _ = trained
    for ours, peft_logits, policy_logits in prm_logits_both_ways(model_dir, out, tmp_path):
        assert relative_error(ours, peft_logits) <= 1e-4
        assert relative_error(policy_logits, peft_logits) >= 1e-2  # training moved the PRM off the policy


@pytest.mark.cpu_dependent
@pytest.mark.skipif(not (DEMO_PRM / "adapter_config.json").exists(), reason="no demo PRM committed")
def test_demo_prm_is_the_same_in_peft_and_in_the_server(model_dir, tmp_path):
    for ours, peft_logits, policy_logits in prm_logits_both_ways(model_dir, DEMO_PRM, tmp_path):
        assert relative_error(ours, peft_logits) <= 1e-4
        assert relative_error(policy_logits, peft_logits) >= 1e-2
