"""Checks the runner's batched map path against a plain reference loop.

runner.py maps a batch of lines at a time and groups, counts and frames in C
when it can, falling back to a per-pair loop otherwise. This script feeds
both it and the reference below (the straightforward one-pair-at-a-time
semantics) the same inputs and many shapes of map() output, and checks that
they give the same records, statistics and error messages.

    python3 runner_paths.py PATH/TO/runner.py      exit status 0 when all agree
"""

import io
import random
import sys
import types

spec_path = sys.argv[1]
runner = types.ModuleType("runner")
runner.__file__ = spec_path
exec(compile(open(spec_path).read(), spec_path, "exec"), runner.__dict__)


# ------------------------------------------------------------- reference


def reference_lines(data):
    """The lines of `data` as the runner must see them."""
    out = []
    for raw in io.BytesIO(data):
        if raw.endswith(b"\r\n"):
            raw = raw[:-2]
        elif raw.endswith(b"\n"):
            raw = raw[:-1]
        out.append(raw.decode("utf-8", "surrogateescape"))
    return out


def frame(kb, vb):
    return runner._pack(len(kb)) + kb + runner._pack(len(vb)) + vb


def reference_map(map_fn, combine_fn, data):
    """(records bytes, stats) of the plain loop; combine over all groups at
    the end, in first-seen key order."""
    out = bytearray()
    groups = {}
    nout = ncomb = 0
    lines = reference_lines(data)
    for line in lines:
        res = map_fn(line)
        if res is None:
            continue
        for k, v in res:
            nout += 1
            if combine_fn is None:
                out += frame(runner.encode_key(k), runner.encode(v, "value"))
            else:
                gk = str.__str__(k) if isinstance(k, str) else runner.encode_key(k)
                groups.setdefault(gk, []).append(runner._normalise(v))
    for gk, vals in groups.items():
        key = gk if type(gk) is str else runner.decode(gk)
        kb = runner.encode(gk, "key") if type(gk) is str else gk
        res = combine_fn(key, iter(vals))
        for k2, v2 in res or ():
            out += frame(kb if k2 is key else runner.encode_key(k2), runner.encode(v2, "value"))
            ncomb += 1
    return bytes(out), (len(lines), nout, ncomb)


def batched_map(map_fn, combine_fn, data):
    out = io.BytesIO()
    stats = runner.run_map(map_fn, combine_fn, "combine", io.BufferedReader(io.BytesIO(data)), out)
    return out.getvalue(), (stats["input_records"], stats["map_output_records"], stats["combine_output_records"])


def failure_of(fn, *args):
    try:
        fn(*args)
    except runner.Failure as f:
        return f.summary
    except Exception as e:  # the reference raises the user's exception itself
        return type(e).__name__
    return None


# ------------------------------------------------------------- map shapes


def words_ones(line):
    for w in line.split():
        yield w, 1


def words_list_ones(line):
    return [[w, 1] for w in line.split()]


def words_lengths(line):
    for w in line.split():
        yield w, len(w)


def words_text(line):
    for w in line.split():
        yield w, w.upper()


def mixed_values(line):
    # 1, True and 1.0 are equal and hash alike; the reducer must still see
    # exactly what map() gave.
    for i, w in enumerate(line.split()):
        yield w, (1, True, 1.0, 1, 2, "1", None)[(len(w) + i) % 7]


def sometimes_true(line):
    for w in line.split():
        yield w, True if w.startswith("a") else 1


def int_keys(line):
    for w in line.split():
        yield len(w), 1


def mixed_keys(line):
    for w in line.split():
        yield (w if len(w) % 3 else (len(w), w[:1])), 1


class Tag(str):
    pass


def str_subclass_keys(line):
    for w in line.split():
        yield (Tag(w) if len(w) % 2 else w), 1


def none_on_blank(line):
    if not line.strip():
        return None
    return [(line[:3], 1)]


def surrogates(line):
    for w in line.split():
        yield w, 1
        yield "x", w


def lone_surrogate_keys(line):
    # Proven to yield (key, 1), but a key that cannot be encoded: the error
    # must be the careful way's.
    for w in line.split():
        yield (w + "\ud800" if w == "q" else w), 1


MAPS = [
    words_ones,
    words_list_ones,
    words_lengths,
    words_text,
    mixed_values,
    sometimes_true,
    int_keys,
    mixed_keys,
    str_subclass_keys,
    none_on_blank,
    surrogates,
]


def sum_combine(key, values):
    yield key, sum(values)


