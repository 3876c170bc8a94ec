"""The judge: runs assert-style tests against solutions that live in other processes.

This file is the program the code environment sends into the sandbox; it
imports only the standard library, and is one file (longer than most) because
it is shipped into the jail whole. Why the tests and the solution live apart: a
grader that runs the tests in the same interpreter as the solution can be
fooled by the solution (sys.exit(0) before the asserts, an object whose __eq__
is always True, patched builtins, frames or gc walked to write "passed" into the
grader). One run judges a batch of tasks, one after another:

1. Before it reads any solution or test, the judge forks the *spawner*, and every
   candidate is forked from the spawner: no candidate's memory holds another
   task's tests, its own tests, or another candidate's solution.
2. A *candidate* process per task receives its solution, loads it and then only
   answers calls: arguments in, a result out, both as plain data (None, bool,
   int, float, complex, str, bytes, list, tuple, dict, set, frozenset, checked by
   exact type). Anything else is an error, so no object the solution built ever
   reaches the judge.
3. The judge runs the task's tests with `candidate` (and the entry point's name)
   bound to a proxy that makes those calls, so every `==` compares genuine
   built-in values the judge decoded itself. The judge rewrites each `assert` to
   record its outcome and continue (`record_asserts`; the host counts them with
   the same walk). Where the tests' source fixes every call they will make
   (`planned_calls`), the candidate receives those calls with its solution and
   answers them in turn, unasked; the proxy then reads the next answer.
4. The results go to the judge's original stdout, a pipe only the judge holds.
   The candidates' stdout and stderr go to stderr, and the judge and spawner are
   not dumpable, so a candidate cannot reach their file descriptors or memory
   through /proc (and the sandbox's seccomp filter forbids ptrace).
5. A candidate outlives neither its task nor leaves anything to the next: it
   leads a process group that a seccomp filter (no setsid, no setpgid) stops
   anything it starts from leaving; after its tests the spawner kills the group
   and waits until every process of it is gone, and the judge empties the scratch
   directories and restores their modes and times. Only then is the next
   candidate forked. Where the filter cannot be installed, the batch ends after
   that task and the host runs the rest in runs of their own.

Whatever a candidate does (exit, crash, hang, kill the judge or the spawner), the
worst it can achieve is that its calls fail or the batch stops: a task without a
result line is run again, alone, by the host; a missing line there scores 0.
"""

from __future__ import annotations

import ast
import binascii
import builtins
import gc
import json
import marshal
import os
import select
import struct
import sys
import time

RESULT_PREFIX = "ASSAY-JUDGE "
RECORD = "__assay_record__"
#: the name under which a rewritten assert reports the exception it failed on (`reason`)
REASON = "__assay_reason__"
_OK = "__assay_ok__"
_ERROR = "__assay_error__"
#: failed asserts whose exception is kept for the report (the first is what is shown)
REASONS_KEPT = 8
REASON_CHARS = 200
#: The run-writable directories (the sandbox's tmpfs mounts), emptied between candidates.
SCRATCH_DIRS = ("/work", "/tmp", "/dev/shm")
HELLO_WAIT = 1.0  #: seconds to wait for a candidate's first message after its tests
SPAWNER_WAIT = 5.0  #: seconds to wait for the spawner (a fork, or a process group's end)
SPAWN, END = 1, 2
_COMMAND = struct.Struct(">BI")  # op, task index
_PID = struct.Struct(">I")
PR_SET_DUMPABLE, PR_SET_SECCOMP, PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = 4, 22, 36, 38
SECCOMP_MODE_FILTER = 2
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
    as a failure, and is handed to `REASON` with the assert's number), record its outcome
    under its number, carry on. Returns the count.

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
    why = ast.Expr(ast.Call(name(REASON, ast.Load()), [ast.Constant(number, **at), name(_ERROR, ast.Load())],
                            [], **at), **at)
    handler = ast.ExceptHandler(name("Exception", ast.Load()), _ERROR, [failed, why], **at)
    guarded = ast.Try([evaluate], [handler], [], [], **at)
    call = ast.Call(name(RECORD, ast.Load()), [ast.Constant(number, **at), name(_OK, ast.Load())], [], **at)
    return [guarded, ast.Expr(call, **at)]


# -- the calls the tests will make, known before they run ------------------------------

