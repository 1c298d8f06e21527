"""Latency of a miss, an exact hit and a semantic hit, seen by the official openai SDK through ringgate
(1 shard, semantic cache on the mock's 512-dimension embeddings) to mock-llm; 300 of each.
Run from the repository root: .venv/bin/python perf/semantic-latency.py (after cargo build --release --workspace --bins)."""
import os, statistics, sys, time
sys.path.insert(0, "tests/python")
os.environ["RINGGATE_BIN"] = os.path.abspath(os.environ.get("RINGGATE_BIN", "target/release/ringgate"))
os.environ["MOCK_BIN"] = os.path.abspath(os.environ.get("MOCK_BIN", "target/release/mock-llm"))
from pathlib import Path
import tempfile, openai
from conftest import start_gateway, start_mock
wd = Path(tempfile.mkdtemp())
mock = start_mock(wd)
gw = start_gateway(wd, {"shards": 1, "cache": {"models": {"mock/gpt-4o-mini": 300},
    "semantic": {"embedding_model": "mock/text-embedding-3-small", "dimensions": 512, "threshold": 0.85}},
    "providers": {"mock": {"base_url": mock.base_url, "models": ["gpt-4o-mini", "text-embedding-3-small"]}}})
c = openai.OpenAI(base_url=gw.base_url, api_key="x", http_client=openai.DefaultHttpxClient(trust_env=False), max_retries=0)
def t(prompt):
    s = time.perf_counter()
    r = c.chat.completions.with_raw_response.create(model="mock/gpt-4o-mini", messages=[{"role": "user", "content": prompt}])
    return (time.perf_counter() - s) * 1e6, r.headers.get("x-ringgate-cache")
N = 300
res = {"miss": [], "hit": [], "semantic-hit": []}
for i in range(N):
    q = " ".join(os.urandom(3).hex() for _ in range(4))
    d, h = t(q); res[h].append(d)
    d, h = t(q); res[h].append(d)
    d, h = t(q + " please"); res[h].append(d)
for k, v in res.items():
    v.sort()
    print(f"{k}: n={len(v)} p50={statistics.median(v):.0f}us p99={v[int(len(v)*0.99)-1]:.0f}us")
gw.stop(); mock.stop()
