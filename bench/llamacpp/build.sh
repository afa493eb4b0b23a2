#!/usr/bin/env bash
# Builds llama.cpp's llama-server from the llama-cpp-python sdist's vendored source and converts the
# SmolLM2 weights with llama.cpp's own converter, for bench/bench_vs_llamacpp.py. Everything lives in
# ~/.cache/pad/llamacpp (PAD_HOME moves ~/.cache/pad); nothing here is part of the project's build.
# Idempotent: a step whose output exists is skipped. LLAMA_ISA=avx2 builds into build-avx2/ for AVX2 CPUs
# (AVX, AVX2, FMA, F16C; no AVX-512), so that an AVX-512 host can measure what an AVX2 one runs
# (bench_vs_llamacpp.py --isa avx2); the default builds for the host's own instructions into build/.
set -euo pipefail

pad_home="${PAD_HOME:-$HOME/.cache/pad}"
python="${PAD_PYTHON:-$pad_home/venv/bin/python}"
version="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
root="$pad_home/llamacpp"
src="$root/llama_cpp_python-$version"
vendor="$src/vendor/llama.cpp"
isa="${LLAMA_ISA:-native}"
case "$isa" in
  native) build="$root/build"; isa_flags=(-DGGML_NATIVE=ON) ;;
  avx2) build="$root/build-avx2"
    isa_flags=(-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON
               -DGGML_AVX512=OFF -DGGML_AVX512_VBMI=OFF -DGGML_AVX512_VNNI=OFF -DGGML_AVX512_BF16=OFF
               -DGGML_AVX_VNNI=OFF -DGGML_CPU_ALL_VARIANTS=OFF -DGGML_BACKEND_DL=OFF) ;;
  *) echo "LLAMA_ISA must be native or avx2, not $isa" >&2; exit 2 ;;
esac
models="$root/models"
repo="$(cd "$(dirname "$0")/../.." && pwd)"
hf_model="${HF_MODEL_DIR:-$repo/models/SmolLM2-135M-Instruct}"

mkdir -p "$root" "$models"

if [[ ! -d "$vendor" ]]; then
  "$python" -m pip download --no-deps --no-binary :all: "llama-cpp-python==$version" -d "$root"
  tar -xzf "$root/llama_cpp_python-$version.tar.gz" -C "$root"
fi

# The sdist carries no git metadata; its changelog names the llama.cpp commit it vendors.
commit="$(awk -v v="## [$version]" '$0 == v {found = 1; next}
  found && /^## / {exit}
  found && match($0, /llama\.cpp@[0-9a-f]+/) {print substr($0, RSTART + 10, RLENGTH - 10); exit}' \
  "$src/CHANGELOG.md")"
commit="${commit:-unknown}"

if [[ ! -x "$build/bin/llama-server" ]]; then
  # No UI (it would be downloaded or built with npm), no TLS, static so the binary stands alone.
  nice -n 19 cmake -S "$vendor" -B "$build" -G Ninja \
    -DCMAKE_BUILD_TYPE=Release "${isa_flags[@]}" -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
    -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DBUILD_SHARED_LIBS=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_COMMIT="$commit"
  nice -n 19 ninja -C "$build" -j2 llama-server llama-batched-bench
fi

# The vendored gguf-py matches the converter; the venv's gguf package may not.
export PYTHONPATH="$vendor/gguf-py${PYTHONPATH:+:$PYTHONPATH}"
for outtype in f32 bf16 q8_0; do
  gguf="$models/SmolLM2-135M-Instruct-$outtype.gguf"
  if [[ ! -s "$gguf" ]]; then
    nice -n 19 "$python" "$vendor/convert_hf_to_gguf.py" "$hf_model" --outtype "$outtype" \
      --outfile "$gguf.tmp"
    mv "$gguf.tmp" "$gguf"
  fi
done

echo "llama-cpp-python $version, llama.cpp commit $commit"
"$build/bin/llama-server" --version 2>&1 | head -n 2
ls -l "$models"
