"""Time to first token on the second turn of a long conversation, against a running server.

usage: measure-prefix-reuse.py BASE_URL [--runs N]

Turn 1 asks for a summary of Spec-Bench's longest vendored summarization article (about 1,000
tokens with SmolLM2's template); turn 2 sends the whole conversation back with a short question
and streams the answer: its time to first token is what prefix reuse cuts. Each run uses a
different article prefix (a run number in the first line), so no run reuses another's.
Prints the median over the runs as JSON.
"""
import http.client
import json
import statistics
import sys
import time
import urllib.parse

base = sys.argv[1]
runs = int(sys.argv[sys.argv.index("--runs") + 1]) if "--runs" in sys.argv else 3
url = urllib.parse.urlparse(base)
root = __file__.rsplit("/scripts/", 1)[0]
questions = [json.loads(l) for l in open(f"{root}/benches/spec-bench/question-dev.jsonl")]
article = max((q["turns"][0] for q in questions if q["category"] == "summarization"), key=len)


def post(body):
    stream = body.get("stream", False)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=600)
    conn.request("POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"})
    start = time.perf_counter()
    r = conn.getresponse()
    if not stream:
        return json.loads(r.read()), None
    first = None
    for line in r:
        if line.startswith(b"data: ") and b'"content"' in line and first is None:
            first = time.perf_counter() - start
    return None, first


ttfts, prompt_tokens, cached = [], [], []
for run in range(runs):
    msgs = [{"role": "user", "content": f"Article {run}.\n{article}"}]
    answer, _ = post({"messages": msgs, "max_tokens": 64, "temperature": 0})
    msgs += [answer["choices"][0]["message"], {"role": "user", "content": "Now in one sentence."}]
    _, ttft = post({"messages": msgs, "max_tokens": 8, "temperature": 0, "stream": True})
    again, _ = post({"messages": msgs, "max_tokens": 1, "temperature": 0})
    ttfts.append(ttft)
    prompt_tokens.append(again["usage"]["prompt_tokens"])
print(json.dumps({"runs": runs, "second_turn_prompt_tokens": statistics.median(prompt_tokens),
                  "ttft_ms_median": round(1e3 * statistics.median(ttfts), 1),
                  "ttft_ms": [round(1e3 * t, 1) for t in ttfts]}))
