"""The GRPO trainer. `Trainer.step` reads top to bottom:

    rollout → rewards → advantages → loss → update → metrics

Everything the rewards and diagnostics need (log-probs, entropies, self-certainty of
every completion token, whole groups, ground truth) is computed here, in one place.
"""

from __future__ import annotations

import copy
import math
import random
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from assay import organism
from assay.adamw import AdamW, LambdaSchedule
from assay.envs import Task, get_env
from assay.envs.episode import Episode, discounted, max_turns
from assay.envs.taskfile import TaskFileUnusable, read_task_file, stale_prompts
from assay.errors import AssayError, first_line
from assay.rewards import Completion, RolloutGroup, get_reward, score_group
from assay.rewards.base import PENDING
from assay.training import checkpoint, collapse_rules, folder_lock
from assay.training.batch import (
    RolloutBatch,
    completion_mask_of,
    joined_stats,
    model_mask,
    scattered_stats,
)
from assay.training.config import RESUMABLE, TrainConfig, dump_yaml, read_yaml, resume_changes
from assay.training.data import TaskStream
from assay.training.diagnostics import (
    CollapseDetector,
    distinct_answers,
    kept_rows,
    label_accuracy,
    majority_ratio,
    repetition_rate,
    reward_accuracy,
    reward_precision,
)
from assay.training.episodes import Sampler, episode_metrics, play_episodes
from assay.training.loss import (
    group_advantages,
    k3_kl,
    masked_group_advantages,
    policy_loss,
    token_mean,
)
from assay.training.monitor import Monitors
from assay.training.policy import (
    SharedPrompts,
    TokenStats,
    completion_stats,
    device_name,
    encode_prompt,
    freeze_below,
    load_policy,
    resolve_model_path,
    uses_chat_template,
)
from assay.training.rollout import Generation, HFEngine, make_engine
from assay.training.rollout_store import FILENAME, RolloutStore, completion_rows
from assay.training.tracking import MetricsLog, kept_through
from assay.verifiers import STATUSES


class TrainError(AssayError, RuntimeError):
    """A run that cannot start or continue; the message says why in one line."""


