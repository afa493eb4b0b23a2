#!/usr/bin/env bash
# Sets up (idempotent), then answers a sample prompt with SmolLM2, streamed to the terminal.
# (The gRPC server takes this script's place once it exists.)
source "$(dirname "$0")/common.sh"
setup_all
prompt="${*:-Write a haiku about decoding one token at a time.}"
exec "$PAD_BUILD/tools/pad_generate" --model="$PAD_MODEL" --prompt="$prompt"
