"""IPDC runner: runs a user's Map.py / Reduce.py over records in batches.

The agent embeds this file, writes it into the task's temporary folder and
runs it with the system Python (3.7 or newer), one process per task:

    python3 runner.py map MAP_PY [--combine REDUCE_PY]
        stdin:  the raw bytes of the split's lines
        stdout: framed records: map() output, or with --combine the output of
                combine() (or reduce() when Reduce.py has no combine())
    python3 runner.py reduce REDUCE_PY
        stdin:  records sorted by key, in blocks (see read_blocks)
        stdout: framed records: reduce() output

A record is `u32 LE len, key datum, u32 LE len, value datum`; a datum is
`s` + UTF-8 (surrogateescape) bytes of a str, or `j` + JSON text of any other
value. User print() output goes to stderr, never into the records.

stderr ends with exactly one protocol line:
    IPDC-STATS {"input_records":..,"map_output_records":..,
                "combine_output_records":..,"reduce_input_groups":..,
                "output_records":..}                       exit status 0
    IPDC-ERROR: <one-line summary>   after the traceback   exit status 2
                (user file cannot be loaded), 3 (user code failed or produced
                a value that cannot be stored), 4 (runner/protocol problem),
                5 (user code raised MemoryError, e.g. under the agent's
                RLIMIT_AS memory limit: the summary starts "MemoryError: ")
"""

import importlib.util
import json
import os
import struct
import sys
import traceback
from array import array
from collections import Counter, deque
from itertools import accumulate, chain, compress, repeat
from operator import itemgetter, ne

EXIT_LOAD = 2
EXIT_USER = 3
EXIT_INTERNAL = 4
EXIT_MEMORY = 5

# Flush the output buffer past this many bytes.
OUT_CHUNK = 1 << 20
# With --combine: flush the grouped map output past this many keys or values.
COMBINE_MAX_KEYS = 200000
COMBINE_MAX_VALUES = 2000000

_pack = struct.Struct("<I").pack
_unpack_from = struct.Struct("<I").unpack_from
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode
_loads = json.loads


class Failure(Exception):
    """Ends the run: `summary` is the IPDC-ERROR line, `status` the exit status."""

    def __init__(self, summary, status, cause=None):
        Exception.__init__(self, summary)
        self.summary = summary
        self.status = status
        self.cause = cause


class EncodeError(Exception):
    """A key or value that cannot become a datum."""


def _short(obj, limit=200):
    text = obj if isinstance(obj, str) else repr(obj)
    if len(text) > limit:
        text = text[:limit] + "...(truncated)"
    return repr(text) if isinstance(obj, str) else text


def _one_line(text):
    return " ".join(str(text).split("\n"))


def _describe(exc):
    msg = _one_line(exc)
    return type(exc).__name__ + (": " + msg if msg else "")


_RUNNER_FILE = _short.__code__.co_filename


