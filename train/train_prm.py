"""Trains a personalized reward model (the paper's Algorithm 1) with TRL's DPOTrainer and peft.

The model is the PRM as pad_server serves it (prm_model.py): frozen backbone, LoRA, value head. DPO's
reference is the same model with adapters disabled, i.e. the policy, so the implicit token reward DPO learns,
log pi_theta(a|s) - log pi_ref(a|s), is the reward PAD computes over the policy's top-k at decode time.
Every pair is rendered with the server's guideline text and chat template (prm_data.py).

    python train/train_prm.py --backbone models/SmolLM2-135M-Instruct --train data/prm/train.jsonl \
        --heldout data/prm/heldout.jsonl --out prm/my-prm

The defaults are the paper's 8B settings (lr 5e-6, 3 epochs, cosine, effective batch 128, LoRA rank 8 on all
seven projections). Multi-GPU: `accelerate launch train/train_prm.py ...` (the effective batch is
per-device batch x gradient accumulation x processes). --resume continues from the last checkpoint in
OUT/checkpoints. The output directory holds the adapter, value_head.safetensors, training_log.jsonl and
manifest.json.
"""
import argparse
import collections
import hashlib
import json
import pathlib
import platform
import random
import shutil
import sys
import time

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import prm_data  # noqa: E402
import prm_model  # noqa: E402


EOS_TERMS = ("preference", "likelihood")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--backbone", required=True, help="the policy's Hugging Face directory (the frozen backbone)")
    p.add_argument("--train", required=True, help="preference pairs, JSONL (prm_data.py)")
    p.add_argument("--heldout", help="held-out pairs, evaluated every epoch")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--principles", nargs="*", help="train only on these principles")
    p.add_argument("--sources", nargs="*", help="train only on pairs from these sources (the pairs' source field)")
    p.add_argument("--max_pairs_per_principle", type=int, default=0, help="0: all")
    p.add_argument("--max_heldout_pairs", type=int, default=0, help="0: all")
    p.add_argument("--epochs", type=float, default=3.0)
    p.add_argument("--lr", type=float, default=5e-6)
    p.add_argument("--scheduler", default="cosine")
    p.add_argument("--warmup", type=float, default=0.0, help="warmup steps, or a fraction of all steps if < 1")
    p.add_argument("--batch_size", type=int, default=4, help="pairs per device per forward")
    p.add_argument("--effective_batch", type=int, default=128, help="pairs per optimizer step, all devices")
    p.add_argument("--lora_rank", type=int, default=8)
    p.add_argument("--lora_alpha", type=float, default=16)
    p.add_argument("--lora_dropout", type=float, default=0.0)
    p.add_argument("--dpo_beta", type=float, default=0.1, help="DPO's beta (not PAD's)")
    p.add_argument("--loss_types", nargs="+", default=["sigmoid"],
                   help="TRL loss types: sigmoid is DPO; sigmoid sft adds the chosen answers' NLL (RPO)")
    p.add_argument("--loss_weights", nargs="+", type=float, help="one per loss type; default 1 each")
    p.add_argument("--eos_trained_by", nargs="*", choices=EOS_TERMS, default=list(EOS_TERMS),
                   help="the loss terms that train an answer's end-of-sequence token: preference (DPO), "
                        "likelihood (sft), both (the default) or none")
    p.add_argument("--eos_principles", nargs="*",
                   help="only these principles' answers keep their end-of-sequence token; the others are trained "
                        "as unfinished (prm_data.py); default: every principle's")
    p.add_argument("--max_length", type=int, default=512, help="prompt + answer tokens; answers are cut")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="bf16", help="bf16: autocast, fp32 master weights")
    p.add_argument("--export_dtype", choices=["float32", "bfloat16"], default="bfloat16")
    p.add_argument("--save_steps", type=int, default=20, help="checkpoint every N optimizer steps")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in OUT/checkpoints")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="CPU threads for torch; 0: torch's default")
    return p.parse_args(argv)


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def select(pairs, principles, sources, per_principle, seed):
    """The pairs of `principles` and `sources` (all when None), at most `per_principle` of each principle (0:
    all), shuffled."""
    by_principle = collections.defaultdict(list)
    for pair in pairs:
        wanted = principles is None or pair["principle"] in principles
        if wanted and (sources is None or pair["source"] in sources):
            by_principle[pair["principle"]].append(pair)
    rng = random.Random(seed)
    chosen = []
    for principle in sorted(by_principle):
        group = by_principle[principle]
        if per_principle and len(group) > per_principle:
            group = rng.sample(group, per_principle)
        chosen.extend(group)
    rng.shuffle(chosen)
    return chosen


def unfinished_unless(pairs, principles):
    """`pairs` with the answers of pairs outside `principles` marked unfinished (None: all pairs as they are)."""
    if principles is None:
        return pairs
    return [p if p["principle"] in principles else {**p, "chosen_finished": False, "rejected_finished": False}
            for p in pairs]


