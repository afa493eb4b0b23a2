#!/usr/bin/env bash
# Evaluates what PAD buys against the real pad_server over gRPC and writes eval/RESULTS.md (raw generations
# under data/eval/). Sets up first (idempotent) if the server, the model or the Python environment is missing.
# Arguments go to eval/evaluate.py, e.g. --prm DIR, --n 40, --quick; see eval/evaluate.py --help.
source "$(dirname "$0")/common.sh"
if [[ ! -x "$PAD_BUILD/server/pad_server" || ! -f "$PAD_MODEL/.verified" || ! -x "$PAD_PYTHON" ]]; then
  setup_all
fi
cd "$PAD_ROOT"
exec "$PAD_PYTHON" eval/evaluate.py "$@"
