"""IPDC runner: runs a user's Map.py / Reduce.py over records in batches.

The agent embeds this file, seals it in memory (never in a folder user code
can write) and runs it with the system Python (3.7 or newer) in isolated mode
(-I: the script's folder is not on sys.path), one process per task, in the
task's temporary folder:

    python3 runner.py [--params JSON] [--input-name NAME] [--map-only] [--gzip|--files|--pairs] map MAP_PY [--combine REDUCE_PY]
        stdin:  the raw bytes of the split's lines (to map(line) once per
                line, or to map_split(lines) once); with --files whole
                files, framed (see read_files), to map(name, data) once each
        stdout: framed records: map() output, or with --combine the output of
                combine() (or reduce() when Reduce.py has no combine())
    python3 runner.py [--params JSON] reduce REDUCE_PY
        stdin:  records sorted by key, in blocks (see read_blocks)
        stdout: framed records: reduce() output

User code may `import ipdc`: `ipdc.params` (the job's parameters, from
--params), `ipdc.input_file()` (the name of the file being mapped, from
--input-name; None in a reduce) and `ipdc.counter(name, n=1)`.

A record is `u32 LE len, key datum, u32 LE len, value datum`; a datum is
`s` + UTF-8 (surrogateescape) bytes of a str, or `j` + JSON text of any other
value; map and combine output keys that are not str are written sortable
instead (see "sortable keys"); a map-only job's single value (not a pair)
has the key datum `n`.
User print() output goes to stderr, never into the records.

stderr ends with exactly one protocol line:
    IPDC-STATS {"input_records":..,"map_output_records":..,
                "combine_output_records":..,"reduce_input_groups":..,
                "output_records":..,"user_counters":{..}}  exit status 0
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
from itertools import accumulate, chain, compress, islice, repeat
from operator import countOf, itemgetter, ne
from types import FunctionType, MethodType

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

# What user code may raise: sys.exit() too is its error, not the runner's end.
_USER_ERRORS = (Exception, SystemExit)


# Folders the user's files were loaded from (the agent's task folder).
_USER_DIRS = set()


# ---------------------------------------------------------------- ipdc module

# ipdc.counter() totals. A batch tried the fast way and then run again the
# careful way must count once: see _Rollback.
_COUNTS = {}
MAX_COUNTERS = 100
MAX_COUNTER_NAME = 100
_I64 = (-(1 << 63), (1 << 63) - 1)


class _Rollback:
    """The counters as they were before a fast try, put back if it is redone."""

    __slots__ = ("saved",)

    def __init__(self):
        self.saved = dict(_COUNTS)

    def undo(self):
        _COUNTS.clear()
        _COUNTS.update(self.saved)


# The `ipdc` module's own code, compiled under its own file name so that
# its errors are the user's (a counter name that is not a str), not the
# runner's (see _raised_in_runner).
_IPDC_SOURCE = """
def counter(name, n=1):
    \"\"\"Adds n (an int) to the job's counter `name` (a str).\"\"\"
    if not isinstance(name, str):
        raise TypeError("ipdc.counter(name, n=1): name must be a str, not %s" % type(name).__name__)
    if not isinstance(n, int) or isinstance(n, bool):
        raise TypeError("ipdc.counter(%r, n): n must be an int, not %s" % (name, type(n).__name__))
    total = _COUNTS.get(name)
    if total is not None:
        _COUNTS[name] = total + int(n)
    elif len(_COUNTS) >= MAX_COUNTERS:
        raise ValueError("ipdc.counter(%r): a task may have at most %d counter names" % (name, MAX_COUNTERS))
    elif not 0 < len(name) <= MAX_COUNTER_NAME:
        raise ValueError("ipdc.counter(%r): a counter name has 1 to %d characters" % (name[:200], MAX_COUNTER_NAME))
    else:
        _COUNTS[str.__str__(name)] = int(n)


def input_file():
    \"\"\"The name of the input file being mapped (None in a reduce).\"\"\"
    return _INPUT_NAME
"""


def install_ipdc_module(params, input_name):
    import types

    mod = types.ModuleType("ipdc", "What IPDC tells a job's code: params, input_file(), counter().")
    mod.__dict__.update(
        _COUNTS=_COUNTS, MAX_COUNTERS=MAX_COUNTERS, MAX_COUNTER_NAME=MAX_COUNTER_NAME, _INPUT_NAME=input_name
    )
    exec(compile(_IPDC_SOURCE, "<ipdc>", "exec"), mod.__dict__)
    mod.params = params
    sys.modules["ipdc"] = mod


def user_counters():
    return {k: min(max(v, _I64[0]), _I64[1]) for k, v in _COUNTS.items()}


def _shown_name(filename):
    """How a traceback names `filename`: a user's file by its name alone."""
    if filename and os.path.dirname(os.path.abspath(filename)) in _USER_DIRS:
        return os.path.basename(filename)
    return filename


