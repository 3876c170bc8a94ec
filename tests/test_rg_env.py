"""reasoning-gym's datasets as `rg:<dataset>` envs: listing, sampling, verifying (through
the command line), the status of every scorer outcome, options, seeds, task-file round
trips (JSONL and veRL's Parquet), training and the audit."""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
import time
from fractions import Fraction

import pytest
from click.testing import CliRunner

from assay.cli import cli
from assay.envs import OptionError, get_env
from assay.envs.rg import rg_seed, verdict_of
from assay.envs.rg_codec import CodecError, decode, encode

os.environ.setdefault("ASSAY_CACHE", os.path.join(tempfile.gettempdir(), "assay-test-cache"))
reasoning_gym = pytest.importorskip("reasoning_gym")

#: datasets whose gold answers are checked: plain text, tuples in metadata (arc), dates,
#: floats, puzzles with integer keys and a composite of two datasets
GOLD = ["basic_arithmetic", "chain_sum", "arc_1d", "arc_agi", "word_sorting", "time_intervals",
        "letter_counting", "complex_arithmetic", "maze", "knights_knaves"]


def run(*args: str):
    return CliRunner().invoke(cli, list(args))


def jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def write_pairs(path, pairs) -> str:
    path.write_text("".join(json.dumps({"task": t, "completion": c}) + "\n" for t, c in pairs))
    return str(path)


def scorer_class(name: str = "basic_arithmetic"):
    return reasoning_gym.factory.DATASETS[name][0]


# -- listing ---------------------------------------------------------------------------


def test_envs_lists_the_family_in_one_line_and_every_dataset_with_all():
    short = run("envs")
    assert short.exit_code == 0, short.output
    family = [line for line in short.output.splitlines() if line.startswith("rg:")]
    assert len(family) == 1 and "rg:<dataset>" in family[0]
    full = run("envs", "--all")
    names = [line.split()[0] for line in full.output.splitlines() if line.startswith("rg:")]
    assert len(names) >= 100 and "rg:basic_arithmetic" in names and "rg:<dataset>" not in names
    assert {"countdown", "math"} <= {line.split()[0] for line in full.output.splitlines()}


def test_envs_env_prints_its_option_table():
    out = run("envs", "rg:basic_arithmetic")
    assert out.exit_code == 0, out.output
    rows = {line.split()[0]: line for line in out.output.splitlines()[1:]}
    assert {"min_terms", "operators", "format_style", "time_limit", "answer_format"} <= set(rows)
    assert "seed" not in rows and "size" not in rows  # generate(n, seed) sets them
    schema = get_env("rg:basic_arithmetic").options_schema()["properties"]
    assert schema["format_style"]["enum"] == ["simple", "natural"]
    assert schema["operators"]["type"] == "array" and schema["min_terms"]["default"] == 2


# -- sample and verify through the command line ------------------------------------------


def test_sample_then_verify_round_trip(tmp_path):
    sampled = run("sample", "rg:basic_arithmetic", "-n", "3", "--seed", "2")
    assert sampled.exit_code == 0, sampled.output
    tasks = jsonl(sampled.output)
    assert len(tasks) == 3
    for task in tasks:
        assert {"id", "prompt", "question", "answer", "metadata"} <= set(task)
        assert task["prompt"].startswith(task["question"]) and "<answer>" in task["prompt"]
    pairs = []
    for task in tasks:
        pairs += [(task, f"<think>hm</think><answer>{task['answer']}</answer>"),
                  (task, "<answer>not a number</answer>"),
                  (task, f"<think><answer>{task['answer']}</answer></think>")]
    source = write_pairs(tmp_path / "pairs.jsonl", pairs)
    out = tmp_path / "verdicts.jsonl"
    verified = run("verify", "rg:basic_arithmetic", source, "-o", str(out), "--workers", "2")
    assert verified.exit_code == 0, verified.output
    statuses = [v["status"] for v in jsonl(out.read_text())]
    assert statuses == ["correct", "incorrect", "invalid"] * 3
    task_file = tmp_path / "tasks.jsonl"
    task_file.write_text(sampled.output)
    assert run("validate", "rg:basic_arithmetic", str(task_file)).exit_code == 0
    other = run("validate", "rg:chain_sum", str(task_file))  # another dataset's tasks
    assert other.exit_code == 1 and "metadata.source_dataset" in other.output


