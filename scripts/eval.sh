#!/usr/bin/env bash
# Evaluates what PAD buys against the real pad_server over gRPC and writes eval/RESULTS.md (raw generations
# under data/eval/). Sets up first (idempotent) if the server, the model or the Python environment is missing,
# and builds the evaluation prompts (train/data/build_data.py) if data/prm has none.
# Arguments go to eval/evaluate.py, e.g. --prm DIR, --n 40, --quick; see eval/evaluate.py --help.
source "$(dirname "$0")/common.sh"
if [[ ! -x "$PAD_BUILD/server/pad_server" || ! -f "$PAD_MODEL/.verified" || ! -x "$PAD_PYTHON" ]]; then
  setup_all
fi
ensure_prm_data
cd "$PAD_ROOT"
exec "$PAD_PYTHON" eval/evaluate.py "$@"