def _user_traceback(exc):
    """The traceback of `exc` without the runner's own frames at the top."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == _RUNNER_FILE:
        tb = tb.tb_next
    if tb is None:
        tb = exc.__traceback__
    return "".join(traceback.format_exception(type(exc), exc, tb))


def _out_of_memory(exc, who, where):
    """The Failure for a MemoryError raised by user code (`who` ran out of
    memory `where`).
    First frees what the failed call still holds (the locals of its finished
    frames), so that reporting it does not run out of memory too."""
    try:
        traceback.clear_frames(exc.__traceback__)
    except Exception:
        pass
    try:
        sys.stderr.write(_user_traceback(exc))
    except Exception:
        pass
    return Failure("IPDC-ERROR: MemoryError: %s ran out of memory %s" % (who, where), EXIT_MEMORY)


def _raised_in_runner(exc):
    """True when `exc` comes from the runner's own frame (e.g. unpacking a
    map() result that is not a pair), not from user code."""
    tb = exc.__traceback__
    last = None
    while tb is not None:
        last = tb
        tb = tb.tb_next
    return last is not None and last.tb_frame.f_code.co_filename == _RUNNER_FILE


# ---------------------------------------------------------------- datums


def encode(obj, what):
    """The datum bytes of `obj`; `what` ("key"/"value") names it in errors."""
    t = type(obj)
    if t is str:
        try:
            return b"s" + obj.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError as e:
            raise EncodeError("a %s str that is not valid Unicode text (%s)" % (what, e))
    if t is int:
        return b"j" + str(obj).encode("ascii")
    try:
        text = _dumps(obj)
    except (TypeError, ValueError, RecursionError) as e:
        raise EncodeError(
            "a %s of type %s, which cannot be stored (%s); keys and values must be str "
            "or JSON values: int, float (finite), bool, None, list, tuple, dict with str keys"
            % (what, t.__name__, _one_line(e))
        )
    try:
        return b"j" + text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError as e:
        raise EncodeError("a %s containing text that is not valid Unicode (%s)" % (what, e))


def decode(datum):
    tag = datum[0]
    if tag == 115:  # s
        return datum[1:].decode("utf-8", "surrogateescape")
    if tag == 106:  # j
        c = datum[1] if len(datum) > 1 else 0
        if 48 <= c <= 57 or c == 45:
            try:
                return int(datum[1:])
            except ValueError:
                pass
        return _loads(datum[1:].decode("utf-8", "surrogateescape"))
    raise Failure("IPDC-ERROR: the runner received a datum with unknown tag %r" % datum[:1], EXIT_INTERNAL)


def _normalise(v):
    """A value as the reducer will see it after a round trip through JSON
    (tuples become lists, ...), checking on the way that it can be stored."""
    t = type(v)
    if t is int or t is str:
        return v
    if t is float and v - v == 0:
        return v
    return decode(encode(v, "value"))


# ---------------------------------------------------------------- loading


def load(path, function, signature):
    """Imports the user's file and returns its `function`."""
    shown = os.path.basename(path)
    folder = os.path.dirname(os.path.abspath(path))
    if folder not in sys.path:
        sys.path.insert(0, folder)
    name = os.path.splitext(shown)[0]
    if not name.isidentifier() or name in sys.modules:
        name = "ipdc_user_" + "".join(c if c.isalnum() else "_" for c in name)
    try:
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise ImportError("not a Python source file")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    except SyntaxError as e:
        sys.stderr.write("".join(traceback.format_exception_only(type(e), e)))
        where = os.path.basename(e.filename or shown)
        raise Failure(
            "IPDC-ERROR: %s has a syntax error on line %s of %s: %s. Fix %s and submit the job again."
            % (shown, e.lineno, where, _one_line(e.msg), shown),
            EXIT_LOAD,
        )
    except OSError as e:
        raise Failure("IPDC-ERROR: cannot read %s: %s" % (path, _describe(e)), EXIT_LOAD)
    except Exception as e:
        if isinstance(e, MemoryError):
            raise _out_of_memory(e, shown, "while being imported")
        sys.stderr.write(_user_traceback(e))
        line = None
        tb = e.__traceback__
        while tb is not None:
            if os.path.abspath(tb.tb_frame.f_code.co_filename) == os.path.abspath(path):
                line = tb.tb_lineno
            tb = tb.tb_next
        at = " (line %s)" % line if line is not None else ""
        raise Failure(
            "IPDC-ERROR: %s failed while being imported%s: %s. Fix %s (or install what it needs) "
            "and submit the job again." % (shown, at, _describe(e), shown),
            EXIT_LOAD,
        )
    fn = getattr(module, function, None)
    if not callable(fn):
        return None if function == "combine" else _missing(shown, function, signature)
    return fn


def _missing(shown, function, signature):
    raise Failure(
        "IPDC-ERROR: %s defines no function %s(): add `def %s:` that yields (key, value) pairs "
        "and submit the job again." % (shown, function, signature),
        EXIT_LOAD,
    )


# ---------------------------------------------------------------- map
#
# The map side works a batch of lines at a time. Calling the user's map()
# and combine() is Python (per line, per key); everything per word runs in
# C: the pairs of a batch are gathered with list/chain, grouped with
# dict.setdefault + list.append driven by map(), counted with Counter when
# every value is the int 1 (WordCount's case), and framed with join. When a
# batch has anything else (pairs that are not tuples or lists of two, keys
# that are not str, values that are not int or str, text that cannot be
# encoded) that batch goes through the plain per-pair loop instead, which
# gives the exact error with its line number. Both paths produce the same
# records in the same order; map() is called exactly once per line, in order.

