#!/usr/bin/env bash
# Sets up (idempotent), then runs every test: the C++ unit tests and the Python parity and black-box tests.
source "$(dirname "$0")/common.sh"
setup_all
log "C++ unit tests"
ctest --test-dir "$PAD_BUILD" --output-on-failure
log "Python parity tests"
PAD_BUILD="$PAD_BUILD" PAD_MODEL="$PAD_MODEL" "$PAD_PYTHON" -m pytest -q "$PAD_ROOT/tests/python" "$@"
