"""Builds the tokenizer exactness corpus from files every Debian 12 machine with moecl's
dependencies has, plus generated strings. Deterministic for a given seed.

Used by tokenizer_check.py and tokenizer_bench.py; run alone it writes the corpus to a file:

    python tests/reference/make_corpus.py OUT.hex   # one record per line, hex of its bytes

Every record is a (category, bytes) pair. All records are valid UTF-8 except category
"invalid_utf8". Category "unassigned_u15" holds code points unassigned in the pinned Unicode
version (15.0 here); the reference libraries may know them from a newer Unicode, so the check
reports them separately instead of counting them.
"""

import base64
import bz2
import glob
import gzip
import os
import random
import sys
import sysconfig

UNICODE_DIR = os.environ.get("UNICODE_DIR", "/usr/share/unicode")

SPECIALS = [
    "<|startoftext|>", "<|endoftext|>", "<|return|>", "<|constrain|>", "<|channel|>",
    "<|start|>", "<|end|>", "<|message|>", "<|call|>", "<|endofprompt|>",
] + ["<|reserved_%d|>" % i for i in (200000, 200001, 200004, 200009, 200010, 200011, 200013,
                                    200014, 200015, 200016, 200017)]


# ---------------------------------------------------------------- Unicode data

def load_categories():
    """code point -> General_Category for every assigned code point of UnicodeData.txt."""
    cats = {}
    first = None
    with open(os.path.join(UNICODE_DIR, "UnicodeData.txt"), encoding="utf-8") as f:
        for line in f:
            fields = line.split(";")
            cp, name, gc = int(fields[0], 16), fields[1], fields[2]
            if name.endswith(", First>"):
                first = cp
                continue
            if name.endswith(", Last>"):
                for c in range(first, cp + 1):
                    cats[c] = gc
                continue
            cats[cp] = gc
    return cats


# ---------------------------------------------------------------- file sources

def read_text(path, limit=2_000_000):
    try:
        if path.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                data = f.read(limit)
        elif path.endswith(".bz2"):
            with bz2.open(path, "rb") as f:
                data = f.read(limit)
        else:
            with open(path, "rb") as f:
                data = f.read(limit)
    except (OSError, EOFError, ValueError):
        return None
    if b"\0" in data[:4096]:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def chunks(rng, text, max_len):
    """Cuts text at random places into pieces of 1..max_len characters."""
    out = []
    i = 0
    while i < len(text):
        n = rng.randint(1, max_len)
        out.append(text[i:i + n])
        i += n
    return out


def file_records(rng, category, paths, budget, max_len=3000):
    """Records from files (in random order) until `budget` bytes of text."""
    paths = sorted(set(paths))
    rng.shuffle(paths)
    recs, total = [], 0
    for p in paths:
        if total >= budget:
            break
        text = read_text(p)
        if not text:
            continue
        text = text[: max(1, budget - total)]
        for c in chunks(rng, text, max_len):
            recs.append((category, c.encode("utf-8")))
        total += len(text.encode("utf-8"))
    return recs


def stdlib_dir():
    return sysconfig.get_paths()["stdlib"]


# ---------------------------------------------------------------- generated strings

