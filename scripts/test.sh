#!/usr/bin/env bash
# Sets up (idempotent), then runs every test: the C++ unit tests, the Python parity and black-box tests, the
# tests whose numbers depend on the CPU again as an AVX2 host runs them (on an AVX-512 host), and each
# libFuzzer target for 20 seconds (scripts/fuzz.sh runs them longer).
source "$(dirname "$0")/common.sh"
setup_all
log "C++ unit tests"
ctest --test-dir "$PAD_BUILD" --output-on-failure
log "Python parity and black-box tests"
PAD_BUILD="$PAD_BUILD" PAD_MODEL="$PAD_MODEL" "$PAD_PYTHON" -m pytest -q "$PAD_ROOT/tests/python" "$@"
if grep -qw avx512f /proc/cpuinfo; then
  # Our kernels, LibTorch's, MKL's and oneDNN's each choose their instructions at run time; capping all four
  # runs what an AVX2 CPU runs (docs/testing.md). An AVX2 host ran these above already.
  log "the CPU-dependent tests again, capped to AVX2"
  (
    export PAD_CPU_CAPABILITY=avx2 ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 ONEDNN_MAX_CPU_ISA=AVX2
    ctest --test-dir "$PAD_BUILD" --output-on-failure
    PAD_BUILD="$PAD_BUILD" PAD_MODEL="$PAD_MODEL" "$PAD_PYTHON" -m pytest -q -m cpu_dependent \
      "$PAD_ROOT/tests/python" "$@"
  )
fi
log "fuzz targets, 20 s each"
"$PAD_ROOT/scripts/fuzz.sh" --seconds 20