# Bytes of input per batch of lines: small enough that the passes over a
# batch's pairs stay in the CPU cache (measured: 8 KiB is 2x faster than 512 KiB).
READ_CHUNK = 1 << 13
# Keys per call of combine_batch (for the same reason).
COMBINE_BATCH = 1024
_PAIR_TYPES = {tuple, list}
_STR = {str}
_INT = {int}
_INT_STR = {int, str}
_TWO = {2}
_first = itemgetter(0)
_second = itemgetter(1)
_S = b"s".__add__
_J = b"j".__add__


def line_batches(inp):
    """Yields the input's lines as lists of str (without their line endings),
    about READ_CHUNK bytes at a time. A line is what ends with b"\\n"; its
    b"\\r\\n" or b"\\n" is dropped; bytes that are not UTF-8 survive as
    surrogates (surrogateescape)."""
    pending = []  # pieces of a line longer than READ_CHUNK
    rest = b""
    while True:
        chunk = inp.read(READ_CHUNK)
        if not chunk:
            if pending or rest:
                yield [(b"".join(pending) + rest).decode("utf-8", "surrogateescape")]
            return
        end = chunk.rfind(b"\n")
        if end < 0:
            if rest:
                pending.append(rest)
            rest = chunk
            continue
        if pending:
            pending.append(rest)
            rest = b"".join(pending)
            pending = []
        # Decoding whole lines at once equals decoding line by line: b"\n"
        # never occurs inside a UTF-8 sequence.
        text = (rest + chunk[: end + 1] if rest else chunk[: end + 1]).decode("utf-8", "surrogateescape")
        rest = chunk[end + 1 :]
        if "\r" in text:
            # Every "\r\n" here is a line ending (the line's last "\r").
            text = text.replace("\r\n", "\n")
        lines = text.split("\n")
        lines.pop()  # the empty string after the last b"\n"
        yield lines


def _value_datum(v):
    return b"j" + str(v).encode("ascii") if type(v) is int else b"s" + v.encode("utf-8", "surrogateescape")


def frame_all(keys, vals):
    """The framed records of str `keys` with int or str `vals`, built without
    a Python loop; None when something needs the careful path (another type,
    a str that is not valid Unicode, an int too long to print)."""
    if set(map(type, keys)) != _STR:
        return None
    vt = set(map(type, vals))
    try:
        kd = map(_S, map(str.encode, keys, repeat("utf-8"), repeat("surrogateescape")))
        if vt == _INT:
            vd = map(_J, map(str.encode, map(int.__repr__, vals)))
        elif vt == _STR:
            vd = map(_S, map(str.encode, vals, repeat("utf-8"), repeat("surrogateescape")))
        elif vt == _INT_STR:
            vd = map(_value_datum, vals)
        else:
            return None
        datums = list(chain.from_iterable(zip(kd, vd)))
    except (UnicodeEncodeError, ValueError):
        return None
    return b"".join(chain.from_iterable(zip(map(_pack, map(len, datums)), datums)))


def _frame_one(buf, kb, vb):
    buf += _pack(len(kb))
    buf += kb
    buf += _pack(len(vb))
    buf += vb


def _is_pairs(items):
    """True when every item is a tuple or list of two (checked in C)."""
    return set(map(type, items)) <= _PAIR_TYPES and set(map(len, items)) == _TWO


def _map_failure(e, lineno, line):
    """The Failure for exception `e` raised while mapping line `lineno`."""
    if isinstance(e, Failure):
        return e
    if isinstance(e, EncodeError):
        return Failure("IPDC-ERROR: map() produced %s, on line %d of this split: %s" % (e, lineno, _short(line)), EXIT_USER)
    if isinstance(e, MemoryError):
        return _out_of_memory(e, "map()", "on line %d of this split: %s" % (lineno, _short(line)))
    if isinstance(e, UnicodeEncodeError) and _raised_in_runner(e):
        return Failure(
            "IPDC-ERROR: map() produced a key str that is not valid Unicode text (%s), on line %d of this split: %s"
            % (e, lineno, _short(line)),
            EXIT_USER,
        )
    sys.stderr.write(_user_traceback(e))
    if _raised_in_runner(e):
        return Failure(
            "IPDC-ERROR: map() must yield (key, value) pairs or return an iterable of them (or None); "
            "on line %d of this split it gave something else (%s): %s" % (lineno, _describe(e), _short(line)),
            EXIT_USER,
        )
    return Failure(
        "IPDC-ERROR: map() raised %s on line %d of this split: %s" % (_describe(e), lineno, _short(line)), EXIT_USER
    )


