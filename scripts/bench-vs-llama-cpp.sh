#!/usr/bin/env bash
# Plain decoding, ahead against llama.cpp, on one GGUF file, 2 threads, 128 tokens.
#
#   scripts/bench-vs-llama-cpp.sh MODEL.gguf [ROUNDS]
#
# Each of ROUNDS rounds (default 3) runs, back to back,
#   llama-bench -m MODEL -p 0 -n 128 -t 2 -r 1 -o json        (tg128: 128 single-token decodes)
#   RAYON_NUM_THREADS=2 ahead bench decode --model MODEL --tokens 128 --runs 1 --json
# and prints both tok/s; at the end, the median of each and the ratio ahead / llama.cpp.
# Alternating the two spreads the noise of a shared machine over both. Run it on an idle
# machine: with a compile running on the same 2 cores, llama-bench -t 2 swings from ~180 to
# ~2 tok/s (its OpenMP threads spin at barriers); each round prints the idle CPU before it.
#
# llama-bench does a 1-token warm-up before its run; ahead's run is its first decode after
# loading (AHEAD_RUNS=N makes it the best of N instead).
#
# Environment:
#   LLAMA_BENCH  llama-bench binary (default $LLAMA_CPP_DIR/build/bin/llama-bench,
#                LLAMA_CPP_DIR defaulting to /work/peers/llama.cpp; see build-llama-cpp.sh)
#   AHEAD_BIN    ahead binary (default target/release/ahead in this repository)
#   THREADS      threads for both (default 2)
#   TOKENS       tokens to decode (default 128)
#   AHEAD_RUNS   runs per ahead round, best reported (default 1)
#   JSON_OUT     if set, a JSON summary is written to this file
#
# Exit status: 0 when both engines ran every round, 3 when ahead failed (its error is shown
# and llama.cpp's figures are still reported), 1 on other errors.
set -euo pipefail