@pytest.mark.parametrize("dataset", GOLD)
def test_gold_answers_verify_correct_after_a_json_round_trip(dataset):
    env = get_env(f"rg:{dataset}")
    try:
        tasks = env.generate(3, seed=5)
        back = [env.make_task(json.loads(json.dumps(t.to_dict()))) for t in tasks]
        assert [b.to_dict() for b in back] == [t.to_dict() for t in tasks]
        verdicts = env.verify_many([(t, f"<answer>{t['answer']}</answer>") for t in back], workers=1)
    finally:
        env.close()
    assert [v.status for v in verdicts] == ["correct"] * 3, verdicts


def test_composite_takes_its_datasets_as_an_option():
    with pytest.raises(OptionError, match="at least one dataset"):
        get_env("rg:composite")
    env = get_env("rg:composite", datasets="basic_arithmetic,chain_sum:2")
    try:
        tasks = env.generate(4, seed=0)
        verdicts = env.verify_many([(t, f"<answer>{t['answer']}</answer>") for t in tasks], workers=1)
    finally:
        env.close()
    assert {t["metadata"]["source_dataset"] for t in tasks} <= {"basic_arithmetic", "chain_sum"}
    assert all(v.correct for v in verdicts)


def test_schema_and_validate_take_composites_datasets(tmp_path):
    env = get_env("rg:composite", datasets="basic_arithmetic,chain_sum")
    try:
        tasks = env.generate(3, seed=0)
    finally:
        env.close()
    task_file = tmp_path / "composite.jsonl"
    task_file.write_text("".join(json.dumps({"id": t.id, **t.fields}) + "\n" for t in tasks))
    options = ("--set", "datasets=basic_arithmetic,chain_sum")
    validated = run("validate", "rg:composite", str(task_file), *options)
    assert validated.exit_code == 0, validated.output
    assert "3 good task(s), 0 problems" in validated.output
    schema = run("schema", "rg:composite", *options)
    assert schema.exit_code == 0 and "metadata" in json.loads(schema.output)["required"]
    refused = run("validate", "rg:composite", str(task_file))  # composite needs its datasets
    assert refused.exit_code == 2 and "at least one dataset" in refused.output
    # a task of a dataset the composite was not given has no scorer there: a problem of the file
    narrower = run("validate", "rg:composite", str(task_file), "--set", "datasets=basic_arithmetic")
    sources = [t["metadata"]["source_dataset"] for t in tasks]
    assert narrower.exit_code == (1 if "chain_sum" in sources else 0), narrower.output
    assert narrower.output.count("a task of rg:chain_sum, not of this composite's datasets "
                                 "(basic_arithmetic)") == sources.count("chain_sum")


# -- every scorer outcome has its status ---------------------------------------------------


def test_a_raising_scorer_is_an_error_and_the_next_line_is_still_verified(tmp_path, monkeypatch):
    cls = scorer_class()
    original = cls.score_answer

    def score(self, answer, entry):
        if answer == "boom":
            raise RuntimeError("the scorer broke")
        return original(self, answer, entry)

    monkeypatch.setattr(cls, "score_answer", score)
    task = jsonl(run("sample", "rg:basic_arithmetic", "-n", "1").output)[0]
    source = write_pairs(tmp_path / "pairs.jsonl", [
        (task, "<answer>boom</answer>"), (task, f"<answer>{task['answer']}</answer>")])
    out = run("verify", "rg:basic_arithmetic", source, "--workers", "1")
    assert out.exit_code == 0, out.output
    first, second = jsonl(out.stdout)
    assert first["status"] == "error" and "RuntimeError" in first["detail"] and first["score"] == 0
    assert second["status"] == "correct"


def test_a_hanging_scorer_is_a_timeout_at_the_limit(tmp_path, monkeypatch):
    cls = scorer_class()
    original = cls.score_answer

    def score(self, answer, entry):
        if answer == "hang":
            time.sleep(600)
        return original(self, answer, entry)

    monkeypatch.setattr(cls, "score_answer", score)
    env = get_env("rg:basic_arithmetic", time_limit="1")
    try:
        task = env.generate(1, seed=0)[0]
        start = time.monotonic()
        verdicts = env.verify_many(
            [(task, "<answer>hang</answer>"), (task, f"<answer>{task['answer']}</answer>")], workers=1)
        elapsed = time.monotonic() - start
    finally:
        env.close()
    assert [v.status for v in verdicts] == ["timeout", "correct"], verdicts
    assert elapsed < 15, elapsed