def _user_traceback(exc):
    """The traceback of `exc` without the runner's own frames at the top,
    the user's files named as the job names them (`Map.py`), not by the
    agent's task folder, which means nothing on the submitting machine."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == _RUNNER_FILE:
        tb = tb.tb_next
    # No user frame (the runner refused a value map() gave): the message alone.
    te = traceback.TracebackException(type(exc), exc, tb)  # reads the source lines now
    seen = set()
    todo = [te]
    while todo:
        t = todo.pop()
        if t is None or id(t) in seen:
            continue
        seen.add(id(t))
        for frame in t.stack:
            frame.filename = _shown_name(frame.filename)
        if getattr(t, "filename", None):  # a SyntaxError's own file
            t.filename = _shown_name(t.filename)
        todo += [t.__cause__, t.__context__] + list(getattr(t, "exceptions", None) or [])
    return "".join(te.format())


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
    if t is str or isinstance(obj, str):  # a subclass (StrEnum, numpy.str_) is the same key
        try:
            return b"s" + str.encode(obj, "utf-8", "surrogateescape")
        except UnicodeEncodeError as e:
            raise EncodeError("a %s str that is not valid Unicode text (%s)" % (what, e))
    if t is int:
        try:
            return b"j" + str(obj).encode("ascii")
        except ValueError as e:  # past sys.get_int_max_str_digits()
            raise EncodeError("a %s int too long to write as text (%s)" % (what, _one_line(e)))
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


_KEY_TAGS = frozenset(b"abduv")


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
    if tag in _KEY_TAGS:
        return _decode_item(datum, 0)[0]
    raise Failure("IPDC-ERROR: the runner received a datum with unknown tag %r" % datum[:1], EXIT_INTERNAL)


# ------------------------------------------------------- sortable keys
#
# Map and combine output keys are written so that sorting their bytes sorts
# them the way Python would: by type first (None < bool < numbers < str <
# list/tuple < dict), then by value (numbers numerically, int and float
# together; str by code point; lists element by element, a shorter prefix
# first). A str key is `s` + its bytes, as before; the other tags are:
#   a                 None
#   b 00|01           False, True
#   d F8 kind [rest]  a number: F8 = the nearest float in sortable bits
#                     (sign bit flipped, negatives inverted), then for a
#                     float kind 02, for an int equal to F8 kind 03, for an
#                     int below / above F8 kind 01 / 04 + the difference as
#                     4 bytes of length and big-endian magnitude (inverted
#                     when negative): exact for ints of any size
#   u ITEMS 00        a list or tuple, each item nested
#   v (K V)* 00       a dict, items in key order, keys as str
# Nested str: `s` + bytes with 00 written 00 FF, then 00. Reduce output and
# map-only output keep the plain datums (`j` + JSON), so part files read
# as before.

_F8 = struct.Struct(">d")
_U8 = struct.Struct(">Q")
_SIGN = 1 << 63
_ALL = (1 << 64) - 1
_INF = float("inf")


def _sortable_float(f):
    u = _U8.unpack(_F8.pack(f + 0.0))[0]  # + 0.0: -0.0 is 0.0
    return _U8.pack(u ^ _ALL if u & _SIGN else u | _SIGN)


def _float_of(b):
    u = _U8.unpack(b)[0]
    return _F8.unpack(_U8.pack(u ^ _SIGN if u & _SIGN else u ^ _ALL))[0]


def _key_number(out, n, what):
    if type(n) is float or isinstance(n, float):
        if n - n != 0:
            raise EncodeError("a %s float that is not finite (%r)" % (what, n))
        out += b"d"
        out += _sortable_float(n)
        out += b"\x02"
        return
    n = int(n)
    try:
        f = float(n)
        base = int(f)
    except OverflowError:  # beyond the floats: ordered by the difference alone
        f = _INF if n > 0 else -_INF
        base = 0
    out += b"d"
    out += _sortable_float(f)
    r = n - base
    if r == 0:
        out += b"\x03"
        return
    mag = abs(r).to_bytes((abs(r).bit_length() + 7) // 8, "big")
    head = len(mag).to_bytes(4, "big")
    if r < 0:
        out += b"\x01"
        out += bytes(255 - c for c in head + mag)
    else:
        out += b"\x04"
        out += head + mag


def _key_str(out, s, what):
    try:
        b = str.encode(s, "utf-8", "surrogateescape")
    except UnicodeEncodeError as e:
        raise EncodeError("a %s str that is not valid Unicode text (%s)" % (what, e))
    out += b"s"
    out += b.replace(b"\x00", b"\x00\xff")
    out += b"\x00"


def _key_item(out, obj, what, depth):
    if depth > 100:
        raise EncodeError("a %s nested more than 100 levels deep" % what)
    if obj is None:
        out += b"a"
    elif obj is True or obj is False:
        out += b"b\x01" if obj else b"b\x00"
    elif isinstance(obj, str):
        _key_str(out, obj, what)
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        _key_number(out, obj, what)
    elif isinstance(obj, (list, tuple)):
        out += b"u"
        for item in obj:
            _key_item(out, item, what, depth + 1)
        out += b"\x00"
    elif isinstance(obj, dict):
        if not all(type(k) is str for k in obj):
            obj = _loads(_dumps(obj))  # JSON's own names for other keys ("1", "true")
        out += b"v"
        for k in sorted(obj):
            _key_str(out, k, what)
            _key_item(out, obj[k], what, depth + 1)
        out += b"\x00"
    else:
        encode(obj, what)  # raises the error naming the type
        raise EncodeError("a %s of type %s, which cannot be stored as a key" % (what, type(obj).__name__))


def encode_key(obj):
    """The sortable datum of a map or combine output key (see above)."""
    if isinstance(obj, str):
        return encode(obj, "key")
    out = bytearray()
    _key_item(out, obj, "key", 0)
    return bytes(out)


def _nested_str(d, i):
    end = d.index(b"\x00", i)
    while end + 1 < len(d) and d[end + 1] == 0xFF:
        end = d.index(b"\x00", end + 2)
    return d[i:end].replace(b"\x00\xff", b"\x00").decode("utf-8", "surrogateescape"), end + 1


def _decode_item(d, i):
    """The key item at `d[i]` and where the next one starts."""
    t = d[i]
    i += 1
    if t == 97:  # a
        return None, i
    if t == 98:  # b
        return d[i] == 1, i + 1
    if t == 115:  # s
        return _nested_str(d, i)
    if t == 100:  # d
        raw, kind = d[i : i + 8], d[i + 8]
        i += 9
        if kind == 2:
            return _float_of(raw), i
        f = _float_of(raw)
        base = 0 if f in (_INF, -_INF) else int(f)
        if kind == 3:
            return base, i
        neg = kind == 1
        head = bytes(255 - c for c in d[i : i + 4]) if neg else d[i : i + 4]
        n = int.from_bytes(head, "big")
        mag = d[i + 4 : i + 4 + n]
        r = int.from_bytes(bytes(255 - c for c in mag) if neg else mag, "big")
        return base + (-r if neg else r), i + 4 + n
    if t == 117 or t == 118:  # u, v
        items = []
        while d[i] != 0:
            item, i = _decode_item(d, i)
            items.append(item)
        if t == 117:
            return items, i + 1
        return dict(zip(items[0::2], items[1::2])), i + 1
    raise Failure("IPDC-ERROR: the runner received a key with unknown tag %r" % bytes([t]), EXIT_INTERNAL)


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


_MODULES = {}


def load(path, function, signature):
    """Imports the user's file (once) and returns its `function`."""
    module = _MODULES.get(path)
    if module is None:
        module = _MODULES[path] = _import(path)
    fn = getattr(module, function, None)
    if not callable(fn):
        return None if function in ("combine", "map_split") else _missing(os.path.basename(path), function, signature)
    return fn