def _combine_failure(e, name, key):
    """The Failure for exception `e` raised while combining `key`."""
    if isinstance(e, Failure):
        return e
    if isinstance(e, EncodeError):
        return Failure("IPDC-ERROR: %s() produced %s, for key %s" % (name, e, _short(key)), EXIT_USER)
    if isinstance(e, MemoryError):
        return _out_of_memory(e, name + "()", "for key " + _short(key))
    sys.stderr.write(_user_traceback(e))
    if _raised_in_runner(e):
        return Failure(
            "IPDC-ERROR: %s() must yield (key, value) pairs or return an iterable of them (or None); "
            "for key %s it gave something else: %s" % (name, _short(key), _describe(e)),
            EXIT_USER,
        )
    return Failure("IPDC-ERROR: %s() raised %s for key %s" % (name, _describe(e), _short(key)), EXIT_USER)


def _results_of(fn):
    """fn wrapped to return the list of what it yields ([] for None)."""

    def results(arg):
        res = fn(arg)
        return [] if res is None else list(res)

    return results


def _results_of2(fn):
    def results(arg1, arg2):
        res = fn(arg1, arg2)
        return [] if res is None else list(res)

    return results


def _call_all(fn, args_lists, on_error):
    """The list of what fn(*args) yields, for each args in turn (in C: no
    Python loop around the calls); `on_error(e, index)` makes the Failure
    when call number `index` raised `e`."""
    its = [iter(a) for a in args_lists]
    wrapped = _results_of(fn) if len(its) == 1 else _results_of2(fn)
    try:
        return list(map(wrapped, *its))
    except Exception as e:
        raise on_error(e, len(args_lists[0]) - its[0].__length_hint__() - 1)


