"""Tokenizer encode throughput: moecl beside tiktoken, one thread each, the same text.

    build/venv/bin/python tests/reference/tokenizer_bench.py [--moecl build/moecl] [--runs 5]
        [--hf]

The text is the exactness corpus (make_corpus.py) without its invalid-UTF-8 and
unassigned-code-point records, joined by newlines: once whole ("all") and once only the parts cut
from real files ("files": man pages, docs, C headers, Python sources, Unicode data). Both
tokenizers encode it as ordinary text (no special tokens) in one call: moecl via
`moecl tokenize --bench N` (timed inside the process, loading excluded), tiktoken via
Encoding.encode_ordinary (its Rust core, single-threaded for one call). Reports the median
MB/s of the runs and the ratio moecl / tiktoken; --hf adds HF tokenizers (one run,
TOKENIZERS_PARALLELISM=false) for information.
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_corpus  # noqa: E402
import tokenizer_check  # noqa: E402

FILE_CATEGORIES = {"man_localized", "man", "doc", "c_headers", "python_stdlib", "python_testdata",
                   "unicode_data"}


def bench_moecl(moecl, tiktoken_path, text, runs):
    with tempfile.NamedTemporaryFile("wb", suffix=".txt", delete=False) as f:
        f.write(text)
        path = f.name
    try:
        p = subprocess.run([moecl, "tokenize", "--tiktoken", tiktoken_path, "--no-special",
                            "--file", path, "--bench", str(runs)],
                           check=True, capture_output=True, text=True)
    finally:
        os.unlink(path)
    rates = [float(m) for m in re.findall(r"([0-9.]+) MB/s", p.stderr)]
    return rates, int(p.stdout.split()[0])


def bench_tiktoken(enc, text, runs):
    s = text.decode("utf-8")
    rates, n = [], 0
    for _ in range(runs):
        t0 = time.perf_counter()
        n = len(enc.encode_ordinary(s))
        rates.append(len(text) / (time.perf_counter() - t0) / 1e6)
    return rates, n


def main():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--moecl", default=os.path.join(root, "build", "moecl"))
    ap.add_argument("--tiktoken", default=os.path.join(root, "data", "o200k_base.tiktoken"))
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--hf", action="store_true")
    args = ap.parse_args()

    import tiktoken

    ranks = tokenizer_check.load_ranks(args.tiktoken)
    enc = tiktoken.Encoding(name="o200k_local", pat_str=tokenizer_check.O200K_PATTERN,
                            mergeable_ranks=ranks, special_tokens={})
    recs = make_corpus.build_corpus()
    texts = {
        "all": b"\n".join(b for c, b in recs if c not in ("invalid_utf8", "unassigned_u15")),
        "files": b"\n".join(b for c, b in recs if c in FILE_CATEGORIES),
    }
    hf = None
    if args.hf:
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
        from tokenizers import Tokenizer
        json_path = os.path.join(root, "build", "tokcheck", "tokenizer.json")
        os.makedirs(os.path.dirname(json_path), exist_ok=True)
        subprocess.run([args.moecl, "tokenize", "--tiktoken", args.tiktoken, "--write-json",
                        json_path], check=True)
        hf = Tokenizer.from_file(json_path)
        hf.encode_special_tokens = True
    print("%-6s %9s %14s %14s %8s %s" % ("text", "MB", "moecl MB/s", "tiktoken MB/s", "ratio",
                                         "(median of %d runs, one thread)" % args.runs))
    for name, text in texts.items():
        ours, n_ours = bench_moecl(args.moecl, args.tiktoken, text, args.runs)
        ref, n_ref = bench_tiktoken(enc, text, args.runs)
        if n_ours != n_ref:
            print("token counts differ: moecl %d, tiktoken %d" % (n_ours, n_ref))
            return 1
        mo, mt = statistics.median(ours), statistics.median(ref)
        print("%-6s %9.2f %14.2f %14.2f %7.2fx  (%d tokens; moecl runs %s; tiktoken runs %s)" %
              (name, len(text) / 1e6, mo, mt, mo / mt, n_ours,
               " ".join("%.1f" % r for r in ours), " ".join("%.1f" % r for r in ref)))
        if hf is not None:
            t0 = time.perf_counter()
            n_hf = len(hf.encode(text.decode("utf-8"), add_special_tokens=False).ids)
            print("%-6s HF tokenizers (one run): %.2f MB/s, %d tokens" %
                  (name, len(text) / (time.perf_counter() - t0) / 1e6, n_hf))
    return 0


if __name__ == "__main__":
    sys.exit(main())