def _import(path):
    """Imports the user's file as a module."""
    shown = os.path.basename(path)
    folder = os.path.dirname(os.path.abspath(path))
    _USER_DIRS.add(folder)
    # After the standard library and the installed modules, never before:
    # a file named like one of them (a json.py beside Map.py, or one planted
    # there) is not what the runner or the job's own imports get.
    if folder not in sys.path:
        sys.path.append(folder)
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
        e.filename = _shown_name(e.filename)
        sys.stderr.write("".join(traceback.format_exception_only(type(e), e)))
        where = os.path.basename(e.filename or shown)
        raise Failure(
            "IPDC-ERROR: %s has a syntax error on line %s of %s: %s. Fix %s and submit the job again."
            % (shown, e.lineno, where, _one_line(e.msg), shown),
            EXIT_LOAD,
        )
    except OSError as e:
        raise Failure("IPDC-ERROR: cannot read %s: %s" % (path, _describe(e)), EXIT_LOAD)
    except _USER_ERRORS as e:
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
    return module


def _takes(fn, n):
    """Whether fn can be called with n positional arguments (True when its
    signature cannot be read)."""
    import inspect

    try:
        inspect.signature(fn).bind(*range(n))
    except TypeError:
        return False
    except ValueError:
        return True
    return True


def load_mapper(path, files=False, pairs=False):
    """(function, whether it is map_split) of the user's mapper file;
    `files`: the job's input_format is "files" (map(name, data)); `pairs`:
    a later step of a multi-step job (map(key, value) over the pairs of
    the step before)."""
    split_fn = load(path, "map_split", "map_split(lines)")
    map_fn = getattr(_MODULES[path], "map", None)
    shown = os.path.basename(path)
    if pairs:
        if split_fn is not None or not callable(map_fn) or (not _takes(map_fn, 2) and _takes(map_fn, 1)):
            raise Failure(
                "IPDC-ERROR: %s is the mapper of a later step, which reads the pairs the step before wrote: "
                "define `def map(key, value):` (not map(line) or map_split) that yields (key, value) pairs" % shown,
                EXIT_LOAD,
            )
        return _pair_mapper(map_fn), False
    if files:
        if split_fn is not None:
            raise Failure(
                "IPDC-ERROR: %s defines map_split(), but the job's input_format is \"files\": "
                "define map(name, data), called once per file, instead" % shown,
                EXIT_LOAD,
            )
        if not callable(map_fn):
            raise Failure(
                "IPDC-ERROR: %s defines no function map(): add `def map(name, data):` (input_format = \"files\": "
                "called once per input file with its bytes) that yields (key, value) pairs" % shown,
                EXIT_LOAD,
            )
        if not _takes(map_fn, 2) and _takes(map_fn, 1):
            raise Failure(
                "IPDC-ERROR: %s defines map(line), but the job's input_format is \"files\", which calls "
                "map(name, data) once per file: change map() or drop input_format from ipdc.toml" % shown,
                EXIT_LOAD,
            )
        return map_fn, False
    if split_fn is not None and callable(map_fn):
        raise Failure(
            "IPDC-ERROR: %s defines both map() and map_split(): keep one (map(line) is called per line, "
            "map_split(lines) once per split) and submit the job again." % shown,
            EXIT_LOAD,
        )
    if split_fn is not None:
        return split_fn, True
    if not callable(map_fn):
        raise Failure(
            "IPDC-ERROR: %s defines no function map(): add `def map(line):` that yields (key, value) pairs "
            "(or `def map_split(lines):`) and submit the job again." % shown,
            EXIT_LOAD,
        )
    if not _takes(map_fn, 1) and _takes(map_fn, 2):
        raise Failure(
            "IPDC-ERROR: %s defines map(name, data), which is called once per file with input_format = \"files\": "
            "set that in ipdc.toml, or define map(line) to be called once per line" % shown,
            EXIT_LOAD,
        )
    return map_fn, False


def _missing(shown, function, signature):
    raise Failure(
        "IPDC-ERROR: %s defines no function %s(): add `def %s:` that yields (key, value) pairs "
        "and submit the job again." % (shown, function, signature),
        EXIT_LOAD,
    )


# ---------------------------------------------------------------- map
#
# Both sides first try a batch the fast way: the user's function is called
# for every line (map) or key (combine, reduce) of the batch with no Python
# loop around the calls, what it yields is gathered into lists, checked,
# grouped or counted, and framed, all in C. The fast way is kept only when
# everything gathered is immutable and plain: tuples of two, str keys, int or
# str values (so nothing can have changed after it was yielded), within
# FAST_PAIRS pairs, and no call raised (StopIteration included). Otherwise
# the batch's output is thrown away and the batch runs again the careful
# way: one call, one pair at a time, each pair encoded the moment it is
# yielded, which gives the exact records, errors and line numbers. So a
# user's function may be called twice on the lines or keys of one batch
# (the MapReduce contract already assumes map() and reduce() can be re-run:
# tasks are retried and backed up); a task whose map() output is not plain
# stops trying the fast way after its first such batch.

# Bytes of input per batch of lines: small enough that the passes over a
# batch's pairs stay in the CPU cache (measured: 8 KiB batches run 2x faster
# than 512 KiB ones).
READ_CHUNK = 1 << 13
# Keys per combine() batch (for the same reason).
COMBINE_BATCH = 1024
# Pairs a batch may gather the fast way; past this it runs the careful way,
# whose memory does not grow with the output.
FAST_PAIRS = 1 << 16
_STR = {str}
_INT = {int}
_INT_STR = {int, str}
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


