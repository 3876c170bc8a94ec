"""The part of a completion that may hold its final answer: outside reasoning blocks.

A reasoning model writes its working in `<think>...</think>` and then answers. An answer
found only inside the working is a draft, not the answer the completion commits to, and
reward hacking exploits extractors that read it anyway ("the answer inside a reasoning
block only", found by `assay audit`). Every built-in extractor reads `outside_reasoning`.
"""

from __future__ import annotations

OPEN, CLOSE = "<think>", "</think>"


def outside_reasoning(completion: str) -> str:
    """`completion` without its reasoning blocks. Linear time.

    - text before a first `</think>` that no `<think>` opened is reasoning too (chat
      templates that end the prompt with `<think>` leave only the closing tag);
    - every `<think>...</think>` block is removed;
    - a `<think>` never closed runs to the end (a completion cut off mid-thought).
    A completion without these tags is returned unchanged.
    """
    if OPEN not in completion and CLOSE not in completion:
        return completion
    first_close, first_open = completion.find(CLOSE), completion.find(OPEN)
    if first_close >= 0 and (first_open < 0 or first_close < first_open):
        completion = completion[first_close + len(CLOSE) :]
    parts, pos = [], 0
    while True:
        start = completion.find(OPEN, pos)
        if start < 0:
            parts.append(completion[pos:])
            break
        parts.append(completion[pos:start])
        end = completion.find(CLOSE, start + len(OPEN))
        if end < 0:
            break  # unclosed: the rest is reasoning
        pos = end + len(CLOSE)
    return "".join(parts)