def tricky_cases():
    """The spec's cases (tokenizer-harmony.md §3.2, §7) and relatives."""
    base = [
        "hello world", "Hello World", "don't", "DON'T", "camelCase", "HTTPSession", "12345678",
        " 123", "a/b", "!\n/", "x  ", "  a", "\n\nfoo", "中文!", "Café déjà vu", "user", "system",
        "developer", "commentary", "json", "HTMLParser", "ABCdEF", "aǅ", "Aǅb", "it'ſ", "1's",
        "'llama", "\t!", "!\n//\n/x", "!\n/!", "A中Cd", "Ab中Cd", "\u0301A!", "A\u0301!",
        "it'sx", "they'r", "\tword", "\nword", "2 + 2", ".\n\n", "text.\n\n", "  \n ", "!!\u0301",
        "A中B", "中AB!", " 1", "x", "", " ", "\n", "\r\n", "\r", "\r\r\n\n", " \r\n \r\n  x",
        "What is 2 + 2?", "User asks: \"What is 2 + 2?\" Simple arithmetic. Provide answer.",
        "<|start|>assistant<|channel|>final<|message|>2 + 2 = 4.<|return|>",
        "<|startoftext|><|start|><|message|>Hello World<|end|><|endoftext|>",
        "# Instructions\n\nAnswer briefly.\n\n", "# Instructions\n\nAnswer briefly.",
        "<|start|>assistant to=lookup_weather<|channel|>analysis code<|message|>{\"location\": "
        "\"Tokyo\"}",
        "<|reserved_200500|>", "<|reserved_200018|>", "<|endofprompt|>", "<|start", "|>", "<|",
        "<<|start|>>", "<|start|><|start|>", "x<|end|>y", " <|end|> ", "\n<|end|>\n",
        "a  <|end|>", "  <|end|>", "'s", "'S", "'ſ", "'re", "'RE", "'rE", "'Ll", "'lL", "'ve",
        "'VE", "'m", "'M", "'d", "'D", "'t", "'T", "''s", "'", "''", "a'", "A'", "1'", "中's",
        "\u0301's", "é's", "É'S", "ǅ'Ll", "ſ's", "x'ſ", "X'ſ",
    ]
    return [s.encode("utf-8") for s in base]


def contraction_cases(rng):
    recs = []
    sufs = ["s", "t", "re", "ve", "m", "ll", "d", "ſ", "x", "", "S", "T", "RE", "Re", "rE", "VE",
            "Ve", "vE", "M", "LL", "Ll", "lL", "D"]
    stems = ["don", "DON", "Don", "dOn", "中", "ǅ", "a\u0301", "A\u0301", "1", " ", "", "é", "É",
             "x", "X", "ß", "ʰ", "ا", "Ω", "ω", "\u0301", "ǈ"]
    tails = ["", "x", "X", " ", "!", "1", "'", "'s", "中", "\u0301", "\n"]
    for st in stems:
        for su in sufs:
            for t in tails:
                for q in ("'", "\u2019"):
                    recs.append((st + q + su + t).encode("utf-8"))
    return recs


def whitespace_cases(rng):
    ws = [" ", "\t", "\n", "\r", "\r\n", "\u00a0", "\u3000", "\u2003", "\u0085", "\u2028",
          "\u000b", "\u000c", "\u180e", "\u200b", "\ufeff", "\u202f", "\u205f", "\u1680"]
    after = ["", "a", "A", "1", "!", "中", "\u0301", "'s", "<|end|>", "/", " x"]
    recs = []
    for n in list(range(1, 20)) + [31, 64, 100, 255, 256, 1000, 5000]:
        for w in ws:
            for a in after:
                recs.append(("x" + w * n + a).encode("utf-8"))
    for _ in range(3000):
        n = rng.randint(1, 60)
        s = "".join(rng.choice(ws) for _ in range(n))
        recs.append((rng.choice(after) + s + rng.choice(after)).encode("utf-8"))
    return recs


def number_cases(rng):
    digit_sets = ["0123456789", "٠١٢٣٤٥٦٧٨٩", "०१२३४५६७८९", "０１２３４５６７８９", "²³¹¼½¾",
                  "ⅠⅡⅢⅣⅤⅫ", "൦൧൨൩"]
    recs = []
    for n in range(1, 41):
        for ds in digit_sets:
            recs.append("".join(rng.choice(ds) for _ in range(n)).encode("utf-8"))
    seps = [" ", ",", ".", "-", "+", "/", ":", "e", "x", "_", "'", "\n"]
    for _ in range(4000):
        parts = []
        for _ in range(rng.randint(1, 8)):
            parts.append(str(rng.randint(0, 10 ** rng.randint(1, 12))))
            parts.append(rng.choice(seps))
        recs.append("".join(parts).encode("utf-8"))
    return recs


