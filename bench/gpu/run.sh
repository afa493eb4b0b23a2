#!/usr/bin/env bash
# The GPU run (docs/gpu.md): on the device machine, in one call, well inside 8 minutes,
#   1. configure and build lib/ with the probes and benchmarks (no gRPC there: PAD_WITH_GRPC=OFF), against
#      the Debian packages that bench/gpu/prepare.sh put in .deps/debs, unpacked here into .deps/root;
#   2. parity on CUDA (bench/gpu/parity.py): logits against transformers in float32 and bfloat16, PAD's greedy
#      tokens against the CPU path and the transformers + peft reference;
#   3. throughput with Llama-3-8B shapes and random bfloat16 weights made on the GPU (bench_pad): prompt 512,
#      128 new tokens, VANILLA, PAD (PROMPT), PAD (WEIGHTED, 3 principles) on a shared backbone and PAD with a
#      separate PRM backbone, batch 1, 8, 32, 64, each beside its bandwidth floor; then VANILLA and PAD (PROMPT)
#      with decode steps as CUDA graphs (--cuda_graphs); and 64 PAD streams with 2,048-token prompts at once
#      (paged KV cache, FlashAttention's paged kernel: it must not run out of memory);
#   4. one table, printed last (bench/gpu/report.py); logs under $OUT.
# From this machine: bench/gpu/prepare.sh, then
#   run(command="bench/gpu/run.sh", carry=[".deps/debs", ".deps/smollm2", ".deps/llama3-8b"], timeout_s=600)
# --dry-run runs the same steps here on the CPU with tiny shapes (./scripts/test.sh runs it).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
DEPS="$ROOT/.deps"
DRY_RUN=0
[[ "${1:-}" == "--dry-run" ]] && DRY_RUN=1
OUT="${OUT:-$(mktemp -d)}"
mkdir -p "$OUT"
say() { printf '[gpu-run %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

if ((DRY_RUN)); then
  PYTHON="${PAD_PYTHON:-$HOME/.cache/pad/venv/bin/python}"
  BUILD="$ROOT/build-gpu-dry"
  DEVICE=cpu
  BENCH_MODEL="$DEPS/llama3-tiny"
  SHAPES="tiny Llama-3 (2 layers, hidden 64)"
  BENCH=(--batches 1,2 --prompt_tokens 32 --new_tokens 8)
  LONG=(--batches 2 --prompt_tokens 64 --new_tokens 4)
  PARITY=(--small)
else
  PYTHON=python3
  BUILD="$ROOT/build-gpu"
  DEVICE=cuda
  BENCH_MODEL="$DEPS/llama3-8b"
  SHAPES="Llama-3-8B"
  BENCH=(--batches 1,8,32,64 --prompt_tokens 512 --new_tokens 128)
  LONG=(--batches 64 --prompt_tokens 2048 --new_tokens 32)
  PARITY=()
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >"$OUT/card.txt" || true
fi
for dir in "$DEPS/smollm2" "$BENCH_MODEL"; do
  [[ -f "$dir/config.json" ]] || { echo "$dir is missing: run bench/gpu/prepare.sh first" >&2; exit 1; }
done

# 1. Build. The Debian packages unpack into .deps/root (never into /), first on CMake's search path.
rm -rf "$DEPS/root"
mkdir -p "$DEPS/root"
for deb in "$DEPS"/debs/*.deb; do
  if command -v dpkg-deb >/dev/null; then
    dpkg-deb -x "$deb" "$DEPS/root"
  else  # a .deb is an ar archive holding data.tar.*
    (cd "$(mktemp -d)" && ar x "$deb" && tar -xf data.tar.* -C "$DEPS/root")
  fi
done
say "configure and build in $BUILD"
GENERATOR=()
command -v ninja >/dev/null && GENERATOR=(-G Ninja)
cmake -S "$ROOT" -B "$BUILD" "${GENERATOR[@]}" -DCMAKE_BUILD_TYPE=Release -DPAD_WITH_GRPC=OFF \
  -DPAD_BUILD_TESTS=OFF -DPAD_PYTHON="$PYTHON" -DTORCH_CUDA_ARCH_LIST=9.0 \
  -DCMAKE_PREFIX_PATH="$DEPS/root/usr" >"$OUT/configure.log" 2>&1 || { tail -40 "$OUT/configure.log"; exit 1; }
cmake --build "$BUILD" --target model_probe pad_probe bench_pad -j "$(nproc)" >"$OUT/build.log" 2>&1 ||
  { tail -40 "$OUT/build.log"; exit 1; }
export LD_LIBRARY_PATH="$DEPS/root/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

# 2. Parity. A failure is reported in the table, and the throughput still runs.
say "parity on $DEVICE"
parity_status=0
"$PYTHON" "$ROOT/bench/gpu/parity.py" --build "$BUILD" --smollm2 "$DEPS/smollm2" \
  --llama3_tokenizer "$BENCH_MODEL" --device "$DEVICE" --out "$OUT" "${PARITY[@]}" >"$OUT/parity.log" 2>&1 ||
  parity_status=$?

# 3. Throughput: the shared backbone (the policy's weights read once for both models), then the two models.
# nvidia-smi samples the device's memory meanwhile (bench_pad's own peak needs LibTorch >= 2.9).
bench() {
  local name=$1
  shift
  local sampler=""
  if command -v nvidia-smi >/dev/null && ((!DRY_RUN)); then
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 >"$OUT/memory_$name.csv" &
    sampler=$!
  fi
  "$BUILD/bench/bench_pad" --model "$BENCH_MODEL" --random_weights --dtype bfloat16 --device "$DEVICE" \
    "${BENCH[@]}" --json "$@" >"$OUT/throughput_$name.jsonl" 2>"$OUT/throughput_$name.log" || {
    say "bench_pad ($name) failed; its rows so far are in the table, its log in $OUT"
    tail -5 "$OUT/throughput_$name.log" >&2
    bench_status=1
  }
  [[ -z "$sampler" ]] || kill "$sampler"
}
bench_status=0
say "throughput on $DEVICE"
bench shared --modes vanilla,pad_prompt,pad_weighted
bench separate --modes vanilla,pad_prompt --separate_prm_backbone
bench graphs --modes vanilla,pad_prompt --cuda_graphs
bench long --modes pad_prompt "${LONG[@]}"

# 4. The table.
"$PYTHON" "$ROOT/bench/gpu/report.py" --out "$OUT" --device "$DEVICE" --shapes "$SHAPES" | tee "$OUT/table.md"
if ((parity_status)); then
  tail -20 "$OUT/parity.log" >&2
fi
((parity_status == 0 && bench_status == 0))