#: What a planned test may name besides its candidate: built-ins of plain values, which
#: neither read nor write anything a candidate could see (the scratch directories).
_PURE = frozenset({
    "abs", "all", "any", "bool", "dict", "divmod", "float", "frozenset", "int", "isinstance",
    "len", "list", "max", "min", "pow", "repr", "reversed", "round", "set", "sorted", "str",
    "sum", "tuple", "type", "True", "False", "None",
})
#: The expressions a planned assert may hold (no lambda, comprehension, walrus or yield).
_PLAIN_EXPRESSIONS = (
    ast.Constant, ast.Name, ast.Load, ast.Call, ast.keyword, ast.BinOp, ast.UnaryOp, ast.BoolOp,
    ast.Compare, ast.IfExp, ast.List, ast.Tuple, ast.Set, ast.Dict, ast.Subscript, ast.Slice,
    ast.Attribute, ast.operator, ast.unaryop, ast.boolop, ast.cmpop,
)
#: A plan goes into the candidate's call pipe with its solution, before the candidate
#: reads either: both must fit in the pipe (64 KiB on Linux) for that write not to wait.
PLAN_BYTES = 48 << 10


def planned_calls(tree: ast.Module, entry_point: str) -> list[dict] | None:
    """Every call the tests will make to the candidate, in order, as `Candidate` encodes
    them; None unless the source alone makes that certain.

    Certain means: the module holds only asserts, literal bindings and at most one
    function, `check(candidate)`, which holds only asserts (docstrings and `pass` aside);
    each assert names nothing but the candidate and built-ins of plain values (so nothing
    the judge evaluates touches what a candidate sees) and calls the candidate at most
    once, with literal arguments, before it evaluates anything that could raise or skip
    that call. `record_asserts` runs every assert whatever the one before it did, and the
    judge calls `check` after the module: so each of these calls is made, in this order.
    The candidate can then answer them one after another without waiting to be asked: a
    process switch each way per call saved (see `Candidate`).
    """
    names = {entry_point, "candidate"}  # both bound to the candidate in the tests' scope
    if names & _PURE or "check" in names:  # (a `check` defined later would mean two things)
        return None
    calls: list[dict] = []
    check = None
    for statement in tree.body:
        if type(statement) is ast.FunctionDef and statement.name == "check" and check is None:
            check = statement
        elif not (_is_docstring(statement) or _binds_a_literal(statement, names)
                  or _planned(statement, names, calls)):
            return None
    if check is None:
        return calls
    arguments = check.args
    if (check.decorator_list or check.returns is not None or arguments.posonlyargs
            or arguments.vararg or arguments.kwonlyargs or arguments.kwarg or arguments.defaults
            or len(arguments.args) != 1 or arguments.args[0].annotation):
        return None
    names = names | {arguments.args[0].arg}
    if names & _PURE:
        return None
    for statement in check.body:
        if not (_is_docstring(statement) or _planned(statement, names, calls)):
            return None
    return calls


def _planned(statement: ast.stmt, names: set[str], calls: list[dict]) -> bool:
    """Whether `statement` is `pass` or an assert that can be planned (its call, if any,
    appended to `calls`). An assert's message is never evaluated (record_asserts)."""
    if type(statement) is ast.Pass:
        return True
    if type(statement) is not ast.Assert:
        return False
    call = _the_call(statement.test, names)
    if call is False:
        return False
    if call is not None:
        calls.append(call)
    return True


#: The built-ins a plan may name, as this process started.
_PURE_AT_START = {name: builtins.__dict__.get(name) for name in _PURE}


def _leaves_the_builtins_alone(scope: dict) -> bool:
    """Whether, after a task's setup ran in `scope`, the names a plan may hold still mean the
    built-ins (the setup is the task's own code, trusted as its tests are, yet a helper
    named `sorted` or a patched `builtins.abs` would run where the plan assumed neither)."""
    return (scope.get("__builtins__") is builtins and not _PURE_AT_START.keys() & scope.keys()
            and all(builtins.__dict__.get(name) is value for name, value in _PURE_AT_START.items()))


def _is_docstring(statement: ast.stmt) -> bool:
    return type(statement) is ast.Expr and type(statement.value) is ast.Constant


def _binds_a_literal(statement: ast.stmt, names: set[str]) -> bool:
    if type(statement) is not ast.Assign:
        return False
    for target in statement.targets:
        # (not `check`, the candidate's names or a dunder such as __builtins__)
        if type(target) is not ast.Name or target.id in _PURE or target.id in names \
                or target.id == "check" or target.id.startswith("_"):
            return False
    return _literal(statement.value) is not _NOT_LITERAL


_NOT_LITERAL = object()


