#!/usr/bin/env bash
# Sets up (idempotent), then serves SmolLM2 over gRPC with PAD. The bundled PRM is the policy's own
# backbone with an identity value head (a placeholder until a trained PRM adapter is given with
# --reward_models=NAME=BACKBONE:ADAPTER_DIR). Extra arguments go to pad_server.
source "$(dirname "$0")/common.sh"
setup_all
cat >&2 <<MSG

  pad_server: gRPC on localhost:50051, metrics on http://localhost:9090/metrics
  Try, from another terminal:
    $PAD_BUILD/client/pad_client --server=localhost:50051 --prompt="Tell me about owls" --principles=humor
    $PAD_BUILD/client/pad_client --server=localhost:50051 --prompt="Tell me about owls" --mode=vanilla
  Ctrl-C (SIGINT) or SIGTERM drains the streams in flight and stops.

MSG
exec "$PAD_BUILD/server/pad_server" --policy="$PAD_MODEL" --listen=0.0.0.0:50051 --metrics_listen=0.0.0.0:9090 \
  --kv_slots=16 --max_seq_len=4096 "$@"
