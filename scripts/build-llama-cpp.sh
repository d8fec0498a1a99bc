#!/usr/bin/env bash
# Build llama.cpp's llama-bench (and llama-simple) as a benchmark peer for ahead, outside the
# repository.
#
#   scripts/build-llama-cpp.sh [DEST]
#
# DEST defaults to $LLAMA_CPP_DIR, else /work/peers/llama.cpp. The result is
# DEST/build/bin/llama-bench; a second run does nothing once it exists.
#
# The source is the llama.cpp vendored in llama-cpp-python's sdist on PyPI (PyPI is reachable
# where GitHub is not), pinned by version and sha256. cmake and ninja come from the system if
# present, else from PyPI into a venv beside DEST ($PEERS_VENV, default DEST/../venv).
#
# The build runs under `nice -n 19` with $JOBS jobs (default 2): it shares the machine with
# cargo. Expect ~15-30 minutes on 2 busy cores.
#
# Environment: LLAMA_CPP_DIR, PEERS_VENV, JOBS, LLAMA_CPP_REBUILD=1 (force a new configure and
# build), PYTHON (default python3).
set -euo pipefail

LLAMA_CPP_PYTHON_VERSION=0.3.36
LLAMA_CPP_PYTHON_SHA256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
SDIST="llama_cpp_python-${LLAMA_CPP_PYTHON_VERSION}.tar.gz"

DEST="${1:-${LLAMA_CPP_DIR:-/work/peers/llama.cpp}}"
mkdir -p "$DEST"
DEST="$(cd "$DEST" && pwd)"
VENV="${PEERS_VENV:-$(dirname "$DEST")/venv}"
JOBS="${JOBS:-2}"
PYTHON="${PYTHON:-python3}"
BIN="$DEST/build/bin/llama-bench"