def emoji_cases():
    recs = []
    for name in ("emoji-zwj-sequences.txt", "emoji-sequences.txt", "emoji-test.txt",
                 "emoji-variation-sequences.txt"):
        path = os.path.join(UNICODE_DIR, "emoji", name)
        if not os.path.exists(path):
            continue
        seqs = []
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.split("#")[0].strip()
                if not line:
                    continue
                field = line.split(";")[0].strip()
                if ".." in field:
                    lo, hi = (int(x, 16) for x in field.split(".."))
                    seqs.extend(chr(c) for c in range(lo, min(hi, lo + 64) + 1))
                else:
                    try:
                        seqs.append("".join(chr(int(x, 16)) for x in field.split()))
                    except ValueError:
                        continue
        for i in range(0, len(seqs), 8):
            group = seqs[i:i + 8]
            recs.append(("".join(group)).encode("utf-8"))
            recs.append((" ".join(group) + " ok").encode("utf-8"))
            recs.append(("I ❤ " + "x".join(group) + "!").encode("utf-8"))
    return recs


def script_prose(rng, cats):
    """Pseudo-prose in many scripts: words from each block's letters and marks."""
    blocks = []
    with open(os.path.join(UNICODE_DIR, "Blocks.txt"), encoding="utf-8") as f:
        for line in f:
            line = line.split("#")[0].strip()
            if not line:
                continue
            rng_s, name = line.split(";")
            lo, hi = (int(x, 16) for x in rng_s.split(".."))
            blocks.append((lo, hi, name.strip()))
    recs = []
    punct = [" ", " ", " ", ", ", ". ", "! ", "? ", "; ", ":\n", ".\n\n", " - ", " (", ") ", "'s ",
             " «", "» ", "。", "、", "\u061f "]
    for lo, hi, name in blocks:
        letters = [chr(c) for c in range(lo, min(hi, lo + 4000) + 1)
                   if cats.get(c, "Cn")[0] in "LM"]
        marks = [chr(c) for c in range(lo, hi + 1) if cats.get(c, "Cn")[0] == "M"]
        if not letters:
            continue
        for _ in range(6):
            words = []
            for _ in range(rng.randint(5, 80)):
                w = "".join(rng.choice(letters) for _ in range(rng.randint(1, 9)))
                if marks and rng.random() < 0.3:
                    w += rng.choice(marks)
                words.append(w + rng.choice(punct))
            recs.append("".join(words).encode("utf-8"))
    return recs


def mark_cases(rng, cats):
    marks = [chr(c) for c, g in cats.items() if g[0] == "M"]
    bases = ["a", "A", "中", " ", "!", "1", "\n", "ǅ", "'", "", "ß", "ʰ"]
    recs = []
    for _ in range(6000):
        s = rng.choice(bases) + "".join(rng.choice(marks) for _ in range(rng.randint(1, 5)))
        s += rng.choice(bases) + rng.choice(["", "'s", "x", "X", " y"])
        recs.append(s.encode("utf-8"))
    return recs


def per_code_point(cats):
    """Each assigned code point (large ideograph ranges sampled) in many contexts."""
    recs = []
    cps = sorted(c for c, g in cats.items() if g != "Cs")
    keep = []
    for c in cps:
        gc = cats[c]
        # thin out the huge uniform ranges (CJK, Hangul, Tangut, private use): 1 in 16
        if gc in ("Lo", "Co") and cats.get(c - 1) == gc and cats.get(c + 1) == gc and c % 16:
            continue
        keep.append(c)
    for c in keep:
        ch = chr(c)
        s = ("a%sb A%sb %sA %s's x%s'LL 1%s2 !%s! \t%s\n%s%s%sx %s" %
             (ch, ch, ch, ch, ch, ch, ch, ch, ch, ch, ch, ch))
        recs.append(s.encode("utf-8"))
    return recs


