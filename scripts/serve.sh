#!/usr/bin/env bash
# Sets up (idempotent), then answers a sample prompt with SmolLM2, streamed to the terminal.
# (The gRPC server takes this script's place once it exists.)
source "$(dirname "$0")/common.sh"
setup_all
prompt="${*:-Give me three tips for staying focused while studying.}"
exec "$PAD_BUILD/tools/pad_generate" --model="$PAD_MODEL" --prompt="$prompt"