class _GiveUp(Exception):
    """The fast way cannot take this batch."""


_CO_GENERATOR = 0x20


def is_generator_function(fn):
    """True when calling fn only creates a generator: no user code runs
    until it is iterated. Only a plain function (or a method of one) counts:
    any other callable, such as a decorator object passing attributes
    through to the function it wraps, runs its own code when called."""
    if type(fn) is MethodType:
        fn = fn.__func__
    return type(fn) is FunctionType and bool(fn.__code__.co_flags & _CO_GENERATOR)


def _code_of(fn):
    return fn.__func__.__code__ if type(fn) is MethodType else fn.__code__


# Opcodes that yield values from another iterator or awaitable.
_DELEGATING = {"GET_YIELD_FROM_ITER", "YIELD_FROM", "SEND", "GET_AWAITABLE", "GET_AITER", "GET_ANEXT"}


def yields_only_key_one_pairs(fn):
    """The code object of generator function `fn` when every value it can
    yield is a tuple of two, built right where it is yielded, whose second
    item is the int constant 1 (`yield word, 1`); else None.

    The proof reads the bytecode: each YIELD_VALUE must follow
    `LOAD_CONST 1; BUILD_TUPLE 2`, and nothing may land on the BUILD_TUPLE
    or the YIELD_VALUE with another value on the stack: no jump, and no
    line start either (a debugger's trace function can set `f_lineno`).
    `yield from` in any form is refused (before 3.11 it has its own
    opcode). Anything else (a tuple from a variable, another Python's
    bytecode) is simply not proven, and the batch's pairs are checked one
    by one instead. With the proof only the keys need checking: this saves
    five of the seven passes over a batch's pairs."""
    if not is_generator_function(fn):
        return None
    import dis  # here: reduce tasks need not pay for its import

    code = _code_of(fn)
    try:
        ins = list(dis.get_instructions(code))
        # Where the line changes: where setting f_lineno can land.
        line_starts = {offset for offset, _ in dis.findlinestarts(code)}
    except Exception:
        return None
    if any(op.opname in _DELEGATING for op in ins):
        return None
    yields = 0
    for i, op in enumerate(ins):
        if op.opname != "YIELD_VALUE":
            continue
        if i < 2:
            return None
        tup, one = ins[i - 1], ins[i - 2]
        if op.is_jump_target or tup.is_jump_target or op.offset in line_starts or tup.offset in line_starts:
            return None
        if tup.opname != "BUILD_TUPLE" or tup.arg != 2:
            return None
        if one.opname not in ("LOAD_CONST", "LOAD_SMALL_INT") or type(one.argval) is not int or one.argval != 1:
            return None
        yields += 1
    return code if yields else None


def gather(fn, args_lists):
    """Everything fn(*args) yields for each args in turn, flattened in order
    (a call returning None yields nothing), driven in C; None when a call
    raised, StopIteration from a call ended the calls early, or the batch
    would pass FAST_PAIRS pairs (the careful way then runs the batch again).

    For a generator function all generators are made first and then drained
    one after the other: each body still runs whole and in order, as in the
    careful way. Any other function is drained right after its call, as it
    may return a view of state that its next call changes."""
    if is_generator_function(fn):
        try:
            gens = list(map(fn, *args_lists))
            pairs = list(islice(chain.from_iterable(gens), FAST_PAIRS + 1))
        except _USER_ERRORS:
            return None
        return pairs if len(pairs) <= FAST_PAIRS else None
    left = [FAST_PAIRS]

    def drained(res):
        out = [] if res is None else list(islice(res, left[0] + 1))
        left[0] -= len(out)
        if left[0] < 0:
            raise _GiveUp
        return out

    def one(arg):
        try:
            return drained(fn(arg))
        except _USER_ERRORS:
            raise _GiveUp

    def two(arg1, arg2):
        try:
            return drained(fn(arg1, arg2))
        except _USER_ERRORS:
            raise _GiveUp

    try:
        results = list(map(one if len(args_lists) == 1 else two, *args_lists))
    except _GiveUp:
        return None
    return list(chain.from_iterable(results))


def plain_pairs(pairs):
    """(keys, values, the set of the values' types) of `pairs` when every
    pair is a tuple of a str and an int or str; else None.

    Each check counts matches in C rather than building a set: these
    passes run for every pair a map() yields, and a set's hashing made them
    a fifth of a map task's time. `countOf` compares each type with
    `tuple`, `str` or `int` by identity and, failing that, with the type's
    `__eq__`, which for a class is identity too unless its metaclass
    overrides `__eq__`: a metaclass claiming to equal one of these types is
    out of scope (the set check let it through too when its `__hash__`
    matched)."""
    n = len(pairs)
    if not n:
        return [], [], set()
    if countOf(map(type, pairs), tuple) != n or countOf(map(len, pairs), 2) != n:
        return None
    keys = list(map(_first, pairs))
    if countOf(map(type, keys), str) != n:
        return None
    vals = list(map(_second, pairs))
    if type(vals[0]) is int and countOf(map(type, vals), int) == n:
        return keys, vals, _INT
    vt = set(map(type, vals))
    if not vt <= _INT_STR:
        return None
    return keys, vals, vt


def _value_datum(v):
    return b"j" + str(v).encode("ascii") if type(v) is int else b"s" + v.encode("utf-8", "surrogateescape")


def frame_all(keys, vals, vt):
    """The framed records of str `keys` with int or str `vals` (whose types
    are the set `vt`), built without a Python loop; None when a str is not
    valid Unicode or an int is too long to print."""
    try:
        kd = map(_S, map(str.encode, keys, repeat("utf-8"), repeat("surrogateescape")))
        if vt <= _INT:
            vd = map(_J, map(str.encode, map(int.__repr__, vals)))
        elif vt == _STR:
            vd = map(_S, map(str.encode, vals, repeat("utf-8"), repeat("surrogateescape")))
        else:
            vd = map(_value_datum, vals)
        datums = list(chain.from_iterable(zip(kd, vd)))
    except (UnicodeEncodeError, ValueError):
        return None
    return b"".join(chain.from_iterable(zip(map(_pack, map(len, datums)), datums)))


