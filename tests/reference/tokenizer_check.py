"""Tokenizer exactness: moecl's ids against Hugging Face tokenizers and tiktoken.

    build/venv/bin/python tests/reference/tokenizer_check.py [--moecl build/moecl]
        [--tiktoken data/o200k_base.tiktoken] [--work build/tokcheck] [--quick]

1. moecl writes tokenizer.json from the rank file; it must be byte-identical to the file that
   HF tokenizers saves for transformers' converter rules (rebuilt here from the same ranks).
2. The corpus (make_corpus.py, > 10 MB) is encoded by moecl (loaded from the .tiktoken file and
   from the written tokenizer.json), by HF tokenizers loading moecl's tokenizer.json, and by
   tiktoken built from the same rank file with the o200k pattern. Every record must give the
   same ids in all four, with special tokens allowed and without (encode_ordinary).
   Invalid-UTF-8 records are compared with the references' ids for
   bytes.decode("utf-8", "replace"), which is moecl's documented behaviour.
3. Decoding: moecl's stream decoder output for the corpus ids and for random id sequences must
   equal HF's decode.
Prints counts per category; exits 1 on any mismatch. No network is used.
"""

import argparse
import base64
import collections
import hashlib
import os
import random
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_corpus  # noqa: E402

os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")

O200K_PATTERN = "|".join([
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
    r"""\p{N}{1,3}""",
    r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
    r"""\s*[\r\n]+""",
    r"""\s+(?!\S)""",
    r"""\s+""",
])

INFO_ONLY = {"unassigned_u15"}

# sha256 of the tokenizer.json that openai/gpt-oss-20b publishes (and the MLX conversions copy),
# as recorded in the spec (tokenizer-harmony.md §2.1).
GPT_OSS_TOKENIZER_SHA256 = "0614fe83cadab421296e664e1f48f4261fa8fef6e03e63bb75c20f38e37d07d3"  # newer Unicode in the references may classify these


def load_ranks(path):
    ranks = {}
    with open(path, "rb") as f:
        for line in f:
            tok, rank = line.split()
            ranks[base64.b64decode(tok)] = int(rank)
    return ranks


def harmony_specials():
    """tiktoken's o200k_harmony special tokens (ids 199998..201087)."""
    named = {199998: "<|startoftext|>", 199999: "<|endoftext|>", 200002: "<|return|>",
             200003: "<|constrain|>", 200005: "<|channel|>", 200006: "<|start|>",
             200007: "<|end|>", 200008: "<|message|>", 200012: "<|call|>"}
    sp = {"<|endofprompt|>": 200018}
    for i in range(199998, 201088):
        sp[named.get(i, "<|reserved_%d|>" % i)] = i
    return sp


