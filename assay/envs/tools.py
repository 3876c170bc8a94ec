"""The Python tool: code the model writes in `<python>…</python>` during an episode runs
in the sandbox, and what it printed becomes the model's next message.

A tool call is hostile code, treated as the code env treats a submission: each call runs
in a fresh jail of the sandbox (nothing shared between calls, episodes or tasks), under a
timeout and a memory limit. A call that times out, crashes or floods its output is an
observation the model reads, never an error of the trainer; a sandbox that itself fails
is reported as such in the observation and counted in `tool_errors`.

An environment gets the tool by mixing `PythonTool` into its class and adding the
`ToolOptions` fields to its options (`--set env.tools=python`); its prompt then says how
to call the tool, and `respond_many` answers each reply that calls it.

With the compact prompts of the organisms (`prompt_style=compact`) the call is compact
too, for a model of 64 positions: a reply `#EXPR` evaluates the Python expression EXPR
(in the same jail) and the model reads `=VALUE`, the first line of what it printed, at
most 8 characters, a whole float printed as an integer (`#6/3` reads `=2`); a call that
fails, times out or prints nothing reads `=?`. Any other reply is the answer.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from assay.envs.episode import Episode

TOOLS = ("none", "python")
#: a tool call: the last `<python>` block of a reply
_CALL = re.compile(r"<python>(.*?)</python>", re.DOTALL)
#: a tool call in the JSON form of tool-calling chat templates (Hermes, Qwen 2.5 and their
#: kin): `<tool_call>{"name": "python", "arguments": {"code": "..."}}</tool_call>`
_JSON_CALL = re.compile(r"<tool_call>\s*(\{.*?\})\s*</tool_call>", re.DOTALL)

TOOL_INSTRUCTIONS = (
    "\nYou may run Python before you answer: write code between <python> and </python> "
    "and stop; you will see what it prints. Give your final answer as asked once you know it."
)


@dataclass
class ToolOptions:
    """The tool's knobs, shared by every env that offers it (`--set env.KEY=VALUE`)."""

    #: "none" (one reply per task) or "python" (the model may run Python before answering)
    tools: str = "none"
    #: most replies in an episode, tool calls and the final answer together (0: 3 with
    #: tools=python, else 1)
    max_turns: int = 0
    tool_calls: int = 2  #: most tool runs per episode
    tool_timeout: float = 2.0  #: seconds of wall time per tool run
    tool_seconds: float = 5.0  #: seconds of tool time per episode, all runs together
    tool_memory_mb: int = 256  #: memory limit of a tool run
    #: most characters of a tool's output shown to the model (stdout's start, stderr's end)
    tool_output_chars: int = 400

    def __post_init__(self) -> None:
        if self.tools not in TOOLS:
            raise ValueError(f"tools must be one of {TOOLS}, got {self.tools!r}")
        if self.max_turns == 0:
            self.max_turns = 3 if self.tools == "python" else 1
        if not 1 <= self.max_turns <= 16:
            raise ValueError(f"max_turns must be in 1..16, got {self.max_turns}")
        if self.max_turns > 1 and self.tools == "none":
            raise ValueError("max_turns > 1 needs tools=python: nothing else answers a reply")
        if self.tool_calls < 0:
            raise ValueError(f"tool_calls must be >= 0, got {self.tool_calls}")
        if not 0 < self.tool_timeout <= 60 or not 0 < self.tool_seconds <= 600:
            raise ValueError("need 0 < tool_timeout <= 60 and 0 < tool_seconds <= 600")
        if not 16 <= self.tool_memory_mb <= 4096:
            raise ValueError(f"tool_memory_mb must be in 16..4096, got {self.tool_memory_mb}")
        if not 40 <= self.tool_output_chars <= 20_000:
            raise ValueError(f"tool_output_chars must be in 40..20000, got {self.tool_output_chars}")