@pytest.mark.parametrize("score, status, kept", [
    (1.0, "correct", 1.0), (1, "correct", 1.0), (0.0, "incorrect", 0.0),
    (0.25, "incorrect", 0.25), (float("nan"), "error", 0.0), (1.5, "error", 0.0),
    (-0.1, "error", 0.0), (None, "error", 0.0), ("1", "error", 0.0), (True, "error", 0.0),
])
def test_scores_map_to_statuses_with_partial_credit_kept(score, status, kept):
    verdict = verdict_of(score)
    assert (verdict.status, verdict.score) == (status, kept)


def test_partial_credit_reaches_the_verdict():
    env = get_env("rg:basic_arithmetic")
    try:
        task = env.generate(1, seed=0)[0]
        # reasoning-gym's default scorer: the gold inside a longer answer earns part
        verdict = env.verify(task, f"<answer>{task['answer']} or so</answer>")
    finally:
        env.close()
    assert verdict.status == "incorrect" and 0 < verdict.score < 1


def test_the_missing_extra_is_one_line_naming_the_pip_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "reasoning_gym", None)  # `import reasoning_gym` fails
    monkeypatch.setitem(sys.modules, "reasoning_gym.factory", None)
    for args in (("sample", "rg:basic_arithmetic", "-n", "1"), ("envs", "rg:chain_sum")):
        out = run(*args)
        assert out.exit_code == 2, out.output
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and "pip install 'assay[rg]'" in lines[0], out.stderr
    listed = run("envs")
    assert listed.exit_code == 0 and "pip install 'assay[rg]'" in listed.output


# -- options, seeds, the codec -------------------------------------------------------------