def unassigned(cats):
    recs = []
    for c in range(0x80, 0x32000):
        if c in cats or 0xD800 <= c <= 0xDFFF:
            continue
        ch = chr(c)
        recs.append(("a%sb A%s %s1 !%s %s's" % (ch, ch, ch, ch, ch)).encode("utf-8"))
    return recs


def invalid_utf8(rng):
    fixed = [b"\x80", b"\xbf", b"\xc0\xaf", b"\xc1\xbf", b"\xc2", b"\xc2\x41", b"\xe0\x80\x80",
             b"\xe0\xa0", b"\xed\xa0\x80", b"\xed\xbf\xbf", b"\xef\xbf", b"\xf0\x80\x80\x80",
             b"\xf0\x90\x80", b"\xf4\x90\x80\x80", b"\xf5\x80\x80\x80", b"\xff", b"\xfe\xff",
             b"abc\xffdef", b"don\x92t", b"caf\xe9", b"\xe4\xb8", b"\xe4\xb8\xadx\xe4", b" \xa0 ",
             b"\xf0\x9f\x98", b"\xf0\x9f\x98\x80\xf0\x9f", b"<|end|>\xff<|start|>", b"'\xc5",
             b"a\xcc", b"\n\xff\n", b"1\xff2", b"\xc3\x28", b"\xa0\xa1", b"\xe2\x82\x28",
             b"\xe2\x28\xa1", b"\xf0\x28\x8c\xbc", b"\xf8\xa1\xa1\xa1\xa1", b"\xfc\xa1\xa1\xa1\xa1\xa1"]
    recs = list(fixed)
    alphabet = [b"a", b" ", b"\n", b"\x80", b"\xc3", b"\xa9", b"\xe4", b"\xb8", b"\xad", b"\xf0",
                b"\x9f", b"\x98", b"\xff", b"'", b"s", b"1", b"\xed", b"\xa0"]
    for _ in range(3000):
        recs.append(b"".join(rng.choice(alphabet) for _ in range(rng.randint(1, 24))))
    for _ in range(1000):
        recs.append(bytes(rng.randrange(256) for _ in range(rng.randint(1, 64))))
    return [r for r in recs if not _valid(r)]


def _valid(b):
    try:
        b.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def merge_tie_cases(tiktoken_path):
    """Strings around the only places where HF's merge order and tiktoken's rank order could
    disagree (spec tokenizer-harmony.md §3.1): a token T with two splits x+y == y+z sharing y,
    where HF's merge list prefers (y, z) but tiktoken takes the leftmost pair (x, y)."""
    ranks = {}
    with open(tiktoken_path, "rb") as f:
        for line in f:
            tok, rank = line.split()
            ranks[base64.b64decode(tok)] = int(rank)
    recs = []
    for t, _ in ranks.items():
        n = len(t)
        for k in range(1, n):
            x, y, z = t[:k], t[k:], t[n - k:]
            if t[:n - k] != y or x not in ranks or y not in ranks or z not in ranks:
                continue
            if (ranks[y], ranks[z]) >= (ranks[x], ranks[y]):
                continue
            for s in (x + y + z, t + z, x + t, t * 2, t * 3, b" " + x + y + z, x + y + z + b"q",
                      b"a" + t * 2 + b"b"):
                try:
                    s.decode("utf-8")
                except UnicodeDecodeError:
                    continue
                recs.append(s)
    return sorted(set(recs))


def long_cases():
    return [b" " * 100000, b"a" * 100000, b"A" * 50000 + b"b" * 50000, b"1" * 30001,
            b"!" * 50000, b"\n" * 50000, (b" \n" * 20000) + b"x", b"\t" * 30000 + b"x",
            ("\u3000" * 20000 + "中").encode(), ("é" * 40000).encode(),
            b"ab" * 50000, (b"abcdefghij" * 10000), ("\u0301" * 20000).encode(),
            b"x" + b" " * 70000 + b"y"]