def without_eos_when_unfinished(row, eos_id):
    """A tokenized DPO row whose unfinished answers (prm_data.py) lose the end-of-sequence id TRL appended."""
    for side in ("chosen", "rejected"):
        ids = row[f"{side}_ids"]
        if not row[f"{side}_finished"] and ids[-1:] == [eos_id]:
            row[f"{side}_ids"] = ids[:-1]
    return row


def prm_trainer_class(dpo_trainer):
    """TRL's DPOTrainer with two changes TRL has no switch for (TRL is pinned in requirements.txt; tests check
    both):

    - an unfinished answer is trained without the end-of-sequence token, which TRL appends to every
      non-conversational answer: the tokenized rows are mended after TRL's own preparation;
    - `eos_trained_by` names the loss terms that train that token ("preference": DPO, "likelihood": the sft
      term), because where an answer's ending is learned decides how long PAD's answers are (README.md).
      The preference term runs in TRL; when the two terms differ on the token, the likelihood term is
      computed here, with its own forward pass over the chosen answers.
    """

    class PrmDpoTrainer(dpo_trainer):
        eos_trained_by = EOS_TERMS

        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
            dataset = super()._prepare_dataset(dataset, processing_class, args, dataset_name)
            return dataset.map(without_eos_when_unfinished, fn_kwargs={"eos_id": self._tokenizer.eos_token_id})

        def _compute_loss(self, model, inputs, return_outputs):
            in_preference, in_likelihood = (term in self.eos_trained_by for term in EOS_TERMS)
            if in_preference and in_likelihood:
                return super()._compute_loss(model, inputs, return_outputs)
            completion_mask = inputs["completion_mask"]  # [2B, T]: B chosen rows, then B rejected rows
            is_eos = (inputs["input_ids"] == self._tokenizer.eos_token_id) & completion_mask.bool()  # [2B, T]
            without_eos = completion_mask * ~is_eos  # [2B, T]
            preference_inputs = inputs if in_preference else {**inputs, "completion_mask": without_eos}
            types, weights = self.loss_types, self.loss_weights
            sft_weight = sum(w for t, w in zip(types, weights) if t == "sft")
            if not (in_preference or in_likelihood) or not sft_weight:
                return super()._compute_loss(model, preference_inputs, return_outputs)
            if self.precompute_ref_logps:
                raise ValueError("--eos_trained_by with one term: the reference is computed with each term's "
                                 "masks, so it cannot be precomputed")
            kept = [(t, w) for t, w in zip(types, weights) if t != "sft"]
            self.loss_types, self.loss_weights = [t for t, _ in kept], [w for _, w in kept]
            try:
                result = super()._compute_loss(model, preference_inputs, return_outputs)
            finally:
                self.loss_types, self.loss_weights = types, weights
            loss, outputs = result if return_outputs else (result, None)
            rows = completion_mask.size(0) // 2
            chosen_ids = inputs["input_ids"][:rows]  # [B, T]
            answer = (completion_mask if in_likelihood else without_eos)[:rows, 1:].bool()  # [B, T-1]
            logits = model(input_ids=chosen_ids, attention_mask=inputs["attention_mask"][:rows],
                           use_cache=False).logits[:, :-1]  # [B, T-1, vocab]
            logps = logits.float().log_softmax(-1).gather(-1, chosen_ids[:, 1:, None]).squeeze(-1)  # [B, T-1]
            nll = -logps[answer].mean()
            self._metrics["train" if model.training else "eval"]["nll"].append(nll.item())
            loss = loss + sft_weight * nll
            return (loss, outputs) if return_outputs else loss

    return PrmDpoTrainer