# The framed key datum of a map-only job's single value (tag n: no key).
_NO_KEY = _pack(1) + b"n"

# A framed value datum of the int 1.
_ONE = _pack(2) + b"j1"


def frame_ones(keys):
    """The framed records of str `keys`, each with the value int 1; None
    when a str is not valid Unicode."""
    try:
        kd = list(map(_S, map(str.encode, keys, repeat("utf-8"), repeat("surrogateescape"))))
    except UnicodeEncodeError:
        return None
    return b"".join(chain.from_iterable(zip(map(_pack, map(len, kd)), kd, repeat(_ONE))))


def _frame_one(buf, kb, vb):
    buf += _pack(len(kb))
    buf += kb
    buf += _pack(len(vb))
    buf += vb


def _encodable(keys):
    """True when every str of `keys` can be encoded (checked in C)."""
    try:
        deque(map(str.encode, keys, repeat("utf-8"), repeat("surrogateescape")), 0)
    except UnicodeEncodeError:
        return False
    return True


# A str of two characters unpacks as a (key, value) pair: refused, as it is
# almost always `yield word` where `yield word, 1` was meant.
# A pair is a tuple or a list of two (a set or dict of two would unpack too,
# its order arbitrary).
_PAIR = (tuple, list)
_NOT_A_PAIR = "a %s, not a (key, value) pair: yield key, value"


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


def _group_failure(e, name, key):
    """The Failure for exception `e` raised while `name` (combine or reduce)
    worked on `key`."""
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


class Output:
    """The runner's framed output, written in chunks of OUT_CHUNK."""

    def __init__(self, out):
        self.out = out
        self.buf = bytearray()

    def write(self, data):
        buf = self.buf
        buf += data
        if len(buf) > OUT_CHUNK:
            self.out.write(buf)
            del buf[:]

    def group(self, fn, name, kb, key, values, encode_key_of):
        """Runs fn(key, values) the careful way, framing each pair as it is
        yielded, its key by `encode_key_of` (`kb`: the datum of `key` in that
        encoding, reused when fn yields `key` itself; None to always encode).
        Returns how many records it wrote."""
        buf = self.buf
        n = 0
        try:
            res = fn(key, values)
            if res is not None:
                for pair in res:
                    if type(pair) is not tuple and not isinstance(pair, _PAIR):
                        raise ValueError(_NOT_A_PAIR % type(pair).__name__)
                    k, v = pair
                    _frame_one(buf, kb if k is key and kb is not None else encode_key_of(k), encode(v, "value"))
                    n += 1
        except _USER_ERRORS as e:
            raise _group_failure(e, name, key)
        if len(buf) > OUT_CHUNK:
            self.out.write(buf)
            del buf[:]
        return n

    def flush(self):
        if self.buf:
            self.out.write(self.buf)
            del self.buf[:]


