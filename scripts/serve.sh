#!/usr/bin/env bash
# Sets up (idempotent), then serves SmolLM2 with PAD over gRPC and the OpenAI-compatible HTTP API. The default PRM is the broad PRM trained
# by scripts/train_broad_prm.sh (prm/SmolLM2-135M-PAD-broad: LoRA + value head over the policy's own
# backbone, one copy of the weights; it beats prompting on held-out prompts for positive, concise and
# humorous, eval/userbench/); the demo PRM ("smollm2-demo") and "identity" (the bare backbone, every
# reward 0) stay available by name. Extra arguments go to pad_server (a later --reward_models replaces these).
source "$(dirname "$0")/common.sh"
setup_all
cat >&2 <<MSG

  pad_server: gRPC on localhost:50051; HTTP on localhost:9090: the web chat at http://localhost:9090/,
  the OpenAI-compatible API at http://localhost:9090/v1 (docs/api.md), metrics at /metrics
  Try, from another terminal:
    $PAD_BUILD/client/pad_client --server=localhost:50051 --prompt="Tell me about owls" --principles=humor
    $PAD_BUILD/client/pad_client --server=localhost:50051 --prompt="Tell me about owls" --mode=vanilla
    $PAD_BUILD/client/pad_client --server=localhost:50051 --prompt="Define owl." --principles=concise
    curl -sN localhost:9090/v1/chat/completions -d '{"model": "SmolLM2-135M-Instruct", "stream": true,
      "messages": [{"role": "user", "content": "Define owl."}], "pad": {"principles": ["concise"]}}'
  Ctrl-C (SIGINT) or SIGTERM drains the streams in flight and stops.

MSG
# libgomp's threads spin up to 300,000 times before they sleep, taking the cores from any other process busy
# on them; 3,000 keeps one server's speed and lets two share the cores (bench/RESULTS.md). libgomp reads it
# when it loads, so it is set here, not by the server.
export GOMP_SPINCOUNT="${GOMP_SPINCOUNT:-3000}"
exec "$PAD_BUILD/server/pad_server" --policy="$PAD_MODEL" --listen=0.0.0.0:50051 --http_listen=0.0.0.0:9090 \
  --kv_slots=16 --max_seq_len=4096 --reward_models="smollm2-broad=:$PAD_BROAD_PRM,smollm2-demo=:$PAD_DEMO_PRM,identity" "$@"