def list_combine(key, values):
    yield key, [type(v).__name__ + ":" + repr(v) for v in values]


def rekey_combine(key, values):
    n = 0
    for _ in values:
        n += 1
    yield ("k", key) if n % 2 else key, n


def none_combine(key, values):
    return None


COMBINES = [None, list_combine, rekey_combine, none_combine]


def corpus(rng, nbytes):
    vocab = ["a", "ab", "abc", "the", "Été", "naïve", "x" * 40, "q", "1", "tab\there"]
    parts = []
    size = 0
    while size < nbytes:
        n = rng.randrange(0, 12)
        line = " ".join(rng.choice(vocab) for _ in range(n)).encode("utf-8", "surrogateescape")
        if rng.random() < 0.05:
            line += b"\xff\xfe caf\xc3"  # not UTF-8
        ending = rng.choice([b"\n", b"\n", b"\n", b"\r\n", b"\r\r\n"])
        parts.append(line + ending)
        size += len(line) + len(ending)
    data = b"".join(parts)
    if rng.random() < 0.5:
        data = data.rstrip(b"\n")  # a last line without its newline
    return data


def main():
    rng = random.Random(7)
    checked = 0
    # One batch (every record must match exactly, in order).
    for size in (0, 1, 100, 5000):
        data = corpus(rng, size)
        for m in MAPS:
            for c in COMBINES:
                want = failure_of(reference_map, m, c, data) or reference_map(m, c, data)
                got = failure_of(batched_map, m, c, data) or batched_map(m, c, data)
                if isinstance(want, str) or isinstance(got, str):
                    assert isinstance(got, str), (m.__name__, c and c.__name__, size, got)
                    checked += 1
                    continue
                assert got == want, (m.__name__, c and c.__name__, size, got[1], want[1])
                checked += 1
    # Many batches: without a combiner the records are the same; with one,
    # the sums per key are (combine may run on any part of a key's values).
    data = corpus(rng, 300000) + b"one long line " * 20000 + b"\n" + corpus(rng, 100000)
    for m in MAPS:
        want, wstats = reference_map(m, None, data)
        got, gstats = batched_map(m, None, data)
        assert (got, gstats) == (want, wstats), m.__name__
        checked += 1
    for m in (words_ones, words_lengths, sometimes_true, int_keys, mixed_keys, str_subclass_keys):
        ref = {}
        for k, v in records(reference_map(m, sum_combine, data)[0]):
            ref[k] = ref.get(k, 0) + v
        got = {}
        for k, v in records(batched_map(m, sum_combine, data)[0]):
            got[k] = got.get(k, 0) + v
        assert got == ref, m.__name__
        checked += 1
    # Errors name the right line, also past the first batch.
    lines = [b"w%d ok" % i for i in range(20000)]
    lines[15000] = b"boom here"

    def raises_on_boom(line):
        if line.startswith("boom"):
            raise ValueError("bad value")
        yield line, 1

    def bad_pair_on_boom(line):
        yield (line, 1, 2) if line.startswith("boom") else (line, 1)

    def bad_value_on_boom(line):
        yield line, {1, 2} if line.startswith("boom") else 1

    data = b"\n".join(lines) + b"\n"
    for fn, c, want in [
        (raises_on_boom, None, "map() raised ValueError: bad value on line 15001 of this split: 'boom here'"),
        (raises_on_boom, sum_combine, "map() raised ValueError: bad value on line 15001 of this split: 'boom here'"),
        (bad_pair_on_boom, None, "map() must yield (key, value) pairs"),
        (bad_pair_on_boom, sum_combine, "on line 15001 of this split"),
        (bad_value_on_boom, sum_combine, "a value of type set"),
        (bad_value_on_boom, None, "on line 15001 of this split: 'boom here'"),
    ]:
        got = failure_of(batched_map, fn, c, data)
        assert got is not None and want in got, (fn.__name__, got)
        checked += 1
    checked += contract_cases()
    checked += key_one_proof_cases()
    print("runner paths agree: %d cases" % checked)