class Mapper:
    """Runs map() over batches of lines, optionally combining, into `out`."""

    def __init__(self, map_fn, combine_fn, combine_name, out):
        self.map_fn = map_fn
        self.combine_fn = combine_fn
        self.combine_name = combine_name
        self.out = Output(out)
        # Whether to try the fast way: None until a batch (mapped the careful
        # way) showed map()'s output; False once it was not plain.
        self.fast = None
        # map()'s code when it provably yields only (key, 1) pairs.
        self.key_one_code = yields_only_key_one_pairs(map_fn)
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
        self.groups_plain = True  # every key of `groups` a str, every value an int or str
        self.groups_ones = True  # every value of `groups` the int 1
        # With map_split(): [lines read so far], for errors.
        self.split_lines = None
        # Set by run_map_files: each "line" is a (name, data) file.
        self.whole_files = False
        # A map-only job (no reducers): map() may yield single values too.
        self.map_only = False

    def batch(self, lines):
        tried = _Rollback() if self.fast else None
        if not (self.fast and self.fast_batch(lines)):
            if tried is not None:
                tried.undo()
            plain = self.careful(lines)
            if self.fast is None and plain is not None:
                self.fast = plain
        self.lines_done += len(lines)
        if len(self.counts) > COMBINE_MAX_KEYS:
            self.flush_counts()
        if len(self.groups) > COMBINE_MAX_KEYS or self.grouped_values > COMBINE_MAX_VALUES:
            self.flush_groups()

    def fast_batch(self, lines):
        """Maps `lines` the fast way; False when the careful way must."""
        # Checked before gather() makes the batch's generators (no user code
        # runs in between): map() may change its own code while they run.
        proven = self.key_one_code is not None and _code_of(self.map_fn) is self.key_one_code
        pairs = gather(self.map_fn, [lines])
        if pairs is None:
            self.fast = False
            return False
        if proven:
            keys = list(map(_first, pairs))
            n = len(keys)
            if countOf(map(type, keys), str) == n:
                if self.combine_fn is None:
                    data = frame_ones(keys)
                    if data is None:
                        return False
                    self.out.write(data)
                    self.nout += n
                    return True
                if self.groups_to_counts():
                    self.counts.update(keys)
                    self.nout += n
                    return True
        plain = plain_pairs(pairs)
        if plain is None:
            self.fast = False
            return False
        keys, vals, vt = plain
        if self.combine_fn is None:
            data = frame_all(keys, vals, vt)
            if data is None:
                return False
            self.out.write(data)
        elif vt == _INT and vals.count(1) == len(vals) and self.groups_to_counts():
            # Every value is the int 1: counting them keeps all there is to know.
            self.counts.update(keys)
        else:
            self.counts_to_groups()
            deque(map(list.append, map(self.groups.setdefault, keys, iter(list, None)), vals), 0)
            self.grouped_values += len(vals)
            if self.groups_ones and not (vt == _INT and vals.count(1) == len(vals)):
                self.groups_ones = False
        self.nout += len(keys)
        return True

    def careful(self, lines):
        """Maps `lines` one pair at a time, each encoded (or with a combiner,
        normalised and grouped) as soon as map() yields it. Returns whether
        every pair was plain (None: there was none)."""
        plain = None
        combine = self.combine_fn is not None
        if combine:
            self.counts_to_groups()
        groups = self.groups
        buf = self.out.buf
        pack = _pack
        line = None
        lineno = self.lines_done
        try:
            for line in lines:
                lineno += 1
                res = self.map_fn(line)
                if res is None:
                    continue
                for pair in res:
                    if type(pair) is not tuple and not isinstance(pair, _PAIR):
                        if not self.map_only:
                            raise ValueError(_NOT_A_PAIR % type(pair).__name__)
                        # A map-only job's single value: written as its text alone.
                        vb = encode(pair, "value")
                        buf += _NO_KEY
                        buf += pack(len(vb))
                        buf += vb
                        self.nout += 1
                        plain = False
                        continue
                    k, v = pair
                    self.nout += 1
                    if plain is not False:
                        plain = type(pair) is tuple and type(k) is str and (type(v) is int or type(v) is str)
                    if not combine:
                        if type(k) is str:
                            kb = b"s" + k.encode("utf-8", "surrogateescape")
                        else:
                            kb = encode(k, "key") if self.map_only else encode_key(k)
                        vb = encode(v, "value")
                        buf += pack(len(kb))
                        buf += kb
                        buf += pack(len(vb))
                        buf += vb
                        continue
                    if type(k) is str:
                        pass
                    elif isinstance(k, str):
                        k = str.__str__(k)  # the plain str it equals (StrEnum, numpy.str_)
                    else:
                        k = encode_key(k)
                        self.groups_plain = False
                    t = type(v)
                    if t is not int and t is not str:
                        v = _normalise(v)
                        self.groups_plain = False
                    if t is not int or v != 1:
                        self.groups_ones = False
                    vals = groups.get(k)
                    if vals is None:
                        groups[k] = [v]
                    else:
                        vals.append(v)
                    self.grouped_values += 1
                if combine:
                    if len(groups) > COMBINE_MAX_KEYS or self.grouped_values > COMBINE_MAX_VALUES:
                        self.flush_groups()
                        groups = self.groups
                elif len(buf) > OUT_CHUNK:
                    self.out.write(b"")
        except _USER_ERRORS as e:
            raise self.failure(e, lineno, line)
        self.out.write(b"")
        return plain

    def failure(self, e, lineno, line):
        if self.whole_files:
            return _file_failure(e, line[0])
        if self.split_lines is None:
            return _map_failure(e, lineno, line)
        return _split_failure(e, self.split_lines[0])

    def groups_to_counts(self):
        """Moves `groups` into the counts when all its values are the int 1
        (e.g. after a batch mapped the careful way); False when they are not."""
        groups = self.groups
        if groups:
            if not (self.groups_ones and self.groups_plain):
                return False
            self.counts.update(dict(zip(groups, map(len, groups.values()))))
            self.groups = {}
            self.grouped_values = 0
            self.groups_plain = True
        return True

    def counts_to_groups(self):
        """Moves the counted keys into `groups` (as lists of 1s) before other
        values join them, or combines them first when that would pass
        COMBINE_MAX_VALUES."""
        if self.counts:
            total = sum(self.counts.values())
            if total > COMBINE_MAX_VALUES:
                self.flush_counts()
                return
            for k, n in self.counts.items():
                self.groups[k] = [1] * n
            self.grouped_values += total
            self.counts = Counter()

    def flush_counts(self):
        if self.counts:
            counts = self.counts
            self.counts = Counter()
            self.combine_all(list(counts), None, list(counts.values()), lambda ns: list(map(repeat, repeat(1), ns)))

    def flush_groups(self):
        if self.groups:
            groups = self.groups
            plain = self.groups_plain
            self.groups = {}
            self.grouped_values = 0
            self.groups_plain = True
            self.groups_ones = True
            grouped = list(groups)
            keys = grouped if plain else [k if type(k) is str else decode(k) for k in grouped]
            self.combine_all(keys, None if plain else grouped, list(groups.values()), lambda vs: list(map(iter, vs)), plain)

    def combine_all(self, keys, datums, sources, values_of, plain=True):
        """Runs combine() on each key with the values `values_of(sources)`
        gives, a batch of keys at a time. `datums`: the keys as grouped
        (None when all are str)."""
        for at in range(0, len(keys), COMBINE_BATCH):
            end = at + COMBINE_BATCH
            ks, srcs = keys[at:end], sources[at:end]
            tried = _Rollback() if plain else None
            if not (plain and self.fast_combine(ks, values_of(srcs))):
                if tried is not None:
                    tried.undo()
                gks = datums[at:end] if datums else ks
                for gk, key, vals in zip(gks, ks, values_of(srcs)):
                    self.combine_careful(gk, key, vals)

    def fast_combine(self, keys, value_iters):
        if not _encodable(keys):
            return False
        pairs = gather2(self.combine_fn, keys, value_iters)
        if pairs is None:
            return False
        plain = plain_pairs(pairs)
        if plain is None:
            return False
        data = frame_all(*plain)
        if data is None:
            return False
        self.out.write(data)
        self.ncomb += len(plain[0])
        return True

    def combine_careful(self, gk, key, values):
        if type(gk) is str:
            try:
                kb = b"s" + gk.encode("utf-8", "surrogateescape")
            except UnicodeEncodeError as e:
                raise Failure(
                    "IPDC-ERROR: map() yielded a key str that is not valid Unicode text (%s): %s" % (e, _short(gk)),
                    EXIT_USER,
                )
        else:
            kb = gk
        self.ncomb += self.out.group(self.combine_fn, self.combine_name, kb, key, values, encode_key)

    def finish(self):
        self.flush_counts()
        self.flush_groups()
        self.out.flush()