def hf_converter_json(ranks, out_path):
    """transformers' TikTokenConverter/GptOssConverter rules, saved by HF tokenizers."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, pre_tokenizers, processors
    from tokenizers.models import BPE

    bs = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) +
          list(range(ord("®"), ord("ÿ") + 1)))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    enc = dict(zip(bs, map(chr, cs)))

    def s(b):
        return "".join(enc[x] for x in b)

    vocab, merges = {}, []
    for tok, rank in ranks.items():
        vocab[s(tok)] = rank
        if len(tok) == 1:
            continue
        local = [(tok[:i], tok[i:], rank) for i in range(1, len(tok))
                 if tok[:i] in ranks and tok[i:] in ranks]
        local.sort(key=lambda x: (ranks[x[0]], ranks[x[1]]))
        merges.extend(local)
    merges.sort(key=lambda v: v[2])
    tk = Tokenizer(BPE(vocab, [(s(a), s(b)) for a, b, _ in merges], fuse_unk=False))
    tk.model.ignore_merges = True
    tk.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(O200K_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tk.decoder = decoders.ByteLevel()
    sp = {"<|startoftext|>": 199998, "<|endoftext|>": 199999, "<|return|>": 200002,
          "<|constrain|>": 200003, "<|channel|>": 200005, "<|start|>": 200006, "<|end|>": 200007,
          "<|message|>": 200008, "<|call|>": 200012, "<|endofprompt|>": 200018}
    used = set(sp.values())
    for i in range(199999, 200018):
        if i not in used:
            sp.setdefault("<|reserved_%d|>" % i, i)
    tk.add_special_tokens([AddedToken(t, normalized=False, special=True)
                           for t, _ in sorted(sp.items(), key=lambda x: x[1])])
    tk.post_processor = processors.ByteLevel(trim_offsets=False)
    tk.save(out_path)
    return len(merges)


def run_moecl(moecl, source_args, records, extra):
    """Encodes records (bytes) with `moecl tokenize --lines --hex`; returns lists of ids."""
    with tempfile.NamedTemporaryFile("w", suffix=".hex", delete=False) as f:
        for b in records:
            f.write(b.hex() + "\n")
        path = f.name
    try:
        t0 = time.time()
        out = subprocess.run([moecl, "tokenize"] + source_args +
                             ["--lines", "--hex", "--file", path] + extra,
                             check=True, capture_output=True).stdout
        dt = time.time() - t0
    finally:
        os.unlink(path)
    lines = out.decode().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if len(lines) != len(records):
        raise SystemExit("moecl printed %d lines for %d records" % (len(lines), len(records)))
    return [[int(x) for x in line.split()] for line in lines], dt


def run_moecl_decode(moecl, source_args, id_lists):
    with tempfile.NamedTemporaryFile("w", suffix=".ids", delete=False) as f:
        for ids in id_lists:
            f.write(" ".join(map(str, ids)) + "\n")
        path = f.name
    try:
        out = subprocess.run([moecl, "tokenize"] + source_args +
                             ["--decode", "--lines", "--hex", "--file", path],
                             check=True, capture_output=True).stdout
    finally:
        os.unlink(path)
    lines = out.decode().split("\n")[:len(id_lists)]
    return [bytes.fromhex(x).decode("utf-8") for x in lines]


def run_moecl_pieces(moecl, records):
    """Pre-tokenizer piece lengths (bytes) per valid-UTF-8 record."""
    with tempfile.NamedTemporaryFile("w", suffix=".hex", delete=False) as f:
        for b in records:
            f.write(b.hex() + "\n")
        path = f.name
    try:
        out = subprocess.run([moecl, "tokenize", "--pieces", "--lines", "--hex", "--file", path],
                             check=True, capture_output=True).stdout
    finally:
        os.unlink(path)
    lines = out.decode().split("\n")[:len(records)]
    return [[int(x) for x in line.split()] for line in lines]


def show(b, n=80):
    r = repr(b[:n])
    return r + ("..." if len(b) > n else "")


def main():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--moecl", default=os.path.join(root, "build", "moecl"))
    ap.add_argument("--tiktoken", default=os.path.join(root, "data", "o200k_base.tiktoken"))
    ap.add_argument("--work", default=os.path.join(root, "build", "tokcheck"))
    ap.add_argument("--quick", action="store_true", help="a smaller corpus (about 3 MB)")
    args = ap.parse_args()

    import tiktoken
    import tokenizers
    from tokenizers import Tokenizer

    print("tokenizers %s, tiktoken %s, Unicode tables: build/gen/unicode_tables.c" %
          (tokenizers.__version__, tiktoken.__version__ if hasattr(tiktoken, "__version__")
           else "?"))
    os.makedirs(args.work, exist_ok=True)
    failures = 0

    # ---- 1. the writer
    ours_json = os.path.join(args.work, "tokenizer.json")
    ref_json = os.path.join(args.work, "tokenizer.hf-converter.json")
    t0 = time.time()
    subprocess.run([args.moecl, "tokenize", "--tiktoken", args.tiktoken, "--write-json",
                    ours_json], check=True)
    t_write = time.time() - t0
    ranks = load_ranks(args.tiktoken)
    n_merges = hf_converter_json(ranks, ref_json)
    with open(ours_json, "rb") as a, open(ref_json, "rb") as b:
        same = a.read() == b.read()
    print("tokenizer.json: moecl's (%.2f s) vs HF-saved converter output: %s "
          "(%d vocab, %d merges, %d bytes)" %
          (t_write, "byte-identical" if same else "DIFFERENT", len(ranks), n_merges,
           os.path.getsize(ours_json)))
    failures += not same
    with open(ours_json, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    print("tokenizer.json sha256 %s: %s" % (digest, "the same bytes as openai/gpt-oss-20b's "
          "published tokenizer.json" if digest == GPT_OSS_TOKENIZER_SHA256 else
          "DIFFERENT from openai/gpt-oss-20b's published tokenizer.json (%s)" %
          GPT_OSS_TOKENIZER_SHA256))
    failures += digest != GPT_OSS_TOKENIZER_SHA256

    hf = Tokenizer.from_file(ours_json)
    enc = tiktoken.Encoding(name="o200k_harmony_local", pat_str=O200K_PATTERN,
                            mergeable_ranks=ranks, special_tokens=harmony_specials())
    allowed = set(make_corpus.SPECIALS)

    # ---- 2. encode
    recs = make_corpus.build_corpus(scale=0.25 if args.quick else 1.0,
                                    tiktoken_path=args.tiktoken)
    data = [b for _, b in recs]
    texts = [b.decode("utf-8", "replace") for b in data]
    total = sum(len(b) for c, b in recs if c not in INFO_ONLY)
    print("corpus: %d records, %.2f MB counted (+ %d informational records)" %
          (sum(c not in INFO_ONLY for c, _ in recs), total / 1e6,
           sum(c in INFO_ONLY for c, _ in recs)))

    src_tt = ["--tiktoken", args.tiktoken]
    src_js = ["--tokenizer", ours_json]
    ours_sp, t_sp = run_moecl(args.moecl, src_tt, data, [])
    ours_sp_js, _ = run_moecl(args.moecl, src_js, data, [])
    ours_ord, _ = run_moecl(args.moecl, src_tt, data, ["--no-special"])
    t0 = time.time()
    hf_sp = [e.ids for e in hf.encode_batch(texts, add_special_tokens=False)]
    t_hf = time.time() - t0
    hf.encode_special_tokens = True
    hf_ord = [e.ids for e in hf.encode_batch(texts, add_special_tokens=False)]
    hf.encode_special_tokens = False
    t0 = time.time()
    tt_sp = enc.encode_batch(texts, allowed_special=allowed, disallowed_special=())
    t_tt = time.time() - t0
    tt_ord = enc.encode_ordinary_batch(texts)
    print("encode times (whole corpus, batch APIs may use threads): moecl %.2f s, HF %.2f s, "
          "tiktoken %.2f s" % (t_sp, t_hf, t_tt))

    cats = collections.OrderedDict()
    shown = 0
    for i, (cat, b) in enumerate(recs):
        c = cats.setdefault(cat, [0, 0, 0])
        c[0] += 1
        c[2] += len(b)
        ok = (ours_sp[i] == hf_sp[i] == tt_sp[i] == ours_sp_js[i] and
              ours_ord[i] == hf_ord[i] == tt_ord[i])
        if ok:
            c[1] += 1
        elif cat not in INFO_ONLY and shown < 15:
            shown += 1
            print("MISMATCH [%s] %s" % (cat, show(b)))
            print("   moecl    %s" % ours_sp[i][:30])
            print("   moecl/js %s" % ours_sp_js[i][:30])
            print("   HF       %s" % hf_sp[i][:30])
            print("   tiktoken %s" % tt_sp[i][:30])
            print("   ordinary: moecl %s HF %s tiktoken %s" %
                  (ours_ord[i][:12], hf_ord[i][:12], tt_ord[i][:12]))
    print("%-18s %9s %9s %11s" % ("category", "records", "identical", "bytes"))
    n_all = n_ok = 0
    for cat, (n, ok, nb) in cats.items():
        note = (" (informational: code points unassigned in moecl's Unicode 15.0 tables; the "
                "references know those added in 15.1/16.0)" if cat in INFO_ONLY else "")
        print("%-18s %9d %9d %11d%s" % (cat, n, ok, nb, note))
        if cat not in INFO_ONLY:
            n_all += n
            n_ok += ok
    n_ids = sum(len(x) for x in ours_sp)
    print("encode: %d/%d records identical (%.4f%%), %d ids, in moecl (tiktoken file), moecl "
          "(tokenizer.json), HF tokenizers and tiktoken, with and without special tokens" %
          (n_ok, n_all, 100.0 * n_ok / max(1, n_all), n_ids))
    failures += n_ok != n_all

    # ---- pre-tokenizer pieces against HF's Split(o200k regex) alone (stricter than ids)
    from tokenizers import Regex, pre_tokenizers
    split = pre_tokenizers.Split(Regex(O200K_PATTERN), behavior="isolated", invert=False)
    valid = [i for i, (c, _) in enumerate(recs) if c != "invalid_utf8"]
    ours_pieces = run_moecl_pieces(args.moecl, [data[i] for i in valid])
    piece_bad = collections.Counter()
    n_pieces = 0
    shown = 0
    for k, i in enumerate(valid):
        hf_pieces = [len(p.encode("utf-8")) for p, _ in split.pre_tokenize_str(texts[i])]
        n_pieces += len(hf_pieces)
        if hf_pieces != ours_pieces[k]:
            piece_bad[recs[i][0]] += 1
            if recs[i][0] not in INFO_ONLY and shown < 10:
                shown += 1
                print("PIECES MISMATCH [%s] %s: moecl %s HF %s" %
                      (recs[i][0], show(data[i]), ours_pieces[k][:20], hf_pieces[:20]))
    n_valid = sum(recs[i][0] not in INFO_ONLY for i in valid)
    n_bad = sum(v for c, v in piece_bad.items() if c not in INFO_ONLY)
    print("pre-tokenizer: %d/%d records split into the same %d pieces as HF's Split regex "
          "(Oniguruma)" % (n_valid - n_bad, n_valid, n_pieces))
    for cat in INFO_ONLY:
        print("pre-tokenizer, informational: %d of %d records of code points unassigned in "
              "Unicode 15.0 split differently (the reference's Unicode is newer)" %
              (piece_bad[cat], cats.get(cat, [0])[0]))
    failures += n_bad != 0

    # ---- 3. decode
    rng = random.Random(7)
    id_lists = [ours_sp[i] for i in range(0, len(recs), 7)]
    for _ in range(3000):
        n = rng.randint(1, 12)
        id_lists.append([rng.choice([rng.randrange(199998), rng.randrange(256),
                                     rng.randrange(199998, 200019)]) for _ in range(n)])
    ours_dec = run_moecl_decode(args.moecl, src_tt, id_lists)
    hf_dec = hf.decode_batch(id_lists, skip_special_tokens=False)
    bad = [i for i in range(len(id_lists)) if ours_dec[i] != hf_dec[i]]
    for i in bad[:5]:
        print("DECODE MISMATCH ids %s: moecl %r HF %r" % (id_lists[i][:10], ours_dec[i][:60],
                                                         hf_dec[i][:60]))
    print("decode: %d/%d id sequences decode identically to HF tokenizers (stream decoder)" %
          (len(id_lists) - len(bad), len(id_lists)))
    failures += bool(bad)

    print("tokcheck: %s" % ("PASS" if failures == 0 else "FAIL"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