def key_one_proof_cases():
    """Which map() functions the runner may treat as yielding only
    (key, the int 1) pairs, skipping the per-pair checks of the values."""

    def one_true_or_float(line, pick):
        for w in line.split():
            if pick == 0:
                yield w, 1
            elif pick == 1:
                yield w, True
            else:
                yield w, 1.0

    def two_values(line):
        for w in line.split():
            yield w, (1 if len(w) % 2 else 2)

    def pair_in_a_variable(line):
        for w in line.split():
            pair = (w, 1)
            yield pair

    def yield_from(line):
        yield from [(w, 1) for w in line.split()]

    def three(line):
        for w in line.split():
            yield w, 1, 2

    def constant_pair(line):
        yield "lines", 1

    class Words:
        def map(self, line):
            for w in line.split():
                yield w.lower(), 1

    def ones_then_yield_from(line):
        yield line, 1
        if line.startswith("x"):
            yield from [(line, 100)]

    proven = [words_ones, mixed_keys, int_keys, str_subclass_keys, Words().map, lone_surrogate_keys]
    not_proven = [
        ones_then_yield_from,  # before 3.11 `yield from` has its own opcode
        one_true_or_float,
        two_values,
        pair_in_a_variable,
        yield_from,
        three,
        words_list_ones,
        words_lengths,
        sometimes_true,
        surrogates,
        none_on_blank,
        constant_pair,  # one constant tuple: fine either way, but not this proof's shape
        print,
    ]
    for fn in proven:
        assert runner.yields_only_key_one_pairs(fn) is not None, fn
    for fn in not_proven:
        assert runner.yields_only_key_one_pairs(fn) is None, fn
    # A proven map() whose code is swapped after the proof, between two
    # batches the fast way, is checked pair by pair again: True must reach
    # combine() as True, not counted as a 1.
    def swapped(line):
        for w in line.split():
            yield w, 1

    out = io.BytesIO()
    mapper = runner.Mapper(swapped, list_combine, "combine", out)
    assert mapper.key_one_code is not None
    mapper.batch(["a b", "c"])  # the first batch, the careful way
    mapper.batch(["a b", "c"])
    assert mapper.fast and mapper.counts == {"a": 2, "b": 2, "c": 2}, mapper.counts
    swapped.__code__ = sometimes_true.__code__
    mapper.batch(["a b", "c"])
    mapper.finish()
    got = sorted(records(out.getvalue()))
    assert got == [
        ("a", ["int:1", "int:1", "bool:True"]),
        ("b", ["int:1", "int:1", "int:1"]),
        ("c", ["int:1", "int:1", "int:1"]),
    ], got
    # A proven map() that changes its code to one yielding 100, whose
    # generators change it back while they run: the proof is checked when
    # the batch's generators are made, not after (when the code looks
    # proven again).
    changing = _changing
    changing.__code__ = _proven_ones.__code__
    out = io.BytesIO()
    mapper = runner.Mapper(changing, list_combine, "combine", out)
    mapper.batch(["a"])
    mapper.batch(["a"])
    changing.__code__ = _yields_100_and_changes_back.__code__
    mapper.batch(["a", "b"])
    assert changing.__code__ is _proven_ones.__code__
    mapper.finish()
    got = sorted(records(out.getvalue()))
    assert got == [("a", ["int:1", "int:1", "int:100"]), ("b", ["int:100"])], got
    # A map() whose trace function jumps onto its yield line with another
    # value on the stack (possible from 3.11): the same sums as the plain
    # loop, over many batches (the first, mapped the careful way, without
    # a jump: it decides whether the fast way is tried).
    data = b"".join(b"x\n" if i % 97 == 0 and i > 5000 else b"w%d\n" % (i % 50) for i in range(20000))
    ref = {}
    for k, v in records(reference_map(line_jumping_map(), sum_combine, data)[0]):
        ref[k] = ref.get(k, 0) + v
    got = {}
    for k, v in records(batched_map(line_jumping_map(), sum_combine, data)[0]):
        got[k] = got.get(k, 0) + v
    assert got == ref, (got.get("x"), ref.get("x"))
    # Proven, no combiner, a key that cannot be encoded in a later batch:
    # the careful way's error, naming its line.
    data = b"".join(b"w%d\n" % (i % 50) for i in range(5000)) + b"a q b\n"
    assert failure_of(reference_map, lone_surrogate_keys, None, data) == "EncodeError"
    got = failure_of(batched_map, lone_surrogate_keys, None, data)
    assert got.startswith("IPDC-ERROR: map() produced a key str that is not valid Unicode"), got
    assert got.endswith("on line 5001 of this split: 'a q b'"), got
    return len(proven) + len(not_proven) + 4


def _proven_ones(line):
    yield line, 1


def _yields_100_and_changes_back(line):
    _changing.__code__ = _proven_ones.__code__
    yield line, 100


def _changing(line):
    yield line, 1