def gather2(fn, keys, value_iters):
    return gather(fn, [keys, value_iters])


def _split_failure(e, lines_read):
    """The Failure for exception `e` raised while map_split() ran (or while
    its output was stored), after `lines_read` lines of the split."""
    where = "after line %d of this split" % lines_read
    return _user_failure(e, "map_split()", "map_split(lines)", where, "map_split() produced %s, %s")


def _user_failure(e, fn, signature, where, produced):
    """The Failure for exception `e` raised while user function `fn` (called
    as `signature`) ran `where`; `produced`: the text of a pair that cannot
    be stored, with the error and `where`."""
    if isinstance(e, Failure):
        return e
    if isinstance(e, EncodeError):
        return Failure("IPDC-ERROR: " + produced % (e, where), EXIT_USER)
    if isinstance(e, MemoryError):
        return _out_of_memory(e, fn, where)
    sys.stderr.write(_user_traceback(e))
    if _raised_in_runner(e):
        return Failure(
            "IPDC-ERROR: %s must yield (key, value) pairs or return an iterable of them (or None); "
            "%s it gave something else (%s)" % (signature, where, _describe(e)),
            EXIT_USER,
        )
    return Failure("IPDC-ERROR: %s raised %s %s" % (fn, _describe(e), where), EXIT_USER)


# Pairs map_split() yields that are stored at a time.
SPLIT_CHUNK = 4096


def _same(x):
    return x


def run_map_split(split_fn, combine_fn, combine_name, inp, out, map_only=False):
    """Calls split_fn once with an iterator over the split's lines and
    stores what it yields (combined, with a combiner), SPLIT_CHUNK pairs at
    a time the careful way."""
    m = Mapper(_same, combine_fn, combine_name, out)
    m.map_only = map_only
    read = m.split_lines = [0]

    def lines():
        for batch in line_batches(inp):
            read[0] += len(batch)
            yield from batch

    try:
        res = split_fn(lines())
        pairs = iter(()) if res is None else iter(res)
        while True:
            chunk = list(islice(pairs, SPLIT_CHUNK))
            if not chunk:
                break
            m.careful([chunk])
    except _USER_ERRORS as e:
        raise _split_failure(e, read[0])
    m.lines_done = read[0]
    m.finish()
    combined = combine_fn is not None
    return {
        "input_records": read[0],
        "map_output_records": m.nout,
        "combine_output_records": m.ncomb,
        "reduce_input_groups": 0,
        "output_records": m.ncomb if combined else m.nout,
    }


def _pair_mapper(map_fn):
    """map(line) over a step's typed lines (`JSON key<TAB>JSON value`, or
    one JSON value with no key) that calls map_fn(key, value)."""
    loads = json.loads

    def map_pair(line):
        key, tab, value = line.partition("\t")
        if tab:
            return map_fn(loads(key), loads(value))
        return map_fn(None, loads(key))

    return map_pair


def read_files(inp):
    """Yields (name, data) of each whole file on `inp`, framed by the agent
    as `u32 LE name length, name (UTF-8), u64 LE data length, data`."""
    while True:
        head = inp.read(4)
        if not head:
            return
        name = inp.read(_unpack_from(head)[0]) if len(head) == 4 else b""
        size = inp.read(8)
        if len(head) < 4 or len(size) < 8:
            raise Failure("IPDC-ERROR: the runner's input ends in the middle of a file's header", EXIT_INTERNAL)
        n = struct.unpack("<Q", size)[0]
        data = inp.read(n)
        if len(data) < n:
            raise Failure("IPDC-ERROR: the runner's input ends in the middle of a file", EXIT_INTERNAL)
        yield name.decode("utf-8", "surrogateescape"), data


def _file_failure(e, name):
    """The Failure for exception `e` raised while mapping file `name`."""
    return _user_failure(e, "map()", "map(name, data)", "for file %s" % name, "map() yielded %s %s")


def run_map_files(map_fn, combine_fn, combine_name, inp, out, map_only=False):
    """Calls map_fn(name, data) once per whole file on `inp`, `ipdc.input_file()`
    naming it, and stores what it yields the careful way."""
    ipdc = sys.modules["ipdc"].__dict__
    m = Mapper(lambda item: map_fn(*item), combine_fn, combine_name, out)
    m.map_only = map_only
    m.whole_files = True
    files = 0
    for name, data in read_files(inp):
        files += 1
        ipdc["_INPUT_NAME"] = name
        m.careful([(name, data)])
    m.finish()
    combined = combine_fn is not None
    return {
        "input_records": files,
        "map_output_records": m.nout,
        "combine_output_records": m.ncomb,
        "reduce_input_groups": 0,
        "output_records": m.ncomb if combined else m.nout,
    }


class Gunzip:
    """The decompressed bytes of a gzip input; a corrupt or cut file is
    named as the user's input, not as the runner's error."""

    def __init__(self, raw, name):
        import gzip

        self.gz = gzip.GzipFile(fileobj=raw, mode="rb")
        self.name = name or "the input"

    def read(self, n):
        import zlib

        try:
            return self.gz.read(n)
        except (OSError, EOFError, zlib.error) as e:
            raise Failure(
                "IPDC-ERROR: %s is not a valid gzip file (%s): check the file, or rename it if it is not compressed"
                % (self.name, _describe(e)),
                EXIT_USER,
            )


def run_map(map_fn, combine_fn, combine_name, inp, out, map_only=False):
    m = Mapper(map_fn, combine_fn, combine_name, out)
    m.map_only = map_only
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
#
# The reduce input comes in blocks: u32 LE n, then 2n u32 LE lengths (key,
# value, key, value, ...), then those 2n datums back to back. A block is cut
# into datums, its groups found and its values decoded in C, and reduce() is
# tried the fast way on the block's groups (see the map side). A group that
# goes on into the next block is reduced the careful way, its values decoded
# as reduce() reads them, across blocks.

_S_TAG = ord("s")
_J_TAG = ord("j")
_TAG_S = {_S_TAG}
_tail = itemgetter(slice(1, None))
_NATIVE_LE = sys.byteorder == "little"


