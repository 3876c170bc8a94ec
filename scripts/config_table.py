"""Write the configuration table of docs/training.md from `TrainConfig`'s field docs.

Each field of `assay.training.config.TrainConfig` is documented by a `#:` comment, at the
end of its line or on the line(s) just before it. This script turns those comments into
the table (option, default, meaning) between the marker comments

    <!-- config-table:start -->
    <!-- config-table:end -->

in docs/training.md. tests/test_docs.py fails when the table in the doc differs from
what the code generates.

    python scripts/config_table.py            # rewrite the table in docs/training.md
    python scripts/config_table.py --check    # exit 1 when the doc is out of date
    python scripts/config_table.py --print    # print the table only
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import io
import sys
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIG_SOURCE = ROOT / "assay" / "training" / "config.py"
DOC = ROOT / "docs" / "training.md"
START = "<!-- config-table:start -->"
END = "<!-- config-table:end -->"
COMMAND = "python scripts/config_table.py"


def field_docs(source: str | None = None) -> dict[str, str]:
    """Field name -> its `#:` documentation, in declaration order ("" when it has none)."""
    source = CONFIG_SOURCE.read_text(encoding="utf-8") if source is None else source
    comments: dict[int, str] = {}  # line number -> text of a `#:` comment on it
    code_lines: set[int] = set()  # lines that hold code (not only a comment)
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT and tok.string.startswith("#:"):
            comments[tok.start[0]] = tok.string[2:].strip()
        elif tok.type not in (
            tokenize.COMMENT,
            tokenize.NL,
            tokenize.NEWLINE,
            tokenize.INDENT,
            tokenize.DEDENT,
        ):
            code_lines.update(range(tok.start[0], tok.end[0] + 1))
    tree = ast.parse(source)
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "TrainConfig")
    docs: dict[str, str] = {}
    for node in cls.body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        above, line = [], node.lineno - 1
        while line in comments and line not in code_lines:  # `#:` lines just before it
            above.insert(0, comments[line])
            line -= 1
        trailing = [comments[n] for n in range(node.lineno, node.end_lineno + 1) if n in comments]
        docs[node.target.id] = " ".join(above + trailing)
    return docs


def _default(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    else:
        return ""
    return value if isinstance(value, str) else repr(value)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render_table() -> str:
    """The Markdown table (option, default, meaning), one row per `TrainConfig` field."""
    sys.path.insert(0, str(ROOT))
    try:
        from assay.training.config import TrainConfig
    finally:
        sys.path.remove(str(ROOT))
    docs = field_docs()
    rows = ["| option | default | meaning |", "|---|---|---|"]
    for f in dataclasses.fields(TrainConfig):
        rows.append(f"| `{f.name}` | `{_cell(_default(f))}` | {_cell(docs.get(f.name, ''))} |")
    return "\n".join(rows) + "\n"


def undocumented() -> list[str]:
    """Fields without a `#:` comment."""
    return [name for name, doc in field_docs().items() if not doc]


def with_table(doc: str, table: str) -> str:
    """`doc` with the text between the markers replaced by `table`."""
    start, end = doc.find(START), doc.find(END)
    if start < 0 or end < start:
        raise ValueError(f"{DOC.name}: markers {START} ... {END} not found")
    head = doc[: start + len(START)]
    return f"{head}\n{_generated_note()}\n{table}{doc[end:]}"


def _generated_note() -> str:
    return f"<!-- generated from TrainConfig's `#:` field comments by `{COMMAND}` -->"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the doc is stale")
    parser.add_argument("--print", action="store_true", help="print the table only")
    args = parser.parse_args(argv)
    table = render_table()
    if args.print:
        sys.stdout.write(table)
        return 0
    doc = DOC.read_text(encoding="utf-8")
    new = with_table(doc, table)
    if args.check:
        if new != doc:
            print(f"{DOC.relative_to(ROOT)}: configuration table is stale; run: {COMMAND}")
            return 1
        return 0
    if new != doc:
        DOC.write_text(new, encoding="utf-8")
        print(f"updated {DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