class Trainer:
    """GRPO on one environment with one reward spec. See docs/training.md."""

    def __init__(self, config: TrainConfig, *, resume: bool = False, quiet: bool = False):
        self.config = cfg = config
        self.out = Path(cfg.out)
        self.quiet = quiet
        _seed_everything(cfg.seed)
        self.device = torch.device(device_name(cfg.device))
        self.env = get_env(cfg.env, **cfg.env_options)
        self.env.start_workers()  # forked before the model exists: they hold none of it
        self.reward = get_reward(cfg.reward)
        self.reward.check_env(self.env)  # e.g. self_verify on an env it cannot verify with
        self.monitors = Monitors(cfg.monitor)  # logged every step, never trained on
        self.monitors.check_env(self.env)
        #: whether the policy's per-token statistics come before the rewards: when the
        #: trained reward reads them, or a monitor that also asks the policy (asked before
        #: the update). Else the loss pass gives them, and a monitor that reads them alone
        #: is scored after it: watching a run never changes how it trains.
        self.stats_before_loss = "token_stats" in self.reward.needs or any(
            {"token_stats", "judge"} <= r.needs for r in self.monitors.rewards)
        # Tasks before the model, so that a bad task file fails at once, not after a model load.
        self.train_tasks = training_tasks(self.env, cfg.train_file, cfg.train_size, cfg.seed)
        self.val_tasks = training_tasks(self.env, cfg.val_file, cfg.val_size, 7_919 + cfg.seed)
        self.notes: list[str] = []  # what the command line tells the user before training
        for path, tasks in ((cfg.train_file, self.train_tasks), (cfg.val_file, self.val_tasks)):
            if note := prompt_note(self.env, tasks, path):
                self.notes.append(note)

        # One writer per run folder: a second command writing here is refused in one line
        # (folder_lock.py), and the lock is given back when train() ends or setup fails.
        folder_lock.acquire(self.out, what="run")
        try:
            self._open_run(resume)
        except BaseException:
            folder_lock.release(self.out, tidy=True)
            raise

    def _open_run(self, resume: bool) -> None:
        """Load the policy (from the run's checkpoint when resuming), the reference, the
        engine, optimizer and logs; the folder is locked."""
        cfg = self.config
        quiet = self.quiet
        # The run's own checkpoint holds the policy when resuming; the original model stays
        # the KL reference either way.
        # A folder "holds a run" once a run has written anything of its own there, a
        # 0-step run included. --resume needs one; a fresh run must not overwrite one.
        holds_run = holds_a_run(self.out)
        if resume and not holds_run:
            raise TrainError(
                f"--resume: {self.out} holds no run, so there is nothing to resume "
                "(run without --resume to start one)"
            )
        if not resume and holds_run:
            raise TrainError(
                f"{self.out} already holds a run; pass --resume or choose another --out"
            )
        # A fresh run appends to the rollouts and events it finds: ones left by another
        # run (no run of this folder to resume with them) are refused, never adopted.
        foreign = [name for name in APPENDED if _present(self.out / name)]
        if not resume and foreign:
            raise TrainError(
                f"{self.out} already holds {' and '.join(foreign)} of another run; move "
                "them away or choose another --out"
            )
        saved = self.out / "config.yaml"
        changes = resume_changes(read_yaml(str(saved)), cfg) if resume and saved.exists() else []
        if changes:  # never half-applied: refuse, naming what differs
            raise TrainError(
                f"--resume: {self.out} was trained with other settings ({'; '.join(changes[:4])}); "
                f"a resumed run may change only {', '.join(RESUMABLE[:6])}, ...: "
                "start a new run with another --out to change the rest"
            )
        if cfg.device == "cuda" and not torch.cuda.is_available():
            why = "this torch is built without CUDA" if torch.version.cuda is None else "no GPU is visible"
            raise TrainError(f"device=cuda, but CUDA is not available ({why}); use device=cpu or auto")
        # A resume reads and checks all it needs (the checkpoint's state, the metrics and
        # rollouts it keeps) before anything in the folder is written or cut: a refused
        # resume leaves the run as it was.
        found = checkpoint.latest(self.out) if resume else None
        state = checkpoint.load_state(found) if found is not None else None
        done = 0 if state is None else state["step"]
        if cfg.steps < done:  # before config.yaml is rewritten to claim it
            raise TrainError(
                f"--resume: {self.out} has done {done} steps already, more than "
                f"steps={cfg.steps}; give --steps {done} or more"
            )
        self.rollouts = RolloutStore(self.out, cfg.save_rollouts)
        metrics_path = self.out / "metrics.jsonl"
        if resume:  # what is kept of each (steps 1..done), read before either is cut
            kept_rollouts = self.rollouts.kept_through(done)
            kept_rows, kept_metrics = kept_through(metrics_path, done)

        self.model_path = resolve_model_path(cfg.model, cfg.prior, quiet=quiet)
        self.model, self.tokenizer = load_policy(
            str(found or self.model_path), device=str(self.device), dtype=cfg.dtype
        )
        self.model.train()
        if cfg.train_layers:
            freeze_below(self.model, cfg.train_layers)
        self.chat = uses_chat_template(self.tokenizer, cfg.chat_template)
        self.reference = None
        if cfg.beta > 0 or cfg.log_kl or cfg.verify_judge == "reference":
            self.reference = (
                copy.deepcopy(self.model)
                if found is None
                else load_policy(self.model_path, device=str(self.device), dtype=cfg.dtype)[0]
            )
            self.reference.eval().requires_grad_(False)
        self.engine = make_engine(cfg.engine, self.model, self.tokenizer, self.model_path)
        self.judge_engine = (
            HFEngine(self.reference, self.tokenizer)
            if cfg.verify_judge == "reference"
            else self.engine
        )
        self.optimizer = AdamW(
            [p for p in self.model.parameters() if p.requires_grad],
            lr=cfg.learning_rate,
            weight_decay=cfg.weight_decay,
            betas=(cfg.adam_beta1, cfg.adam_beta2),
        )
        self.scheduler = LambdaSchedule(self.optimizer, self._lr_factor)

        self.data = TaskStream(self.train_tasks, cfg.seed)
        self.step_count = 0
        self.detector = CollapseDetector(
            cfg.collapse_signal, cfg.collapse_threshold, window=collapse_rules.window(cfg.steps)
        )
        self._verify_time, self._verified = 0.0, 0  # the latest step's verification (make_groups)
        if state is not None:
            self._restore(found, state, kept_rows)
        elif resume:  # a run stopped before its first checkpoint: start it over
            self.notes.append(f"{self.out} has no checkpoint yet: --resume starts it from step 0")

        # Everything is checked: from here on the folder is written. config.yaml comes
        # before the metrics, rollouts and events, so that a folder holding any of this
        # run's holds a run to resume (`holds_a_run`).
        self.log = MetricsLog(
            self.out,
            tensorboard=cfg.tensorboard,
            wandb=cfg.wandb,
            wandb_project=cfg.wandb_project,
            config=cfg.to_dict(),
            resumed_at=done if resume else None,
        )
        self.out.mkdir(parents=True, exist_ok=True)
        dump_yaml(cfg, self.out / "config.yaml")
        if resume:  # cut back to the checkpoint's step: the steps after it run again
            if self.rollouts.path.exists():
                self.rollouts.replace(kept_rollouts)
            if metrics_path.exists():
                self.log.replace(kept_metrics)
        if state is not None:  # again, after everything that might draw random numbers
            checkpoint.set_rng_state(state["rng"])

    # -- the GRPO step -----------------------------------------------------------------

    def step(self) -> dict[str, Any]:
        """One rollout batch and one (or `updates_per_batch`) optimizer steps; returns metrics."""
        cfg, step = self.config, self.step_count + 1
        start = time.perf_counter()
        metrics: dict[str, Any] = {"step": step}
        if cfg.eval_every and (step - 1) % cfg.eval_every == 0:
            metrics.update(self.validate(step))  # the policy that samples this step's rollouts

        # 1. Rollout: G completions for each prompt of the batch; with a multi-turn env,
        # G whole episodes, replies and observations (only replies are trained on).
        tasks = self.data.next(cfg.prompts_per_step)
        prompt_ids = [self.encode_prompt(task) for task in tasks]

        sample = self.sampler(lambda turn: self._seed(step, 0 if turn == 0 else 100 + turn))
        episodes = None
        if max_turns(self.env) > 1:
            generations, episodes = play_episodes(
                self.env, self.tokenizer, tasks, prompt_ids, cfg.group_size, sample,
                **self._episode_limits(),
            )
        else:
            generations = sample(prompt_ids, cfg.group_size, 0)
        batch = RolloutBatch.build(
            prompt_ids, generations, self.tokenizer.pad_token_id, mask_truncated=cfg.mask_truncated
        ).to(self.device)

        # 2. Rewards: each prompt's group at once. When the reward reads no per-token
        # statistics (the verifier), the loss pass computes them after the rewards, so that a
        # row whose group's rewards are all equal (advantage 0) is read without gradients.
        # When a reward reads them, they come first: the whole batch in one pass with
        # gradients that also serves the loss, or micro-batched, a pass without.
        fused = cfg.micro_batch_size == 0 or cfg.micro_batch_size >= len(batch.completions)
        early = self.stats_before_loss
        stats = self.token_stats(batch, grad=fused) if early else None
        groups = self.make_groups(tasks, batch, stats, step, episodes)
        rewards, reward_parts = self.score(groups)
        # the same groups, not in the loss; those reading the statistics once they exist
        monitored = self.monitors.score(groups, reads_stats=None if early else False)
        truth = [[v.correct for v in group.verdicts] for group in groups]

        # 3. Advantages: normalised within each group (std scaling off = Dr. GRPO). A
        # completion whose verifier broke (an `error` verdict) has no known reward, and a 0
        # would be a corrupted gradient: it is left out of its group's mean and std, its
        # advantage and the loss. A group left with fewer than two completions is skipped.
        flat = torch.tensor([r for group in rewards for r in group], dtype=torch.float32)  # (N,)
        keep = torch.tensor([v.status != "error" for g in groups for v in g.verdicts])  # (N,)
        if bool(keep.all()):  # every verdict known: the plain GRPO computation
            advantages, group_std = group_advantages(flat, cfg.group_size, scale=cfg.scale_rewards)
            used = keep  # (N,): the completions the loss sees
        else:  # (N,) each
            advantages, group_std, used = masked_group_advantages(
                flat, keep, cfg.group_size, scale=cfg.scale_rewards
            )

        # 4 + 5. Loss and update, over the `used` completions only.
        ref = self.reference_logprobs(batch) if self.reference is not None else None
        update, stats = self.update(
            batch, stats, advantages.to(self.device), ref, fused, used.to(self.device)
        )
        if not early:  # the stored rollouts, the metrics and those monitors read them
            self.attach_stats(groups, batch, stats)
            monitored.update(self.monitors.score(groups, reads_stats=True))

        # 6. Metrics.
        metrics.update(update)
        metrics.update(self.step_metrics(batch, stats, groups, rewards, truth, group_std, used))
        metrics.update(reward_parts)
        metrics.update(self.monitors.metrics(monitored, groups, used))
        if episodes is not None:
            metrics.update(episode_metrics(episodes, batch.completions))
        metrics["step_time"] = time.perf_counter() - start
        self.step_count = step
        collapse = self.detector.update(step, metrics)
        if collapse is not None:
            metrics["collapse"] = {
                "signal": collapse.signal,
                "value": collapse.value,
                "threshold": collapse.threshold,
            }
        self.log.write(metrics)
        rows = completion_rows(step, groups, rewards, (~keep).tolist())
        for row, episode in zip(rows, episodes or [], strict=False):  # every turn is kept
            row["turns"] = {"replies": episode.replies, "observations": episode.observations}
        self.rollouts.write(rows)
        return metrics

    # -- pieces of the step ------------------------------------------------------------

    def sampler(self, seed: Callable[[int], int], *, greedy: bool = False) -> Sampler:
        """The rollout engine with the run's sampling settings, as `play_episodes` calls it:
        `seed(turn)` seeds each turn's call."""
        cfg = self.config

        def sample(contexts: list[list[int]], n: int, turn: int) -> list[list[Generation]]:
            if greedy:
                return self.engine.generate(contexts, n, greedy=True,
                                            max_new_tokens=cfg.max_new_tokens, seed=seed(turn))
            return self.engine.generate(contexts, n, temperature=cfg.temperature, top_p=cfg.top_p,
                                        max_new_tokens=cfg.max_new_tokens, seed=seed(turn))

        return sample

    def _episode_limits(self) -> dict[str, Any]:
        """How `play_episodes` bounds an episode here: the chat template, the model's
        positions (when it has a table of them) and the run's token budget."""
        return {"chat": self.chat, "positions": getattr(self.engine, "max_positions", None),
                "max_tokens": self.config.max_episode_tokens,
                "reply_tokens": self.config.max_new_tokens}

    def encode_prompt(self, task: Task) -> list[int]:
        return encode_prompt(self.tokenizer, task.prompt, self.chat)

    def token_stats(self, batch: RolloutBatch, *, grad: bool) -> TokenStats:
        """Per-token statistics of every completion (with the autograd graph when `grad`)."""
        parts = []
        with torch.set_grad_enabled(grad):
            micro = self._row_batches(every_row(batch))  # one pass when grad: the whole batch
            shared = self._shared_prompts(self.model, batch, micro)
            for rows in micro:
                parts.append(  # each field (rows, C)
                    completion_stats(
                        self.model,
                        batch.input_ids[rows],  # (rows, P + C)
                        batch.attention_mask[rows],  # (rows, P + C)
                        batch.completion_len,
                        self.config.temperature,
                        prompts=shared.rows(rows) if shared else None,
                    )
                )
        return joined_stats(parts, completion_mask_of(batch))

    def make_groups(
        self,
        tasks: list[Task],
        batch: RolloutBatch,
        stats: TokenStats | None,
        step: int,
        episodes: list[Episode] | None = None,
    ) -> list[RolloutGroup]:
        """One `RolloutGroup` per prompt, with texts, per-token arrays and verdicts. An
        episode's completion is its last reply (what is verified and voted on) with the
        per-token arrays of every token the model wrote in it (observations left out).
        Without `stats`, the arrays are `PENDING` until `attach_stats`."""
        G = self.config.group_size
        if episodes is None:
            texts = self.tokenizer.batch_decode(
                [g.token_ids for g in batch.completions], skip_special_tokens=True
            )
        else:
            texts = [e.final_reply for e in episodes]
        # One batch for the whole step: the env runs it in parallel (workers, sandbox).
        started = time.perf_counter()
        self.env.last_batch = None  # verify_many sets it (a stand-in env may not)
        verdicts = self.env.verify_many([(tasks[i // G], text) for i, text in enumerate(texts)])
        self._verify_time = time.perf_counter() - started
        figures = self.env.last_batch  # repeats share a verdict: the distinct pairs checked
        self._verified = figures.checked if figures is not None else len(texts)
        if episodes is not None:  # env.turn_discount: a later right submission earns less
            verdicts = discounted(self.env, episodes, verdicts)
        judge_calls = iter(range(1, 1_000_000))
        groups = []
        for p, task in enumerate(tasks):
            completions = []
            for i in range(p * G, (p + 1) * G):
                g = batch.completions[i]
                completions.append(
                    Completion(
                        text=texts[i],
                        token_ids=[t for t, m in zip(g.token_ids, model_mask(g), strict=True) if m],
                        logprobs=PENDING,
                        entropies=PENDING,
                        self_certainty=PENDING,
                        finished=g.finished,
                    )
                )
            group = RolloutGroup(
                task,
                task.prompt,
                completions,
                self.env,
                judge=lambda prompts: self.judge(prompts, step, next(judge_calls)),
                verdicts=verdicts[p * G : (p + 1) * G],
            )
            groups.append(group)
        if stats is not None:
            self.attach_stats(groups, batch, stats)
        return groups

    @staticmethod
    def attach_stats(groups: list[RolloutGroup], batch: RolloutBatch, stats: TokenStats) -> None:
        """Each completion's per-token arrays from `stats` (rows in batch order), the tokens
        the model wrote only."""
        arrays = [
            t.detach().float().cpu().numpy()  # (N, C)
            for t in (stats.logprobs, stats.entropies, stats.self_certainty)
        ]
        completions = [c for group in groups for c in group.completions]
        for i, (c, g) in enumerate(zip(completions, batch.completions, strict=True)):
            n, mine = len(g.token_ids), model_mask(g)
            c.logprobs = arrays[0][i, :n][mine]
            c.entropies = arrays[1][i, :n][mine]
            c.self_certainty = arrays[2][i, :n][mine]

    def score(self, groups: list[RolloutGroup]) -> tuple[list[list[float]], dict[str, float]]:
        """Each group's rewards, and the mean of each part of a weighted combination."""
        rewards, parts = [], {}
        for group in groups:
            values, named = score_group(self.reward, group)
            rewards.append(values)
            if len(named) > 1 or self.reward.name not in named:  # a weighted combination
                for name, part in named.items():
                    parts.setdefault(f"reward/{name}", []).extend(part)
        return rewards, {k: float(np.mean(v)) for k, v in parts.items()}

    def judge(self, prompts: list[str], step: int, call: int) -> list[str]:
        """The policy (or the frozen reference) answering verification prompts, for `self_verify`."""
        cfg = self.config
        ids = [self.tokenizer(p)["input_ids"] for p in prompts]
        out = self.judge_engine.generate(
            ids,
            1,
            temperature=cfg.verify_temperature,
            max_new_tokens=cfg.verify_max_new_tokens,
            seed=self._seed(step, 10 + call),
        )
        return self.tokenizer.batch_decode([g[0].token_ids for g in out], skip_special_tokens=True)

    @torch.no_grad()
    def reference_logprobs(self, batch: RolloutBatch) -> torch.Tensor:
        micro = self._row_batches(every_row(batch))
        shared = self._shared_prompts(self.reference, batch, micro)
        parts = [
            completion_stats(
                self.reference,
                batch.input_ids[rows],
                batch.attention_mask[rows],
                batch.completion_len,
                self.config.temperature,
                with_entropy=False,
                prompts=shared.rows(rows) if shared else None,
            ).logprobs
            for rows in micro
        ]
        return torch.cat(parts)

    def update(
        self,
        batch: RolloutBatch,
        stats: TokenStats | None,
        advantages: torch.Tensor,
        ref: torch.Tensor | None,
        fused: bool,
        used: torch.Tensor,
    ) -> tuple[dict[str, float], TokenStats]:
        """`updates_per_batch` optimizer steps on the clipped GRPO loss of the `used` rows;
        the metrics, and the token statistics (computed by the first pass when `stats` is
        None: the policy that sampled, before any update).

        The rows left out (masked or skipped: `masked_group_advantages`) count nowhere, not
        even in the loss's token and sequence counts: the loss is exactly the loss of a
        batch that never had them. A used row whose advantage is 0 (its group's rewards all
        equal) adds exactly 0 to the gradient unless a KL term pulls on it: it counts in
        the loss's token and sequence counts, but its pass needs no gradient (when its
        statistics are wanted at all), which spares its share of the backward pass.
        """
        cfg = self.config
        mask = batch.loss_mask  # (N, C); advantages, used: (N,); ref: (N, C) or None
        completion_mask = completion_mask_of(batch)  # (N, C)
        # (N, C): log π_old, the policy that sampled (filled by the first pass when stats is None)
        old = torch.zeros_like(mask) if stats is None else stats.logprobs.detach()
        totals = {"sequences": int(used.sum()), "tokens": float(mask[used].sum().clamp(min=1.0))}
        graph = fused and stats is not None  # the pass that fed the rewards kept its graph
        # (N,): the rows the gradient sees (with the rewards' graph, the backward pass covers
        # every row whatever the loss reads, and the loss reads them all, as before)
        pulls = used if graph else self._pulls(used, advantages, ref)
        learning = self._row_batches(pulls)  # passes with gradients
        resting = self._row_batches(~pulls) if stats is None else []
        computed: list[tuple[torch.Tensor, TokenStats]] = []  # (rows, their statistics)
        losses, clipped = [], 0.0
        for iteration in range(cfg.updates_per_batch):
            first = stats is None and iteration == 0  # this pass gives the statistics
            self.optimizer.zero_grad(set_to_none=True)
            loss_sum = 0.0
            # micro-batched: the prompts read once per update (its weights), for every micro-batch
            shared = None if graph else self._shared_prompts(self.model, batch, learning)
            for rows in learning:  # (K,) row indices each
                if graph and iteration == 0:
                    logprobs = stats.logprobs[rows]  # (K, C): the graph of the rewards' pass
                else:  # (K, C), with the current weights
                    part = self._pass(batch, rows, shared, with_entropy=first)
                    if first:  # the policy that sampled, exactly: no update has happened yet
                        computed.append((rows, part))
                        old[rows] = part.logprobs.detach() * completion_mask[rows]
                    logprobs = part.logprobs
                parts = policy_loss(  # .loss: a scalar, this micro-batch's share
                    logprobs,
                    old[rows],
                    advantages[rows],
                    mask[rows],
                    loss_type=cfg.loss_type,
                    epsilon_low=cfg.epsilon_low,
                    epsilon_high=cfg.epsilon_high,
                    beta=cfg.beta,
                    ref_logprobs=None if ref is None else ref[rows],
                    max_completion_length=cfg.max_new_tokens,
                    num_sequences=totals["sequences"],
                    num_tokens=totals["tokens"],
                )
                parts.loss.backward()
                loss_sum += float(parts.loss.detach())
                clipped += parts.clipped  # a row at advantage 0 is never clipped
            if shared is not None:  # what the micro-batches sent back into the prompts
                shared.backward()
            if first:
                with torch.no_grad():
                    for rows in resting:  # the rows at advantage 0, and those not used
                        part = self._pass(batch, rows, shared, with_entropy=True)
                        computed.append((rows, part))
                        old[rows] = part.logprobs * completion_mask[rows]
            if not learning and totals["sequences"]:  # every used row at advantage 0: the
                for p in self.model.parameters():  # zeros their backward pass would have
                    if p.requires_grad:  # left, which AdamW still steps on (momentum, decay)
                        p.grad = torch.zeros_like(p)
            grad_norm = _grad_norm(self.model, cfg.max_grad_norm)
            self.optimizer.step()
            losses.append(loss_sum)
        lr = self.scheduler.get_last_lr()[0]  # the rate this step used
        self.scheduler.step()
        self.engine.sync_weights(self.model)
        if stats is None:  # as `token_stats` gives them, without the graph
            stats = scattered_stats(computed, completion_mask)
        kl = float("nan")  # of the first iteration, before any update: log π_old
        if ref is not None and totals["sequences"]:
            kl = token_mean(k3_kl(old[used], ref[used]), mask[used])
        return {
            "loss": losses[-1],
            "grad_norm": grad_norm,
            "clip_ratio": clipped / (totals["tokens"] * cfg.updates_per_batch),  # 0 if none used
            "kl": kl,
            "lr": lr,
        }, stats

    def _pulls(self, used: torch.Tensor, advantages: torch.Tensor,
               ref: torch.Tensor | None) -> torch.Tensor:
        """(N,) bool: the used rows whose loss has a gradient: a non-zero advantage, or
        a KL term (β ≠ 0) pulling every row towards the reference."""
        if ref is not None and self.config.beta != 0:
            return used
        return used & (advantages != 0)

    def _pass(self, batch: RolloutBatch, rows: torch.Tensor, shared: SharedPrompts | None,
              *, with_entropy: bool) -> TokenStats:
        """The token statistics of these rows of the batch (each field (K, C))."""
        return completion_stats(self.model, batch.input_ids[rows], batch.attention_mask[rows],
                                batch.completion_len, self.config.temperature,
                                with_entropy=with_entropy,
                                prompts=shared.rows(rows) if shared else None)

    def step_metrics(
        self,
        batch: RolloutBatch,
        stats: TokenStats,
        groups: list[RolloutGroup],
        rewards: list[list[float]],
        truth: list[list[bool]],
        group_std: torch.Tensor,
        used: torch.Tensor,
    ) -> dict[str, Any]:
        G = self.config.group_size
        mask = completion_mask_of(batch)  # (N, C)
        lengths = mask.sum(-1)  # (N,)
        stds = group_std.view(-1, G)[:, 0]  # (N,) -> (N/G, G) -> (N/G,): one std per group
        stds = stds[~stds.isnan()]  # the skipped groups have none
        # The reward figures cover the completions the loss saw (`used`): a masked one's
        # reward is unknown, not 0.
        seen, seen_truth = kept_rows(rewards, used), kept_rows(truth, used)
        nan = float("nan")
        out = {
            "reward": float(np.mean(np.concatenate(seen))) if seen else nan,
            "reward_std": float(stds.mean()) if len(stds) else nan,
            "reward_accuracy": reward_accuracy(seen, seen_truth, self.reward.binary) if seen else nan,
            "reward_precision": reward_precision(seen, seen_truth, self.reward.binary),
            "label_accuracy": label_accuracy(groups, truth),  # the vote over every answer
            "gt_accuracy": float(np.mean(np.concatenate(seen_truth))) if seen_truth else nan,
            # mean over all completion tokens of the batch: (N, C) -> scalar
            "entropy": token_mean(stats.entropies.detach(), mask),
            "completion_length": float(lengths.float().mean()),
            "repetition_rate": repetition_rate([g.token_ids for g in batch.completions]),
            "frac_reward_zero_std": float(
                torch.isclose(stds, torch.zeros_like(stds)).float().mean()
            ) if len(stds) else nan,
            "truncated_ratio": float(np.mean([not g.finished for g in batch.completions])),
            "answer_rate": float(np.mean([a is not None for g in groups for a in g.answers])),
            "distinct_answers": distinct_answers(groups),
            "majority_ratio": majority_ratio(groups),
            "tokens": int(batch.prompt_tokens + lengths.sum()),
        }
        # A failing verifier is counted, never a silent 0: one count per verdict status.
        statuses = Counter(v.status for group in groups for v in group.verdicts)
        out.update({f"verdicts/{status}": statuses[status] for status in STATUSES})
        out["masked_completions"] = statuses["error"]  # left out of the statistics and loss
        out["skipped_groups"] = int((~used.view(-1, G).any(dim=1)).sum())  # < 2 left
        out["verify_time"] = self._verify_time  # seconds the step's verification took
        out["verify_pairs"] = self._verified  # distinct (task, completion) pairs actually checked
        return out

    @torch.no_grad()
    def validate(self, step: int) -> dict[str, Any]:
        """Greedy accuracy and mean accuracy over `val_samples` samples on the validation set,
        with the per-task figures behind them (`val_task_accuracy`: each task's share of
        correct samples; `val_task_greedy`: 1 or 0), so that the lab can put an interval on
        every accuracy and compare two steps task by task."""
        cfg = self.config
        ids = [self.encode_prompt(t) for t in self.val_tasks]

        greedy = self.sampler(lambda turn: turn, greedy=True)
        sampled = self.sampler(lambda turn: self._seed(step, 1) + turn)

        def per_task(sample: Sampler, n: int) -> np.ndarray:
            if max_turns(self.env) > 1:  # whole episodes; their last replies are verified
                _, episodes = play_episodes(
                    self.env, self.tokenizer, self.val_tasks, ids, n, sample,
                    **self._episode_limits(),
                )
                texts = [e.final_reply for e in episodes]
            else:
                texts = [self.tokenizer.decode(g.token_ids, skip_special_tokens=True)
                         for gens in sample(ids, n, 0) for g in gens]
            pairs = [(self.val_tasks[i // n], text) for i, text in enumerate(texts)]
            correct = [v.correct for v in self.env.verify_many(pairs)]
            return np.asarray(correct, dtype=float).reshape(len(self.val_tasks), -1)  # (T, n)

        tasks_sampled, tasks_greedy = per_task(sampled, cfg.val_samples), per_task(greedy, 1)
        return {
            "val_accuracy": float(tasks_sampled.mean()),
            "val_greedy_accuracy": float(tasks_greedy.mean()),
            "val_task_accuracy": [round(float(x), 6) for x in tasks_sampled.mean(axis=1)],
            "val_task_greedy": [int(x) for x in tasks_greedy[:, 0]],
        }

    # -- the run -----------------------------------------------------------------------

    def train(self, steps: int | None = None) -> dict[str, Any]:
        """Run until `steps` (default: config.steps) or the collapse stop; returns a summary."""
        from assay.training.progress import StepProgress

        cfg = self.config
        total = cfg.steps if steps is None else steps
        last: dict[str, Any] = {}
        interrupted = finished = False
        try:
            with StepProgress(
                total, start=self.step_count, enabled=cfg.progress and not self.quiet
            ) as bar:
                while self.step_count < total:
                    last = self.step()
                    bar.advance(last)
                    stop = self.detector.collapse is not None and cfg.stop_on_collapse
                    if (
                        (cfg.save_every and self.step_count % cfg.save_every == 0)
                        or stop
                        or self.step_count == total
                    ):
                        self.save()
                    if "collapse" in last:
                        bar.note(self.detector.collapse.describe())
                    if stop:
                        break
            finished = True
        except KeyboardInterrupt:  # Ctrl-C: say how far it got, then let the caller exit
            interrupted = True
            raise
        finally:  # on success, Ctrl-C or a crash: no worker, jail or open log left behind
            try:
                if finished or interrupted:
                    summary = self._write_summary(last, interrupted)
            finally:
                self.log.close()
                self.env.close()
                folder_lock.release(self.out)
        return summary

    def _write_summary(self, last: dict[str, Any], interrupted: bool) -> dict[str, Any]:
        """`summary.json`: steps done, the collapse if any, the last metrics; `interrupted`
        marks a run stopped by Ctrl-C (resume it from its last checkpoint)."""
        collapse = self.detector.collapse
        summary = {
            "steps": self.step_count,
            "collapse": None if collapse is None else vars(collapse),
            # the last step's figures; per-task lists stay in metrics.jsonl
            "last": {k: v for k, v in last.items() if not isinstance(v, list)},
            "interrupted": interrupted,
        }
        checkpoint.write_json(self.out / "summary.json", summary)
        return summary

    def save(self) -> Path:
        state = {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "data": self.data.state(),
        }
        return checkpoint.save(
            self.out,
            self.step_count,
            self.model,
            self.tokenizer,
            state,
            keep=self.config.keep_checkpoints,
            metadata=organism.read_metadata(self.model_path),
        )

    def _restore(self, path: Path, state: dict[str, Any], rows: list[dict[str, Any]]) -> None:
        """Continue from checkpoint `path` (its `state` read by `checkpoint.load_state`),
        with `rows`, the metrics of its steps, as the collapse detector's history."""
        try:
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.data.load_state(state["data"])
            checkpoint.set_rng_state(state["rng"])  # set here to be checked before any write
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:  # not what save() wrote
            why = first_line(exc)
            raise TrainError(
                f"{path / checkpoint.STATE_FILE}: cannot be restored ({why[:200]})"
            ) from None
        self.step_count = state["step"]
        for row in rows:  # the detector resumes with its history
            try:
                self.detector.update(row["step"], row)
            except TypeError:  # a figure that is not a number, e.g. "reward_accuracy": "x"
                raise TrainError(
                    f"{self.out / 'metrics.jsonl'}: step {row['step']} holds a "
                    f"{self.detector.signal} that is not a number; cannot resume"
                ) from None

    # -- helpers -----------------------------------------------------------------------

    @staticmethod
    def _shared_prompts(model, batch: RolloutBatch, micro: list[torch.Tensor]) -> SharedPrompts | None:
        """With several micro-batches, the batch's prompts read once for all of them
        (gradients on as they are here); None: each micro-batch reads its own."""
        if len(micro) < 2:
            return None
        return SharedPrompts.of(model, batch.input_ids, batch.attention_mask, batch.completion_len)

    def _row_batches(self, rows: torch.Tensor) -> list[torch.Tensor]:
        """The rows `rows` ((N,) bool) marks, as index tensors of at most `micro_batch_size`
        each (one with 0, the whole batch); none when it marks none."""
        index = rows.nonzero().squeeze(1)  # (K,)
        size = self.config.micro_batch_size
        if index.numel() == 0:
            return []
        if size <= 0:
            return [index]
        return list(index.split(size))

    def _seed(self, step: int, purpose: int) -> int:
        """The sampling seed of one generate call: a function of (run seed, step, purpose)."""
        return (self.config.seed * 1_000_003 + step * 1_009 + purpose) % (2**31)

    def _lr_factor(self, step: int) -> float:
        cfg = self.config
        if cfg.warmup_steps and step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.lr_schedule == "constant":
            return 1.0
        span = max(1, cfg.steps - cfg.warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - cfg.warmup_steps) / span)))


def training_tasks(env: Any, path: str | None, size: int, seed: int) -> list[Task]:
    """The tasks of a task file, or `size` generated with `seed`; a bad file or an env that
    cannot generate is one line (`TrainError`)."""
    if path:
        try:
            return read_task_file(env, path)
        except TaskFileUnusable as exc:
            raise TrainError(str(exc)) from None
    try:
        return env.generate(size, seed=seed)
    except NotImplementedError:
        raise TrainError(
            f"env {env.name!r} does not generate tasks; pass train_file and val_file"
        ) from None


def prompt_note(env: Any, tasks: list[Task], path: str | None) -> str | None:
    """What to tell the user when a task file's stored prompts are those the env writes
    with its defaults, not with this run's options (`stale_prompts`): the model reads them
    as they are, and the organism, for one, cannot read the long ones."""
    stale = stale_prompts(env, tasks) if path else 0
    if not stale:
        return None
    return (f"{path}: {stale} of {len(tasks)} tasks carry the prompt "
            f"{env.name} writes with its default options, not the one these options write; "
            "they are used as they are (remove the `prompt` field from the file to have "
            "them written for this run)")


#: what makes a folder hold a run, one to --resume (a 0-step run writes its config and summary)
RUN_FILES = ("config.yaml", "summary.json", "metrics.jsonl", "checkpoints")
#: what a run appends to, written only after its metrics.jsonl: alone, they are another run's
APPENDED = (FILENAME, "tensorboard")


def _present(path: Path) -> bool:
    return path.exists() or path.is_symlink()  # a dangling link is there too


def holds_a_run(out: Path) -> bool:
    """Whether `out` holds a run (`RUN_FILES`): `--resume` needs one, a fresh run refuses it."""
    return any(_present(out / name) for name in RUN_FILES)


def every_row(batch: RolloutBatch) -> torch.Tensor:
    """(N,) bool, all True: every completion of the batch (for `_row_batches`)."""
    return torch.ones(len(batch.completions), dtype=torch.bool, device=batch.input_ids.device)


def _grad_norm(model, max_norm: float) -> float:
    params = [p for p in model.parameters() if p.grad is not None]
    if not params:
        return 0.0
    if max_norm > 0:
        return float(torch.nn.utils.clip_grad_norm_(params, max_norm))
    return float(torch.norm(torch.stack([p.grad.detach().norm() for p in params])))


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
