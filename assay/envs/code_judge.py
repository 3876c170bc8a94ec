"""The judge: runs assert-style tests against a solution that lives in another process.

This file is the program the code environment sends into the sandbox; it
imports only the standard library. Why two processes: a grader that runs the
tests in the same interpreter as the solution can be fooled by the solution
(sys.exit(0) before the asserts, an object whose __eq__ is always True,
patched builtins, frames or gc walked to write "passed" into the grader). Here:

1. The judge reads the solution's source from stdin and forks the *candidate*
   process before it reads anything else. The candidate loads the solution and
   then only answers calls: arguments in, a result out, both as plain data
   (None, bool, int, float, complex, str, bytes, list, tuple, dict, set,
   frozenset, checked by exact type). Anything else is an error, so no object the
   solution built ever reaches the judge.
2. Only then does the judge read the tests (the rest of stdin). The tests, with
   their expected values, never exist in the candidate's memory or on disk.
3. The judge runs the tests with `candidate` (and the entry point's name) bound
   to a proxy that makes those calls, so every `==` compares genuine built-in
   values the judge decoded itself. The judge rewrites each `assert` to record its
   outcome and continue (`record_asserts`; the host counts them with the same walk).
4. The results go to the judge's original stdout, a pipe only the judge holds.
   The candidate's stdout and stderr both go to stderr, and the judge is not
   dumpable, so the candidate cannot reach the judge's file descriptors or
   memory through /proc (and the sandbox's seccomp filter forbids ptrace).

Whatever the candidate does (exit, crash, hang, kill the judge), the worst it
can achieve is that its calls fail; a missing result line scores 0.
"""

from __future__ import annotations

import ast
import builtins
import json
import os
import select
import struct
import sys
import time

RESULT_PREFIX = "ASSAY-JUDGE "
RECORD = "__assay_record__"
_OK = "__assay_ok__"
_LENGTH = struct.Struct(">Q")
MAX_MESSAGE = 64 << 20
MAX_DEPTH = 200


class CandidateFailure(Exception):
    """A call to the solution failed: it raised, returned a non-plain value, hung or died."""


# -- plain-data codec (used on both sides) --------------------------------------------


def encode(value: object, depth: int = 0) -> object:
    """A JSON-ready form of a plain value; TypeError for anything else (subclasses included)."""
    if depth > MAX_DEPTH:
        raise ValueError("value nested too deeply")
    kind = type(value)
    if value is None or kind is bool or kind is str:
        return value
    if kind is int:
        return {"i": format(value, "x")}
    if kind is float:
        return {"f": value.hex()}
    if kind is complex:
        return {"c": [value.real.hex(), value.imag.hex()]}
    if kind is bytes:
        return {"b": value.hex()}
    if kind is list:
        return [encode(item, depth + 1) for item in value]
    if kind is tuple:
        return {"t": [encode(item, depth + 1) for item in value]}
    if kind is set or kind is frozenset:
        tag = "s" if kind is set else "fs"
        return {tag: [encode(item, depth + 1) for item in value]}
    if kind is dict:
        return {"d": [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in value.items()]}
    raise TypeError(f"returned a {kind.__name__!s:.60}, which is not plain data")


def decode(data: object, depth: int = 0) -> object:
    """The plain value `encode` described; ValueError for anything malformed."""
    if depth > MAX_DEPTH:
        raise ValueError("value nested too deeply")
    if data is None or type(data) is bool or type(data) is str:
        return data
    if type(data) is list:
        return [decode(item, depth + 1) for item in data]
    if type(data) is not dict or len(data) != 1:
        raise ValueError("malformed value")
    ((tag, body),) = data.items()
    if tag == "i" and type(body) is str:
        return int(body, 16)
    if tag == "f" and type(body) is str:
        return float.fromhex(body)
    if tag == "c" and type(body) is list and len(body) == 2:
        return complex(float.fromhex(body[0]), float.fromhex(body[1]))
    if tag == "b" and type(body) is str:
        return bytes.fromhex(body)
    if type(body) is not list:
        raise ValueError("malformed value")
    if tag == "t":
        return tuple(decode(item, depth + 1) for item in body)
    if tag == "s":
        return {decode(item, depth + 1) for item in body}
    if tag == "fs":
        return frozenset(decode(item, depth + 1) for item in body)
    if tag == "d":
        return {decode(k, depth + 1): decode(v, depth + 1) for k, v in body}
    raise ValueError(f"unknown tag {tag!r:.20}")


# -- the tests' asserts ---------------------------------------------------------------