def tool_call(reply: str) -> str | None:
    """The code of a reply's last tool call, or None when it calls no tool: a `<python>`
    block, or a chat template's JSON call of the tool `python` (its `code` argument; a
    call of another tool, or JSON that does not parse, is no call)."""
    calls = [(m.start(), m.group(1).strip("\n")) for m in _CALL.finditer(reply)]
    for m in _JSON_CALL.finditer(reply):
        try:
            call = json.loads(m.group(1))
        except ValueError:
            continue
        arguments = call.get("arguments") if isinstance(call, dict) else None
        if call.get("name") == "python" and isinstance(arguments, dict) \
                and isinstance(arguments.get("code"), str):
            calls.append((m.start(), arguments["code"]))
    return max(calls)[1] if calls else None


def outside_calls(reply: str) -> str:
    """The reply with its tool calls blanked: where its answer is read."""
    return _JSON_CALL.sub(" ", _CALL.sub(" ", reply))


def observation(execution: Any, limit: int) -> str:
    """What the model reads after a tool run: its status, stdout's start and stderr's end,
    together at most `limit` characters of output (marked where cut)."""
    status = execution.status if execution.status != "ok" else "exit 0"
    if execution.status == "error":
        status = f"exit {execution.exit_code}"
    out, err = execution.stdout, execution.stderr
    keep_err = min(len(err), limit // 3) if out else min(len(err), limit)
    keep_out = limit - keep_err
    shown_out = out[:keep_out] + (" [cut]" if len(out) > keep_out or execution.stdout_truncated else "")
    shown_err = (("[cut] " if len(err) > keep_err or execution.stderr_truncated else "")
                 + (err[len(err) - keep_err:] if keep_err else ""))
    parts = [f"<output status=\"{status}\">", shown_out.rstrip("\n")]
    if shown_err.strip():
        parts.append("stderr: " + shown_err.rstrip("\n"))
    parts.append("</output>")
    return "\n".join(p for p in parts if p) + "\n"


#: the compact form: a reply that starts with this calls the tool on the rest
COMPACT_CALL = "#"
#: the most characters of a compact call's value the model reads
COMPACT_VALUE_CHARS = 8


def compact_code(reply: str) -> str | None:
    """The program of a compact call (`#EXPR` prints EXPR's value), or None for an answer."""
    text = reply.strip()
    if not text.startswith(COMPACT_CALL):
        return None
    expression = text[len(COMPACT_CALL):].strip()
    return (f"v = ({expression})\n"
            "print(int(v) if isinstance(v, float) and v.is_integer() else v)")


def compact_value(printed: str) -> str:
    """What the model reads of a compact call that printed `printed` (exit 0): `=VALUE`."""
    lines = printed.strip().splitlines()
    return "=" + lines[0][:COMPACT_VALUE_CHARS] if lines and lines[0] else "=?"


def compact_observation(execution: Any) -> str:
    """A compact call's observation: its value, or `=?` when it did not print one."""
    return compact_value(execution.stdout) if execution.status == "ok" else "=?"


def _reading_outside_calls(method: Callable[..., Any]) -> Callable[..., Any]:
    """`method` (an env's `extract(completion)` or `check_completion(task, completion)`)
    reading only the text outside the completion's tool calls when the tool is on."""
    if getattr(method, "_outside_calls", False):
        return method

    @functools.wraps(method)
    def reads_outside_calls(self: Any, *args: Any, **kwargs: Any) -> Any:
        if args and isinstance(args[-1], str) and self._reads_calls:
            args = (*args[:-1], outside_calls(args[-1]))
        elif isinstance(kwargs.get("completion"), str) and self._reads_calls:
            kwargs["completion"] = outside_calls(kwargs["completion"])
        return method(self, *args, **kwargs)

    reads_outside_calls._outside_calls = True  # type: ignore[attr-defined]
    return reads_outside_calls


class PythonTool:
    """Mixin for an `Environment` whose options include `ToolOptions`: with
    `tools=python`, a reply that calls the tool and gives no answer gets the tool's
    output as its observation; any other reply ends the episode.

    With the tool on, a completion's answer is read only outside its tool calls: the
    text of a `<python>` block or a JSON `<tool_call>` is code, not an answer, in the
    last reply of an episode too (else `<python>x='<answer>…</answer>'</python>` as the
    last reply would be verified as an answer while the same reply earlier is a call).
    Every subclass's `extract` and `check_completion` (its own or inherited) are wrapped
    to read `outside_calls(completion)`, so the env's own extractors need not know."""

    options: Any
    _tool_sandbox: Any = None
    #: a tool's output is a `tool` message in a chat template that has the role
    observation_role = "tool"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in ("extract", "check_completion"):
            method = getattr(cls, name, None)
            if callable(method):
                setattr(cls, name, _reading_outside_calls(method))

    @property
    def _reads_calls(self) -> bool:
        """Whether a completion's `<python>` blocks and JSON tool calls are tool calls
        (the tool is on, in its full form; a compact call is a whole reply `#EXPR`)."""
        return getattr(self.options, "tools", "none") == "python" and not self._compact

    def tool_prompt(self, prompt: str) -> str:
        """The prompt, with how to call the tool when the tool is on (a compact prompt has
        no room for words: the compact call is learned, not told)."""
        if self.options.tools != "python" or self._compact:
            return prompt
        return prompt + TOOL_INSTRUCTIONS

    @property
    def _compact(self) -> bool:
        return getattr(self.options, "prompt_style", "") == "compact"

    def _call(self, reply: str) -> str | None:
        """The code a reply runs, or None when it is an answer (which ends the episode)."""
        if self._compact:
            return compact_code(reply)
        code = tool_call(reply)
        if code is None or self.extract(outside_calls(reply)) is not None:  # type: ignore[attr-defined]
            return None
        return code

    def respond_many(self, episodes: Sequence[Episode]) -> list[str | None]:
        o = self.options
        if o.tools != "python":
            return [None] * len(episodes)
        answers: list[str | None] = [None] * len(episodes)
        jobs, owners = [], []
        for i, episode in enumerate(episodes):
            code = self._call(episode.final_reply)
            if code is None:
                continue  # an answer (or nothing to run) ends the episode
            if episode.tool_calls >= o.tool_calls or episode.tool_seconds >= o.tool_seconds:
                answers[i] = "=?" if self._compact else (
                    "<output status=\"refused\">no tool runs left: answer now</output>\n")
                continue
            timeout = min(o.tool_timeout, o.tool_seconds - episode.tool_seconds)
            jobs.append({"code": code, "timeout": max(timeout, 0.05), "memory_mb": o.tool_memory_mb})
            owners.append(i)
        if jobs:
            for i, execution in zip(owners, self._tool_runs(jobs), strict=True):
                episode = episodes[i]
                episode.tool_calls += 1
                episode.tool_seconds += execution.wall_time
                episode.tool_timeouts += execution.status == "timeout"
                episode.tool_errors += execution.status in ("error", "memory", "killed",
                                                            "sandbox_error")
                answers[i] = (compact_observation(execution) if self._compact
                              else observation(execution, o.tool_output_chars))
        return answers

    def _tool_runs(self, jobs: list[dict[str, Any]]) -> list[Any]:
        """One batch of tool runs in the env's sandbox (started on first use)."""
        if self._tool_sandbox is None:
            from assay.sandbox import Sandbox

            self._tool_sandbox = Sandbox(backend="local")
        return self._tool_sandbox.run_many(jobs)

    def close(self) -> None:
        if self._tool_sandbox is not None:
            self._tool_sandbox.close()
            self._tool_sandbox = None
        super().close()  # type: ignore[misc]

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()  # type: ignore[misc]
        state.pop("_tool_sandbox", None)  # worker processes do not travel
        return state
