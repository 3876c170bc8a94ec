"""Finding the final answers in a math completion, and cleaning their LaTeX.

A completion's answers are the contents of its `\\boxed{...}` commands and of its
`<answer>...</answer>` tags (an answer tag that holds boxes counts as those boxes),
in the order they appear; the last one is *the* answer. All of them are returned
so that the checker can see hedging (several different boxed answers).

There is deliberately no fallback to "the last number in the text": a completion
without a box or answer tag has no answer (rewarding stray numbers is a known hack).

Everything here is linear in the length of the completion, so it is safe to run on
hostile text before any time limit applies.
"""

from __future__ import annotations

import bisect
import re

from assay.verifiers.reasoning import outside_reasoning

#: Longest answer we hand to the LaTeX parser (characters). Real final answers are
#: short; the parser's cost grows fast with length and nesting.
MAX_ANSWER_CHARS = 1000
#: Deepest bracket nesting accepted in an answer: ( [ { and \left( count alike.
#: math-verify's ANTLR parser slows down exponentially with nesting (a quarter of a
#: second at 4 levels of braces, seconds at 12, minutes at 25); real answers use few.
MAX_NESTING = 12

_BOXED = re.compile(r"\\boxed\s*\{")
_OPEN_TAG, _CLOSE_TAG = "<answer>", "</answer>"


def _closing_brace(text: str, start: int) -> int | None:
    """Index of the `}` that closes the `{` just before `start`, or None when unclosed.

    Escaped braces (`\\{`, `\\}`) are literal characters, not structure.
    """
    depth = 1
    i = start
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return None


def boxed_contents(text: str) -> list[tuple[int, str]]:
    """(position, content) of every outermost `\\boxed{...}` in `text`, in order.

    One pass over the text with a stack of open braces (so that hostile text such as
    ten thousand unclosed boxes costs linear time). An unclosed box (a truncated
    completion) is skipped; a box inside a box counts once, as the outer one (its
    content is unwrapped by `clean_answer`). Escaped braces are not structure.
    """
    box_at = {m.end() - 1: m.start() for m in _BOXED.finditer(text)}  # its "{" -> its "\\"
    if not box_at:
        return []
    spans: list[tuple[int, int, int]] = []  # (start of \\boxed, first content char, its "}")
    stack: list[int] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "{":
            stack.append(i)
        elif ch == "}" and stack:
            opened = stack.pop()
            if opened in box_at:
                spans.append((box_at[opened], opened + 1, i))
        i += 1
    found: list[tuple[int, str]] = []
    last_end = -1
    for start, first, end in sorted(spans):
        if start > last_end:  # not inside the previous outermost box
            found.append((start, text[first:end]))
            last_end = end
    return found


def answer_tag_spans(text: str) -> list[tuple[int, str]]:
    """(position, content) of every `<answer>...</answer>` pair in `text`, in order."""
    found = []
    pos = 0
    while True:
        start = text.find(_OPEN_TAG, pos)
        if start < 0:
            return found
        end = text.find(_CLOSE_TAG, start + len(_OPEN_TAG))
        if end < 0:
            return found
        found.append((start, text[start + len(_OPEN_TAG) : end]))
        pos = end + len(_CLOSE_TAG)


def final_answers(completion: str) -> list[str]:
    """Every final answer in a completion, in order; the last is the answer.

    Boxes count wherever they are outside reasoning blocks (`<think>...</think>`: drafts,
    not answers). An `<answer>` tag that contains boxes is replaced by them
    (`<answer>\\boxed{5}</answer>` is one answer, 5); one without boxes counts with its
    whole (stripped) content. Empty answers are dropped.
    """
    completion = outside_reasoning(completion)
    boxes = boxed_contents(completion)
    items = list(boxes)
    box_positions = [pos for pos, _ in boxes]  # in increasing order
    for start, content in answer_tag_spans(completion):
        end = start + len(_OPEN_TAG) + len(content)
        first_box = bisect.bisect_left(box_positions, start)
        if first_box == len(box_positions) or box_positions[first_box] >= end:
            items.append((start, content))
    items.sort(key=lambda item: item[0])
    return [content.strip() for _, content in items if content.strip()]


#: a number as written in prose: optional sign, digits with thousands commas, decimals
_NUMBER = re.compile(r"(?<![\w.])[-−]?\d{1,3}(?:,\d{3})+(?:\.\d+)?(?![\d])|(?<![\w.])[-−]?\d+(?:\.\d+)?")


def last_number(completion: str) -> str | None:
    """The last number in the completion's text outside reasoning blocks (`1,234` is
    1234, `−5` is -5), or None. The lenient reading of lm-evaluation-harness's "flexible
    extract", for models too small to follow a format: it cannot see hedging."""
    found = _NUMBER.findall(outside_reasoning(completion))
    if not found:
        return None
    return found[-1].replace(",", "").replace("−", "-")


_MATH_DELIMITERS = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"))
# Upright constants that math-verify mis-reads: `\mathrm{e}` ends its extraction early
# (so `1-\frac{1}{\mathrm{e}}` and `1+\frac{1}{\mathrm{e}}` both became the same
# fragment) or is dropped (`2\mathrm{e}` became 2); `\mathrm{i}` fails to parse.
_UPRIGHT_CONSTANT = re.compile(
    r"\\(?:mathrm|text|textrm|operatorname|mathit|rm)\s*\{\s*([ei])\s*\}"
)
_EMPTY_SET = re.compile(r"\\varnothing\b")


def clean_answer(answer: str) -> str:
    """Normalise an answer's LaTeX before parsing: math delimiters, nested boxes and the
    notations math-verify is known to mis-read."""
    text = answer.strip()
    if len(text) > MAX_ANSWER_CHARS:
        return text  # refused by `too_complex` anyway; do not spend time on it
    changed = True
    while changed:  # peel `$...$`, `\(...\)` and boxes wrapped around the whole answer
        changed = False
        for left, right in _MATH_DELIMITERS:
            if (
                len(text) > len(left) + len(right)
                and text.startswith(left)
                and text.endswith(right)
            ):
                text, changed = text[len(left) : -len(right)].strip(), True
        box = _BOXED.match(text)
        if box is not None and _closing_brace(text, box.end()) == len(text) - 1:
            text, changed = text[box.end() : -1].strip(), True
    text = _UPRIGHT_CONSTANT.sub(r"\1", text)
    text = _EMPTY_SET.sub(r"\\emptyset", text)
    return text


def nesting_depth(text: str) -> int:
    """Deepest nesting of ( [ { in `text` (escaped braces count too; a cheap upper bound)."""
    depth = deepest = 0
    for ch in text:
        if ch in "([{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in ")]}":
            depth = max(0, depth - 1)
    return deepest


def too_complex(answer: str) -> str | None:
    """Why an answer is refused before parsing (too long, nested too deep), or None."""
    if len(answer) > MAX_ANSWER_CHARS:
        return f"answer longer than {MAX_ANSWER_CHARS} characters"
    if nesting_depth(answer) > MAX_NESTING:
        return f"answer nested deeper than {MAX_NESTING} brackets"
    return None


def plain_text_key(answer: str) -> str:
    """A whitespace- and delimiter-insensitive form of an answer, for comparing answers
    that cannot be parsed (never for deciding that two parsed values differ)."""
    text = clean_answer(answer)
    for noise in ("\\left", "\\right", "\\!", "\\,", "\\;", "\\displaystyle"):
        text = text.replace(noise, "")
    text = text.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    return "".join(text.split())
