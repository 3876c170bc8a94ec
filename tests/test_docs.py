"""The docs match the code: command examples parse (and the cheap ones run), links point to
files in the repository, and the configuration table is what `TrainConfig` generates."""

from __future__ import annotations

import importlib.util
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from assay.cli import cli

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

#: Commands the docs may mention before they exist; skipped (with the reason) until then.
PLANNED = {
    "compare": "the lab's `assay compare` is not built yet",
    "report": "the lab's `assay report` is not built yet",
}
#: Commands cheap enough to run for real (when every file they name is in the repository).
RUNNABLE = {"envs", "sample", "schema", "validate"}
#: Options whose value is a file or folder the command writes, not one it reads.
OUTPUT_OPTIONS = {"-o", "--output", "--out"}
FILE_SUFFIXES = (".jsonl", ".json", ".yaml", ".yml", ".py", ".md", ".sh")


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _config_table_module():
    spec = importlib.util.spec_from_file_location("config_table", ROOT / "scripts/config_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- command examples ------------------------------------------------------------------


@dataclass
class Example:
    where: str  #: file:line
    text: str  #: the command line, continuations joined, `$ ` prompt removed
    commented: bool  #: a `# assay ...` line: parsed, never run

    def __str__(self) -> str:
        return self.where


_FENCE = re.compile(r"^\s*(`{3,}|~{3,})\s*([\w+-]*)")
_COMMAND = re.compile(r"^\s*(#\s*)?(\$\s+)?assay(\s|$)")


def fenced_blocks(path: Path) -> list[tuple[str, int, list[str]]]:
    """(info string, line number of the first line, lines) of each fenced block."""
    blocks, lines = [], path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, info, start = m.group(1), m.group(2).lower(), i + 1
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            i += 1
        blocks.append((info, start + 1, lines[start:i]))
        i += 1
    return blocks


def command_examples() -> list[Example]:
    """Every `assay ...` line of the ```bash blocks of README.md and docs/*.md."""
    found = []
    for path in DOCS:
        for info, first, lines in fenced_blocks(path):
            if info not in ("bash", "sh", "shell", "console"):
                continue
            n = 0
            while n < len(lines):
                lineno, text = first + n, lines[n]
                while text.rstrip().endswith("\\") and n + 1 < len(lines):  # continuation
                    n += 1
                    text = text.rstrip()[:-1] + " " + lines[n].strip()
                n += 1
                m = _COMMAND.match(text)
                if m:
                    body = text[m.end(2) if m.group(2) else m.end(1) if m.group(1) else 0 :]
                    found.append(Example(f"{_rel(path)}:{lineno}", body.strip(), bool(m.group(1))))
    return found


EXAMPLES = command_examples()


def _file_arguments(args: list[str]) -> tuple[list[str], list[str]]:
    """(repository paths the command reads, bare file names: placeholders such as pairs.jsonl)."""
    paths, placeholders = [], []
    for i, arg in enumerate(args):
        if arg.startswith("-") or (i > 0 and args[i - 1] in OUTPUT_OPTIONS):
            continue
        if arg.endswith(FILE_SUFFIXES):
            (paths if "/" in arg else placeholders).append(arg)
    return paths, placeholders


def _check_semantics(name: str, params: dict) -> None:
    """Option values the parser cannot judge: env options, training options, rewards."""
    from assay.envs import get_env, parse_assignments

    if name in ("sample", "verify"):
        get_env(params["env_name"], **parse_assignments(params["assignments"])).close()
    elif name == "train":
        from assay.rewards import get_reward
        from assay.training import resolve

        flags = {
            k: params[p]
            for k, p in [
                ("env", "env_name"),
                ("reward", "reward"),
                ("model", "model"),
                ("steps", "steps"),
                ("out", "out"),
                ("seed", "seed"),
            ]
        }
        config = resolve(
            file=params["config_file"], sets=parse_assignments(params["assignments"]), flags=flags
        )
        get_reward(config.reward)
        get_env(config.env, **config.env_options).close()
    elif name == "prior":
        from assay import organism

        organism.make_spec(params["preset"], **parse_assignments(params["assignments"]))


def test_docs_have_command_examples():
    names = {shlex.split(e.text, comments=True)[1] for e in EXAMPLES if " " in e.text}
    assert {"envs", "sample", "verify", "schema", "validate", "train", "prior"} <= names, names


@pytest.mark.parametrize("example", EXAMPLES, ids=str)
def test_command_example_matches_the_cli(example: Example, monkeypatch):
    where = example.where
    args = shlex.split(example.text, comments=True)[1:]
    if not args:
        return
    name, rest = args[0], args[1:]
    command = cli.get_command(click.Context(cli), name)  # the experiments' are made on demand
    if command is None:
        if name in PLANNED:
            pytest.skip(f"{where}: {PLANNED[name]}")
        known = cli.list_commands(click.Context(cli))
        pytest.fail(f"{where}: `assay {name}` is not a command (commands: {known})")
    try:
        ctx = command.make_context(name, list(rest), resilient_parsing=False)
    except click.ClickException as exc:
        pytest.fail(f"{where}: `{example.text}` does not parse: {exc.format_message()}")
    paths, placeholders = _file_arguments(args)
    missing = [p for p in paths if not (ROOT / p).exists()]
    assert not missing, f"{where}: `{example.text}` names files not in the repository: {missing}"
    monkeypatch.chdir(ROOT)
    try:
        _check_semantics(name, ctx.params)
    except Exception as exc:  # an unknown env, option or reward: the message names it
        pytest.fail(f"{where}: `{example.text}`: {type(exc).__name__}: {exc}")
    if name in RUNNABLE and not placeholders and not example.commented:
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0, (
            f"{where}: `{example.text}` exited {result.exit_code}:\n{result.output}"
        )


# -- links -----------------------------------------------------------------------------

_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE = re.compile(r"^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.M)
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def _prose(path: Path) -> str:
    """The text of a Markdown file without fenced blocks and inline code."""
    lines, out, fence = path.read_text(encoding="utf-8").splitlines(), [], None
    for line in lines:
        m = _FENCE.match(line)
        if fence is None and m:
            fence = m.group(1)
            out.append("")
        elif fence is not None:
            if line.strip().startswith(fence):
                fence = None
            out.append("")
        else:
            out.append(re.sub(r"`+[^`]*`+", "", line))
    return "\n".join(out)


def _anchors(path: Path) -> set[str]:
    """GitHub's anchors for the headings of a Markdown file."""
    seen: dict[str, int] = {}
    for line in _prose(path).splitlines() + _code_headings(path):
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        slug = re.sub(r"[^\w\- ]", "", m.group(1).replace("`", "").strip().lower()).replace(
            " ", "-"
        )
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        if count:
            seen[f"{slug}-{count}"] = 1
    return set(seen)


def _code_headings(path: Path) -> list[str]:
    """Headings whose text is inline code (removed from the prose), kept for their anchors."""
    return [
        line
        for line in path.read_text(encoding="utf-8").splitlines()
        if re.match(r"^#{1,6}\s+.*`", line)
    ]


def links() -> list[tuple[str, str, Path]]:
    found = []
    for path in DOCS:
        text = _prose(path)
        for regex in (_LINK, _REFERENCE):
            for m in regex.finditer(text):
                lineno = text.count("\n", 0, m.start()) + 1
                found.append((f"{_rel(path)}:{lineno}", m.group(1), path))
    return found


LINKS = links()


def test_docs_have_links():
    assert len(LINKS) >= 5


@pytest.mark.parametrize("where,target,source", LINKS, ids=[w for w, _, _ in LINKS])
def test_relative_link_points_to_a_file_in_the_repository(where, target, source):
    if _SCHEME.match(target):
        assert target.startswith(("http://", "https://", "mailto:")), f"{where}: {target}"
        return
    file, _, anchor = target.partition("#")
    resolved = (source.parent / file).resolve() if file else source
    assert resolved.is_relative_to(ROOT), f"{where}: {target} points outside the repository"
    assert resolved.exists(), f"{where}: {target} does not exist ({_rel(resolved) if file else ''})"
    if anchor and resolved.suffix == ".md":
        assert anchor in _anchors(resolved), (
            f"{where}: {target}: no heading with anchor #{anchor} in {_rel(resolved)}"
        )


_OUTSIDE = re.compile(
    r"\.\./shared|/work/shared|\bshared/DESIGN\.md|\bDESIGN\.md|\bnotes/[\w.-]+\.(?:md|txt)"
)


def test_docs_and_code_do_not_point_outside_the_repository():
    """Users have the repository only: no references to the team's shared notes."""
    this = Path(__file__).resolve()
    files = [*DOCS]
    for folder in ("assay", "examples", "bench", "scripts", "tests"):
        files += [
            p
            for p in (ROOT / folder).rglob("*")
            if p.suffix in (".py", ".md", ".sh", ".toml", ".txt") and p.resolve() != this
        ]
    hits = [
        f"{_rel(p)}:{n}: {line.strip()}"
        for p in files
        for n, line in enumerate(p.read_text(encoding="utf-8", errors="replace").splitlines(), 1)
        if _OUTSIDE.search(line)
    ]
    assert not hits, "references outside the repository (point to docs/ instead):\n" + "\n".join(
        hits
    )


# -- the configuration table -----------------------------------------------------------


def test_config_table_in_docs_matches_trainconfig():
    module = _config_table_module()
    doc = module.DOC.read_text(encoding="utf-8")
    expected = module.with_table(doc, module.render_table())
    assert doc == expected, (
        f"the configuration table in docs/training.md differs from TrainConfig's field docs; "
        f"regenerate it with: {module.COMMAND}"
    )


def test_every_config_field_is_documented():
    module = _config_table_module()
    assert module.undocumented() == [], (
        "TrainConfig fields without a `#:` comment in assay/training/config.py"
    )


def test_field_docs_read_comments_before_and_after():
    module = _config_table_module()
    source = (
        "class TrainConfig:\n"
        "    a: int = 1  #: after\n"
        "    #: before,\n"
        "    #: on two lines\n"
        "    b: int = 2\n"
        "    # a plain comment is not documentation\n"
        "    c: str = '#: not a comment'\n"
    )
    assert module.field_docs(source) == {"a": "after", "b": "before, on two lines", "c": ""}