#: The fields of a node that hold statements: an assert is a statement, so only these
#: lists can hold one (expressions cannot), and walking only them is what makes the
#: rewrite cheap. In `_fields` order, so the numbering follows the source.
_BODIES = ("body", "handlers", "orelse", "finalbody", "cases")


def _statement_lists(node: ast.AST) -> list[list]:
    return [getattr(node, name) for name in _BODIES if type(getattr(node, name, None)) is list]


def count_asserts(tree: ast.AST) -> int:
    """How many assert statements `record_asserts` would number in the tree."""
    count, pending = 0, [tree]
    while pending:
        for body in _statement_lists(pending.pop()):
            for node in body:
                count += type(node) is ast.Assert
                pending.append(node)
    return count


def record_asserts(tree: ast.AST) -> int:
    """Rewrite, in place, each `assert test, msg` as: evaluate test (an exception counts
    as a failure), record its outcome under its number, carry on. Returns the count.

    The numbers are those of `count_asserts`: depth first, in source order.
    """
    count = 0

    def rewrite(node: ast.AST) -> None:
        nonlocal count
        for body in _statement_lists(node):
            index = 0
            while index < len(body):
                statement = body[index]
                if type(statement) is not ast.Assert:
                    rewrite(statement)
                    index += 1
                    continue
                body[index : index + 1] = _recorded(statement, count)
                count += 1
                index += 2

    rewrite(tree)
    return count


def _recorded(statement: ast.Assert, number: int) -> list[ast.stmt]:
    at = {name: getattr(statement, name) for name in ("lineno", "col_offset", "end_lineno", "end_col_offset")}

    def name(id_: str, ctx: ast.expr_context) -> ast.Name:
        return ast.Name(id_, ctx, **at)

    evaluate = ast.Assign([name(_OK, ast.Store())], ast.Call(name("bool", ast.Load()), [statement.test], [], **at), **at)
    failed = ast.Assign([name(_OK, ast.Store())], ast.Constant(False, **at), **at)
    handler = ast.ExceptHandler(name("Exception", ast.Load()), None, [failed], **at)
    guarded = ast.Try([evaluate], [handler], [], [], **at)
    call = ast.Call(name(RECORD, ast.Load()), [ast.Constant(number, **at), name(_OK, ast.Load())], [], **at)
    return [guarded, ast.Expr(call, **at)]


# -- messages between the two processes -----------------------------------------------


def _send(fd: int, message: dict, deadline: float | None = None) -> None:
    data = json.dumps(message, separators=(",", ":")).encode()
    view = memoryview(_LENGTH.pack(len(data)) + data)
    while view:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([], [fd], [], left)[1]:
                raise TimeoutError
        view = view[os.write(fd, view) :]


def _read_exact(fd: int, size: int, deadline: float | None) -> bytes:
    chunks, left = [], size
    while left:
        if deadline is not None:
            wait = deadline - time.monotonic()
            if wait <= 0 or not select.select([fd], [], [], wait)[0]:
                raise TimeoutError
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _receive(fd: int, deadline: float | None = None) -> dict:
    (size,) = _LENGTH.unpack(_read_exact(fd, _LENGTH.size, deadline))
    if size > MAX_MESSAGE:
        raise ValueError(f"message of {size} bytes is too large")
    message = json.loads(_read_exact(fd, size, deadline))
    if type(message) is not dict:
        raise ValueError("malformed message")
    return message


# -- the candidate process -------------------------------------------------------------


def serve_candidate(source: str, entry_point: str, calls: int, replies: int) -> None:
    """Load the solution, then answer calls until the judge hangs up. Never returns."""
    namespace: dict = {"__name__": "solution", "__builtins__": builtins}
    problem = None
    try:
        exec(compile(source, "solution.py", "exec", dont_inherit=True), namespace)
    except BaseException as exc:  # SystemExit included: exiting early earns nothing
        problem = f"loading the solution raised {type(exc).__name__}: {exc}"
    function = namespace.get(entry_point)
    if problem is None and not callable(function):
        problem = f"the solution defines no function {entry_point!r}"
    while True:
        try:
            request = _receive(calls)
        except BaseException:
            os._exit(0)
        try:
            if problem is not None:
                raise CandidateFailure(problem)
            args = [decode(a) for a in request["args"]]
            kwargs = {k: decode(v) for k, v in request["kwargs"].items()}
            reply = {"value": encode(function(*args, **kwargs))}
        except BaseException as exc:
            reply = {"error": f"{type(exc).__name__}: {exc}"[:1000], "type": type(exc).__name__}
        try:
            _send(replies, reply)
        except BaseException:
            os._exit(0)


# -- the judge process -----------------------------------------------------------------


