#!/usr/bin/env bash
# Trains the broad PRM (prm/SmolLM2-135M-PAD-broad): best-of-n pairs of the policy's own answers on broad
# prompts under many free-text wordings of each principle (train/data/build_broad.py), with the demo's
# trainer settings (scripts/train_demo_prm.sh): RPO's loss, LoRA + value head, bfloat16 autocast on the CPU,
# one epoch at lr 2e-4. Only the concise pairs train the end-of-sequence token (build_broad marks the others
# unfinished). Sampling takes about 16 minutes and training about half an hour on 2 cores.
# Extra arguments go to train_prm.py (e.g. --out DIR to leave the committed PRM alone).
source "$(dirname "$0")/common.sh"
setup_all
cd "$PAD_ROOT"
if [[ ! -s data/prm-broad/train.jsonl ]]; then
  log "building the broad PRM's pairs (the policy's samples through pad_server)"
  "$PAD_PYTHON" train/data/build_broad.py --out data/prm-broad
fi
log "training the broad PRM (TRL DPOTrainer + peft, CPU)"
"$PAD_PYTHON" train/train_prm.py --backbone "$PAD_MODEL" --train data/prm-broad/train.jsonl \
  --heldout data/prm-broad/heldout.jsonl --out prm/SmolLM2-135M-PAD-broad \
  --loss_types sigmoid sft --epochs 1 --lr 2e-4 --warmup 0.05 --batch_size 4 --effective_batch 8 \
  --max_length 224 --precision bf16 --max_heldout_pairs 80 --save_steps 20 "$@"