def line_jumping_map():
    """A map() whose trace function jumps (by setting f_lineno) from where
    the stack holds [line, 100] onto its `yield (line, 1)` line."""
    import sys

    def _off(frame, event, arg):
        return None

    def map_fn(line):
        f = sys._getframe()
        here = f.f_lineno
        def tracer(frame, event, arg):
            if event == "line" and frame.f_lineno == here + 10 and line.startswith("x"):
                frame.f_lineno = here + 12
            return tracer
        z = None
        f.f_trace = tracer
        sys.settrace(_off)
        z = [line,
             100,
             0]
        sys.settrace(None)
        yield (line,
               1)

    return map_fn


def reduce_blocks(recs, block=3):
    """The reduce input the agent writes: blocks of `block` records."""
    out = b""
    for i in range(0, len(recs), block):
        b = recs[i : i + block]
        out += runner._pack(len(b)) + b"".join(runner._pack(len(k)) + runner._pack(len(v)) for k, v in b)
        out += b"".join(k + v for k, v in b)
    return out


def run_reduce(fn, recs, block=3):
    out = io.BytesIO()
    try:
        stats = runner.run_reduce(fn, io.BufferedReader(io.BytesIO(reduce_blocks(recs, block))), out)
    except runner.Failure as f:
        return f.summary
    return out.getvalue(), stats["reduce_input_groups"], stats["output_records"]


def framed(*pairs):
    return b"".join(frame(k, v) for k, v in pairs)