class Candidate:
    """Stands in for the solution's function inside the tests: each call is a message."""

    def __init__(self, pid: int, calls: int, replies: int, deadline: float) -> None:
        self.pid, self.calls, self.replies, self.deadline = pid, calls, replies, deadline
        self.dead: str | None = None
        self.timed_out = False

    def __call__(self, *args: object, **kwargs: object) -> object:
        if self.dead is not None:
            raise CandidateFailure(self.dead)
        message = {"args": [encode(a) for a in args], "kwargs": {k: encode(v) for k, v in kwargs.items()}}
        try:
            _send(self.calls, message, self.deadline)
            reply = _receive(self.replies, self.deadline)
        except TimeoutError:
            self.timed_out = True
            self._kill("the solution ran past the time limit")
            raise CandidateFailure(self.dead) from None
        except (EOFError, OSError, ValueError) as exc:
            self._kill(f"the solution's process ended or broke the protocol ({type(exc).__name__})")
            raise CandidateFailure(self.dead) from None
        if "error" in reply:
            raise _as_exception(reply)
        try:
            return decode(reply.get("value"))
        except (ValueError, TypeError, OverflowError, RecursionError) as exc:
            raise CandidateFailure(f"malformed result: {exc}") from None

    def _kill(self, why: str) -> None:
        self.dead = why
        try:
            os.kill(self.pid, 9)
        except OSError:
            pass


def _as_exception(reply: dict) -> Exception:
    """The solution's exception as a built-in exception type when it is one (so that tests
    expecting e.g. ValueError work), else CandidateFailure. The name alone crosses over."""
    kind = getattr(builtins, str(reply.get("type", "")), None)
    message = str(reply.get("error", ""))
    if isinstance(kind, type) and issubclass(kind, Exception) and kind.__module__ == "builtins":
        try:
            return kind(message)
        except Exception:
            pass
    return CandidateFailure(message)


def _set_not_dumpable() -> None:
    try:
        import ctypes

        ctypes.CDLL(None).prctl(4, ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0))
    except Exception:  # pragma: no cover - the seccomp filter still forbids ptrace
        pass


def _read_rest(fd: int) -> bytes:
    chunks = []
    while True:
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def main() -> None:
    started = time.monotonic()
    (size,) = _LENGTH.unpack(_read_exact(0, _LENGTH.size, None))
    head = json.loads(_read_exact(0, size, None))
    source = _read_exact(0, head["solution_len"], None).decode("utf-8", errors="replace")
    results_fd = os.dup(1)
    os.dup2(2, 1)  # everything but the result line goes to stderr
    _set_not_dumpable()
    calls_r, calls_w = os.pipe()
    replies_r, replies_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.dup2(calls_r, 3)
        os.dup2(replies_w, 4)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.closerange(5, 1 << 16)
        sys.stdin = open(0, closefd=False)
        serve_candidate(source, head["entry_point"], 3, 4)
    os.close(calls_r)
    os.close(replies_w)
    os.set_blocking(calls_w, False)  # a large call to a candidate that never reads must not outlive the deadline
    del source

    # From here on the candidate exists; only now read the tests.
    spec = json.loads(_read_rest(0))
    deadline = started + float(spec["budget_s"])
    candidate = Candidate(pid, calls_w, replies_r, deadline)
    outcomes: dict[int, bool] = {}

    def record(test_id: int, passed: bool) -> None:
        outcomes[test_id] = outcomes.get(test_id, True) and passed is True

    scope = {"__name__": "tests", "__builtins__": builtins, RECORD: record}
    problem = None
    if spec.get("setup"):
        try:
            exec(compile(spec["setup"], "setup.py", "exec", dont_inherit=True), scope)
        except Exception as exc:  # helpers are optional; the tests will say if they mattered
            problem = f"setup raised {type(exc).__name__}: {exc}"
    scope[head["entry_point"]] = candidate
    scope["candidate"] = candidate
    try:
        tree = ast.parse(spec["tests"], "tests.py")
        record_asserts(tree)
        exec(compile(tree, "tests.py", "exec", dont_inherit=True), scope)
        check = scope.get("check")
        if spec.get("call_check", True) and callable(check) and check is not candidate:
            check(candidate)
    except Exception as exc:
        problem = f"the tests stopped early: {type(exc).__name__}: {exc}"[:500]
    try:
        os.kill(pid, 9)
    except OSError:
        pass
    report = {
        "outcomes": {str(k): v for k, v in outcomes.items()},
        "problem": problem,
        "timed_out": candidate.timed_out,
    }
    line = RESULT_PREFIX + json.dumps(report, separators=(",", ":")) + "\n"
    os.write(results_fd, line.encode())


if __name__ == "__main__":
    main()
