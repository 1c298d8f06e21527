"""Feeds the translator output dumped by the Rust tests through the official SDKs.

Optional check (needs network-free `pip install anthropic openai`):
    TRANSLATE_DUMP_DIR=/tmp/tdump cargo test -p translate
    python translate/tests/sdk/check_sdks.py /tmp/tdump
Each stream is served by a mock HTTP transport; the SDK must parse it and accumulate the
final message/response.
"""
import json
import os
import sys

DIR = sys.argv[1] if len(sys.argv) > 1 else "/tmp/tdump"

try:
    import httpx2 as httpx  # newer SDKs
except ImportError:  # pragma: no cover
    import httpx


def transport(path, ctype):
    body = open(os.path.join(DIR, path), "rb").read()

    def handler(request):
        return httpx.Response(200, headers={"content-type": ctype}, content=body)

    return httpx.MockTransport(handler)


def check_anthropic():
    import anthropic

    for name in ["anthropic_text.sse", "anthropic_tool.sse"]:
        if not os.path.exists(os.path.join(DIR, name)):
            continue
        client = anthropic.Anthropic(api_key="x", base_url="http://gw", http_client=httpx.Client(transport=transport(name, "text/event-stream")))
        with client.messages.stream(model="m", max_tokens=10, messages=[{"role": "user", "content": "hi"}]) as s:
            events = [e.type for e in s]
            msg = s.get_final_message()
        print(name, "events:", len(events), "final:", msg.model_dump_json()[:300])
    name = "anthropic_message.json"
    if os.path.exists(os.path.join(DIR, name)):
        client = anthropic.Anthropic(api_key="x", base_url="http://gw", http_client=httpx.Client(transport=transport(name, "application/json")))
        msg = client.messages.create(model="m", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
        print(name, msg.stop_reason, [b.type for b in msg.content])


def check_openai():
    import openai

    for name in ["responses_text.sse", "responses_tool.sse"]:
        if not os.path.exists(os.path.join(DIR, name)):
            continue
        client = openai.OpenAI(api_key="x", base_url="http://gw/v1", http_client=httpx.Client(transport=transport(name, "text/event-stream")))
        with client.responses.stream(model="m", input="hi") as s:
            events = [e.type for e in s]
            resp = s.get_final_response()
        print(name, "events:", events)
        print("   final:", resp.model_dump_json()[:400])
        raw = client.responses.create(model="m", input="hi", stream=True)
        print("   raw types ok:", all(type(e).__name__ != "dict" for e in raw))
    name = "responses_object.json"
    if os.path.exists(os.path.join(DIR, name)):
        client = openai.OpenAI(api_key="x", base_url="http://gw/v1", http_client=httpx.Client(transport=transport(name, "application/json")))
        r = client.responses.create(model="m", input="hi")
        print(name, r.status, r.output_text, [o.type for o in r.output])


check_anthropic()
check_openai()
print("SDK checks passed")
