#!/usr/bin/env bash
# Run here, before bench/gpu/run.sh goes to the GPU machine: fills the ignored .deps/ folder with what that
# machine lacks and the device tool carries (run(..., carry=[".deps"]), 64 MiB at most):
#   .deps/debs/         the Debian packages of abseil, nlohmann-json and PCRE2 (run.sh unpacks them)
#   .deps/smollm2/      SmolLM2-135M-Instruct's config and tokenizer (its weights are 540 MB: parity makes
#                       random ones of the same shapes)
#   .deps/llama3-8b/    Meta-Llama-3-8B-Instruct's config.json and the Llama-3 tokenizer (weights: random,
#                       made on the GPU)
#   .deps/llama3-tiny/  the same tokenizer with a two-layer config, for run.sh --dry-run here
# Idempotent; the packages are downloaded once.
source "$(dirname "$0")/../../scripts/common.sh"
ensure_python_env
ensure_small_model
DEPS="$PAD_ROOT/.deps"
mkdir -p "$DEPS/debs"
DEBS=(libabsl-dev libabsl20220623 nlohmann-json3-dev libpcre2-dev libpcre2-8-0)
if ! ls "$DEPS"/debs/libpcre2-8-0_*.deb >/dev/null 2>&1; then
  log "downloading ${DEBS[*]} into .deps/debs"
  (cd "$DEPS/debs" && apt-get download -qq "${DEBS[@]}")
fi
mkdir -p "$DEPS/smollm2"
for name in config.json tokenizer.json tokenizer_config.json chat_template.jinja; do
  [[ -f "$PAD_MODEL/$name" ]] && cp "$PAD_MODEL/$name" "$DEPS/smollm2/"
done
if [[ ! -f "$DEPS/llama3-8b/tokenizer.json" ]]; then
  log "converting the Llama-3 tokenizer into .deps/llama3-8b"
  "$PAD_PYTHON" "$PAD_ROOT/tools/convert_llama3_tokenizer.py" "$DEPS/llama3-8b" >/dev/null
fi
cp "$PAD_ROOT/bench/gpu/llama3-8b/config.json" "$DEPS/llama3-8b/"
mkdir -p "$DEPS/llama3-tiny"
cp "$DEPS"/llama3-8b/tokenizer*.json "$DEPS/llama3-tiny/"
cp "$PAD_ROOT/bench/gpu/llama3-tiny/config.json" "$DEPS/llama3-tiny/"
size_kib=$(du -sk --exclude=root "$DEPS" | cut -f1)
log ".deps holds $((size_kib / 1024)) MiB to carry (limit 64)"
((size_kib < 64 * 1024)) || { log "too large to carry"; exit 1; }
