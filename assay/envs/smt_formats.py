"""How an SMT task is put to a model and how its replies are read.

Two prompt styles (`SmtEnv`'s `prompt_style` option):

  smtlib:   instructions in words, the script as it is, the answer in `<answer>` tags;
  compact:  `x y|3*x+2*y=17;x>1:` (the declared constants, `|`, the assertions in infix
            joined by `;`, `:`); the completion itself is the answer (`x=3,y=4` or
            `unsat`) unless it has an `<answer>` tag. The model organism's form.

The compact form is rendered from the parsed script, so a user's own task gets one too;
a term it has no infix for (a quantifier, `ite`, `let`) is shown in SMT-LIB.
"""

from __future__ import annotations

from assay.envs.countdown_formats import extract_answer_tag
from assay.envs.task import Task
from assay.verifiers.smtlib import SmtLibError, parse_script, show

SMTLIB_PROMPT = (
    "Find values for the declared constants that make every assertion below true, or say "
    "that no such values exist.\n\n{smtlib}\n\n"
    "Give the final answer in <answer> </answer> tags: either an assignment of every "
    "declared constant, such as <answer>x = 8, y = -3/4, p = true</answer> (integers, "
    "rationals like -3/4 or decimals, true or false), or <answer>unsat</answer> if no "
    "assignment satisfies all the assertions."
)

# infix operator -> (text, precedence); higher binds tighter.
_INFIX = {
    "or": (" or ", 1), "and": (" and ", 2), "=>": ("->", 1),
    "=": ("=", 3), "distinct": ("!=", 3), "<": ("<", 3), "<=": ("<=", 3), ">": (">", 3),
    ">=": (">=", 3), "+": ("+", 4), "-": ("-", 4), "*": ("*", 5), "/": ("/", 5),
    "div": (" div ", 5), "mod": (" mod ", 5),
}
_SORT_MARK = {"Int": "", "Real": ":R", "Bool": ":B"}


def infix(term: object, depth: int = 0) -> tuple[str, int]:
    """(text, precedence) of a term in infix; SMT-LIB text where there is no infix form.

    Terms are at most `smtlib.MAX_DEPTH` deep, so the recursion is bounded.
    """
    if isinstance(term, str):
        return term, 9
    if not isinstance(term, list) or not term or not isinstance(term[0], str):
        return show(term), 9
    head, args = term[0], term[1:]
    if head == "-" and len(args) == 1:
        text, prec = infix(args[0], depth + 1)
        return "-" + (text if prec >= 6 else f"({text})"), 6
    if head == "not" and len(args) == 1:
        text, prec = infix(args[0], depth + 1)
        return "not " + (text if prec >= 6 else f"({text})"), 6
    if head in _INFIX and len(args) >= 2:
        symbol, prec = _INFIX[head]
        pieces = []
        for index, arg in enumerate(args):
            text, inner = infix(arg, depth + 1)
            # left-associative: a right operand of equal precedence needs parentheses
            needs = inner < prec or (inner == prec and index > 0 and head in ("-", "/", "div", "mod"))
            needs = needs or (prec == 3 and inner == 3)  # no chained comparisons
            pieces.append(f"({text})" if needs else text)
        if head == "+":  # `2*x+-3*y` reads better as `2*x-3*y` (unary minus binds tighter)
            return pieces[0] + "".join(p if p.startswith("-") else "+" + p for p in pieces[1:]), prec
        return symbol.join(pieces), prec
    return show(term), 9


def compact_prompt(smtlib: str) -> str:
    """`x y|x+y=10;x>7:` for a script; raises `SmtLibError` for one that cannot be read."""
    script = parse_script(smtlib)
    names = " ".join(f"{n}{_SORT_MARK[s]}" for n, s in script.constants.items())
    return names + "|" + ";".join(infix(t)[0] for t in script.terms) + ":"


class SmtLibFormat:
    """Instructions, the script as it is, the answer in `<answer>` tags."""

    def render(self, task: Task) -> str:
        return SMTLIB_PROMPT.format(smtlib=str(task["smtlib"]).strip())

    def extract(self, completion: str) -> str | None:
        return extract_answer_tag(completion)


class CompactFormat:
    """`x y|x+y=10;x>7:` → `x=8,y=2`: no instructions, the completion itself is the answer."""

    def render(self, task: Task) -> str:
        try:
            return compact_prompt(str(task["smtlib"]))
        except SmtLibError:  # the verifier reports the task's problem; show the text as it is
            return str(task["smtlib"]).strip() + ":"

    def extract(self, completion: str) -> str | None:
        tagged = extract_answer_tag(completion)
        if tagged is not None:
            return tagged
        return completion.strip() or None


#: The `prompt_style` option's values and the format each one selects.
PROMPT_FORMATS: dict[str, SmtLibFormat | CompactFormat] = {
    "smtlib": SmtLibFormat(),
    "compact": CompactFormat(),
}