def contract_cases():
    """What user code sees and gets: one call per line, values as they were
    when yielded, errors in the order the plain loop meets them."""
    n = 0
    ones = ("\n".join("w%d" % (i % 50) for i in range(5000)) + "\n").encode()

    # A StopIteration out of user code is an error, not the end of the batch.
    def stop_map(line):
        return [(next(iter(line.split())), 1)]

    for c in (None, sum_combine):
        got = failure_of(batched_map, stop_map, c, b"a\n\nb\n")
        assert got == "IPDC-ERROR: map() raised StopIteration on line 2 of this split: ''", got
        n += 1

    def stop_combine(key, values):
        return [(key, next(values) + next(values))]

    got = failure_of(batched_map, words_ones, stop_combine, ones + b"single\n")
    assert got == "IPDC-ERROR: combine() raised StopIteration for key 'single'", got

    def stop_reduce(key, values):
        return [(key, next(values) + next(values))]

    recs = [(b"sa", b"j1"), (b"sa", b"j2"), (b"sb", b"j1"), (b"sc", b"j1"), (b"sc", b"j5")]
    assert run_reduce(stop_reduce, recs) == "IPDC-ERROR: reduce() raised StopIteration for key 'b'", run_reduce(stop_reduce, recs)
    n += 2

    # Values are taken as they are when yielded, even if user code changes
    # them afterwards (within one call, or across lines and keys).
    def growing(line):
        acc = []
        for w in line.split():
            acc.append(w)
            yield w, acc

    shared = {}

    def reused(line):
        shared["n"] = len(line)
        yield line, shared

    data = ones[:200] + b"a b c\n" + ones[200:]
    want, _ = reference_map(growing, None, data)
    assert batched_map(growing, None, data)[0] == want
    shared.clear()
    want, _ = reference_map(reused, None, data)
    shared.clear()
    assert batched_map(reused, None, data)[0] == want
    out = {}

    def reused_reduce(key, values):
        out["total"] = sum(values)
        yield key, out

    assert run_reduce(reused_reduce, recs)[0] == framed(
        (b"sa", b'j{"total":3}'), (b"sb", b'j{"total":1}'), (b"sc", b'j{"total":6}')
    )
    n += 3

    # map() runs once per line, in order, also for a map() with state.
    calls = []

    def counting(line):
        calls.append(line)
        yield "k", {"n": len(calls)}

    batched_map(counting, None, data)
    assert calls == reference_lines(data), len(calls)
    n += 1

    # A map() that is not a generator may return a view of state its next
    # call changes: each call's output is taken before the next call.
    buf = []

    def shared_list(line):
        buf.clear()
        buf.extend((w, 1) for w in line.split())
        return iter(buf)

    mixed = b"a b\nc\n" + ones + b"d e f\n"
    for c in (None, sum_combine):
        want = reference_map(shared_list, c, mixed)
        assert batched_map(shared_list, c, mixed) == want, c
        n += 1

    # A callable object that passes attributes through to the generator
    # function it wraps runs its own code when called: not a generator
    # function, so each call is drained before the next.
    state = {"n": 0}

    class counted:
        def __init__(self, f):
            self.f = f

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __call__(self, line):
            state["n"] += 1
            return self.f(line)

    @counted
    def numbered(line):
        yield "line%d" % state["n"], 1

    want = reference_map(numbered, None, ones)
    state["n"] = 0
    assert batched_map(numbered, None, ones) == want
    assert not runner.is_generator_function(numbered) and runner.is_generator_function(words_ones)
    n += 1

    # Errors come in the plain loop's order: a value that cannot be stored
    # on line 1 before an exception on line 2.
    def bad_then_raise(line):
        if line == "w1":
            raise ValueError("x")
        yield line, {1}

    for c in (None, sum_combine):
        got = failure_of(batched_map, bad_then_raise, c, ones)
        assert "a value of type set" in got and "on line 1 " in got, got
        n += 1

    def raise_b_bad_c(key, values):
        if key == "b":
            raise ValueError("x")
        yield key, {1}

    assert "for key 'a'" in run_reduce(raise_b_bad_c, recs)
    n += 1

    # A key str that cannot be encoded is an error even when combine() drops it.
    def bad_key(line):
        yield "\ud800", 1

    assert "not valid Unicode" in failure_of(batched_map, bad_key, none_combine, ones)
    n += 1

    # A str subclass (StrEnum, numpy.str_) is the str it equals: one key with
    # the plain str, whatever its __str__ says, with or without combine().
    class Loud(str):
        def __str__(self):
            return "LOUD"

    def tagged(line):
        yield Tag("a"), 1
        yield Loud("a"), 1
        yield "a", 1

    assert batched_map(tagged, sum_combine, ones)[0] == frame(b"sa", b"j15000")
    assert batched_map(tagged, None, b"x\n")[0] == frame(b"sa", b"j1") * 3
    # Reduce reads keys in their sortable form and writes them as JSON text
    # (a str key's datum is the same in both).
    seven = runner.encode_key(7)
    recs = [(seven, b"j1"), (seven, b"j2"), (b"sz", b"j1.5")]
    assert run_reduce(sum_combine, recs, 2048)[0] == framed((b"j7", b"j3"), (b"sz", b"j1.5"))
    assert run_reduce(sum_combine, recs[:2], 2048)[0] == framed((b"j7", b"j3"))
    n += 4

    # An int too long for str() (Python 3.11+) is the user's value, not a bad pair.
    if hasattr(sys, "get_int_max_str_digits"):
        huge = 10 ** (sys.get_int_max_str_digits() + 1)
        for c in (None, sum_combine):
            got = failure_of(batched_map, lambda line: [(line, huge)], c, b"x\n")
            assert "a value int too long to write as text" in got, got
            n += 1

    # A pair is a tuple or list of two; a set or dict of two is refused (its
    # order is arbitrary), and so is a str of two.
    for bad, name in (({"k", 1}, "set"), ({"k": 1, "n": 2}, "dict"), ("ab", "str")):
        for c in (None, sum_combine):
            got = failure_of(batched_map, lambda line, bad=bad: [bad], c, b"x\n")
            assert "a %s, not a (key, value) pair" % name in got, got
            n += 1
    assert batched_map(lambda line: [["k", 1]], None, b"x\n")[0] == frame(b"sk", b"j1")
    got = run_reduce(lambda key, values: [{key, 1}], [(b"sa", b"j1")])
    assert "a set, not a (key, value) pair" in got, got
    n += 2

    # A group across several blocks, and a reduce() reading part of its values.
    recs = [(b"sa", b"j1")] + [(b"sb", b"j%d" % i) for i in range(10)] + [(b"sc", b"j1")]

    def first(key, values):
        yield key, next(values)

    assert run_reduce(first, recs) == (framed((b"sa", b"j1"), (b"sb", b"j0"), (b"sc", b"j1")), 3, 3)
    n += 1
    return n


def records(data):
    """The (key, value) pairs of framed records, keys that are not str as repr."""
    out = []
    pos = 0
    while pos < len(data):
        ke = pos + 4 + runner._unpack_from(data, pos)[0]
        ve = ke + 4 + runner._unpack_from(data, ke)[0]
        k, v = runner.decode(data[pos + 4 : ke]), runner.decode(data[ke + 4 : ve])
        out.append((k if isinstance(k, str) else repr(k), v))
        pos = ve
    return out


if __name__ == "__main__":
    sys.stderr = io.StringIO()  # the runner writes tracebacks there
    try:
        main()
    except BaseException:
        sys.stderr = sys.__stderr__
        raise
