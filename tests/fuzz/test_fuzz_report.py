"""Fuzzing `assay report DIR`: run folders with random and hostile `metrics.jsonl`,
`config.yaml` and `lab.json` (malformed lines, wrong types, NaN and infinities, missing
keys, huge numbers, lone surrogates, empty and missing files, garbage YAML).

Run in process through click's CliRunner, as the other fuzz tests. Properties: never a
traceback; either the report is written (exit 0; summary.json is strict JSON, report.html
is UTF-8) or one line on stderr and exit status 2; and a folder whose every file is
well-formed is always reported, never refused.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import tempfile
from pathlib import Path

import yaml
from click.testing import CliRunner
from conftest import make_run_folder
from fuzz_inputs import BOM, check_one_line_error, fuzz_settings, json_values, numbers, texts
from hypothesis import given
from hypothesis import strategies as st

os.environ.setdefault("ASSAY_CACHE", os.path.join(tempfile.gettempdir(), "assay-test-cache"))

from assay.cli import cli  # noqa: E402

_counter = itertools.count()

FRACTIONS = ["val_accuracy", "val_greedy_accuracy", "reward_accuracy", "reward_precision",
             "repetition_rate"]
AMOUNTS = ["entropy", "completion_length", "tokens", "step_time"]
LIMIT = 2**53
REWARDS = ["verifier", "majority_vote", "self_certainty", "0.5*verifier+0.5*self_certainty",
           "my_reward", "$\\frac{$", "$x$ and $y$", "r" * 300, "", "\x00\n\u2028", "🙂"]

# Text without lone surrogates (YAML and the report must show it): st.text's default.
plain_text = st.text(max_size=12)


# -- well-formed files --------------------------------------------------------------------


@st.composite
def good_row(draw, step: int) -> dict:
    row: dict = {"step": step}
    for key in FRACTIONS:
        if draw(st.booleans()):
            row[key] = draw(st.one_of(st.none(), st.floats(0, 1), st.sampled_from([0, 1, 0.0, 1.0])))
    for key in AMOUNTS:
        if draw(st.booleans()):
            row[key] = draw(st.one_of(st.none(), st.floats(0, LIMIT), st.integers(0, LIMIT),
                                      st.sampled_from([0, LIMIT, 1e-300]), st.floats(0, 500)))
    if draw(st.booleans()):
        row["kl"] = draw(st.one_of(st.none(), st.floats(-LIMIT, LIMIT), st.floats(-1, 1)))
    # keys the lab does not read: anything JSON (a NaN among them is not the lab's business)
    extra = st.dictionaries(plain_text, st.one_of(st.none(), numbers, plain_text), max_size=2)
    return {**draw(extra), **row}


@st.composite
def good_metrics(draw) -> bytes:
    count = draw(st.integers(1, 30))
    kind = draw(st.integers(0, 4))
    if kind == 0:  # steps in any order, repeated, far apart
        steps = draw(st.lists(st.one_of(st.integers(0, 40), st.sampled_from([0, LIMIT])),
                              min_size=count, max_size=count))
    else:
        steps = list(range(1, count + 1))
    rows = [draw(good_row(step)) for step in steps]
    data = "".join(json.dumps(row) + "\n" for row in rows).encode()
    if draw(st.integers(0, 4)) == 0:  # killed while writing: the last line cut short
        data += json.dumps(draw(good_row(count + 1))).encode()[: draw(st.integers(1, 20))]
    return data


@st.composite
def good_config(draw) -> dict:
    config = {"reward": draw(st.one_of(st.sampled_from(REWARDS), plain_text)),
              "seed": draw(st.one_of(st.integers(0, 3), st.sampled_from([2**63 - 1]))),
              "steps": draw(st.integers(0, 40)),
              "env": draw(st.sampled_from(["countdown", "math", "code"])),
              "model": draw(st.sampled_from(["organism:tiny", "/models/x", "$a$"]))}
    for key in draw(st.lists(st.sampled_from(list(config)), max_size=2, unique=True)):
        del config[key]  # missing keys have defaults
    extra = st.dictionaries(plain_text, st.recursive(
        st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
                  plain_text),
        lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(plain_text, inner, max_size=3)),
        max_leaves=6), max_size=3)
    return {**draw(extra), **config}


# -- hostile files ------------------------------------------------------------------------


@st.composite
def bad_line(draw) -> bytes:
    kind = draw(st.integers(0, 7))
    if kind == 0:  # a metric of the wrong type or out of range
        key = draw(st.sampled_from(["step", *FRACTIONS, *AMOUNTS, "kl"]))
        value = draw(st.one_of(numbers, texts, json_values(4), st.booleans()))
        return json.dumps({"step": 1, key: value}).encode("utf-8", "surrogatepass")
    if kind == 1:  # any JSON value, as a line
        return json.dumps(draw(json_values())).encode("utf-8", "surrogatepass")
    if kind == 2:
        depth = draw(st.integers(10, 6000))
        return (b"[" * depth + b"]" * depth)
    if kind == 3:  # raw bytes: invalid UTF-8, NUL, encoded surrogates
        return draw(st.binary(max_size=60)).replace(b"\n", b"")
    if kind == 4:
        return draw(st.sampled_from([b"NaN", b'{"step": NaN}', b'{"step": 1, "kl": -Infinity}',
                                     b'{"step": 1e999}', b'{"step": ' + b"9" * 5000 + b"}",
                                     b'{"step": 1, "entropy": 1e308}', b'{"step": true}',
                                     b'{"step": 1, "tokens": ' + b"9" * 4000 + b"}", b"{}",
                                     b'{"step": "\\ud800"}', b'{"\\udfff": 1, "step": 1}', BOM,
                                     b"\x00", b"\r", b"null", b"[]", b'"step"']))
    if kind == 5:  # missing step
        return json.dumps({k: 0.5 for k in draw(st.lists(st.sampled_from(FRACTIONS), max_size=3))}).encode()
    if kind == 6:  # a good line cut short, mid-file
        return json.dumps({"step": 3, "val_accuracy": 0.5}).encode()[: draw(st.integers(1, 25))]
    return (json.dumps({"step": 2, "val_accuracy": 0.25}) + "\r").encode()  # CRLF: fine


@st.composite
def bad_metrics(draw) -> bytes:
    good = draw(good_metrics()).split(b"\n")
    lines = draw(st.lists(bad_line(), min_size=1, max_size=4))
    for line in lines:
        good.insert(draw(st.integers(0, len(good))), line)
    data = b"\n".join(good)
    return BOM + data if draw(st.integers(0, 5)) == 0 else data


@st.composite
def bad_config(draw) -> bytes:
    kind = draw(st.integers(0, 4))
    if kind == 0:
        return draw(st.binary(max_size=80))
    if kind == 1:  # YAML of random data: wrong types, NaN, non-text keys
        keys = st.one_of(st.sampled_from(["reward", "seed", "steps", "env", "model"]), st.integers(),
                         plain_text)
        mapping = draw(st.dictionaries(keys, json_values(6), max_size=4))
        return yaml.safe_dump(mapping, allow_unicode=draw(st.booleans())).encode("utf-8", "surrogatepass")
    if kind == 2:
        return draw(st.sampled_from([
            b"", b"[1, 2]", b"- a", b"a: [" * 3000, BOM + b"seed: 1", b"? [a, b]\n: 1",
            b"steps: !!python/object:os.system x", b"steps: .nan", b"seed: 1e400", b"seed: -1",
            b"seed: " + b"9" * 5000, b"env: {max_value: .inf}", b"&a [*a]", b"a: &a\n  b: *a",
            b"a: &a [*a]", b"reward: [verifier]", b"reward: {a: 1}", b"seed: true", b"steps: 1.5",
            b"created: 2020-01-01", b"blob: !!binary aGk=", b"s: !!set {a}", b'model: "\\ud800"',
            b"a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
            b"c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c]\n"
            b"e: [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n",
        ]))
    if kind == 3:  # a good config with one field of the wrong type
        config = draw(good_config())
        config[draw(st.sampled_from(["reward", "seed", "steps"]))] = draw(json_values(4))
        return yaml.safe_dump(config).encode("utf-8", "surrogatepass")
    return draw(texts).encode("utf-8", "surrogatepass")


@st.composite
def lab_json(draw) -> tuple[bytes | None, bool]:
    """(content or None for no lab.json, whether it is well-formed)."""
    kind = draw(st.integers(0, 3))
    if kind == 0:
        return None, True
    if kind == 1:
        settings = {"preset": draw(st.sampled_from(["quick", None])),
                    "rewards": draw(st.lists(st.sampled_from(REWARDS), max_size=3)),
                    "seeds": draw(st.lists(st.integers(0, 3), max_size=3)),
                    "env": "countdown", "model": draw(plain_text), "steps": draw(st.integers(0, 40))}
        meta = {"settings": draw(st.sampled_from([settings, {}, None])),
                "skipped": draw(st.dictionaries(plain_text, plain_text, max_size=2)),
                "failed": draw(st.dictionaries(plain_text, plain_text, max_size=2))}
        return json.dumps(meta).encode(), True
    if kind == 2:
        return draw(st.one_of(st.binary(max_size=60), st.sampled_from(
            [b"", b"{", b"[]", b"NaN", b'{"settings": []}', b'{"settings": {"seeds": 1}}',
             b'{"settings": {"rewards": "verifier"}}', b'{"settings": {"rewards": [1]}}',
             b'{"skipped": []}', b'{"failed": {"a": null}}', b'{"settings": {"steps": Infinity}}',
             b'{"settings": {"model": "\\ud800"}}', b"[" * 5000]))), False
    value = {"settings": draw(json_values(6)), "skipped": draw(json_values(3))}
    return json.dumps(value).encode("utf-8", "surrogatepass"), False


# -- the test --------------------------------------------------------------------------------


@st.composite
def report_folders(draw) -> tuple[list[tuple[str, bytes | None, bytes | None]], bytes | None, bool]:
    """([(run folder, metrics, config)], lab.json, whether every file is well-formed)."""
    clean = draw(st.booleans())
    names = draw(st.lists(st.sampled_from(["r0", "r1", "a/r2", "a/b/r3", "runs/x", "dup/r0"]),
                          min_size=1, max_size=3, unique=True))
    runs = []
    for name in names:
        if clean:
            runs.append((name, draw(good_metrics()), yaml.safe_dump(draw(good_config())).encode()))
            continue
        metrics = draw(st.one_of(st.none(), st.just(b""), good_metrics(), bad_metrics()))
        config = draw(st.one_of(st.none(), bad_config(),
                                good_config().map(lambda c: yaml.safe_dump(c).encode())))
        runs.append((name, metrics, config))
    meta, meta_ok = draw(lab_json())
    if clean and not meta_ok:
        meta = None
    return runs, meta, clean


@fuzz_settings(0.5)
@given(folders=report_folders())
def test_report(folders):
    runs, meta, clean = folders
    root = Path(tempfile.gettempdir()) / f"assay-fuzz-{os.getpid()}" / f"report-{next(_counter)}"
    for name, metrics, config in runs:
        make_run_folder(root / name, metrics, config)
    if meta is not None:
        (root / "lab.json").write_bytes(meta)
    result = CliRunner().invoke(cli, ["report", str(root)])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # a traceback: hypothesis shrinks and shows the input
    assert "Traceback" not in result.stderr
    if clean:  # well-formed files are always reported
        assert result.exit_code == 0, result.stderr
    if result.exit_code == 2:
        check_one_line_error(result.stderr)
    else:
        assert result.exit_code == 0, (result.exit_code, result.stderr)
        assert result.stderr.strip().splitlines()[-1].endswith("report.html"), result.stderr

        def refuse(constant: str):
            raise AssertionError(f"summary.json holds {constant}, which is not JSON")

        summary = json.loads((root / "summary.json").read_text(encoding="utf-8"), parse_constant=refuse)
        assert summary["runs"]
        page = (root / "report.html").read_text(encoding="utf-8")
        assert page.startswith("<!DOCTYPE html>") and page.count("<img ") == 5
    shutil.rmtree(root)
