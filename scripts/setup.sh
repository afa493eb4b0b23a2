#!/usr/bin/env bash
# Installs what a fresh Debian 12 machine lacks, converts the small model, and builds. Idempotent.
source "$(dirname "$0")/common.sh"
setup_all
