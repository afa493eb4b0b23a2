#!/usr/bin/env bash
# Builds the project with clang's sanitizers and runs the C++ tests and the black-box server tests against
# the instrumented binaries: build-asan/ (AddressSanitizer + UndefinedBehaviorSanitizer, also checking the
# thread-safety annotations at compile time) and, with --thread, build-tsan/ (ThreadSanitizer).
#   ./scripts/sanitize.sh [--thread] [pytest arguments]
source "$(dirname "$0")/common.sh"
kind=address
if [[ "${1:-}" == "--thread" ]]; then
  kind=thread
  shift
fi
setup_all
build="$PAD_ROOT/build-${kind/address/asan}"
build="${build/thread/tsan}"
mkdir -p "$build"
CC=clang CXX=clang++ cmake -S "$PAD_ROOT" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DPAD_PYTHON="$PAD_PYTHON" -DPAD_SANITIZE="$kind" -Wno-dev >"$build/configure.log" 2>&1 || {
  cat "$build/configure.log"
  exit 1
}
log "building with -fsanitize=$kind in $build"
cmake --build "$build" --target pad_server tokenizer_probe model_probe pad_probe \
  bpe_tokenizer_test incremental_decoder_test chat_template_test safetensors_test model_config_test \
  engine_test scheduler_test metrics_test http_endpoint_test -- -k 0
# LibTorch's and gRPC's own allocations live until exit and are not ours to free.
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:detect_stack_use_after_return=1"
export LSAN_OPTIONS="suppressions=$PAD_ROOT/scripts/sanitize.supp:print_suppressions=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:suppressions=$PAD_ROOT/scripts/sanitize.supp"
log "C++ unit tests ($kind)"
ctest --test-dir "$build" --output-on-failure
log "black-box server tests against the $kind build"
PAD_BUILD="$build" PAD_MODEL="$PAD_MODEL" "$PAD_PYTHON" -m pytest -q \
  "$PAD_ROOT/tests/python/test_server.py" "$PAD_ROOT/tests/python/test_startup.py" "$@"