def test_options_come_from_text_and_bad_ones_are_one_line():
    env = get_env("rg:word_sorting", transformation="uppercase", max_words="4", min_words="2")
    assert env.options.transformation.value == "uppercase" and env.options.max_words == 4
    dated = get_env("rg:time_intervals", min_date="2020-01-31", task_types="time,date")
    assert str(dated.options.min_date) == "2020-01-31" and dated.options.task_types == ["time", "date"]
    for options, needle in [
        ({"transformation": "sideways"}, "must be one of"),
        ({"min_words": "5", "max_words": "3"}, "reasoning-gym refused"),
        ({"colour": "red"}, "unknown option 'colour'"),
        ({"time_limit": "0"}, "time_limit"),
        ({"answer_format": "boxed"}, "answer_format"),
    ]:
        with pytest.raises(OptionError, match=needle) as caught:
            get_env("rg:word_sorting", **options)
        assert "rg:word_sorting" in str(caught.value) and "\n" not in str(caught.value)
    out = run("sample", "rg:basic_arithmetic", "--set", "min_terms=nope")
    assert out.exit_code == 2 and len(out.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("env_name, option, needle", [
    ("rg:composite", "datasets=composite", "AssertionError: Must specify at least one dataset"),
    ("rg:composite", 'datasets=[{"name": "basic_arithmetic", "weight": 1, "config": {"bogus": 1}}]',
     "unexpected keyword argument 'bogus'"),
    ("rg:arc_agi", 'board_format_opts={"alphabet": "ab"}', "failed to make item 0 (IndexError"),
])
def test_options_reasoning_gym_refuses_only_when_it_draws_are_one_line(env_name, option, needle):
    with pytest.raises(OptionError, match=r"reasoning-gym (refused|failed)"):
        get_env(env_name, **dict([option.split("=", 1)])).generate(1)
    out = run("sample", env_name, "--set", option, "-n", "1")
    lines = out.stderr.strip().splitlines()
    assert out.exit_code == 2 and len(lines) == 1 and needle in lines[0], out.stderr


def test_options_change_the_tasks():
    env = get_env("rg:basic_arithmetic", min_terms="2", max_terms="2", operators="+")
    for task in env.generate(5, seed=0):
        assert task["metadata"]["num_terms"] == 2 and "*" not in task["question"]


def test_seeds_repeat_and_differ():
    env = get_env("rg:chain_sum")
    a, b = env.generate(20, seed=0), env.generate(20, seed=0)
    c, d = env.generate(20, seed=1), env.generate(20, seed=-1)
    assert [t.to_dict() for t in a] == [t.to_dict() for t in b]
    questions = [{t["question"] for t in tasks} for tasks in (a, c, d)]
    # reasoning-gym's own seeds s and s + 1 share all but one task; assay's do not
    assert not (questions[0] & questions[1]) and not (questions[0] & questions[2])
    assert len({rg_seed(s) for s in range(-50, 50)}) == 100


def test_the_codec_keeps_what_json_would_lose():
    value = {"board": ((1, 2), (3, 4)), "colours": {0: "red", 1: "blue"}, "seen": {3, 1, 2},
             "frozen": frozenset({"a"}), "nan": float("nan"), "__tuple__": "a real key",
             "fraction": Fraction(-3, 4),
             "plain": [1, "two", None, True, 2.5]}
    back = decode(json.loads(json.dumps(encode(value))))
    assert math.isnan(back.pop("nan")) and math.isnan(value.pop("nan"))
    assert back == value and isinstance(back["board"][0], tuple)
    assert json.dumps(encode({"s": {"b", "a", "c"}})) == json.dumps(encode({"s": {"c", "a", "b"}}))
    with pytest.raises(CodecError, match="x.y"):
        encode({"x": {"y": object()}})
    with pytest.raises(CodecError):
        decode({"__items__": [1, 2]})
    with pytest.raises(CodecError, match="__fraction__"):
        decode({"__fraction__": "1/0"})
    assert isinstance(back["fraction"], Fraction)


def test_gsm_symbolic_tasks_hold_fractions_and_round_trip():
    # its metadata keeps the variables, some of them Fractions: `-n 20` failed on them
    env = get_env("rg:gsm_symbolic")
    try:
        tasks = env.generate(20, seed=0)
        back = [env.make_task(json.loads(json.dumps(t.to_dict()))) for t in tasks]
        verdicts = env.verify_many([(t, f"<answer>{t['answer']}</answer>") for t in back], workers=1)
    finally:
        env.close()
    assert any("__fraction__" in json.dumps(t.to_dict()) for t in tasks)
    assert [v.status for v in verdicts] == ["correct"] * 20


# -- Parquet, training, the audit -----------------------------------------------------------


def test_a_verl_parquet_of_rg_tasks_verifies(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from assay.integrations.verl import main as export

    data = tmp_path / "rg.parquet"
    export(["rg:arc_1d", "-n", "3", "--out", str(data)])
    rows = pq.read_table(data).to_pylist()
    for row in rows:
        row["completion"] = "<answer>" + json.loads(row["reward_model"]["ground_truth"])["answer"] + "</answer>"
    pairs = tmp_path / "pairs.parquet"
    pq.write_table(pa.Table.from_pylist(rows), pairs)
    assert run("validate", "rg:arc_1d", str(data)).exit_code == 0
    out = run("verify", "rg:arc_1d", str(pairs), "--workers", "1")
    assert [v["status"] for v in jsonl(out.stdout)] == ["correct"] * 3, out.output


@pytest.mark.slow
def test_training_two_steps_on_an_rg_env_from_parquet(tmp_path):
    from assay.integrations.verl import main as export

    data = tmp_path / "train.parquet"
    export(["rg:basic_arithmetic", "-n", "4", "--out", str(data)])
    out = run("train", "--env", "rg:basic_arithmetic", "--steps", "2", "--model", "organism:tiny",
              "--set", "prompts_per_step=2", "--set", "group_size=2", "--set", "max_new_tokens=16",
              "--set", f"train_file={data}", "--set", f"val_file={data}", "--set", "val_samples=1",
              "--set", "eval_every=0", "--out", str(tmp_path / "run"), "--quiet")
    assert out.exit_code == 0, out.output
    metrics = jsonl((tmp_path / "run" / "metrics.jsonl").read_text())
    assert [m["step"] for m in metrics if "step" in m][-1] == 2


def test_the_audit_finds_no_false_positive_on_basic_arithmetic():
    from assay.audit.audit import audit, false_positives

    env = get_env("rg:basic_arithmetic")
    try:
        result = audit(env, env.generate(6, seed=0))
    finally:
        env.close()
    assert result["reference"]["accepted"] == 6
    assert false_positives(result) == 0, [p for p in result["probes"] if p["false_positives"]]


# -- assay's guards (docs/trust.md, "reasoning-gym's scorers, audited") ----------------------


def _accept_everything(monkeypatch, dataset: str) -> None:
    """A scorer that gives every answer 1, as game_of_life_halting's does (bool("False"))."""
    monkeypatch.setattr(scorer_class(dataset), "score_answer", lambda self, answer, entry: 1.0)


def test_guard_refuses_an_answer_that_copies_the_question(monkeypatch):
    _accept_everything(monkeypatch, "basic_arithmetic")
    env = get_env("rg:basic_arithmetic")
    raw = get_env("rg:basic_arithmetic", guards="false")
    try:
        task = env.generate(1, seed=0)[0]
        copied = f"<answer>Here it is: {task['question']}</answer>"
        guarded, alone = env.verify(task, copied), raw.verify(task, copied)
        gold = env.verify(task, f"<answer>{task['answer']}</answer>")
    finally:
        env.close()
        raw.close()
    assert guarded.status == "incorrect" and "copies the question" in guarded.detail, guarded
    assert "score_answer alone: 1" in guarded.detail
    assert alone.status == "correct" and gold.status == "correct"  # guards=false: the scorer alone


def test_guard_refuses_anything_but_the_yes_no_gold_on_game_of_life_halting():
    # reasoning-gym's scorer compares bool(answer) == bool(entry["answer"]): every non-empty
    # answer, "False" for a "True" task included, scores 1
    env = get_env("rg:game_of_life_halting")
    raw = get_env("rg:game_of_life_halting", guards="false")
    try:
        tasks = env.generate(4, seed=0)
        pairs = []
        for task in tasks:
            other = "False" if task["answer"] == "True" else "True"
            pairs += [(task, f"<answer>{other}</answer>"), (task, "<answer>...</answer>"),
                      (task, f"<answer>{task['answer']}</answer>"), (task, f"<answer>{task['answer'].lower()}.</answer>")]
        guarded, alone = env.verify_many(pairs, workers=1), raw.verify_many(pairs, workers=1)
    finally:
        env.close()
        raw.close()
    assert [v.status for v in alone] == ["correct"] * len(pairs)  # the finding, as measured
    assert [v.status for v in guarded] == ["incorrect", "incorrect", "correct", "correct"] * len(tasks)
    assert "not that word" in guarded[0].detail


def test_guard_refuses_a_puzzle24_expression_over_other_numbers():
    # reasoning-gym's scorer checks the value (24) and that four numbers in range are used,
    # not that they are the task's: one expression scores 1 on every task
    env = get_env("rg:puzzle24")
    raw = get_env("rg:puzzle24", guards="false")
    try:
        tasks = env.generate(3, seed=0)
        constant = next(e for e in ("1*2*3*4", "2*3*4*1", "4*6*1*1")
                        if all(sorted(t["metadata"]["numbers"]) != [1, 2, 3, 4] for t in tasks))
        pairs = [(t, f"<answer>{constant}</answer>") for t in tasks]
        pairs += [(t, f"<answer>{t['answer']}</answer>") for t in tasks]
        guarded, alone = env.verify_many(pairs, workers=1), raw.verify_many(pairs, workers=1)
    finally:
        env.close()
        raw.close()
    assert [v.status for v in alone] == ["correct"] * 6
    assert [v.status for v in guarded] == ["incorrect"] * 3 + ["correct"] * 3, guarded
    assert "the task's numbers" in guarded[0].detail


def test_guard_refuses_the_gold_answer_said_over_and_over():
    # gsm_symbolic's scorer reads the first number of the answer
    env = get_env("rg:gsm_symbolic")
    raw = get_env("rg:gsm_symbolic", guards="false")
    try:
        task = env.generate(1, seed=0)[0]
        gold = task["answer"]
        pairs = [(task, f"<answer>{' '.join([gold] * 3)}</answer>"), (task, f"<answer>{gold}, {gold}</answer>"),
                 (task, f"<answer>{gold}</answer>")]
        guarded, alone = env.verify_many(pairs, workers=1), raw.verify_many(pairs, workers=1)
    finally:
        env.close()
        raw.close()
    assert [v.status for v in alone] == ["correct"] * 3
    assert [v.status for v in guarded] == ["incorrect", "incorrect", "correct"], guarded
    assert "said more than once" in guarded[0].detail


@pytest.mark.parametrize("answer, entry, refused", [
    ("42", {"question": "What is 6*7?", "answer": "42"}, None),
    ("What is 6*7? 42", {"question": "What is 6*7?", "answer": "42"}, "copies the question"),
    ("Say hi twice: hi", {"question": "Say hi twice:", "answer": "Say hi twice: hi"}, None),  # the gold holds it
    ("True", {"question": "q", "answer": "True"}, None),
    ("yes.", {"question": "q", "answer": "Yes"}, None),
    ("Yes, surely", {"question": "q", "answer": "Yes"}, "not that word"),
    ("00", {"question": "q", "answer": "0"}, None),  # not separated: not the gold said twice
    ("7 days; 7 days", {"question": "q", "answer": "7 days"}, "said more than once"),
    ("3*8*1*1", {"question": "q", "answer": "3*8", "metadata": {"numbers": [3, 8]}}, "task's numbers"),
    ("3*8*1*1", {"question": "q", "answer": "3*8*1", "metadata": {"numbers": [3, 8]}}, None),  # gold uses others
    ("anything", {"question": "q", "answer": None}, None),  # no gold: only the question copy is refused
])
def test_the_guards_one_by_one(answer, entry, refused):
    from assay.envs.rg import guard

    why = guard(answer, entry)
    assert (why is None) if refused is None else (refused in why), why


def test_the_audit_probes_every_rg_dataset_with_the_family_probes():
    from assay.audit.audit import probe_table

    env = get_env("rg:chain_sum")
    try:
        names = list(probe_table(env))
    finally:
        env.close()
    assert names[-2:] == ["hedged_answer", "given_numbers"] and "prompt_copy" in names


#: The reproducers of docs/trust.md ("reasoning-gym's scorers, audited"): one file per
#: dataset under tests/data/rg-audit, each line a hack from `assay audit` (seed 0), with its
#: status from reasoning-gym's scorer alone (guards=false) and with assay's guards.
REPRODUCERS = {
    "game_of_life_halting": [("correct", "incorrect"), ("correct", "incorrect")],
    "puzzle24": [("correct", "incorrect")],
    "coin_flip": [("correct", "correct"), ("correct", "correct")],
    "fraction_simplification": [("correct", "correct"), ("correct", "incorrect")],
    "time_intervals": [("correct", "correct"), ("correct", "incorrect")],
    "letter_jumble": [("correct", "correct"), ("correct", "incorrect")],
    "gsm_symbolic": [("correct", "correct"), ("correct", "incorrect")],
    "intermediate_integration": [("correct", "correct")],
    "simple_integration": [("correct", "correct")],
    "polynomial_multiplication": [("correct", "correct")],
    "knights_knaves": [("correct", "incorrect")],
    "polynomial_equations": [("correct", "incorrect")],
    "sokoban": [("correct", "incorrect"), ("correct", "correct")],
}


@pytest.mark.parametrize("dataset", sorted(REPRODUCERS))
def test_the_audit_reproducers_verify_as_documented(dataset):
    path = os.path.join(os.path.dirname(__file__), "data", "rg-audit", f"{dataset}.jsonl")
    alone = run("verify", f"rg:{dataset}", path, "--workers", "1", "--set", "guards=false", "--quiet")
    guarded = run("verify", f"rg:{dataset}", path, "--workers", "1", "--quiet")
    assert alone.exit_code == guarded.exit_code == 0, alone.output + guarded.output
    raw_verdicts, guarded_verdicts = jsonl(alone.stdout), jsonl(guarded.stdout)
    assert [(a["status"], g["status"]) for a, g in zip(raw_verdicts, guarded_verdicts, strict=True)] \
        == REPRODUCERS[dataset], (raw_verdicts, guarded_verdicts)
    for verdict in guarded_verdicts:
        assert verdict["status"] == "correct" or verdict["detail"].startswith("assay guard: ")
