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
  engine_test scheduler_test metrics_test http_server_test -- -k 0
# Reports go to files as well as failing the process: a server's report would otherwise be lost in the log
# of a test that only sees its stream cut. LibTorch's and gRPC's own allocations live until exit and are
# not ours to free.
reports="$build/sanitizer-reports"
rm -rf "$reports"
mkdir -p "$reports"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:detect_stack_use_after_return=1:log_path=$reports/asan"
export LSAN_OPTIONS="suppressions=$PAD_ROOT/scripts/sanitize.supp:print_suppressions=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$reports/ubsan"
export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:log_path=$reports/tsan:suppressions=$PAD_ROOT/scripts/tsan.supp"
trap 'if compgen -G "$reports/*" >/dev/null; then log "sanitizer reports in $reports:"; head -n 40 "$reports"/*; exit 1; fi' EXIT
log "C++ unit tests ($kind)"
ctest --test-dir "$build" --output-on-failure
log "black-box server tests against the $kind build"
# An instrumented server is several times slower: the throughput test's time budget does not hold there.
PAD_BUILD="$build" PAD_MODEL="$PAD_MODEL" "$PAD_PYTHON" -m pytest -q -k "not a_stalled_log_pipe" \
  "$PAD_ROOT/tests/python/test_server.py" "$PAD_ROOT/tests/python/test_startup.py" "$@"