class Mapper:
    """Runs map() over batches of lines, optionally combining, into `out`."""

    def __init__(self, map_fn, combine_fn, combine_name, out):
        self.map_fn = map_fn
        self.combine_fn = combine_fn
        self.combine_name = combine_name
        self.out = out
        self.buf = bytearray()
        self.lines_done = 0  # lines of the batches before this one
        self.nout = 0  # map() output pairs
        self.ncomb = 0  # combine() output records
        # Grouped map output waiting for combine(): `counts` holds keys whose
        # values so far are all the int 1 (just how many), `groups` lists of
        # values. Only one of them is in use at a time, so the values of a key
        # reach combine() in the order map() produced them.
        self.counts = Counter()
        self.groups = {}
        self.grouped_values = 0

    def write(self, data):
        buf = self.buf
        buf += data
        if len(buf) > OUT_CHUNK:
            self.out.write(buf)
            del buf[:]

    def batch(self, lines):
        base = self.lines_done
        per_line = _call_all(self.map_fn, [lines], lambda e, i: _map_failure(e, base + i + 1, lines[i]))
        pairs = list(chain.from_iterable(per_line))
        self.lines_done += len(lines)
        if not pairs:
            return
        self.nout += len(pairs)
        keys = None
        if set(map(type, pairs)) <= _PAIR_TYPES and set(map(len, pairs)) == _TWO:
            keys = list(map(_first, pairs))
            if set(map(type, keys)) != _STR:
                keys = None
        if keys is None:
            self.careful(lines, per_line)
        elif self.combine_fn is None:
            data = frame_all(keys, list(map(_second, pairs)))
            if data is None:
                self.careful(lines, per_line)
            else:
                self.write(data)
        else:
            vals = list(map(_second, pairs))
            vt = set(map(type, vals))
            if vt == _INT and not self.groups and vals.count(1) == len(vals):
                # Every value is the int 1: counting them keeps all there is to know.
                self.counts.update(keys)
                if len(self.counts) > COMBINE_MAX_KEYS:
                    self.flush_counts()
            elif vt <= _INT_STR:
                self.flush_counts()
                deque(map(list.append, map(self.groups.setdefault, keys, iter(list, None)), vals), 0)
                self.grouped_values += len(vals)
            else:
                self.careful(lines, per_line)
        if len(self.groups) > COMBINE_MAX_KEYS or self.grouped_values > COMBINE_MAX_VALUES:
            self.flush_groups()

    def careful(self, lines, per_line):
        """The plain per-pair loop over one batch's map() output."""
        combine = self.combine_fn is not None
        if combine:
            self.flush_counts()
        groups = self.groups
        pack = _pack
        buf = self.buf
        i = -1
        try:
            for i, res in enumerate(per_line):
                for k, v in res:
                    if not combine:
                        kb = b"s" + k.encode("utf-8", "surrogateescape") if type(k) is str else encode(k, "key")
                        vb = b"j" + str(v).encode("ascii") if type(v) is int else encode(v, "value")
                        buf += pack(len(kb))
                        buf += kb
                        buf += pack(len(vb))
                        buf += vb
                        continue
                    if type(k) is not str:
                        k = encode(k, "key")
                    t = type(v)
                    if t is not int and t is not str:
                        v = _normalise(v)
                    vals = groups.get(k)
                    if vals is None:
                        groups[k] = [v]
                    else:
                        vals.append(v)
                    self.grouped_values += 1
        except Exception as e:
            raise _map_failure(e, self.lines_done - len(lines) + i + 1, lines[i])
        if len(buf) > OUT_CHUNK:
            self.out.write(buf)
            del buf[:]

    def combine_all(self, keys, value_iters, datums=None):
        """Runs combine() on each key with its values and writes the output.
        `datums`: the keys' datums where map() gave keys that are not str."""
        for at in range(0, len(keys), COMBINE_BATCH):
            end = at + COMBINE_BATCH
            self.combine_batch(keys[at:end], value_iters[at:end], datums[at:end] if datums else None)

    def combine_batch(self, keys, value_iters, datums):
        name = self.combine_name
        results = _call_all(self.combine_fn, [keys, value_iters], lambda e, i: _combine_failure(e, name, keys[i]))
        out = list(chain.from_iterable(results))
        if not out:
            return
        data = None
        if _is_pairs(out):
            data = frame_all(list(map(_first, out)), list(map(_second, out)))
        if data is None:
            self.combine_careful(datums or keys, keys, results)
        else:
            self.write(data)
        self.ncomb += len(out)

    def combine_careful(self, grouped, keys, results):
        """The plain per-record loop over combine()'s output (`grouped`: the
        keys as grouped, a str or the datum of another key)."""
        buf = self.buf
        for gk, key, res in zip(grouped, keys, results):
            try:
                if type(gk) is str:
                    try:
                        kb = b"s" + gk.encode("utf-8", "surrogateescape")
                    except UnicodeEncodeError as e:
                        raise Failure(
                            "IPDC-ERROR: map() yielded a key str that is not valid Unicode text (%s): %s"
                            % (e, _short(gk)),
                            EXIT_USER,
                        )
                else:
                    kb = gk
                for k2, v2 in res:
                    _frame_one(buf, kb if k2 is key else encode(k2, "key"), encode(v2, "value"))
            except Exception as e:
                raise _combine_failure(e, self.combine_name, key)

    def flush_counts(self):
        if self.counts:
            counts = self.counts
            self.counts = Counter()
            self.combine_all(list(counts), list(map(repeat, repeat(1), counts.values())))

    def flush_groups(self):
        if self.groups:
            groups = self.groups
            self.groups = {}
            self.grouped_values = 0
            grouped = list(groups)
            if set(map(type, grouped)) == _STR:
                self.combine_all(grouped, list(map(iter, groups.values())))
            else:
                keys = [k if type(k) is str else decode(k) for k in grouped]
                self.combine_all(keys, list(map(iter, groups.values())), grouped)

    def finish(self):
        self.flush_counts()
        self.flush_groups()
        if self.buf:
            self.out.write(self.buf)
            del self.buf[:]


def run_map(map_fn, combine_fn, combine_name, inp, out):
    m = Mapper(map_fn, combine_fn, combine_name, out)
    for lines in line_batches(inp):
        m.batch(lines)
    m.finish()
    combined = combine_fn is not None
    return {
        "input_records": m.lines_done,
        "map_output_records": m.nout,
        "combine_output_records": m.ncomb,
        "reduce_input_groups": 0,
        "output_records": m.ncomb if combined else m.nout,
    }


# ---------------------------------------------------------------- reduce


# The reduce input comes in blocks: u32 LE n, then 2n u32 LE lengths (key,
# value, key, value, ...), then those 2n datums back to back. So a block is
# cut into datums, its groups found and its values decoded in C; reduce() is
# called once per group. A group that goes on into the next block is handed
# to reduce() with values streamed across blocks.

_S_TAG = ord("s")
_J_TAG = ord("j")
_tail = itemgetter(slice(1, None))
_NATIVE_LE = sys.byteorder == "little"


