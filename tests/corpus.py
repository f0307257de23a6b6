#!/usr/bin/env python3
"""Text for IPDC's word-count tests and benchmarks, the same bytes for the same seed.

    python3 tests/corpus.py SIZE [--seed N] [--valid-utf8] > FILE

SIZE is a byte count, optionally with K, M or G (powers of 1024): 1K, 64M,
1.5G. The output is exactly SIZE bytes and ends with a newline.

The tests check word counts against Python's own definition,
`Counter(w for line in f for w in line.split())` over the file decoded as
UTF-8 with errors="surrogateescape", so the text holds, at ordinary rates
and never so much that it is mostly edge cases:

- words drawn from a 200,000-word vocabulary with Zipf-like frequencies
  (rank r has weight 1/r^1.07; the top ranks are common short English
  words, the rest made up): mostly lower-case ASCII, some capitalised,
  some with punctuation or digits, and some non-ASCII: accented Latin,
  Greek, Cyrillic, CJK and kana, emoji (4-byte UTF-8), combining accents;
- words with characters that are *not* whitespace to str.split() but whose
  UTF-8 bytes start like a whitespace character's (U+200B, U+2060, U+3001,
  U+00A9, U+1681, U+FEFF), which a byte-level scanner could take for space;
- lines from empty to a few hundred words, some with leading or trailing
  blanks, about 3% ending in \\r\\n instead of \\n;
- between words mostly one space, sometimes a run of spaces or a tab, and
  now and then another character str.split() splits on: \\x0b \\x0c
  \\x1c-\\x1f \\x85 U+00A0 U+1680 U+2000-U+200A U+2028 U+2029 U+202F U+205F
  U+3000, or a lone \\r;
- in about one line in 500, a word with bytes that are not valid UTF-8
  (stray continuation bytes, a cut-off sequence, an overlong or surrogate
  encoding, 0xFE/0xFF), some of them right against a multi-byte whitespace
  character. --valid-utf8 leaves these out, for programs that cannot read
  such bytes (the benchmark's Spark and mrjob).

How: a pool of distinct lines (up to 16 MiB of them) is built first; a
larger output repeats the pool, shuffled again each round, so 256 MiB takes
seconds. Python 3 standard library only; no set or dict order is relied on,
so the bytes do not depend on PYTHONHASHSEED.
"""
import random
import re
import sys

VOCAB = 200_000
ZIPF_S = 1.07
POOL_BYTES = 16 << 20

LOWER = "abcdefghijklmnopqrstuvwxyz"
LATIN = "àáâäãåæçèéêëìíîïñòóôöõøœùúûüýÿßðþłńśźżčšžřů"
GREEK = "αβγδεζηθικλμνξοπρστυφχψω"
CYRILLIC = "абвгдеёжзийклмнопрстуфхцчшщъыьэюя"
CJK = [chr(c) for c in range(0x4E00, 0x4E00 + 2500)] + [chr(c) for c in range(0x3041, 0x3094)]
EMOJI = [chr(c) for c in range(0x1F600, 0x1F650)] + ["\u2764", "\u2728", "\U0001F44D", "\U0001F680"]
# Not whitespace to str.split(), but UTF-8 that begins with a byte that
# whitespace characters also begin with (E2 80 8B beside E2 80 8A, ...).
NEAR_SPACE = ["\u200b", "\u2060", "\u3001", "\u00a9", "\u1681", "\ufeff", "\u2030"]
COMBINING = ["\u0301", "\u0300", "\u0308", "\u0327"]
PUNCT = [",", ".", ";", ":", "!", "?", ")", "'s", "\u2019s", "\u2026", "\""]

# Separators between words, with their weights (str.split() splits on all).
SEPARATORS = [(" ", 900), ("\t", 20)] + [
    (s, 4) for s in [
        "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x1f", "\x85", "\u00a0", "\u1680", "\u2000", "\u2002",
        "\u2003", "\u2009", "\u200a", "\u2028", "\u2029", "\u202f", "\u205f", "\u3000", "\r",
    ]
]
SPACE_RUNS = ["  ", "   ", "    ", "        ", " \t ", "\t\t"]

# Bytes that are not valid UTF-8, each placed inside or at the edge of a word.
INVALID = [
    b"\x80", b"\xbf", b"\xff", b"\xfe", b"\xc3", b"\xc0\xaf", b"\xe2\x80", b"\xe3\x80", b"\xf0\x9f\x98",
    b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\xc2\x85\x85", b"\xe2\x80\x8a\x80",
]
# Whitespace right after a cut-off sequence: the decoder must end the error there.
SPACE_AFTER_INVALID = [b" ", b"\xc2\xa0", b"\xe3\x80\x80", b"\xe2\x80\x83", b"\xc2\x85", b"\t"]


