"""Drives an ahead server with the official OpenAI Python client; prints results as JSON.

usage: openai_client.py BASE_URL   (e.g. http://127.0.0.1:8000/v1)
"""
import json
import sys

import openai

client = openai.OpenAI(base_url=sys.argv[1], api_key="unused", max_retries=0)
out = {}
c = client.completions.create(model="stories260K", prompt="Once upon a time", max_tokens=50, temperature=0)
out["completion"] = c.choices[0].text
out["completion_tokens"] = c.usage.completion_tokens
stream = client.completions.create(model="stories260K", prompt="Once upon a time", max_tokens=50,
                                   temperature=0, stream=True)
out["streamed"] = "".join(ch.choices[0].text for ch in stream if ch.choices)
msgs = [{"role": "user", "content": "Tell me a story."}]
chat = client.chat.completions.create(model="stories260K", messages=msgs, max_tokens=30, temperature=0)
out["chat"] = chat.choices[0].message.content
stream = client.chat.completions.create(model="stories260K", messages=msgs, max_tokens=30, temperature=0,
                                        stream=True, stream_options={"include_usage": True})
out["chat_streamed"] = "".join((ch.choices[0].delta.content or "") for ch in stream if ch.choices)
c = client.completions.create(model="stories260K", prompt="Once upon a time", max_tokens=8, temperature=0,
                              logprobs=2)
out["completion_logprobs"] = [len(c.choices[0].logprobs.tokens), len(c.choices[0].logprobs.top_logprobs[0])]
chat = client.chat.completions.create(model="stories260K", messages=msgs, max_tokens=8, temperature=0,
                                      logprobs=True, top_logprobs=2)
lp = chat.choices[0].logprobs.content
out["chat_logprobs"] = [len(lp), len(lp[0].top_logprobs), lp[0].token == lp[0].top_logprobs[0].token]
schema = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 10},
          "age": {"type": "integer", "minimum": 0, "maximum": 99}}, "required": ["name", "age"],
          "additionalProperties": False}
chat = client.chat.completions.create(model="stories260K", messages=msgs, max_tokens=60, temperature=0,
                                      response_format={"type": "json_schema",
                                                       "json_schema": {"name": "person", "schema": schema}})
person = json.loads(chat.choices[0].message.content)
out["structured"] = sorted(person)
call = {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\": \"Oslo\"}"}}
history = [{"role": "user", "content": "Weather in Oslo?"},
           {"role": "assistant", "content": None, "tool_calls": [call]},
           {"role": "tool", "tool_call_id": "c1", "content": "cold"}]
after_tool = client.chat.completions.create(model="stories260K", messages=history, max_tokens=5, temperature=0)
out["after_tool_call"] = after_tool.choices[0].finish_reason
try:
    client.completions.create(model="nope", prompt="x", max_tokens=1)
    out["not_found_status"] = 200
except openai.NotFoundError as e:
    out["not_found_status"] = e.status_code
print(json.dumps(out))