def _literal(node: ast.AST) -> object:
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return _NOT_LITERAL


def _the_call(test: ast.expr, names: set[str]) -> dict | None | bool:
    """The call message of the one candidate call `test` makes (None: it makes none), or
    False when the test cannot be planned. `names`: the candidate's names."""
    uses = 0
    for node in ast.walk(test):
        if not isinstance(node, _PLAIN_EXPRESSIONS):
            return False
        if type(node) is ast.Name:
            if node.id in names:
                uses += 1
            elif node.id not in _PURE:
                return False
        elif type(node) is ast.Attribute and node.attr.startswith("_"):
            return False
    if uses == 0:
        return None
    call = _first_effect(test, names)
    if uses != 1 or call is None or any(type(a) is ast.Starred for a in call.args):
        return False
    args = [_literal(a) for a in call.args]
    kwargs = {k.arg: _literal(k.value) for k in call.keywords}
    if None in kwargs or any(v is _NOT_LITERAL for v in (*args, *kwargs.values())):
        return False
    try:
        return {"args": [encode(a) for a in args], "kwargs": {k: encode(v) for k, v in kwargs.items()}}
    except (TypeError, ValueError, RecursionError):
        return False


def _first_effect(node: ast.expr, names: set[str]) -> ast.Call | None:
    """The candidate's call, if evaluating `node` makes it before anything that could raise
    or branch; else None. Loading a name and building a literal cannot do either."""
    kind = type(node)
    if kind is ast.Call and type(node.func) is ast.Name and node.func.id in names:
        return node
    if kind is ast.Name or _literal(node) is not _NOT_LITERAL:
        return None
    if kind is ast.Call:
        parts = [node.func, *node.args, *(k.value for k in node.keywords)]
    elif kind is ast.BinOp:
        parts = [node.left, node.right]
    elif kind is ast.Compare:
        parts = [node.left, node.comparators[0]]
    elif kind is ast.UnaryOp:
        parts = [node.operand]
    elif kind is ast.BoolOp:
        parts = [node.values[0]]
    elif kind is ast.List or kind is ast.Tuple or kind is ast.Set:  # items first, then the build
        parts = node.elts
    else:
        return None
    for part in parts:
        if type(part) is ast.Starred:  # unpacking iterates: it can raise
            return None
        call = _first_effect(part, names)
        if call is not None:
            return call
        if type(part) is not ast.Name and _literal(part) is _NOT_LITERAL:
            return None  # part did something, before any call of the candidate
    return None


# -- messages between the two processes -----------------------------------------------


#: One encoder for every message (json.dumps with any option builds a new one per call).
_ENCODE = json.JSONEncoder(separators=(",", ":")).encode


def _frame(message: dict) -> bytes:
    data = _ENCODE(message).encode()
    return _LENGTH.pack(len(data)) + data


def _send(fd: int, message: dict, deadline: float | None = None) -> None:
    _send_bytes(fd, _frame(message), deadline)


def _send_bytes(fd: int, data: bytes, deadline: float | None) -> None:
    """Write all of data; with a deadline, fd is non-blocking and the wait is bounded."""
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
            continue
        except BlockingIOError:
            pass
        if deadline is None:
            select.select([], [fd], [])
            continue
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([], [fd], [], left)[1]:
            raise TimeoutError


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


#: Bytes read from a channel past the message taken (by fd): a message usually arrives
#: whole, and one read takes it (the length and the body) in one system call.
_PENDING: dict[int, bytearray] = {}


def _receive(fd: int, deadline: float | None = None) -> dict:
    """The next message on fd. Any failure ends the channel: its unread bytes are dropped."""
    try:
        return _take_message(fd, _PENDING.setdefault(fd, bytearray()), deadline)
    except BaseException:
        _PENDING.pop(fd, None)
        raise


def _take_message(fd: int, buffer: bytearray, deadline: float | None) -> dict:
    while True:
        missing = 4096  # small reads: a large buffer is pages to fault in, in a fresh candidate
        if len(buffer) >= _LENGTH.size:
            (size,) = _LENGTH.unpack_from(buffer)
            if size > MAX_MESSAGE:
                raise ValueError(f"message of {size} bytes is too large")
            end = _LENGTH.size + size
            if len(buffer) >= end:
                message = json.loads(bytes(buffer[_LENGTH.size : end]))
                del buffer[:end]
                if type(message) is not dict:
                    raise ValueError("malformed message")
                return message
            missing = max(missing, min(end - len(buffer), 1 << 20))
        if deadline is not None:
            wait = deadline - time.monotonic()
            if wait <= 0 or not select.select([fd], [], [], wait)[0]:
                raise TimeoutError
        chunk = os.read(fd, missing)
        if not chunk:
            raise EOFError
        buffer += chunk