class LogCallback:
    """Appends every log (loss, pair accuracy, reward margin, eval metrics) to training_log.jsonl and prints
    a one-line summary; the TrainerCallback base is mixed in at construction (transformers is imported late)."""

    KEYS = (("loss", "loss"), ("rewards/accuracies", "acc"), ("rewards/margins", "margin"),
            ("eval_loss", "eval_loss"), ("eval_rewards/accuracies", "eval_acc"),
            ("eval_rewards/margins", "eval_margin"))

    def __init__(self, path):
        self.path = path

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs:
            return
        record = {"step": state.global_step, "epoch": round(state.epoch or 0.0, 4), "time": time.time(), **logs}
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        shown = [f"{label} {logs[key]:.4f}" for key, label in self.KEYS if key in logs]
        if shown:
            print(f"[train_prm] step {state.global_step}/{state.max_steps} epoch {record['epoch']:.2f}: "
                  + ", ".join(shown), flush=True)


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    # transformers, datasets and trl are slow to import; argument errors come first.
    from datasets import Dataset
    from transformers import AutoTokenizer, TrainerCallback
    from trl import DPOConfig, DPOTrainer
    from transformers.trainer_utils import get_last_checkpoint

    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(args.backbone)
    principles = set(args.principles) if args.principles else None
    sources = set(args.sources) if args.sources else None
    train_pairs = select(prm_data.load_pairs(args.train), principles, sources, args.max_pairs_per_principle,
                         args.seed)
    heldout_pairs = (select(prm_data.load_pairs(args.heldout), principles, sources, 0, args.seed)
                     if args.heldout else [])
    if args.max_heldout_pairs:
        heldout_pairs = heldout_pairs[:args.max_heldout_pairs]
    eos_principles = set(args.eos_principles) if args.eos_principles is not None else None
    train_pairs = unfinished_unless(train_pairs, eos_principles)
    heldout_pairs = unfinished_unless(heldout_pairs, eos_principles)
    if not train_pairs:
        sys.exit(f"train_prm: {args.train}: no pairs of principles {sorted(principles or [])} "
                 f"and sources {sorted(sources or [])}")

    world = int(__import__("os").environ.get("WORLD_SIZE", "1"))
    accumulation = max(1, args.effective_batch // (args.batch_size * world))
    model = prm_model.backbone_with_value_head(args.backbone)
    config = DPOConfig(
        output_dir=str(out / "checkpoints"),
        num_train_epochs=args.epochs,
        learning_rate=args.lr,
        lr_scheduler_type=args.scheduler,
        warmup_steps=args.warmup,
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=args.batch_size,
        gradient_accumulation_steps=accumulation,
        beta=args.dpo_beta,
        loss_type=args.loss_types,
        loss_weights=args.loss_weights,
        max_length=args.max_length,
        bf16=args.precision == "bf16",
        # A 135M model on a CPU has memory to spare; recomputing activations would only cost time.
        gradient_checkpointing=torch.cuda.is_available(),
        eval_strategy="epoch" if heldout_pairs else "no",
        save_strategy="steps",
        save_steps=args.save_steps,
        save_total_limit=2,
        logging_steps=1,
        report_to=[],
        seed=args.seed,
        use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=0,
    )
    callback = type("PrmLogCallback", (LogCallback, TrainerCallback), {})(out / "training_log.jsonl")
    trainer = prm_trainer_class(DPOTrainer)(
        model=model,
        args=config,
        train_dataset=Dataset.from_list(prm_data.dpo_rows(tokenizer, train_pairs)),
        eval_dataset=Dataset.from_list(prm_data.dpo_rows(tokenizer, heldout_pairs)) if heldout_pairs else None,
        processing_class=tokenizer,
        # TRL wraps the model itself, so its DPO reference is the model with adapters disabled: the policy.
        peft_config=prm_model.lora_config(args.lora_rank, args.lora_alpha, args.lora_dropout),
        callbacks=[callback],
    )
    trainer.eos_trained_by = tuple(args.eos_trained_by)
    resume = get_last_checkpoint(str(out / "checkpoints")) if args.resume else None
    if args.resume and resume is None:
        print(f"[train_prm] no checkpoint in {out / 'checkpoints'}; starting from the beginning", flush=True)
    started = time.time()
    trainer.train(resume_from_checkpoint=resume)
    seconds = time.time() - started
    evals = [log for log in trainer.state.log_history if "eval_loss" in log]
    metrics = evals[-1] if evals else {}

    files = prm_model.export_prm(trainer.model, out, getattr(torch, args.export_dtype))
    counts = collections.Counter(p["principle"] for p in train_pairs)
    manifest = {
        "backbone": str(args.backbone),
        "train": {"path": str(args.train), "sha256": sha256(args.train), "pairs": len(train_pairs),
                  "pairs_per_principle": dict(sorted(counts.items())),
                  "unfinished": {side: sum(not p.get(f"{side}_finished", True) for p in train_pairs)
                                 for side in ("chosen", "rejected")}},
        "heldout": ({"path": str(args.heldout), "sha256": sha256(args.heldout), "pairs": len(heldout_pairs)}
                    if args.heldout else None),
        "hyperparameters": {k: v for k, v in vars(args).items()
                            if k not in ("backbone", "train", "heldout", "out", "resume")},
        "gradient_accumulation_steps": accumulation,
        "optimizer_steps": trainer.state.global_step,
        "train_seconds": round(seconds, 1),
        "final_eval": metrics,
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "threads": torch.get_num_threads(),
                    "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
        "versions": {m: __import__(m).__version__ for m in ("torch", "transformers", "trl", "peft")},
        "files": {f.name: sha256(f) for f in files},
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    # The data builder's manifest (sources, counts, checksums) travels with the PRM trained on it.
    data_manifest = pathlib.Path(args.train).with_name("manifest.json")
    if data_manifest.exists():
        shutil.copyfile(data_manifest, out / "data_manifest.json")
    # The exact prompts trained on, so a test can prove the server renders each to the same ids.
    with open(out / "train_prompts.jsonl", "w") as f:
        for pair in train_pairs:
            f.write(json.dumps({"principle": pair["principle"], "messages": prm_data.messages_of(pair)}) + "\n")
    print(f"[train_prm] {len(train_pairs)} pairs, {trainer.state.global_step} steps in {seconds:.0f} s; "
          f"wrote {out}", flush=True)


if __name__ == "__main__":
    main()
