#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz, clang with ASan and UBSan) in build-fuzz/ and runs each for
# --seconds (default 600) from its committed seed corpus. New inputs go to build-fuzz/corpus/<target>/, a
# crash to build-fuzz/crash-<target>-*; the script fails on the first target that finds one.
#   ./scripts/fuzz.sh [--seconds N] [target ...]
source "$(dirname "$0")/common.sh"
seconds=600
if [[ "${1:-}" == "--seconds" ]]; then
  seconds="$2"
  shift 2
fi
targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
  targets=(tokenizer_fuzz utf8_stream_fuzz tokenizer_json_fuzz chat_template_fuzz request_fuzz openai_request_fuzz
           decoder_fuzz model_config_fuzz safetensors_fuzz adapter_config_fuzz)
fi
setup_all
fuzz_build="$PAD_ROOT/build-fuzz"
mkdir -p "$fuzz_build"
CC=clang CXX=clang++ cmake -S "$PAD_ROOT" -B "$fuzz_build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DPAD_PYTHON="$PAD_PYTHON" -DPAD_FUZZ=ON -DPAD_BUILD_TESTS=OFF -Wno-dev >"$fuzz_build/configure.log" 2>&1 || {
  cat "$fuzz_build/configure.log"
  exit 1
}
cmake --build "$fuzz_build" --target "${targets[@]}"
cd "$PAD_ROOT"
for target in "${targets[@]}"; do
  log "fuzzing $target for $seconds s"
  mkdir -p "$fuzz_build/corpus/$target"
  # The request parsers read what remote clients send: inputs up to 1 MB (libFuzzer's default is about
  # 4 KB, too short to nest 200,000 deep), guided by a dictionary of JSON's tokens.
  extra=()
  if [[ $target == openai_request_fuzz || $target == request_fuzz ]]; then
    extra=(-max_len=1048576 -len_control=20)
    [[ $target == openai_request_fuzz ]] && extra+=(-dict=tests/fuzz/json.dict)
  fi
  # New inputs go to the first corpus directory; the committed seeds are read only.
  "$fuzz_build/tests/fuzz/$target" "$fuzz_build/corpus/$target" "tests/fuzz/corpus/$target" "${extra[@]}" \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 \
    -artifact_prefix="$fuzz_build/crash-$target-" 2>&1 | tail -n 25
  [[ ${PIPESTATUS[0]} -eq 0 ]] || { log "$target failed"; exit 1; }
done