def _short_input():
    return Failure("IPDC-ERROR: the runner's input ends in the middle of a block", EXIT_INTERNAL)


def read_blocks(inp, counter):
    """Yields (key datums, value datums) lists, one block at a time."""
    while True:
        head = inp.read(4)
        if not head:
            return
        if len(head) < 4:
            raise _short_input()
        n = _unpack_from(head)[0]
        if n == 0:
            continue
        raw = inp.read(8 * n)
        if len(raw) != 8 * n:
            raise _short_input()
        lens = array("I")
        if lens.itemsize != 4:
            lens = array("L")
        lens.frombytes(raw)
        if not _NATIVE_LE:
            lens.byteswap()
        size = sum(lens)
        data = inp.read(size)
        if len(data) != size:
            raise _short_input()
        ends = list(accumulate(lens))
        datums = list(map(data.__getitem__, map(slice, chain((0,), ends), ends)))
        counter[0] += n
        yield datums[0::2], datums[1::2]


def decode_all(datums):
    """The values of `datums`, decoded in C when they are all str or all int."""
    tags = set(map(_first, datums))
    if tags == {_J_TAG}:
        try:
            return list(map(int, map(_tail, datums)))
        except ValueError:
            pass
    elif tags == _TAG_S:
        return list(map(bytes.decode, map(_tail, datums), repeat("utf-8"), repeat("surrogateescape")))
    return list(map(decode, datums))


class Reducer:
    """Runs reduce() over the blocks of sorted records on `inp` into `out`."""

    def __init__(self, reduce_fn, out):
        self.reduce_fn = reduce_fn
        self.out = Output(out)
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
        self.out.flush()
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
        self.groups += len(starts)
        gkeys = list(map(keys.__getitem__, starts))
        if set(map(_first, gkeys)) == _TAG_S:
            tried = _Rollback()
            names = decode_all(gkeys)
            values = decode_all(vals)
            pairs = gather2(self.reduce_fn, names, list(map(iter, map(values.__getitem__, map(slice, starts, ends)))))
            plain = None if pairs is None else plain_pairs(pairs)
            data = None if plain is None else frame_all(*plain)
            if data is not None:
                self.out.write(data)
                self.nout += len(plain[0])
                return
            tried.undo()
        for kb, a, b in zip(gkeys, starts, ends):
            self.nout += self.out.group(
                self.reduce_fn, "reduce", _plain(kb), decode(kb), map(decode, vals[a:b]), _encode_plain_key
            )

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

        values = more()
        self.groups += 1
        self.nout += self.out.group(
            self.reduce_fn, "reduce", _plain(kb), decode(kb), chain(map(decode, first_vals), values), _encode_plain_key
        )
        for _ in values:  # the values reduce() did not read
            pass
        return rest[0]


def _plain(kb):
    """A sorted key datum as reduce output may reuse it: a str's (the same
    in both encodings), else None."""
    return kb if kb[0] == _S_TAG else None


def _encode_plain_key(k):
    return encode(k, "key")


def run_reduce(reduce_fn, inp, out):
    return Reducer(reduce_fn, out).run(inp)


# ---------------------------------------------------------------- main

USAGE = (
    "usage: runner.py [--params JSON] [--input-name NAME] [--map-only] [--gzip|--files|--pairs] map MAP_PY [--combine REDUCE_PY] | "
    "runner.py [--params JSON] reduce REDUCE_PY"
)


def main(argv):
    if sys.version_info < (3, 7):
        raise Failure("IPDC-ERROR: Python 3.7 or newer is needed, this is " + sys.version.split()[0], EXIT_LOAD)
    # Records go to the real stdout; anything the user prints goes to stderr.
    out = os.fdopen(os.dup(1), "wb", buffering=OUT_CHUNK)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    # The split comes on stdin; user code that reads stdin gets nothing
    # rather than the split's lines.
    inp = os.fdopen(os.dup(0), "rb", buffering=OUT_CHUNK)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    params, input_name, flags = {}, None, set()
    while argv[:1] in (["--map-only"], ["--gzip"], ["--files"], ["--pairs"]) or (
        len(argv) >= 2 and argv[0] in ("--params", "--input-name")
    ):
        if argv[0] in ("--map-only", "--gzip", "--files", "--pairs"):
            flags.add(argv[0])
            argv = argv[1:]
            continue
        if argv[0] == "--params":
            params = _loads(argv[1])
        else:
            input_name = argv[1]
        argv = argv[2:]
    install_ipdc_module(params, input_name)
    if len(argv) >= 2:
        # In the code's folder when it is inside the task's (an agent's
        # code/, where the side files are): open("stopwords.txt") then finds
        # what the job sent.
        code = os.path.dirname(os.path.abspath(argv[1]))
        if code.startswith(os.path.join(os.getcwd(), "")):
            try:
                os.chdir(code)
            except OSError:
                pass
    if argv[:1] == ["map"] and (len(argv) == 2 or (len(argv) == 4 and argv[2] == "--combine")):
        whole_files = "--files" in flags
        map_fn, whole_split = load_mapper(argv[1], whole_files, "--pairs" in flags)
        combine_fn, name = None, None
        if len(argv) == 4:
            combine_fn = load(argv[3], "combine", "combine(key, values)")
            name = "combine"
            if combine_fn is None:
                combine_fn = load(argv[3], "reduce", "reduce(key, values)")
                name = "reduce"
        run = run_map_files if whole_files else run_map_split if whole_split else run_map
        if "--gzip" in flags:
            inp = Gunzip(inp, input_name)
        stats = run(map_fn, combine_fn, name, inp, out, "--map-only" in flags)
    elif len(argv) == 2 and argv[0] == "reduce":
        stats = run_reduce(load(argv[1], "reduce", "reduce(key, values)"), inp, out)
    else:
        raise Failure("IPDC-ERROR: " + USAGE, EXIT_INTERNAL)
    out.flush()
    counts = user_counters()
    if counts:
        stats["user_counters"] = counts
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
