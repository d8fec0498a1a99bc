#!/usr/bin/env bash
# Trains vocabulary-pruned Medusa heads for Gemma 3 270M (the base model, Q4_K_M, as
# scripts/fetch-models.sh fetches it) from the model's own answers to instructions made from
# tests/fixtures/corpus (never from Spec-Bench's questions), its chats rendered with
# templates/gemma3.jinja. The heads score the 4,096 most frequent answer tokens of 262,144
# (FR-Spec). They are not vendored: heads trained on Gemma's outputs and hidden states are a
# derivative under Gemma's Terms of Use, which this repository does not carry, and their 18 MB
# would break the drafters' 40 MB budget. About 7 minutes on 2 cores.
#
# Usage: scripts/train-gemma3-drafters.sh [OUT_DIR]   (default target/gemma3-drafters)
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${AHEAD_MODELS:-models/cache}/gemma-3-270m-q4_k_m.gguf
OUT=${1:-target/gemma3-drafters}
AHEAD=target/release/ahead
mkdir -p "$OUT"
cargo build --release -p ahead
if [ ! -s "$OUT/chat.jsonl" ]; then
  $AHEAD train chat-data --model "$MODEL" --chat-template templates/gemma3.jinja \
    --prose tests/fixtures/corpus/tinystories_valid_head.txt \
    --code tests/fixtures/corpus/cpython311_stdlib_sample.py.txt \
    --instructions 240 --max-tokens 128 --seed 1 --out "$OUT/chat.jsonl"
fi
$AHEAD train medusa --base "$MODEL" --data "$OUT/chat.jsonl" --vocab-subset 4096 --dtype f16 \
  --heads 3 --layers 1 --epochs 2 --batch 8 --lr 3e-3 --eval-prompts 12 --out "$OUT/medusa"