def read_blocks(inp, counter):
    """Yields (key datums, value datums) lists, one block at a time."""
    while True:
        head = inp.read(4)
        if not head:
            return
        if len(head) < 4:
            raise Failure("IPDC-ERROR: the runner's input ends in the middle of a block", EXIT_INTERNAL)
        n = _unpack_from(head)[0]
        if n == 0:
            continue
        lens = array("I")
        if lens.itemsize != 4:
            lens = array("L")
        raw = inp.read(8 * n)
        lens.frombytes(raw)
        if not _NATIVE_LE:
            lens.byteswap()
        data = inp.read(sum(lens))
        if len(raw) != 8 * n or len(data) != sum(lens):
            raise Failure("IPDC-ERROR: the runner's input ends in the middle of a block", EXIT_INTERNAL)
        ends = list(accumulate(lens))
        datums = list(map(data.__getitem__, map(slice, chain((0,), ends), ends)))
        counter[0] += n
        yield datums[0::2], datums[1::2]


def decode_all(datums, tags):
    """The values of `datums` whose tag bytes are the set `tags`."""
    if tags == {_J_TAG}:
        try:
            return list(map(int, map(_tail, datums)))
        except ValueError:
            pass
    elif tags == {_S_TAG}:
        return list(map(bytes.decode, map(_tail, datums), repeat("utf-8"), repeat("surrogateescape")))
    return list(map(decode, datums))


class Reducer:
    """Runs reduce() over the blocks of sorted records on `inp` into `out`."""

    def __init__(self, reduce_fn, out):
        self.reduce_fn = reduce_fn
        self.out = out
        self.buf = bytearray()
        self.counter = [0]
        self.groups = 0
        self.nout = 0

    def run(self, inp):
        blocks = read_blocks(inp, self.counter)
        block = next(blocks, None)
        while block is not None:
            keys, vals = block
            n = len(keys)
            # Where each group starts: 0 and every i whose key differs from key i-1.
            starts = [0]
            starts += compress(range(1, n), map(ne, keys[1:], keys[:-1]))
            after = next(blocks, None)
            if after is not None and after[0][0] == keys[-1]:
                # The last group goes on in the next block.
                self.groups_of(keys, vals, starts[:-1], starts[1:])
                block = self.streamed_group(keys[-1], vals[starts[-1] :], after, blocks)
            else:
                self.groups_of(keys, vals, starts, starts[1:] + [n])
                block = after
        if self.buf:
            self.out.write(self.buf)
        return {
            "input_records": self.counter[0],
            "map_output_records": 0,
            "combine_output_records": 0,
            "reduce_input_groups": self.groups,
            "output_records": self.nout,
        }

    def groups_of(self, keys, vals, starts, ends):
        """Reduces the groups [starts[i], ends[i]) of one block."""
        if not starts:
            return
        gkeys = list(map(keys.__getitem__, starts))
        values = decode_all(vals, set(map(_first, vals)))
        names = decode_all(gkeys, set(map(_first, gkeys)))
        value_iters = list(map(iter, map(values.__getitem__, map(slice, starts, ends))))
        self.groups += len(starts)
        results = _call_all(self.reduce_fn, [names, value_iters], lambda e, i: _reduce_failure(e, names[i]))
        out = list(chain.from_iterable(results))
        if not out:
            return
        data = None
        if _is_pairs(out):
            data = frame_all(list(map(_first, out)), list(map(_second, out)))
        if data is None:
            for kb, key, res in zip(gkeys, names, results):
                self.careful(kb, key, res)
        else:
            self.write(data)
        self.nout += len(out)

    def streamed_group(self, kb, first_vals, after, blocks):
        """Reduces the group of key datum `kb` that starts with `first_vals`
        and goes on in block `after` (and maybe further): its values are
        decoded as reduce() reads them. Returns the block that follows the
        group (the rest of the block where it ends), or None at the end."""
        rest = [None]

        def more():
            block = after
            while block is not None:
                keys, vals = block
                if keys[0] != kb:
                    rest[0] = block
                    return
                n = len(keys)
                end = next(compress(range(n), map(ne, keys, repeat(kb))), n)
                yield from map(decode, vals[:end])
                if end < n:
                    rest[0] = (keys[end:], vals[end:])
                    return
                block = next(blocks, None)

        key = decode(kb)
        values = more()
        self.groups += 1
        try:
            res = self.reduce_fn(key, chain(map(decode, first_vals), values))
            res = [] if res is None else list(res)
        except Exception as e:
            raise _reduce_failure(e, key)
        for _ in values:  # the values reduce() did not read
            pass
        self.careful(kb, key, res)
        self.nout += len(res)
        return rest[0]

    def careful(self, kb, key, res):
        """Frames one group's reduce() output record by record."""
        buf = self.buf
        try:
            for k, v in res:
                _frame_one(buf, kb if k is key else encode(k, "key"), encode(v, "value"))
        except Exception as e:
            raise _reduce_failure(e, key)
        if len(buf) > OUT_CHUNK:
            self.out.write(buf)
            del buf[:]

    def write(self, data):
        buf = self.buf
        buf += data
        if len(buf) > OUT_CHUNK:
            self.out.write(buf)
            del buf[:]