def parse_size(text):
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMG]?)(?:I?B)?", text.strip().upper())
    if not m:
        raise ValueError("SIZE must be a number of bytes, optionally with K, M or G (like 64M): %r" % text)
    number, unit = m.groups()
    return int(float(number) * {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[unit])


def make_word(rng):
    r = rng.random()
    if r < 0.900:
        n = min(1 + int(rng.expovariate(1 / 5.5)), 18)
        w = "".join(rng.choices(LOWER, k=n))
        r2 = rng.random()
        if r2 < 0.06:
            w = w.capitalize()
        elif r2 < 0.07:
            w = w.upper()
        elif r2 < 0.10:
            w += rng.choice(PUNCT)
        elif r2 < 0.12:
            w = str(rng.randrange(10 ** rng.randint(1, 6)))
        elif r2 < 0.125:
            w = "%s-%s" % (w, "".join(rng.choices(LOWER, k=rng.randint(2, 7))))
        return w
    if r < 0.935:
        alphabet = LOWER + LATIN
        w = "".join(rng.choices(alphabet, k=rng.randint(2, 11)))
        if rng.random() < 0.1:
            w = w.capitalize()
        return w
    if r < 0.955:
        return "".join(rng.choices(CJK, k=rng.randint(1, 4)))
    if r < 0.970:
        return "".join(rng.choices(CYRILLIC, k=rng.randint(2, 10)))
    if r < 0.980:
        return "".join(rng.choices(GREEK, k=rng.randint(2, 9)))
    if r < 0.990:
        base = "".join(rng.choices(LOWER, k=rng.randint(0, 5)))
        return base + "".join(rng.choices(EMOJI, k=rng.randint(1, 3)))
    if r < 0.995:
        base = "".join(rng.choices(LOWER, k=rng.randint(1, 6)))
        return base + rng.choice(COMBINING) + "".join(rng.choices(LOWER, k=rng.randint(0, 4)))
    left = "".join(rng.choices(LOWER, k=rng.randint(0, 5)))
    right = "".join(rng.choices(LOWER + "".join(CJK[:50]), k=rng.randint(0 if left else 1, 5)))
    return left + rng.choice(NEAR_SPACE) + right


# The most frequent ranks, as in real text: short words.
COMMON = (
    "the of and to a in is that it for was on as with he be at by this had not are but from or have an "
    "they which one you were her all she there would their we him been has when who will more no if out "
    "so said what up its about into than them can only other new some could time these two may then do"
).split()


def vocabulary(rng):
    words, seen = list(COMMON), set(COMMON)
    while len(words) < VOCAB:
        w = make_word(rng)
        if w not in seen:  # the set is only asked, never iterated
            seen.add(w)
            words.append(w)
    return [w.encode("utf-8") for w in words]


def invalid_word(rng):
    left = "".join(rng.choices(LOWER, k=rng.randint(0, 4))).encode()
    right = "".join(rng.choices(LOWER, k=rng.randint(0, 4))).encode()
    bad = rng.choice(INVALID)
    if rng.random() < 0.3:
        return left + bad + rng.choice(SPACE_AFTER_INVALID) + right
    return left + bad + right


def words_in_line(rng):
    r = rng.random()
    if r < 0.03:
        return 0
    if r < 0.80:
        return rng.randint(1, 20)
    if r < 0.98:
        return rng.randint(21, 60)
    return rng.randint(100, 400)


def build_pool(rng, limit, valid_utf8):
    words = vocabulary(rng)
    cum, total = [], 0.0
    for rank in range(1, VOCAB + 1):
        total += rank ** -ZIPF_S
        cum.append(total)
    seps = [s.encode("utf-8") for s, _ in SEPARATORS]
    sep_cum, t = [], 0
    for _, weight in SEPARATORS:
        t += weight
        sep_cum.append(t)
    runs = [s.encode() for s in SPACE_RUNS]
    pool, size = [], 0
    while size < limit:
        ws = rng.choices(words, cum_weights=cum, k=words_in_line(rng))
        if not valid_utf8 and ws and rng.random() < 0.002:
            ws[rng.randrange(len(ws))] = invalid_word(rng)
        r = rng.random()
        if r < 0.85:
            line = b" ".join(ws)  # most lines: single spaces only
        else:
            gaps = rng.choices(seps, cum_weights=sep_cum, k=max(len(ws) - 1, 0))
            for i in range(len(gaps)):
                if rng.random() < 0.08:
                    gaps[i] = rng.choice(runs)
            parts = [ws[0]] if ws else []
            for gap, w in zip(gaps, ws[1:]):
                parts.append(gap)
                parts.append(w)
            line = b"".join(parts)
            if r > 0.95:
                line = rng.choice(runs) + line
            elif r > 0.92:
                line += rng.choice(runs)
        line += b"\r\n" if rng.random() < 0.03 else b"\n"
        pool.append(line)
        size += len(line)
    return pool


def ending(rest):
    """`rest` bytes of plain ASCII words, the last one a newline."""
    filler = b"the end of the corpus " * (rest // 22 + 1)
    return filler[: rest - 1].rstrip(b" ").ljust(rest - 1, b".") + b"\n"


def generate(size, seed, valid_utf8, out):
    rng = random.Random(seed)
    pool = build_pool(rng, min(size, POOL_BYTES), valid_utf8)
    written = 0
    order = list(range(len(pool)))
    while written < size:
        batch, room = [], size - written
        for i in order:
            line = pool[i]
            if len(line) > room:
                break
            batch.append(line)
            room -= len(line)
        else:
            # The whole pool fits: shuffle it for the next round.
            out.write(b"".join(batch))
            written = size - room
            rng.shuffle(order)
            continue
        out.write(b"".join(batch))
        if room:
            out.write(ending(room))
        written = size
    out.flush()


def main(argv):
    args = list(argv)
    if not args or args[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if args else 2
    seed, valid_utf8 = 1, False
    if "--valid-utf8" in args:
        args.remove("--valid-utf8")
        valid_utf8 = True
    if "--seed" in args:
        i = args.index("--seed")
        try:
            seed = int(args[i + 1])
        except (IndexError, ValueError):
            print("corpus.py: --seed needs an integer", file=sys.stderr)
            return 2
        del args[i : i + 2]
    if len(args) != 1:
        print("usage: corpus.py SIZE [--seed N] [--valid-utf8] > FILE", file=sys.stderr)
        return 2
    try:
        size = parse_size(args[0])
    except ValueError as e:
        print("corpus.py: %s" % e, file=sys.stderr)
        return 2
    try:
        generate(size, seed, valid_utf8, sys.stdout.buffer)
    except BrokenPipeError:  # the reader stopped early (`| head`)
        sys.stderr.close()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
