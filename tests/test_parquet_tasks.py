"""Task files and `assay verify` inputs in Parquet: veRL's layout (as assay's exporter writes
it) and one column per field; a bad row is one line naming the file and the row."""

from __future__ import annotations

import json
import os
import sys
import tempfile

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from assay.cli import cli
from assay.envs import TaskFileError, get_env
from assay.envs.parquet import is_parquet
from assay.integrations.verl import main as export

os.environ.setdefault("ASSAY_CACHE", os.path.join(tempfile.gettempdir(), "assay-test-cache"))


def run(*args: str):
    return CliRunner().invoke(cli, list(args))


def verl_file(tmp_path, env: str = "countdown", n: int = 4, name: str = "tasks.parquet"):
    path = tmp_path / name
    export([env, "-n", str(n), "--out", str(path)])
    return path


def rows_of(path) -> list[dict]:
    return pq.read_table(path).to_pylist()


def write(path, rows: list[dict]):
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def test_a_verl_parquet_loads_as_the_tasks_it_was_written_from(tmp_path):
    path = verl_file(tmp_path)
    env = get_env("countdown")
    assert is_parquet(path) and [t.to_dict() for t in env.load(path)] == [
        t.to_dict() for t in env.generate(4, seed=0)]
    out = run("validate", "countdown", str(path))
    assert out.exit_code == 0, out.output


def test_a_file_with_parquet_bytes_is_parquet_whatever_its_name(tmp_path):
    path = verl_file(tmp_path)
    renamed = tmp_path / "tasks.data"
    renamed.write_bytes(path.read_bytes())
    assert is_parquet(renamed) and len(get_env("countdown").load(renamed)) == 4
    assert not is_parquet(tmp_path / "missing.jsonl") and not is_parquet("-")


def test_one_column_per_field_loads_too(tmp_path):
    tasks = [t.to_dict() for t in get_env("countdown").generate(3, seed=1)]
    path = write(tmp_path / "flat.parquet", tasks)
    assert [t.to_dict() for t in get_env("countdown").load(path)] == tasks


def test_verify_reads_parquet_rows_with_a_completion(tmp_path):
    rows = rows_of(verl_file(tmp_path))
    for row in rows:
        row["completion"] = "<answer>" + json.loads(row["reward_model"]["ground_truth"])["solution"] + "</answer>"
    rows[1]["completion"] = "<answer>1 + 1</answer>"
    rows[2]["reward_model"]["ground_truth"] = "{not json"
    path = write(tmp_path / "pairs.parquet", rows)
    out = run("verify", "countdown", str(path), "--workers", "1")
    assert out.exit_code == 0, out.output
    verdicts = [json.loads(line) for line in out.stdout.splitlines()]
    assert [v["status"] for v in verdicts] == ["correct", "incorrect", "error", "correct"]
    assert verdicts[2]["detail"].startswith(f"{path}:3: reward_model.ground_truth: invalid JSON")
    # the `task` + `completion` layout of a JSONL input, as columns
    flat = [{"task": json.loads(r["reward_model"]["ground_truth"]), "completion": r["completion"]}
            for r in rows if r["reward_model"]["ground_truth"].startswith("{\"")]
    out = run("verify", "countdown", str(write(tmp_path / "flat.parquet", flat)), "--workers", "1")
    assert [json.loads(line)["status"] for line in out.stdout.splitlines()] == [
        "correct", "incorrect", "correct"]


def test_a_bad_row_is_one_line_naming_the_file_and_the_row(tmp_path):
    rows = rows_of(verl_file(tmp_path))
    truth = json.loads(rows[1]["reward_model"]["ground_truth"])
    truth["numbers"] = "1 2 3"
    rows[1]["reward_model"]["ground_truth"] = json.dumps(truth)
    rows[3]["data_source"] = "math"
    path = write(tmp_path / "bad.parquet", rows)
    with pytest.raises(TaskFileError) as caught:
        get_env("countdown").load(path)
    assert len(caught.value.tasks) == 2
    assert caught.value.problems == [
        f"{path}:2: numbers: '1 2 3' is not of type 'array'",
        f"{path}:4: data_source: a task of 'math', not of 'countdown'",
    ]
    out = run("validate", "countdown", str(path))
    assert out.exit_code == 1 and out.stdout.splitlines() == caught.value.problems
    trained = run("train", "--env", "countdown", "--model", "organism:tiny", "--steps", "0",
                  "--set", f"train_file={path}", "--out", str(tmp_path / "run"), "--quiet")
    lines = trained.stderr.strip().splitlines()
    assert trained.exit_code == 2 and len(lines) == 1 and f"{path}:2: numbers" in lines[0], trained.output


def test_a_file_that_is_not_parquet_is_one_line_and_exit_2(tmp_path):
    junk = tmp_path / "junk.parquet"
    junk.write_text("{\"numbers\": [1, 2], \"target\": 3}\n")
    for args in (("validate", "countdown", str(junk)), ("verify", "countdown", str(junk))):
        out = run(*args)
        assert out.exit_code == 2, out.output
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and "as Parquet" in lines[0], out.stderr


def test_without_pyarrow_the_message_names_the_extra(tmp_path, monkeypatch):
    path = verl_file(tmp_path)
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    out = run("validate", "countdown", str(path))
    assert out.exit_code == 2 and "pip install 'assay[parquet]'" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