#: A candidate's first message, framed in advance (building it would cost it page faults).
HELLO = {flag: _LENGTH.pack(len(body)) + body for flag, body in ((True, b'{"isolated":true}'), (False, b'{"isolated":false}'))}


# -- the candidate process -------------------------------------------------------------


def serve_candidate(source: str, entry_point: str, calls: int, replies: int, code: str | None = None) -> None:
    """Load the solution (`code`: compiled by the host, marshalled, base64), then answer
    calls until the judge hangs up. Never returns."""
    namespace: dict = {"__name__": "solution", "__builtins__": builtins}
    problem = None
    try:
        if code is not None:
            program = marshal.loads(binascii.a2b_base64(code))
        else:
            program = compile(source, "solution.py", "exec", dont_inherit=True)
        exec(program, namespace)
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
        # a plan (`planned_calls`): every call of the tests at once, answered in turn
        for call in request["plan"] if "plan" in request else (request,):
            try:
                if problem is not None:
                    raise CandidateFailure(problem)
                args = [decode(a) for a in call["args"]]
                kwargs = {k: decode(v) for k, v in call["kwargs"].items()}
                reply = {"value": encode(function(*args, **kwargs))}
            except BaseException as exc:
                reply = {"error": f"{type(exc).__name__}: {exc}"[:1000], "type": type(exc).__name__}
            try:
                _send(replies, reply)
            except BaseException:
                os._exit(0)


# -- the judge's side of the calls -----------------------------------------------------


class Candidate:
    """Stands in for the solution's function inside the tests: each call is a message.

    The candidate's first message says whether it runs isolated (in a process group of
    its own that nothing it starts can leave); it is read before the first call. With a
    `plan` (sent to the candidate with its solution: `planned_calls`), the candidate
    answers the planned calls without being asked, and a call here reads the next answer,
    under the same deadline as an asked one.
    """

    def __init__(self, pid: int, calls: int, replies: int, deadline: float, plan: list[dict] | None = None) -> None:
        self.pid, self.calls, self.replies, self.deadline = pid, calls, replies, deadline
        self.dead: str | None = None
        self.timed_out = False
        self.isolated: bool | None = None  # None until its first message is read
        self.plan, self.planned = plan or [], 0  # the plan, and how many of its calls are made

    def __call__(self, *args: object, **kwargs: object) -> object:
        if self.dead is not None:
            raise CandidateFailure(self.dead)
        message = {"args": [encode(a) for a in args], "kwargs": {k: encode(v) for k, v in kwargs.items()}}
        planned = self.planned < len(self.plan)
        if planned and message != self.plan[self.planned]:  # never, if planned_calls is right
            self._kill("the judge planned other calls than the tests made")
            raise CandidateFailure(self.dead)
        try:
            self._read_hello(self.deadline)
            if planned:
                self.planned += 1
            else:
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

    def _read_hello(self, deadline: float) -> None:
        if self.isolated is None:
            self.isolated = False  # unless it says otherwise, in time
            self.isolated = _receive(self.replies, deadline).get("isolated") is True

    def settle(self) -> bool:
        """Whether the candidate ran isolated (its first message, if the tests never called it)."""
        try:
            self._read_hello(time.monotonic() + HELLO_WAIT)
        except (TimeoutError, EOFError, OSError, ValueError):
            pass
        return self.isolated is True

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


