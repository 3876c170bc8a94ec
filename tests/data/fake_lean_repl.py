"""A stand-in for the Lean 4 REPL that speaks its JSON protocol, for tests without Lean.

Commands are JSON objects followed by a blank line; each reply is one JSON object and a
blank line. It does not check proofs: a proof's words decide its fate, so that each of
the verifier's branches can be reached on purpose:
  `rfl`, `simp`, `omega`, `decide`, `exact`  -> accepted (`simp` depends on propext);
  `native_decide`                            -> accepted, depending on Lean.ofReduceBool;
  `FAKE_SORRY`                               -> a warning and a `sorries` entry;
  `SLEEP`                                    -> never answers (a timeout);
  `CRASH`                                    -> exits with status 3;
  anything else                              -> an `unsolved goals` error.
`import X` makes a new env; `#print axioms NAME` reports what NAME's proof used.
"""

import json
import re
import sys
import time

envs = [{}]  # env id -> {theorem name: axioms}


def reply(obj):
    sys.stdout.write(json.dumps(obj) + "\n\n")
    sys.stdout.flush()


def handle(request):
    cmd = request.get("cmd", "")
    base = request.get("env")
    if base is not None and not (isinstance(base, int) and 0 <= base < len(envs)):
        return {"message": f"unknown environment {base}"}
    known = dict(envs[base] if base is not None else {})
    if cmd.startswith("import "):
        envs.append({})
        return {"env": len(envs) - 1}
    found = re.match(r"#print axioms (\S+)", cmd)
    if found:
        name = found.group(1)
        if name not in known:
            return {"env": base, "messages": [{"severity": "error", "data": f"unknown constant '{name}'"}]}
        axioms = known[name]
        text = (f"'{name}' depends on axioms: [{', '.join(axioms)}]" if axioms
                else f"'{name}' does not depend on any axioms")
        return {"env": base, "messages": [{"severity": "info", "data": text}]}
    name_match = re.match(r"\s*(?:theorem|lemma)\s+(\S+)", cmd)
    name = name_match.group(1) if name_match else "_example"
    proof = cmd.split(":=", 1)[1] if ":=" in cmd else ""
    if "SLEEP" in proof:
        time.sleep(3600)
    if "CRASH" in proof:
        sys.exit(3)
    messages, sorries, axioms = [], [], None
    if "FAKE_SORRY" in proof:
        messages.append({"severity": "warning", "data": "declaration uses 'sorry'"})
        sorries.append({"pos": {"line": 2, "column": 0}, "goal": "⊢ True"})
        axioms = ["sorryAx"]
    elif "native_decide" in proof:
        axioms = ["propext", "Lean.ofReduceBool"]
    elif "simp" in proof:
        axioms = ["propext"]
    elif re.search(r"\b(rfl|omega|decide|exact)\b", proof):
        axioms = []
    else:
        messages.append({"severity": "error", "pos": {"line": 1, "column": 0},
                         "data": "unsolved goals\n⊢ False"})
    if axioms is not None:
        known[name] = axioms
    envs.append(known)
    out = {"env": len(envs) - 1, "messages": messages}
    if sorries:
        out["sorries"] = sorries
    return out


def main():
    buffer = ""
    for line in sys.stdin:
        if line.strip():
            buffer += line
            continue
        if buffer.strip():
            reply(handle(json.loads(buffer)))
        buffer = ""


if __name__ == "__main__":
    main()