# ---------------------------------------------------------------- corpus

def build_corpus(seed=20261123, scale=1.0, tiktoken_path=None):
    """[(category, bytes)]. scale shrinks the file-based parts (for quick runs); with the rank
    file, the merge-tie cases are added."""
    rng = random.Random(seed)
    cats = load_categories()
    recs = []

    def add(category, items):
        recs.extend((category, b) for b in items)

    add("tricky", tricky_cases())
    add("contractions", contraction_cases(rng))
    add("whitespace", whitespace_cases(rng))
    add("numbers", number_cases(rng))
    add("emoji", emoji_cases())
    add("script_prose", script_prose(rng, cats))
    add("marks", mark_cases(rng, cats))
    add("code_points", per_code_point(cats))
    add("long_runs", long_cases())
    if tiktoken_path:
        add("merge_ties", merge_tie_cases(tiktoken_path))
    add("invalid_utf8", invalid_utf8(rng))
    add("unassigned_u15", unassigned(cats))

    man = glob.glob("/usr/share/man/*/man*/*.gz") + glob.glob("/usr/share/man/man*/*.gz")
    localized = [p for p in man if not p.startswith("/usr/share/man/man")]
    recs += file_records(rng, "man_localized", localized, int(2_000_000 * scale))
    recs += file_records(rng, "man", [p for p in man if p not in set(localized)],
                         int(1_000_000 * scale))
    doc = glob.glob("/usr/share/doc/*/changelog*.gz") + glob.glob("/usr/share/doc/*/copyright")
    doc += glob.glob("/usr/share/doc/*/*.md") + glob.glob("/usr/share/doc/*/README*")
    recs += file_records(rng, "doc", doc, int(1_500_000 * scale))
    headers = glob.glob("/usr/include/*.h") + glob.glob("/usr/include/*/*.h")
    headers += glob.glob("/usr/include/*/*/*.h")
    recs += file_records(rng, "c_headers", headers, int(1_500_000 * scale))
    lib = stdlib_dir()
    py = glob.glob(os.path.join(lib, "*.py")) + glob.glob(os.path.join(lib, "*/*.py"))
    recs += file_records(rng, "python_stdlib", py, int(1_500_000 * scale))
    testdata = glob.glob(os.path.join(lib, "test", "cjkencodings", "*-utf8.txt"))
    testdata += glob.glob(os.path.join(lib, "test", "*.txt"))
    testdata += glob.glob(os.path.join(lib, "test", "test_unicode*.py"))
    testdata += glob.glob(os.path.join(lib, "test", "test_codecs.py"))
    testdata += glob.glob(os.path.join(lib, "test", "test_str*.py"))
    testdata += glob.glob(os.path.join(lib, "test", "encoded_modules", "*.py"))
    testdata += glob.glob(os.path.join(lib, "test", "tokenizedata", "*"))
    recs += file_records(rng, "python_testdata", testdata, int(1_500_000 * scale), 1500)
    udata = [os.path.join(UNICODE_DIR, n) for n in
             ("NamesList.txt", "UnicodeData.txt", "NormalizationTest.txt.bz2", "CJKRadicals.txt",
              "NamedSequences.txt", "SpecialCasing.txt", "CaseFolding.txt",
              "EquivalentUnifiedIdeograph.txt", "Unihan_Readings.txt.bz2")]
    recs += file_records(rng, "unicode_data", udata, int(1_500_000 * scale))
    return recs


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    recs = build_corpus()
    with open(sys.argv[1], "w") as f:
        for _, b in recs:
            f.write(b.hex() + "\n")
    total = sum(len(b) for _, b in recs)
    print("%d records, %.2f MB" % (len(recs), total / 1e6))
    return 0


if __name__ == "__main__":
    sys.exit(main())
