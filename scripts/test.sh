#!/usr/bin/env bash
# Sets up (idempotent), then runs every test: the C++ unit tests, the Python parity and black-box tests, and
# each libFuzzer target for 20 seconds (scripts/fuzz.sh runs them longer).
source "$(dirname "$0")/common.sh"
setup_all
log "C++ unit tests"
ctest --test-dir "$PAD_BUILD" --output-on-failure
log "Python parity tests"
PAD_BUILD="$PAD_BUILD" PAD_MODEL="$PAD_MODEL" "$PAD_PYTHON" -m pytest -q "$PAD_ROOT/tests/python" "$@"
log "fuzz targets, 20 s each"
"$PAD_ROOT/scripts/fuzz.sh" --seconds 20
