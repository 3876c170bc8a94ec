"""Single-turn training is what it was before multi-turn episodes existed: a 3-step run's
figures, recorded at commit fd522af (the last one without episodes) with this script's
settings on 2 torch threads, and reproduced by the trainer of today. The countdown row
was recorded again at fd522af on 2026-12-06, from the `tiny` prior re-shipped that day
(the code of fd522af given the new weights): today's trainer gave the same figures to
the last bit."""

from __future__ import annotations

import os
import tempfile

import pytest

os.environ.setdefault("ASSAY_CACHE", os.path.join(tempfile.gettempdir(), "assay-test-cache"))

from assay.training import Trainer, resolve  # noqa: E402
from assay.training.tracking import read_metrics  # noqa: E402

SETS = {"prompts_per_step": "4", "group_size": "4", "train_size": "64", "val_size": "8",
        "val_samples": "2", "eval_every": "2", "progress": "false", "max_new_tokens": "12"}
KEYS = ("loss", "reward", "entropy", "kl", "grad_norm", "completion_length", "val_accuracy",
        "val_greedy_accuracy", "gt_accuracy")
#: per step: the KEYS' values at fd522af (None: not measured that step)
BEFORE = {
    ("organism:tiny", "countdown"): [
        (0.013633633963763714, 0.0625, 1.3923946619033813, 0.0, 1.4667913913726807, 6.875, 0.0,
         0.125, 0.0625),
        (0.0, 0.0, 1.3426942825317383, 0.003846151754260063, 0.0, 6.625, None, None, 0.0),
        (0.010098990052938461, 0.0625, 1.3155708312988281, 0.009825240820646286,
         1.1129822731018066, 6.1875, 0.0, 0.0, 0.0625),
    ],
    ("organism:code-tiny", "code"): [
        (0.0, 0.0, 3.58455228805542, 0.0, 0.0, 11.0625, 0.0, 0.0, 0.0),
        (0.0, 0.0, 3.606578826904297, 0.0, 0.0, 10.625, None, None, 0.0),
        (0.0, 0.0, 3.5825493335723877, 0.0, 0.0, 10.5, 0.0, 0.0, 0.0),
    ],
}


@pytest.mark.parametrize("model, env", list(BEFORE), ids=["countdown", "code"])
def test_a_single_turn_run_trains_as_before_episodes(tmp_path, model, env):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # the sums' order, as recorded
    try:
        cfg = resolve(sets=SETS, flags={"model": model, "env": env, "out": str(tmp_path / "r"),
                                        "reward": "verifier", "steps": 3})
        Trainer(cfg, quiet=True).train()
    finally:
        torch.set_num_threads(threads)
    rows = read_metrics(tmp_path / "r")
    got = [tuple(row.get(k) for k in KEYS) for row in rows]
    assert "turns" not in rows[0]  # no episode figures on a single-turn run
    for now, then in zip(got, BEFORE[(model, env)], strict=True):
        for key, a, b in zip(KEYS, now, then, strict=True):
            assert (a is None) == (b is None), key
            if b is not None:  # a CPU with other vector units may round differently
                assert a == pytest.approx(b, rel=1e-4, abs=1e-7), key
