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

# ThreadSanitizer sees a lock only where the locking code is instrumented, and every lock of ours is an
# absl::Mutex inside Debian's uninstrumented libabsl; cpp-httplib's worker pool hands each connection to a
# thread under its own locks. So --thread builds the installed abseil's and cpp-httplib's own Debian
# sources with -fsanitize=thread into shared libraries of the same SONAMEs, and every test runs with them
# first on the library path (gRPC's calls into abseil then go to the instrumented copy too).

# Unpacks the Debian source of package $1 at version $2 into $3/src, through a private source list and
# index: the machine's apt configuration stays as it is.
fetch_debian_source() {
  local package="$1" version="$2" dir="$3" codename
  rm -rf "$dir"
  mkdir -p "$dir/apt/lists/partial"
  codename="$(. /etc/os-release && echo "$VERSION_CODENAME")"
  printf 'deb-src http://deb.debian.org/debian %s main\ndeb-src http://deb.debian.org/debian-security %s-security main\ndeb-src http://deb.debian.org/debian %s-updates main\n' \
    "$codename" "$codename" "$codename" >"$dir/apt/sources.list"
  local apt=(-o "Dir::Etc::SourceList=$dir/apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
    -o "Dir::State::Lists=$dir/apt/lists")
  apt-get "${apt[@]}" update >"$dir/apt.log" 2>&1
  (cd "$dir" && apt-get "${apt[@]}" source --download-only "$package=$version" >>"$dir/apt.log" 2>&1)
  dpkg-source -x "$dir/${package}_"*.dsc "$dir/src" >>"$dir/apt.log" 2>&1
}

build_tsan_abseil() {
  local version dir="$build/abseil"
  version="$(dpkg-query -W -f='${Version}' libabsl-dev)"
  if [[ -f "$dir/lib/.version" && "$(cat "$dir/lib/.version")" == "$version" ]]; then
    return
  fi
  log "building abseil $version with -fsanitize=thread in $dir (about 15 minutes on 2 cores)"
  fetch_debian_source abseil "$version" "$dir"
  CC=clang CXX=clang++ cmake -S "$dir/src" -B "$dir/build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_STANDARD=17 -DBUILD_SHARED_LIBS=ON -DBUILD_TESTING=OFF \
    -DCMAKE_CXX_FLAGS="-fsanitize=thread" -DCMAKE_SHARED_LINKER_FLAGS="-fsanitize=thread" \
    -DCMAKE_INSTALL_PREFIX="$dir" -DCMAKE_INSTALL_LIBDIR=lib >"$dir/configure.log" 2>&1
  cmake --build "$dir/build" --target install >"$dir/build.log" 2>&1 || {
    tail -n 30 "$dir/build.log"
    exit 1
  }
  echo "$version" >"$dir/lib/.version"
}

# cpp-httplib's compiled library as Debian builds it (split.py, the pkg-config defines, -DCPPHTTPLIB_USE_POLL
# from debian/rules), one translation unit.
build_tsan_httplib() {
  local version dir="$build/httplib" soname
  version="$(dpkg-query -W -f='${Version}' libcpp-httplib-dev)"
  if [[ -f "$dir/lib/.version" && "$(cat "$dir/lib/.version")" == "$version" ]]; then
    return
  fi
  log "building cpp-httplib $version with -fsanitize=thread in $dir"
  fetch_debian_source cpp-httplib "$version" "$dir"
  soname="$(objdump -p "$(readlink -f /usr/lib/x86_64-linux-gnu/libcpp-httplib.so)" | awk '/SONAME/ {print $2}')"
  python3 "$dir/src/split.py" -o "$dir/split" >>"$dir/apt.log"
  mkdir -p "$dir/lib"
  # shellcheck disable=SC2046  # pkg-config's flags are words
  clang++ -std=c++17 -O1 -g -fPIC -shared -fsanitize=thread -DCPPHTTPLIB_USE_POLL \
    $(pkg-config --cflags cpp-httplib) -I"$dir/split" "$dir/split/httplib.cc" -Wl,-soname,"$soname" \
    -o "$dir/lib/$soname" -lssl -lcrypto -lz -lbrotlicommon -lbrotlidec -lbrotlienc -pthread \
    >"$dir/build.log" 2>&1 || {
    tail -n 30 "$dir/build.log"
    exit 1
  }
  echo "$version" >"$dir/lib/.version"
}
if [[ "$kind" == thread ]]; then
  build_tsan_abseil
  build_tsan_httplib
  export LD_LIBRARY_PATH="$build/abseil/lib:$build/httplib/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
CC=clang CXX=clang++ cmake -S "$PAD_ROOT" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DPAD_PYTHON="$PAD_PYTHON" -DPAD_SANITIZE="$kind" -Wno-dev >"$build/configure.log" 2>&1 || {
  cat "$build/configure.log"
  exit 1
}
log "building with -fsanitize=$kind in $build"
cmake --build "$build" --target pad_server tokenizer_probe model_probe pad_probe \
  bpe_tokenizer_test incremental_decoder_test chat_template_test safetensors_test model_config_test \
  device_memory_test kv_cache_test cpu_kernels_test engine_test scheduler_test metrics_test http_server_test -- -k 0
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
