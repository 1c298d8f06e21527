#!/usr/bin/env bash
# Builds ringgate and mock-llm (release), starts mock-llm on 127.0.0.1:8001 and runs ringgate
# in the foreground on 127.0.0.1:8080. With OPENAI_API_KEY set, OpenAI is configured too.
# Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --workspace --bins
config=examples/quickstart.yaml
if [[ -n "${OPENAI_API_KEY:-}" ]]; then config=examples/openai.yaml; fi
target/release/mock-llm --listen 127.0.0.1:8001 --workers 1 >/dev/null &
mock=$!
trap 'kill $mock 2>/dev/null || true' EXIT
echo "ringgate: config $config; try:"
echo "  curl -s http://127.0.0.1:8080/v1/chat/completions -d '{\"model\":\"mock/gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}'"
target/release/ringgate serve --config "$config"