usage() { echo "usage: $0 MODEL.gguf [ROUNDS]" >&2; exit 1; }
[[ $# -ge 1 && $# -le 2 ]] || usage
MODEL="$1"
ROUNDS="${2:-3}"
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || usage
[[ -f "$MODEL" ]] || { echo "error: no such model file: $MODEL" >&2; exit 1; }

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LLAMA_BENCH="${LLAMA_BENCH:-${LLAMA_CPP_DIR:-/work/peers/llama.cpp}/build/bin/llama-bench}"
AHEAD_BIN="${AHEAD_BIN:-$REPO/target/release/ahead}"
THREADS="${THREADS:-2}"
TOKENS="${TOKENS:-128}"
AHEAD_RUNS="${AHEAD_RUNS:-1}"

if [[ ! -x "$LLAMA_BENCH" ]]; then
    echo "error: llama-bench not found at $LLAMA_BENCH" >&2
    echo "build it with: scripts/build-llama-cpp.sh   (or set LLAMA_BENCH / LLAMA_CPP_DIR)" >&2
    exit 1
fi
if [[ ! -x "$AHEAD_BIN" ]]; then
    echo "error: ahead release binary not found at $AHEAD_BIN" >&2
    echo "build it with: cargo build --release -p ahead   (or set AHEAD_BIN)" >&2
    exit 1
fi
command -v python3 >/dev/null 2>&1 || { echo "error: python3 is needed to read JSON" >&2; exit 1; }

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

# Reads llama-bench's JSON (a list of tests) on stdin; prints the tg test's avg tok/s.
llama_tps() {
    python3 -c '
import json, sys
tests = [t for t in json.load(sys.stdin) if t.get("n_gen", 0) > 0 and t.get("n_prompt", 0) == 0]
if not tests:
    sys.exit("no generation test in llama-bench output")
print("%.3f" % tests[0]["avg_ts"])
'
}
# Reads ahead's bench decode JSON (one object) on stdin; prints tok/s.
ahead_tps() {
    python3 -c 'import json, sys; print("%.3f" % json.load(sys.stdin)["tokens_per_second"])'
}
# Percentage of CPU time idle over the next second, from /proc/stat ("?" where it is missing).
cpu_idle() {
    python3 -c '
import time
def snap():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return sum(v[:8]), v[3] + v[4]
try:
    t1, i1 = snap(); time.sleep(1); t2, i2 = snap()
    print("%d%%" % round(100 * (i2 - i1) / max(t2 - t1, 1)))
except OSError:
    print("?")
'
}
jfield() { # FILE EXPR: evaluate a python expression on the parsed JSON `j`
    python3 -c 'import json, sys; j = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"
}

echo "model     $MODEL"
echo "llama.cpp $LLAMA_BENCH"
echo "ahead     $AHEAD_BIN"
echo "settings  $TOKENS tokens, $THREADS threads, $ROUNDS rounds (alternating)"
echo

LLAMA=()
AHEAD=()
ahead_failed=0
for ((r = 1; r <= ROUNDS; r++)); do
    # Idle CPU over the second before the round: anything else running (a cargo build) makes
    # both figures meaningless, llama.cpp's spinning OpenMP threads most of all.
    idle="$(cpu_idle)"
    # llama.cpp
    if ! "$LLAMA_BENCH" -m "$MODEL" -p 0 -n "$TOKENS" -t "$THREADS" -r 1 -o json \
        >"$TMP/llama.json" 2>"$TMP/llama.err"; then
        echo "error: llama-bench failed:" >&2
        tail -n 20 "$TMP/llama.err" >&2
        exit 1
    fi
    l="$(llama_tps <"$TMP/llama.json")"
    LLAMA+=("$l")
    if ((r == 1)); then
        cp "$TMP/llama.json" "$TMP/llama-first.json"
    fi

    # ahead
    a="-"
    if ((ahead_failed == 0)); then
        if RAYON_NUM_THREADS="$THREADS" "$AHEAD_BIN" bench decode --model "$MODEL" \
            --tokens "$TOKENS" --runs "$AHEAD_RUNS" --json >"$TMP/ahead.json" 2>"$TMP/ahead.err"; then
            a="$(ahead_tps <"$TMP/ahead.json")"
            AHEAD+=("$a")
            if ((r == 1)); then
                cp "$TMP/ahead.json" "$TMP/ahead-first.json"
            fi
        else
            ahead_failed=1
            echo "ahead failed on this model (not retried in later rounds):"
            sed 's/^/    /' "$TMP/ahead.err" | tail -n 10
        fi
    fi
    printf 'round %d   llama.cpp %9s tok/s   ahead %9s tok/s   (cpu idle before: %s)\n' "$r" "$l" "$a" "$idle"
done

echo
if [[ -f "$TMP/llama-first.json" ]]; then
    echo "llama.cpp: $(jfield "$TMP/llama-first.json" '"build %s, %s, %s, %d threads" % (j[0].get("build_commit"), j[0].get("model_type"), j[0].get("cpu_info"), j[0].get("n_threads"))')"
fi
if [[ -f "$TMP/ahead-first.json" ]]; then
    echo "ahead:     $(jfield "$TMP/ahead-first.json" '"%s (%s), %d threads" % (j["model"], j["dtype"], j["threads"])')"
fi

python3 - "$THREADS" "$TOKENS" "$MODEL" "${JSON_OUT:-}" "${LLAMA[*]}" "${AHEAD[*]:-}" <<'EOF'
import json, statistics, sys
threads, tokens, model, json_out, llama, ahead = sys.argv[1:7]
llama = [float(x) for x in llama.split()]
ahead = [float(x) for x in ahead.split()]
ml = statistics.median(llama)
ma = statistics.median(ahead) if ahead else None
print("median    llama.cpp %9.3f tok/s   ahead %9s tok/s" % (ml, "%.3f" % ma if ma else "-"))
if ma:
    print("ratio     ahead / llama.cpp = %.3f" % (ma / ml))
else:
    print("ratio     n/a (ahead did not run)")
if json_out:
    with open(json_out, "w") as f:
        json.dump({"model": model, "threads": int(threads), "tokens": int(tokens),
                   "llama_cpp_tok_s": llama, "ahead_tok_s": ahead,
                   "llama_cpp_median": ml, "ahead_median": ma,
                   "ratio": (ma / ml) if ma else None}, f, indent=1)
        f.write("\n")
EOF

if ((ahead_failed)); then exit 3; fi
