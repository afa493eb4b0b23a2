#!/usr/bin/env bash
# Reproduces the demo PRM that serve.sh serves (prm/SmolLM2-135M-PAD-demo): builds the preference data
# offline (train/data/build_data.py), then trains LoRA + value head with TRL's DPOTrainer (train/train_prm.py)
# on the CPU, in bfloat16 autocast (1.7x float32 on an AVX512-BF16 CPU), with RPO's loss (DPO + the chosen
# answers' NLL), on at most 260 pairs per principle so that it takes about half an hour on 2 cores. Concise,
# harmless and positive train on SmolLM2's own answers (PAD only ever picks among the policy's top-k
# tokens); humorous on Bierce vs WordNet, the one off-policy source. Two choices keep PAD's answers as long
# and as fluent as the policy's (train/README.md, "What we tried"): no answer's end-of-sequence token is
# trained (--eos_principles with no principle), so the PRM does not reward stopping as such, and the loop
# pairs (an answer over its own loop) teach it to turn away where the policy's greedy continuation loops.
# The data's 40 edgy-sounding benign requests answered ("kill a frozen app") keep it from refusing such
# requests.
# Extra arguments go to train_prm.py (e.g. --out DIR to leave the committed PRM alone).
source "$(dirname "$0")/common.sh"
setup_all
ensure_prm_data
log "training the demo PRM (TRL DPOTrainer + peft, CPU)"
cd "$PAD_ROOT"
"$PAD_PYTHON" train/train_prm.py --backbone "$PAD_MODEL" --train data/prm/train.jsonl \
  --heldout data/prm/heldout.jsonl --out prm/SmolLM2-135M-PAD-demo --max_pairs_per_principle 260 --eos_principles \
  --sources smollm2-length smollm2-refusal refusal-smollm2 smollm2-refusal-generated smollm2-afinn devil-wordnet loop \
  --loss_types sigmoid sft --epochs 1 --lr 2e-4 --warmup 0.05 --batch_size 4 --effective_batch 8 \
  --max_length 192 --precision bf16 \
  --max_heldout_pairs 120 --save_steps 10 "$@"
