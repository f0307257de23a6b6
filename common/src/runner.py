"""IPDC runner: runs a user's Map.py / Reduce.py over records in batches.

The agent embeds this file, writes it into the task's temporary folder and
runs it with the system Python (3.7 or newer), one process per task:

    python3 runner.py map MAP_PY [--combine REDUCE_PY]
        stdin:  the raw bytes of the split's lines
        stdout: framed records: map() output, or with --combine the output of
                combine() (or reduce() when Reduce.py has no combine())
    python3 runner.py reduce REDUCE_PY
        stdin:  framed records sorted by key
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


def run_map(map_fn, combine_fn, combine_name, inp, out):
    stats = {
        "input_records": 0,
        "map_output_records": 0,
        "combine_output_records": 0,
        "reduce_input_groups": 0,
        "output_records": 0,
    }
    buf = bytearray()
    pack = _pack
    lineno = 0
    nout = 0
    line = None
    groups = {}
    grouped_at = 0

    def flush_groups():
        """Runs the combiner over `groups` and writes its output."""
        ncomb = 0
        for gk, vals in groups.items():
            if type(gk) is str:
                key = gk
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
                key = decode(gk)
            try:
                res = combine_fn(key, iter(vals))
                if res is None:
                    continue
                for k2, v2 in res:
                    kb2 = kb if k2 is key else encode(k2, "key")
                    vb2 = encode(v2, "value")
                    buf.extend(pack(len(kb2)))
                    buf.extend(kb2)
                    buf.extend(pack(len(vb2)))
                    buf.extend(vb2)
                    ncomb += 1
            except EncodeError as e:
                raise Failure(
                    "IPDC-ERROR: %s() produced %s, for key %s" % (combine_name, e, _short(key)), EXIT_USER
                )
            except Exception as e:
                if isinstance(e, MemoryError):
                    raise _out_of_memory(e, combine_name + "()", "for key " + _short(key))
                sys.stderr.write(_user_traceback(e))
                if _raised_in_runner(e):
                    raise Failure(
                        "IPDC-ERROR: %s() must yield (key, value) pairs or return an iterable of them "
                        "(or None); for key %s it gave something else: %s"
                        % (combine_name, _short(key), _describe(e)),
                        EXIT_USER,
                    )
                raise Failure(
                    "IPDC-ERROR: %s() raised %s for key %s" % (combine_name, _describe(e), _short(key)),
                    EXIT_USER,
                )
            if len(buf) > OUT_CHUNK:
                out.write(buf)
                del buf[:]
        groups.clear()
        stats["combine_output_records"] += ncomb
        stats["output_records"] += ncomb

    try:
        for raw in inp:
            lineno += 1
            if raw[-1:] == b"\n":
                raw = raw[:-2] if raw[-2:] == b"\r\n" else raw[:-1]
            line = raw.decode("utf-8", "surrogateescape")
            res = map_fn(line)
            if res is None:
                continue
            if combine_fn is None:
                for k, v in res:
                    kb = b"s" + k.encode("utf-8", "surrogateescape") if type(k) is str else encode(k, "key")
                    vb = b"j" + str(v).encode("ascii") if type(v) is int else encode(v, "value")
                    buf.extend(pack(len(kb)))
                    buf.extend(kb)
                    buf.extend(pack(len(vb)))
                    buf.extend(vb)
                    nout += 1
                if len(buf) > OUT_CHUNK:
                    out.write(buf)
                    del buf[:]
            else:
                for k, v in res:
                    nout += 1
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
                if len(groups) > COMBINE_MAX_KEYS or nout - grouped_at > COMBINE_MAX_VALUES:
                    flush_groups()
                    grouped_at = nout
        if combine_fn is not None:
            line = None
            flush_groups()
    except Failure:
        raise
    except EncodeError as e:
        raise Failure("IPDC-ERROR: map() produced %s, on line %d of this split: %s" % (e, lineno, _short(line)), EXIT_USER)
    except Exception as e:
        if isinstance(e, MemoryError):
            raise _out_of_memory(e, "map()", "on line %d of this split: %s" % (lineno, _short(line)))
        if isinstance(e, UnicodeEncodeError) and _raised_in_runner(e):
            raise Failure(
                "IPDC-ERROR: map() produced a key str that is not valid Unicode text (%s), on line %d of this split: %s"
                % (e, lineno, _short(line)),
                EXIT_USER,
            )
        sys.stderr.write(_user_traceback(e))
        if _raised_in_runner(e):
            raise Failure(
                "IPDC-ERROR: map() must yield (key, value) pairs or return an iterable of them (or None); "
                "on line %d of this split it gave something else (%s): %s" % (lineno, _describe(e), _short(line)),
                EXIT_USER,
            )
        raise Failure(
            "IPDC-ERROR: map() raised %s on line %d of this split: %s" % (_describe(e), lineno, _short(line)),
            EXIT_USER,
        )
    if buf:
        out.write(buf)
    stats["input_records"] = lineno
    stats["map_output_records"] = nout
    if combine_fn is None:
        stats["output_records"] = nout
    return stats


# ---------------------------------------------------------------- reduce


def read_records(inp, counter):
    """Yields (key datum, value datum) from framed records on `inp`."""
    buf = b""
    pos = 0
    unpack_from = _unpack_from
    while True:
        chunk = inp.read(OUT_CHUNK)
        if not chunk:
            if pos != len(buf):
                raise Failure("IPDC-ERROR: the runner's input ends in the middle of a record", EXIT_INTERNAL)
            return
        buf = buf[pos:] + chunk if pos < len(buf) else chunk
        pos = 0
        n = len(buf)
        while pos + 4 <= n:
            ks = pos + 4
            ke = ks + unpack_from(buf, pos)[0]
            if ke + 4 > n:
                break
            vs = ke + 4
            ve = vs + unpack_from(buf, ke)[0]
            if ve > n:
                break
            counter[0] += 1
            yield buf[ks:ke], buf[vs:ve]
            pos = ve


def run_reduce(reduce_fn, inp, out):
    counter = [0]
    recs = read_records(inp, counter)
    lookahead = [next(recs, None)]
    groups = 0
    nout = 0
    buf = bytearray()
    pack = _pack
    key = None

    def values(kb, first):
        yield decode(first)
        for k, v in recs:
            if k != kb:
                lookahead[0] = (k, v)
                return
            yield decode(v)
        lookahead[0] = None

    try:
        while lookahead[0] is not None:
            kb, first = lookahead[0]
            lookahead[0] = None
            groups += 1
            key = decode(kb)
            vals = values(kb, first)
            res = reduce_fn(key, vals)
            if res is not None:
                for k, v in res:
                    kb2 = kb if k is key else encode(k, "key")
                    vb = b"j" + str(v).encode("ascii") if type(v) is int else encode(v, "value")
                    buf.extend(pack(len(kb2)))
                    buf.extend(kb2)
                    buf.extend(pack(len(vb)))
                    buf.extend(vb)
                    nout += 1
            # Skip the values reduce() did not read.
            for _ in vals:
                pass
            if len(buf) > OUT_CHUNK:
                out.write(buf)
                del buf[:]
    except Failure:
        raise
    except EncodeError as e:
        raise Failure("IPDC-ERROR: reduce() produced %s, for key %s" % (e, _short(key)), EXIT_USER)
    except Exception as e:
        if isinstance(e, MemoryError):
            raise _out_of_memory(e, "reduce()", "for key " + _short(key))
        sys.stderr.write(_user_traceback(e))
        if _raised_in_runner(e):
            raise Failure(
                "IPDC-ERROR: reduce() must yield (key, value) pairs or return an iterable of them "
                "(or None); for key %s it gave something else: %s" % (_short(key), _describe(e)),
                EXIT_USER,
            )
        raise Failure("IPDC-ERROR: reduce() raised %s for key %s" % (_describe(e), _short(key)), EXIT_USER)
    if buf:
        out.write(buf)
    return {
        "input_records": counter[0],
        "map_output_records": 0,
        "combine_output_records": 0,
        "reduce_input_groups": groups,
        "output_records": nout,
    }


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
