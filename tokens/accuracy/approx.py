"""How close is `Family::Approx` (cl100k_base) to the tokenizers it stands in for?

Counts each sample in samples/ with cl100k_base, o200k_base, a bytes/4 rule, and the real
tokenizers of open models that PyPI packages ship: Llama 3 and Llama 4 (llama-models),
Mistral's Tekken and its older SentencePiece v3 (mistral-common). Prints the counts and
the relative error of each estimate against each tokenizer. Not a test: the numbers are
quoted in docs/governance.md.

    python3 -m venv /tmp/approx && /tmp/approx/bin/pip install tiktoken mistral-common sentencepiece
    /tmp/approx/bin/pip install --no-deps llama-models   # only its tokenizer files are read
    /tmp/approx/bin/python tokens/accuracy/approx.py

The OpenAI vocabularies are read from tiktoken-rs's crate sources in ~/.cargo/registry
(a dev-dependency of `tokens`, so `cargo test -p tokens` fetches it): Python tiktoken
would download them.
"""

import base64
import glob
import os
import sys

import sentencepiece
import tiktoken
import mistral_common
from mistral_common.tokens.tokenizers.tekken import Tekkenizer

HERE = os.path.dirname(os.path.abspath(__file__))
CL100K = r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
O200K = "|".join([
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
    r"""\p{N}{1,3}""", r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""", r"""\s*[\r\n]+""", r"""\s+(?!\S)""", r"""\s+""",
])
LLAMA3 = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"


def tiktoken_file(path, pattern, name):
    ranks = {}
    with open(path, "rb") as f:
        for line in f:
            if line.strip():
                token, rank = line.split()
                ranks[base64.b64decode(token)] = int(rank)
    return tiktoken.Encoding(name=name, pat_str=pattern, mergeable_ranks=ranks, special_tokens={})


def find(pattern):
    hits = sorted(glob.glob(pattern, recursive=True))
    if not hits:
        sys.exit(f"not found: {pattern}")
    return hits[-1]


def main():
    assets = find(os.path.expanduser("~/.cargo/registry/src/*/tiktoken-rs-*/assets"))
    cl100k = tiktoken_file(f"{assets}/cl100k_base.tiktoken", CL100K, "cl100k_base")
    o200k = tiktoken_file(f"{assets}/o200k_base.tiktoken", O200K, "o200k_base")
    site = os.path.dirname(os.path.dirname(mistral_common.__file__))
    llama3 = tiktoken_file(f"{site}/llama_models/llama3/tokenizer.model", LLAMA3, "llama3")
    llama4 = tiktoken_file(f"{site}/llama_models/llama4/tokenizer.model", O200K, "llama4")
    data = os.path.join(os.path.dirname(mistral_common.__file__), "data")
    tekken = Tekkenizer.from_file(os.path.join(data, "tekken_240911.json"))
    sp = sentencepiece.SentencePieceProcessor(
        model_file=os.path.join(data, "mistral_instruct_tokenizer_240323.model.v3"))
    real = {
        "llama3": lambda s: len(llama3.encode_ordinary(s)),
        "llama4": lambda s: len(llama4.encode_ordinary(s)),
        "mistral-tekken": lambda s: len(tekken.encode(s, bos=False, eos=False)),
        "mistral-sp-v3": lambda s: len(sp.encode(s)),
    }
    estimates = {
        "cl100k": lambda s: len(cl100k.encode_ordinary(s)),
        "o200k": lambda s: len(o200k.encode_ordinary(s)),
        "bytes/4": lambda s: (len(s.encode()) + 3) // 4,
    }
    print(f"{'sample':12} {'bytes':>5} " + " ".join(f"{k:>8}" for k in estimates)
          + " " + " ".join(f"{k:>14}" for k in real))
    errors = {}
    for path in sorted(glob.glob(os.path.join(HERE, "samples", "*.txt"))):
        text = open(path, encoding="utf-8").read()
        est = {k: f(text) for k, f in estimates.items()}
        ref = {k: f(text) for k, f in real.items()}
        print(f"{os.path.basename(path)[:-4]:12} {len(text.encode()):5} "
              + " ".join(f"{v:8}" for v in est.values()) + " " + " ".join(f"{v:14}" for v in ref.values()))
        for r, rv in ref.items():
            for e, ev in est.items():
                errors.setdefault((r, e), []).append((ev - rv) / rv)
    print()
    for (r, e), errs in errors.items():
        print(f"{r:15} {e:8} mean {100 * sum(errs) / len(errs):+6.1f}%  worst {100 * max(errs, key=abs):+6.1f}%  "
              + " ".join(f"{100 * x:+.0f}" for x in errs))


if __name__ == "__main__":
    main()