class Prctl:
    """prctl(2) through ctypes, made once: a candidate, forked from the spawner, then only
    calls it (each object it builds or converts would cost it a copy-on-write fault)."""

    def __init__(self, group_filter: bytes = b"") -> None:
        import ctypes

        self.function = ctypes.CDLL(None, use_errno=True).prctl
        self.function.restype = ctypes.c_int
        self.ulong = ctypes.c_ulong

        class SockFprog(ctypes.Structure):
            _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

        self.buffer = ctypes.create_string_buffer(group_filter, max(1, len(group_filter)))
        self.program = SockFprog(len(group_filter) // 8, ctypes.cast(self.buffer, ctypes.c_void_p))
        # the arguments of the one call a candidate makes, converted here
        self.install_args = (
            ctypes.c_int(PR_SET_SECCOMP),
            ctypes.c_ulong(SECCOMP_MODE_FILTER),
            ctypes.c_ulong(ctypes.addressof(self.program)),
            ctypes.c_ulong(0),
            ctypes.c_ulong(0),
        )
        self.has_filter = bool(group_filter)

    def __call__(self, option: int, arg: int) -> None:
        ulong = self.ulong
        if self.function(option, ulong(arg), ulong(0), ulong(0), ulong(0)) != 0:
            raise OSError(f"prctl({option}) failed")

    def install_filter(self) -> bool:
        """Load the group filter (the host builds it: seccomp.build_group_filter); False when
        there is none. The caller has no_new_privs already (the spawner set it)."""
        if not self.has_filter:
            return False
        if self.function(*self.install_args) != 0:
            raise OSError("prctl(PR_SET_SECCOMP) failed")
        return True


def _set_not_dumpable() -> None:
    try:
        Prctl()(PR_SET_DUMPABLE, 0)
    except Exception:  # pragma: no cover - the seccomp filter still forbids ptrace
        pass


# -- the spawner: where every candidate of a run is forked from ------------------------


def become_candidate(calls: int, replies: int, prctl: Prctl | None) -> None:
    """In a child of the spawner (or, alone, of the judge): lead a process group that nothing
    can leave (given the filter), say so, receive the solution, then serve."""
    import _signal  # the C function: signal.signal's enum wrapping touches many objects

    _signal.signal(_signal.SIGCHLD, _signal.SIG_DFL)  # the spawner's SIG_IGN would reap its children
    isolated = False
    try:
        os.setpgid(0, 0)
        # no setsid/setpgid from here on: whatever it starts stays in the group
        isolated = prctl is not None and prctl.install_filter()
    except Exception:
        pass
    calls, replies = os.dup(calls), os.dup(replies)  # above every fd below, then into place
    os.dup2(calls, 3)
    os.dup2(replies, 4)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.closerange(5, 1 << 16)  # sys.stdin reads fd 0: /dev/null now
    try:
        _send_bytes(4, HELLO[isolated], None)
        solution = _receive(3)
        source, entry_point, code = str(solution["source"]), str(solution["entry_point"]), solution.get("code")
    except BaseException:
        os._exit(0)
    serve_candidate(source, entry_point, 3, 4, code)


def fork_candidate(channel: tuple, prctl: Prctl | None) -> int:
    """Fork the candidate of `channel` ((calls pipe), (replies pipe)); returns its pid. The
    forking process gives up the candidate's ends; the candidate keeps no other fd of it
    (`become_candidate` closes all but its two ends and the standard streams)."""
    (calls_r, _), (_, replies_w) = channel
    pid = os.fork()
    if pid == 0:
        become_candidate(calls_r, replies_w, prctl)
    os.close(calls_r)
    os.close(replies_w)
    return pid


def serve_spawner(commands: int, answers: int, channels: list, group_filter: bytes) -> None:
    """The spawner: forked before the judge reads any solution or test, so its memory (and
    every candidate's, forked from it) holds none. Never returns.

    On `SPAWN i` it forks candidate i and answers its pid; on `END i` it kills candidate
    i's process group and waits until every process of it is gone. As a child subreaper
    it adopts what a candidate orphans, and as it ignores SIGCHLD the kernel reaps its
    children: no exit status, nothing a candidate chose, ever enters this memory.
    """
    import signal

    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    prctl = Prctl(group_filter)
    prctl(PR_SET_CHILD_SUBREAPER, 1)
    prctl(PR_SET_NO_NEW_PRIVS, 1)  # inherited: a candidate may install the group filter
    pids: dict[int, int] = {}
    while True:
        try:
            op, index = _COMMAND.unpack(_read_exact(commands, _COMMAND.size, None))
        except BaseException:
            os._exit(0)
        if op == SPAWN:
            pid = fork_candidate(channels[index], prctl)
            pids[index] = pid
        else:
            try:
                os.killpg(pids[index], 9)
            except OSError:
                pass
            try:
                while True:
                    os.waitpid(-1, 0)  # with SIGCHLD ignored: blocks until no child is left
            except ChildProcessError:
                pass
            pid = 0
        os.write(answers, _PID.pack(pid))


class Spawner:
    """The judge's handle on the spawner process.

    A batch of one needs no spawner (`alone`): its candidate is forked from the judge,
    which has then read nothing of the task, and nothing follows it. That saves a process.
    """

    def __init__(self, channels: list, group_filter: bytes, private: tuple[int, ...], alone: bool) -> None:
        self.channels, self.alone = channels, alone
        if alone:
            return
        commands_r, self.commands = os.pipe()
        self.answers, answers_w = os.pipe()
        if os.fork() == 0:
            for fd in (self.commands, self.answers, *private):  # the judge's alone
                os.close(fd)
            devnull = os.open(os.devnull, os.O_RDONLY)
            os.dup2(devnull, 0)  # stdin holds the tests
            os.close(devnull)
            for (_, calls_w), (replies_r, _) in channels:
                os.close(calls_w)
                os.close(replies_r)
            serve_spawner(commands_r, answers_w, channels, group_filter)
        os.close(commands_r)
        os.close(answers_w)
        for (calls_r, _), (_, replies_w) in channels:
            os.close(calls_r)
            os.close(replies_w)

    def ask(self, op: int, index: int) -> int | None:
        """Send a command; its answer (a pid, or 0 when a candidate is gone), or None when
        the spawner did not answer in time (a candidate stopped it: stop the batch)."""
        if self.alone:  # nothing follows its one candidate: no END to carry out
            return fork_candidate(self.channels[index], None) if op == SPAWN else 0
        try:
            _send_bytes(self.commands, _COMMAND.pack(op, index), time.monotonic() + SPAWNER_WAIT)
            (answer,) = _PID.unpack(_read_exact(self.answers, _PID.size, time.monotonic() + SPAWNER_WAIT))
            return answer
        except (TimeoutError, EOFError, OSError):
            return None


# -- the judge process -----------------------------------------------------------------


class Scratch:
    """The scratch directories as the first candidate found them, and putting them back.

    They start empty (the sandbox empties them after every run). A candidate's files,
    modes and times are a channel to the next candidate, so between two candidates each
    directory is emptied and given back its mode and times. The judge does this, not the
    spawner: the names a candidate chose must not enter the memory candidates fork from.
    (The fork server's `_Scratch` does the same after every run; this file goes into the
    jail alone, so it has its own.)
    """

    def __init__(self, paths: tuple[str, ...]) -> None:
        self.clean: dict[str, tuple] = {}
        self.usable = True
        for path in paths:
            try:
                self.clean[path] = self._state(path)
                self.usable = self.usable and not os.listdir(path)
            except OSError:
                continue

    @staticmethod
    def _state(path: str) -> tuple:
        st = os.stat(path)
        return (st.st_size, st.st_nlink, st.st_mode, st.st_uid, st.st_gid, st.st_atime_ns, st.st_mtime_ns)

    def reset(self) -> bool:
        """Put every directory back; False if that failed (then no other candidate may run)."""
        if not self.usable:
            return False
        try:
            for path, state in self.clean.items():
                if self._state(path) == state:
                    continue
                _empty_dir(path)
                os.chmod(path, state[2] & 0o7777)
                os.utime(path, ns=(state[5], state[6]))
                if self._state(path)[2:] != state[2:]:
                    return False
            return True
        except OSError:
            return False


def _empty_dir(path: str) -> None:
    os.chmod(path, 0o700)  # a candidate may have taken the permissions away
    for entry in list(os.scandir(path)):
        if entry.is_dir(follow_symlinks=False):
            _empty_dir(entry.path)
            os.rmdir(entry.path)
        else:
            os.unlink(entry.path)


def prepare_tests(source: str, entry_point: str) -> tuple[object, list[dict] | None]:
    """The tests compiled with their asserts rewritten (`record_asserts`), and the calls they
    will make (`planned_calls`). The host does this once per task (code_harness.prepared_tests);
    the judge does it only where it cannot load the host's code."""
    tree = ast.parse(source, "tests.py")
    plan = planned_calls(tree, entry_point)
    record_asserts(tree)
    return compile(tree, "tests.py", "exec", dont_inherit=True), plan


#: (source, entry point) -> (code, the planned calls) of the tests; (source, "") -> (code,
#: None) of a setup; for this run
_CODE: dict[tuple[str, str], tuple[object, list[dict] | None]] = {}


def _compiled(source: str, entry_point: str | None) -> tuple[object, list[dict] | None]:
    """The tests (`prepare_tests`), or with no entry point a setup, compiled once per run: a
    batch often holds several completions of one task."""
    key = (source, entry_point or "")
    if key not in _CODE:
        if entry_point is None:
            _CODE[key] = compile(source, "setup.py", "exec", dont_inherit=True), None
        else:
            _CODE[key] = prepare_tests(source, entry_point)
    return _CODE[key]


def judge_task(
    pid: int, index: int, channel: tuple, solution: dict, spec: dict, started: float,
    prepared: tuple[object, list[dict] | None] | None = None,
) -> tuple[dict, bool]:
    """Run one task's tests against its fresh candidate (`pid`, forked at `started`): (the
    report, whether the candidate ran isolated). `prepared`: the tests' code and plan as
    the host made them (`code_harness.prepared_tests`), else they are made here."""
    (_, calls_w), (replies_r, _) = channel
    os.set_blocking(calls_w, False)  # a large call to a candidate that never reads must not outlive the deadline
    deadline = started + float(spec["budget_s"])
    entry_point = solution["entry_point"]
    if prepared is not None:
        (tests, plan), unusable = prepared, None
    else:
        try:  # before the solution is sent: it goes with the plan
            tests, plan, unusable = *_compiled(spec["tests"], entry_point), None
        except Exception as exc:  # (e.g. a `return` outside a function: it parses, then fails here)
            tests, plan, unusable = None, None, exc
    outcomes: dict[int, bool] = {}
    reasons: dict[int, str] = {}  # test id -> the exception its assert failed on, the first few

    def record(test_id: int, passed: bool) -> None:
        outcomes[test_id] = outcomes.get(test_id, True) and passed is True

    def reason(test_id: int, exc: BaseException) -> None:
        if test_id not in reasons and len(reasons) < REASONS_KEPT:
            try:  # (a test's own exception class could make even its `args` raise)
                reasons[test_id] = failure_reason(exc)
            except Exception:
                reasons[test_id] = "an exception"

    scope = {"__name__": "tests", "__builtins__": builtins, RECORD: record, REASON: reason}
    problem = None
    if spec.get("setup"):
        try:
            exec(_compiled(spec["setup"], None)[0], scope)
        except Exception as exc:  # helpers are optional; the tests will say if they mattered
            problem = f"setup raised {type(exc).__name__}: {exc}"
        if not _leaves_the_builtins_alone(scope):
            plan = None
    if not spec.get("call_check", True):
        plan = None  # the asserts in check() would not run
    message = _frame(solution)
    if plan:
        planned = _frame({"plan": plan})
        if len(message) + len(planned) <= PLAN_BYTES:  # else the calls are asked one by one
            message += planned
        else:
            plan = None
    candidate = Candidate(pid, calls_w, replies_r, deadline, plan)
    try:
        _send_bytes(calls_w, message, deadline)
    except (TimeoutError, EOFError, OSError):
        candidate._kill("the solution could not be sent")
    scope[entry_point] = candidate
    scope["candidate"] = candidate
    try:
        if unusable is not None:
            raise unusable
        exec(tests, scope)
        check = scope.get("check")
        if spec.get("call_check", True) and callable(check) and check is not candidate:
            check(candidate)
    except Exception as exc:
        problem = f"the tests stopped early: {type(exc).__name__}: {exc}"[:500]
    isolated = candidate.settle()
    candidate._kill("the tests are over")
    report = {
        "task": index,
        "outcomes": {str(k): v for k, v in outcomes.items()},
        "reasons": {str(k): v for k, v in reasons.items()},
        "problem": problem,
        "timed_out": candidate.timed_out,
    }
    return report, isolated


def failure_reason(exc: BaseException) -> str:
    """What an assert failed on, in at most REASON_CHARS characters: the exception's type
    and its message where that is one string (a solution's exception crosses over as its
    type and text, `_as_exception`; a CandidateFailure says what went wrong with the
    solution: it did not load, ran out of time, died). Other arguments are left out:
    formatting them (a huge value a test used as a key) could cost the judge its budget."""
    args = getattr(exc, "args", ())
    message = args[0] if len(args) == 1 and isinstance(args[0], str) else ""
    name = type(exc).__name__
    if isinstance(exc, CandidateFailure):  # its own words, or the solution's "Type: text"
        text = message.removeprefix(f"{name}: ") or name
    elif message.startswith(f"{name}: "):  # a solution's built-in exception, already named
        text = message
    else:
        text = f"{name}: {message}" if message else name
    return text[:REASON_CHARS]


def _prepared(code: bytes, spec: dict) -> tuple[object, list[dict] | None] | None:
    """The host's compiled tests (marshalled) and their plan; None if they do not load."""
    try:
        return marshal.loads(code), spec.get("plan")
    except (ValueError, EOFError, TypeError):
        return None


def stay_on_this_cpu() -> None:
    """Keep this run (the judge, the spawner, every candidate) on the CPU it started on.

    A test calls its candidate and waits; the candidate answers and waits: a few hundred
    hand-overs a batch. Between processes on two CPUs each one wakes the other CPU
    (an interrupt, a cold cache); on one CPU it is a switch in place. Measured on HumanEval
    (2 cores, two workers): 7-11% more tasks a second. The scheduler still places each new
    run where it likes; only a batch's processes stay together, for as long as it lasts.
    Affinity is a scheduling hint, not a boundary: a candidate may change its own.
    """
    try:
        import ctypes

        cpu = ctypes.CDLL(None).sched_getcpu()
        if cpu >= 0:
            os.sched_setaffinity(0, {cpu})
    except (OSError, AttributeError):  # no such call here: the scheduler decides, as before
        pass


def let_the_candidate_run_on() -> None:
    """SCHED_BATCH for this run (the judge, the spawner, every candidate): a process it
    wakes does not take the CPU from the one running until that one waits or its slice
    ends. A candidate with a plan then answers call after call while the judge, woken by
    the first answer, waits its turn, and reads them all when it runs: without this, each
    answer switched to the judge and back. A scheduling hint like `stay_on_this_cpu`."""
    try:
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    except (OSError, AttributeError):  # not allowed or not here: the default policy, as before
        pass


def _import_nothing_from_scratch() -> None:
    """Take the run-writable directories (and the working directory, which is one) off
    the judge's import path: a solution writes there, and a module it left for the tests
    to import would run in the judge, beside its result pipe. Before any candidate
    exists, so none inherits the old path either."""
    def writable(entry: str) -> bool:
        path = os.path.abspath(entry or os.curdir)
        return any(path == root or path.startswith(root + "/") for root in SCRATCH_DIRS)

    for entry in [e for e in sys.path if writable(e)]:
        sys.path.remove(entry)
        sys.path_importer_cache.pop(entry, None)


def main() -> None:
    """Judge each task of stdin in turn, each against a candidate of its own; a result line
    per task. A task whose line is missing (the batch stopped) is the host's to run again."""
    _import_nothing_from_scratch()
    stay_on_this_cpu()
    let_the_candidate_run_on()
    (size,) = _LENGTH.unpack(_read_exact(0, _LENGTH.size, None))
    head = json.loads(_read_exact(0, size, None))
    tasks = head["tasks"]
    results_fd = os.dup(1)
    os.dup2(2, 1)  # everything but the result lines goes to stderr
    _set_not_dumpable()
    scratch = Scratch(SCRATCH_DIRS)
    channels = [(os.pipe(), os.pipe()) for _ in tasks]
    # What exists now lives as long as the run: keep the collector of every candidate away
    # from it, so that a collection there does not write to (and copy) all of its pages.
    gc.freeze()
    group_filter = bytes.fromhex(head.get("group_filter", ""))
    # The host's compiled tests are code for this interpreter only if its bytecode is ours.
    same_bytecode = head.get("magic") == sys.modules["_frozen_importlib_external"].MAGIC_NUMBER.hex()
    spawner = Spawner(channels, group_filter, private=(results_fd,), alone=len(tasks) == 1)
    for index, task in enumerate(tasks):
        started = time.monotonic()
        pid = spawner.ask(SPAWN, index)
        if pid is None:
            return
        # The candidate exists; only now read its solution and its tests.
        solution = {
            "source": _read_exact(0, task["solution_len"], None).decode("utf-8", errors="replace"),
            "entry_point": task["entry_point"],
        }
        spec = json.loads(_read_exact(0, task["spec_len"], None))
        code = _read_exact(0, task.get("code_len", 0), None)
        solution_code = _read_exact(0, task.get("solution_code_len", 0), None)
        if solution_code and same_bytecode:  # the candidate loads it instead of compiling
            solution["code"] = binascii.b2a_base64(solution_code, newline=False).decode()
        report, isolated = judge_task(pid, index, channels[index], solution, spec, started,
                                      _prepared(code, spec) if code and same_bytecode else None)
        line = RESULT_PREFIX + _ENCODE(report) + "\n"
        os.write(results_fd, line.encode())
        last = index == len(tasks) - 1
        # The next candidate only after every process of this one is gone and the
        # scratch directories are as they were: else the batch ends here.
        if last or not isolated or spawner.ask(END, index) is None or not scratch.reset():
            return
        (_, calls_w), (replies_r, _) = channels[index]
        os.close(calls_w)
        os.close(replies_r)
        _PENDING.pop(replies_r, None)


if __name__ == "__main__":
    main()