def _reduce_failure(e, key):
    """The Failure for exception `e` raised while reducing `key`."""
    if isinstance(e, Failure):
        return e
    if isinstance(e, EncodeError):
        return Failure("IPDC-ERROR: reduce() produced %s, for key %s" % (e, _short(key)), EXIT_USER)
    if isinstance(e, MemoryError):
        return _out_of_memory(e, "reduce()", "for key " + _short(key))
    sys.stderr.write(_user_traceback(e))
    if _raised_in_runner(e):
        return Failure(
            "IPDC-ERROR: reduce() must yield (key, value) pairs or return an iterable of them "
            "(or None); for key %s it gave something else: %s" % (_short(key), _describe(e)),
            EXIT_USER,
        )
    return Failure("IPDC-ERROR: reduce() raised %s for key %s" % (_describe(e), _short(key)), EXIT_USER)


def run_reduce(reduce_fn, inp, out):
    return Reducer(reduce_fn, out).run(inp)


# ---------------------------------------------------------------- main

USAGE = "usage: runner.py map MAP_PY [--combine REDUCE_PY] | runner.py reduce REDUCE_PY"


def main(argv):
    if sys.version_info < (3, 7):
        raise Failure("IPDC-ERROR: Python 3.7 or newer is needed, this is " + sys.version.split()[0], EXIT_LOAD)
    # Records go to the real stdout; anything the user prints goes to stderr.
    out = os.fdopen(os.dup(1), "wb", buffering=OUT_CHUNK)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    inp = open(0, "rb", buffering=OUT_CHUNK, closefd=False)
    if len(argv) == 2 and argv[0] == "map":
        stats = run_map(load(argv[1], "map", "map(line)"), None, None, inp, out)
    elif len(argv) == 4 and argv[0] == "map" and argv[2] == "--combine":
        map_fn = load(argv[1], "map", "map(line)")
        combine_fn = load(argv[3], "combine", "combine(key, values)")
        name = "combine"
        if combine_fn is None:
            combine_fn = load(argv[3], "reduce", "reduce(key, values)")
            name = "reduce"
        stats = run_map(map_fn, combine_fn, name, inp, out)
    elif len(argv) == 2 and argv[0] == "reduce":
        stats = run_reduce(load(argv[1], "reduce", "reduce(key, values)"), inp, out)
    else:
        raise Failure("IPDC-ERROR: " + USAGE, EXIT_INTERNAL)
    out.flush()
    return stats


def entry():
    try:
        stats = main(sys.argv[1:])
    except Failure as f:
        status, summary = f.status, f.summary
    except BrokenPipeError:
        status, summary = EXIT_INTERNAL, "IPDC-ERROR: the agent stopped reading the runner's output"
    except MemoryError:
        status, summary = EXIT_MEMORY, "IPDC-ERROR: MemoryError: the runner ran out of memory"
    except Exception as e:
        sys.stderr.write(traceback.format_exc())
        status, summary = EXIT_INTERNAL, "IPDC-ERROR: internal runner error: " + _describe(e)
    else:
        sys.stderr.flush()
        sys.stderr.write("\nIPDC-STATS " + json.dumps(stats, separators=(",", ":")) + "\n")
        sys.stderr.flush()
        return 0
    try:
        sys.stderr.flush()
        sys.stderr.write("\n" + summary + "\n")
        sys.stderr.flush()
    except Exception:
        pass
    return status


if __name__ == "__main__":
    code = entry()
    # Skip interpreter teardown (and flushing a stdout whose reader may be gone).
    os._exit(code)
