"""Lean 4 proof checker: is an answer a proof of the task's statement, as the REPL says?

The answer is either the proof alone (`by simp`, `:= by omega`, a term) or the whole
theorem; in the latter case its statement must be the task's, word for word (spaces
aside). Either way the command sent to Lean is the task's statement followed by the
answer's proof, so the statement cannot change. A proof is accepted only when Lean
reports no error, no `sorry` (nor `admit`), and `#print axioms` shows no axiom beyond
the standard ones (`propext`, `Classical.choice`, `Quot.sound`). Text that could
change Lean's environment rather than prove something (`axiom`, `import`, `unsafe`,
`@[extern]`, `@[implemented_by]`, `#exit`) is `invalid`, never run.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from typing import Any

from assay.verifiers.lean_repl import LeanRepl, ReplError, ReplTimeout
from assay.verifiers.verdict import Verdict

STANDARD_AXIOMS = ("propext", "Classical.choice", "Quot.sound")
#: Longest answer sent to Lean (characters).
MAX_PROOF_CHARS = 20_000

_SORRY = re.compile(r"\b(sorry|admit)\b")
_FORBIDDEN = re.compile(
    r"\baxiom\b|\bimport\b|\bunsafe\b|@\[\s*(extern|implemented_by)|#exit|\bopaque\b"
)
_DECLARATION = re.compile(r"^\s*(?:@\[[^\]]*\]\s*)?(theorem|lemma|example)\b")
_NAME = re.compile(r"^\s*(?:theorem|lemma)\s+([^\s(:{\[⦃]+)")
_FENCE = re.compile(r"```(?:lean4?|Lean)?[ \t]*\n(.*?)```", re.DOTALL)
_AXIOMS = re.compile(r"depends on axioms:\s*\[(.*?)\]", re.DOTALL)


def extract_proof(completion: str) -> str | None:
    """The last ```lean fenced block, else the last `<answer>` tag's text, else None."""
    blocks = _FENCE.findall(completion)
    if blocks:
        return blocks[-1].strip() or None
    end = completion.rfind("</answer>")
    start = completion.rfind("<answer>", 0, end) if end >= 0 else -1
    if start >= 0:
        return completion[start + len("<answer>") : end].strip() or None
    return None


def _squash(text: str) -> str:
    return " ".join(text.split())


def proof_command(statement: str, answer: str) -> str | Verdict:
    """The Lean command `statement := proof`, or the verdict when there is nothing to run."""
    if len(answer) > MAX_PROOF_CHARS:
        return Verdict.invalid(f"proof longer than {MAX_PROOF_CHARS} characters")
    forbidden = _FORBIDDEN.search(answer)
    if forbidden:
        return Verdict.invalid(f"{forbidden.group(0)!r} is not allowed in a proof")
    if _SORRY.search(answer):
        return Verdict.wrong(f"the proof uses {_SORRY.search(answer).group(0)}")  # type: ignore[union-attr]
    body = answer.strip()
    if _DECLARATION.match(body):
        squashed, wanted = _squash(body), _squash(statement)
        if not squashed.startswith(wanted):
            return Verdict.wrong("the theorem statement was changed")
        rest = squashed[len(wanted):].lstrip()
        if not rest.startswith(":="):
            return Verdict.wrong("the theorem statement was changed")
        # Keep the proof's own line breaks (tactic blocks are layout-sensitive): cut
        # the original text after its first `:=` that ends the statement.
        body = body[_statement_end(body, wanted):].lstrip()
    if body.startswith(":="):
        body = body[2:].lstrip()
    if not body:
        return Verdict.invalid("empty proof")
    return f"{statement.rstrip()} :=\n{body}"


def _statement_end(text: str, wanted: str) -> int:
    """Index in `text` just after the `:=` that follows its first `len(wanted)` non-space
    characters' worth of statement."""
    count, target = 0, len(wanted.replace(" ", ""))
    for index, ch in enumerate(text):
        if count == target:
            return text.index(":=", index) + 2
        if not ch.isspace():
            count += 1
    return len(text)


def theorem_name(statement: str) -> str | None:
    """The declared name of a `theorem`/`lemma` statement (None for `example`)."""
    found = _NAME.match(statement)
    return found.group(1) if found else None


def check_lean(
    repl: LeanRepl,
    statement: str,
    answer: str,
    *,
    header: str = "",
    time_limit: float = 60.0,
    allowed_axioms: Sequence[str] = STANDARD_AXIOMS,
) -> Verdict:
    """Run the proof through the REPL under `time_limit` seconds; the verdict says why."""
    command = proof_command(statement, answer)
    if isinstance(command, Verdict):
        return command
    deadline = time.monotonic() + time_limit
    try:
        env = _header_env(repl, header, deadline)
        request: dict[str, Any] = {"cmd": command}
        if env is not None:
            request["env"] = env
        reply = repl.command(request, deadline)
        verdict = judge(reply)
        if verdict is not None:
            return verdict
        name = theorem_name(statement)
        if name is None or not isinstance(reply.get("env"), int):
            return Verdict.right("Lean accepted the proof")
        axioms = repl.command({"cmd": f"#print axioms {name}", "env": reply["env"]}, deadline)
        return axioms_verdict(axioms, name, allowed_axioms)
    except ReplTimeout:
        return Verdict.timeout(f"Lean did not finish within {time_limit:g} s")
    except ReplError as exc:
        return Verdict.error(f"Lean REPL: {exc}"[:500])


def _header_env(repl: LeanRepl, header: str, deadline: float) -> int | None:
    """The REPL env after the task's header (`import Mathlib`), run once per process."""
    if not header.strip():
        return None
    if header not in repl.headers:
        reply = repl.command({"cmd": header}, deadline)
        errors = _errors(reply)
        if errors or not isinstance(reply.get("env"), int):
            raise ReplError(f"the header failed: {(errors or [str(reply)[:200]])[0]}")
        repl.headers[header] = reply["env"]
    return repl.headers[header]


def _errors(reply: dict[str, Any]) -> list[str]:
    messages = reply.get("messages") or []
    return [
        str(m.get("data", ""))[:300] for m in messages
        if isinstance(m, dict) and m.get("severity") == "error"
    ]


def judge(reply: dict[str, Any]) -> Verdict | None:
    """The verdict a command's reply gives on its own (errors, sorry), or None if it passed."""
    if "messages" not in reply and "message" in reply:  # the REPL refused the command
        return Verdict.error(f"Lean REPL: {str(reply['message'])[:300]}")
    errors = _errors(reply)
    if errors:
        return Verdict.wrong(f"Lean error: {' '.join(errors[0].split())}"[:500])
    if reply.get("sorries"):
        return Verdict.wrong("the proof leaves a sorry")
    for message in reply.get("messages") or []:
        if isinstance(message, dict) and "sorry" in str(message.get("data", "")):
            return Verdict.wrong("the proof uses sorry")
    return None


def axioms_verdict(reply: dict[str, Any], name: str, allowed: Sequence[str]) -> Verdict:
    """Accept when `#print axioms` lists only allowed axioms (or none)."""
    text = " ".join(
        str(m.get("data", "")) for m in reply.get("messages") or [] if isinstance(m, dict)
    )
    if "does not depend on any axioms" in text:
        return Verdict.right("Lean accepted the proof (no axioms)")
    found = _AXIOMS.search(text)
    if found is None:
        return Verdict.error(f"Lean REPL: no axiom list for {name}: {text[:200]!r}")
    used = [a.strip() for a in found.group(1).split(",") if a.strip()]
    extra = [a for a in used if a not in allowed]
    if extra:
        return Verdict.wrong(f"the proof depends on axiom(s) {', '.join(extra)}")
    return Verdict.right(f"Lean accepted the proof (axioms: {', '.join(used) or 'none'})")