log() { printf '[build-llama-cpp] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

if [[ -x "$BIN" && "${LLAMA_CPP_REBUILD:-0}" != 1 ]]; then
    log "already built: $BIN"
    exit 0
fi

# --- toolchain -------------------------------------------------------------------------------
CXX_BIN="${CXX:-}"
if [[ -z "$CXX_BIN" ]]; then
    for c in c++ g++ clang++; do
        if command -v "$c" >/dev/null 2>&1; then CXX_BIN="$(command -v "$c")"; break; fi
    done
fi
[[ -n "$CXX_BIN" ]] || die "no C++ compiler (c++, g++ or clang++); install one, e.g. apt-get install g++"
CC_BIN="${CC:-}"
if [[ -z "$CC_BIN" ]]; then
    for c in cc gcc clang; do
        if command -v "$c" >/dev/null 2>&1; then CC_BIN="$(command -v "$c")"; break; fi
    done
fi
[[ -n "$CC_BIN" ]] || die "no C compiler (cc, gcc or clang)"
log "compilers: $CC_BIN, $CXX_BIN ($("$CXX_BIN" --version | head -n1))"
command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found (needed for pip)"

# cmake >= 3.14 (llama.cpp's minimum); system first, else the venv, else pip into the venv.
cmake_ok() {
    local v
    v="$("$1" --version 2>/dev/null | head -n1 | sed -n 's/^cmake version \([0-9][0-9]*\)\.\([0-9][0-9]*\).*/\1 \2/p')"
    [[ -n "$v" ]] || return 1
    set -- $v
    (( $1 > 3 || ($1 == 3 && $2 >= 14) ))
}
CMAKE=""
for c in "$(command -v cmake 2>/dev/null || true)" "$VENV/bin/cmake"; do
    if [[ -n "$c" && -x "$c" ]] && cmake_ok "$c"; then CMAKE="$c"; break; fi
done
NINJA="$(command -v ninja 2>/dev/null || true)"
[[ -z "$NINJA" && -x "$VENV/bin/ninja" ]] && NINJA="$VENV/bin/ninja"
if [[ -z "$CMAKE" || -z "$NINJA" ]]; then
    log "installing cmake and ninja from PyPI into $VENV"
    [[ -x "$VENV/bin/pip" ]] || "$PYTHON" -m venv "$VENV"
    "$VENV/bin/pip" install --quiet cmake ninja
    [[ -n "$CMAKE" ]] || CMAKE="$VENV/bin/cmake"
    [[ -n "$NINJA" ]] || NINJA="$VENV/bin/ninja"
fi
cmake_ok "$CMAKE" || die "no usable cmake >= 3.14 ($CMAKE)"
log "cmake: $CMAKE ($("$CMAKE" --version | head -n1)); ninja: $NINJA"

# --- source ----------------------------------------------------------------------------------
sha_of() { sha256sum "$1" | cut -d' ' -f1; }
mkdir -p "$DEST/dl"
if [[ ! -f "$DEST/dl/$SDIST" || "$(sha_of "$DEST/dl/$SDIST")" != "$LLAMA_CPP_PYTHON_SHA256" ]]; then
    rm -f "$DEST/dl/$SDIST"
    log "downloading $SDIST from PyPI"
    # --no-binary for this package only: `--no-binary :all:` would also force pip to build the
    # sdist's build backend (cmake itself) from source just to read its metadata.
    "$PYTHON" -m pip download --quiet --no-deps --no-binary llama-cpp-python \
        "llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION" -d "$DEST/dl"
fi
[[ -f "$DEST/dl/$SDIST" ]] || die "pip did not produce $DEST/dl/$SDIST"
got="$(sha_of "$DEST/dl/$SDIST")"
[[ "$got" == "$LLAMA_CPP_PYTHON_SHA256" ]] \
    || die "sha256 mismatch for $SDIST: got $got, want $LLAMA_CPP_PYTHON_SHA256"
log "sdist ok: $SDIST sha256 $got"

SRC_ROOT="$DEST/src/llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION"
if [[ ! -f "$SRC_ROOT/vendor/llama.cpp/CMakeLists.txt" ]]; then
    rm -rf "$DEST/src"
    mkdir -p "$DEST/src"
    tar -xzf "$DEST/dl/$SDIST" -C "$DEST/src"
fi
LLAMA_SRC="$SRC_ROOT/vendor/llama.cpp"
[[ -f "$LLAMA_SRC/CMakeLists.txt" ]] || die "no vendored llama.cpp in $SRC_ROOT/vendor"
commit="$(git -C "$LLAMA_SRC" rev-parse --short HEAD 2>/dev/null || echo unknown)"
log "llama.cpp source: $LLAMA_SRC (commit $commit)"

# --- configure and build ---------------------------------------------------------------------
BUILD="$DEST/build"
if [[ "${LLAMA_CPP_REBUILD:-0}" == 1 ]]; then rm -rf "$BUILD"; fi
start=$(date +%s)
# LLAMA_CURL is the older spelling of the download switch, LLAMA_OPENSSL the newer: neither is
# wanted (no model downloads). Tests, server, unified app: off. Tools give llama-bench,
# examples give llama-simple.
nice -n 19 "$CMAKE" -S "$LLAMA_SRC" -B "$BUILD" -G Ninja \
    -DCMAKE_MAKE_PROGRAM="$NINJA" \
    -DCMAKE_C_COMPILER="$CC_BIN" -DCMAKE_CXX_COMPILER="$CXX_BIN" \
    -DCMAKE_BUILD_TYPE=Release \
    -DGGML_NATIVE=ON \
    -DBUILD_SHARED_LIBS=OFF \
    -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF \
    -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_EXAMPLES=ON \
    -DGGML_CCACHE=OFF \
    -Wno-dev >"$DEST/configure.log" 2>&1 \
    || { tail -n 40 "$DEST/configure.log" >&2; die "cmake configure failed (see $DEST/configure.log)"; }
log "configured; building llama-bench and llama-simple with -j$JOBS under nice -n 19"
nice -n 19 "$CMAKE" --build "$BUILD" --config Release -j "$JOBS" \
    --target llama-bench llama-simple >"$DEST/build.log" 2>&1 \
    || { tail -n 40 "$DEST/build.log" >&2; die "build failed (see $DEST/build.log)"; }
end=$(date +%s)

[[ -x "$BIN" ]] || die "build finished but $BIN is missing"
"$BIN" --help >/dev/null 2>&1 || die "$BIN does not run"
log "built $BIN in $((end - start)) s (llama.cpp $commit, llama-cpp-python $LLAMA_CPP_PYTHON_VERSION)"
