"""`TrainConfig`: every knob of a training run, in one documented dataclass.

Values are resolved in this order, each overriding the one before:
  1. the defaults below (the study's settings: 64 prompts x 8 rollouts, temperature 1.0,
     lr 1e-6, no KL, one gradient step per rollout batch);
  2. the model's recommended settings (`train_defaults` in its `assay.json`; the
     organism ships some, e.g. lr 1e-4 and 16 prompts per step);
  3. a YAML file (`--config FILE`);
  4. `--set KEY=VALUE` (and `env.KEY=VALUE` for env options, `prior.KEY=VALUE` for the
     organism's prior);
  5. the explicit flags of `assay train` (--env, --reward, --model, --steps, --seed, --out).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from assay import options
from assay.errors import AssayError, brief

LOSS_TYPES = ("grpo", "dr_grpo", "dapo")
ENGINES = ("hf", "vllm")
SCHEDULES = ("cosine", "constant")
#: Metrics the trainer logs every step (or at validation) that the collapse detector can
#: watch; `verdicts/STATUS`, `monitor/NAME` and, for a weighted reward, `reward/NAME` are
#: logged too.
COLLAPSE_SIGNALS = (
    "reward", "reward_std", "reward_accuracy", "label_accuracy", "gt_accuracy", "entropy",
    "completion_length", "repetition_rate", "frac_reward_zero_std", "truncated_ratio",
    "answer_rate", "distinct_answers", "majority_ratio", "tokens", "loss", "grad_norm", "clip_ratio", "kl", "lr",
    "val_accuracy", "val_greedy_accuracy", "masked_completions", "skipped_groups",
)
_VERDICT_SIGNALS = tuple(
    f"verdicts/{s}" for s in ("correct", "incorrect", "invalid", "timeout", "error")
)


class ConfigError(AssayError, ValueError):
    """A bad configuration value; the message names the file or key."""


@dataclass
class TrainConfig:
    """The knobs of `assay train`. Field comments are the documentation (docs/training.md)."""

    # -- what to train ------------------------------------------------------------------
    model: str = "organism"  #: "organism[:preset]", a local HF model folder, or a hub id
    env: str = "countdown"  #: environment name (`assay envs`)
    reward: str = "verifier"  #: reward spec: a name or `0.5*verifier + 0.5*self_certainty`
    env_options: dict[str, Any] = field(default_factory=dict)  #: env options (`env.KEY=V`)
    prior: dict[str, Any] = field(default_factory=dict)  #: organism prior options (`prior.KEY=V`)
    steps: int = 200  #: optimizer steps (one rollout batch each)
    seed: int = 0  #: seeds data order, sampling and initialisation of the run
    out: str = "runs/assay"  #: output folder: metrics.jsonl, config.yaml, checkpoints/

    # -- data ---------------------------------------------------------------------------
    train_file: str | None = None  #: JSONL task file; default: `train_size` generated tasks
    train_size: int = 4096  #: generated training tasks (procedural envs)
    val_file: str | None = None  #: JSONL validation tasks; default: `val_size` generated
    val_size: int = 256  #: generated validation tasks (a different seed from training)

    # -- rollout ------------------------------------------------------------------------
    prompts_per_step: int = 64  #: prompts per rollout batch
    group_size: int = 8  #: completions per prompt (G)
    temperature: float = 1.0  #: sampling temperature (log-probs use the same)
    top_p: float = 1.0  #: nucleus sampling (1.0 = the full distribution)
    max_new_tokens: int = 512  #: completion length limit (of each reply, in a multi-turn episode)
    #: multi-turn episodes: the most tokens after the prompt, replies and observations
    #: together; a turn that could cross it is not played, the last reply is final (0 = no
    #: limit but max_turns)
    max_episode_tokens: int = 0
    engine: str = "hf"  #: rollout engine: "hf" (a sampling loop on the training model with its KV cache) or "vllm"
    #: put each prompt to the model as a user message through its tokenizer's chat
    #: template; none (the default) = whenever the tokenizer has one (the organism has none)
    chat_template: bool | None = None
    verify_temperature: float = 0.5  #: sampling temperature of `self_verify` judgements
    verify_max_new_tokens: int = 256  #: length limit of a `self_verify` judgement
    #: who answers `self_verify` prompts: "policy" (the model being trained, as in the study)
    #: or "reference" (the frozen initial model: a judge training cannot talk round)
    verify_judge: str = "policy"

    # -- loss ---------------------------------------------------------------------------
    loss_type: str = "dapo"  #: "grpo" (seq-mean), "dr_grpo" (sum / B·max_len), "dapo" (token-mean)
    scale_rewards: bool = True  #: divide advantages by the group std (False = Dr. GRPO)
    epsilon_low: float = 0.2  #: ratio clip below 1 − ε_low
    epsilon_high: float = 0.2  #: ratio clip above 1 + ε_high (DAPO uses 0.28)
    beta: float = 0.0  #: weight of the k3 KL to the frozen reference (0 = none)
    updates_per_batch: int = 1  #: gradient steps per rollout batch (μ; >1 makes clipping bite)
    mask_truncated: bool = False  #: drop completions cut at max_new_tokens from the loss

    # -- optimisation -------------------------------------------------------------------
    learning_rate: float = 1e-6  #: AdamW peak learning rate
    weight_decay: float = 0.0  #: AdamW weight decay
    adam_beta1: float = 0.9  #: AdamW β1
    adam_beta2: float = 0.999  #: AdamW β2
    max_grad_norm: float = 1.0  #: gradient clipping (0 = off)
    lr_schedule: str = "cosine"  #: "cosine" (to 0 at `steps`) or "constant", after warm-up
    warmup_steps: int = 0  #: linear warm-up steps
    micro_batch_size: int = 0  #: sequences per forward/backward (0 = the whole batch at once)
    #: train only the last N decoder layers and the final norm, the rest frozen (0 = all):
    #: the backward pass and the optimizer's state shrink to those layers
    train_layers: int = 0
    device: str = "auto"  #: "auto" (cuda if available), "cpu" or "cuda"
    dtype: str = "float32"  #: parameter dtype: "float32" or "bfloat16"

    # -- diagnostics --------------------------------------------------------------------
    eval_every: int = 20  #: validate before steps 1, 1+k, 1+2k, ... (0 = never)
    val_samples: int = 8  #: samples per validation task for mean@n accuracy
    log_kl: bool = True  #: compute KL to the reference every step even when beta = 0
    collapse_threshold: float = 0.01  #: collapse when the signal falls below this
    #: metric the collapse detector watches (below `collapse_threshold`), or "label_free":
    #: entropy, length or repetition drift from the start (assay.training.collapse_rules)
    collapse_signal: str = "reward_accuracy"
    stop_on_collapse: bool = False  #: end the run at the Model Collapse Step
    #: rewards scored on every step's rollouts and logged as `monitor/NAME` and
    #: `monitor/NAME_accuracy`, never trained on (`--monitor verifier,self_certainty`)
    monitor: list[str] = field(default_factory=list)

    # -- output -------------------------------------------------------------------------
    save_every: int = 50  #: checkpoint every n steps (and at the end; 0 = only at the end)
    keep_checkpoints: int = 2  #: most recent checkpoints kept (0 = all)
    tensorboard: bool = False  #: also write TensorBoard events to out/tensorboard
    wandb: bool = False  #: also log to Weights & Biases (needs `wandb` and a login)
    wandb_project: str = "assay"  #: W&B project name
    progress: bool = True  #: rich progress bar with the key figures
    save_rollouts: bool = True  #: write every completion to out/rollouts.jsonl.gz (`assay rescore`)

    def __post_init__(self) -> None:
        # Values of the right type first (a Python caller may pass "1e-4"), then their
        # ranges: a mistake is one line naming the field, before any model is loaded.
        for name, kind in typing.get_type_hints(TrainConfig).items():
            value = getattr(self, name)
            try:
                setattr(self, name, options.coerce(value, kind, what=f"option {name!r}"))
            except options.OptionError as exc:
                raise ConfigError(str(exc)) from None
        # `--monitor a,b,` and `monitor: ""` name no reward in the blanks
        self.monitor = [m.strip() if isinstance(m, str) else m for m in self.monitor
                        if not (isinstance(m, str) and not m.strip())]
        for field_name, ok, rule in self._checks():
            if not ok:
                value = getattr(self, field_name)
                raise ConfigError(f"option {field_name!r} must be {rule}, got {brief(value)}")

    def _checks(self) -> list[tuple[str, bool, str]]:
        """(field, holds, the rule in words) for every field with a rule beyond its type."""

        def finite(x: float, low: float = -math.inf, high: float = math.inf) -> bool:
            return math.isfinite(x) and low <= x <= high

        words = set(re.findall(r"[A-Za-z_]\w*", self.reward))
        signals = {*COLLAPSE_SIGNALS, *_VERDICT_SIGNALS, *(f"reward/{w}" for w in words)}
        signals |= {f"monitor/{m}{end}" for m in self.monitor for end in ("", "_accuracy")}
        signals.add("label_free")
        return [
            ("model", bool(self.model.strip()), "a model name or folder"),
            ("env", bool(self.env.strip()), "an environment name"),
            ("reward", bool(self.reward.strip()), "a reward spec"),
            ("out", bool(self.out.strip()), "an output folder"),
            ("train_file", self.train_file is None or bool(self.train_file.strip()), "a file"),
            ("val_file", self.val_file is None or bool(self.val_file.strip()), "a file"),
            ("wandb_project", bool(self.wandb_project.strip()), "a project name"),
            ("loss_type", self.loss_type in LOSS_TYPES, f"one of {', '.join(LOSS_TYPES)}"),
            ("engine", self.engine in ENGINES, f"one of {', '.join(ENGINES)}"),
            ("verify_judge", self.verify_judge in ("policy", "reference"), "policy or reference"),
            ("lr_schedule", self.lr_schedule in SCHEDULES, f"one of {', '.join(SCHEDULES)}"),
            ("dtype", self.dtype in ("float32", "bfloat16"), "float32 or bfloat16"),
            ("device", self.device in ("auto", "cpu", "cuda"), "auto, cpu or cuda"),
            ("steps", self.steps >= 0, ">= 0"),
            # Python's random.seed(-n) is random.seed(n): a negative seed would repeat a run.
            ("seed", 0 <= self.seed < 2**63, "in [0, 2**63)"),
            ("train_size", self.train_size >= 1, ">= 1"),
            ("val_size", self.val_size >= 1, ">= 1"),
            ("prompts_per_step", self.prompts_per_step >= 1, ">= 1"),
            ("group_size", self.group_size >= 2, ">= 2 (advantages are group-relative)"),
            ("temperature", finite(self.temperature) and self.temperature > 0, "finite and > 0"),
            ("top_p", finite(self.top_p) and 0 < self.top_p <= 1, "in (0, 1]"),
            ("max_new_tokens", self.max_new_tokens >= 1, ">= 1"),
            ("max_episode_tokens", self.max_episode_tokens == 0
             or self.max_episode_tokens >= self.max_new_tokens,
             "0 (no limit) or >= max_new_tokens (room for the first reply)"),
            ("verify_temperature", finite(self.verify_temperature) and self.verify_temperature > 0,
             "finite and > 0"),
            ("verify_max_new_tokens", self.verify_max_new_tokens >= 1, ">= 1"),
            ("epsilon_low", finite(self.epsilon_low, 0) and self.epsilon_low < 1, "in [0, 1)"),
            ("epsilon_high", finite(self.epsilon_high, 0), "finite and >= 0"),
            ("beta", finite(self.beta, 0), "finite and >= 0"),
            ("updates_per_batch", self.updates_per_batch >= 1, ">= 1"),
            ("learning_rate", finite(self.learning_rate, 0), "finite and >= 0"),
            ("weight_decay", finite(self.weight_decay, 0), "finite and >= 0"),
            ("adam_beta1", finite(self.adam_beta1, 0) and self.adam_beta1 < 1, "in [0, 1)"),
            ("adam_beta2", finite(self.adam_beta2, 0) and self.adam_beta2 < 1, "in [0, 1)"),
            ("max_grad_norm", finite(self.max_grad_norm, 0), "finite and >= 0 (0 = off)"),
            ("warmup_steps", self.warmup_steps >= 0, ">= 0"),
            ("micro_batch_size", self.micro_batch_size >= 0, ">= 0 (0 = the whole batch)"),
            ("train_layers", self.train_layers >= 0, ">= 0 (0 = every layer)"),
            ("eval_every", self.eval_every >= 0, ">= 0 (0 = never)"),
            ("val_samples", self.val_samples >= 1, ">= 1"),
            ("collapse_threshold", finite(self.collapse_threshold), "a finite number"),
            # A name the trainer never logs would silently turn collapse detection (and
            # stop_on_collapse) off.
            ("collapse_signal", self.collapse_signal in signals,
             "label_free or a metric the trainer logs ("
             + ", ".join(COLLAPSE_SIGNALS) + ", verdicts/STATUS)"),
            ("monitor", all(isinstance(m, str) and re.fullmatch(r"[A-Za-z_]\w*", m)
                            for m in self.monitor), "reward names separated by commas"),
            ("save_every", self.save_every >= 0, ">= 0 (0 = only at the end)"),
            ("keep_checkpoints", self.keep_checkpoints >= 0, ">= 0 (0 = keep every checkpoint)"),
        ]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
_HINTS = typing.get_type_hints(TrainConfig)
#: prefix in `--set PREFIX.KEY=V` -> the dict field it fills
_NESTED = {"env": "env_options", "prior": "prior"}


def coerce(key: str, value: Any) -> Any:
    """Convert a value (a string from `--set`, or YAML) to the type of field `key`."""
    try:
        return options.coerce(value, _HINTS[key], what=f"option {key!r}")
    except options.OptionError as exc:
        raise ConfigError(str(exc)) from None


def merge_values(base: dict[str, Any], updates: dict[str, Any], *, where: str) -> dict[str, Any]:
    """`base` updated with `updates` (flat keys, `env.X`/`prior.X` or nested dicts), checked."""
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in base.items()}
    for key, value in updates.items():
        if not isinstance(key, str):  # YAML keys may be numbers, lists, null
            raise ConfigError(f"{where}: option names are text, got {key!r:.60}")
        prefix, dot, rest = key.partition(".")
        if key in _NESTED and isinstance(value, dict):  # YAML: `env: {max_value: 9}`
            bad = next((k for k in value if not isinstance(k, str)), None)
            if bad is not None:
                raise ConfigError(f"{where}: {key} option names are text, got {bad!r:.60}")
            out[_NESTED[key]] = {**out.get(_NESTED[key], {}), **value}
            continue
        if dot and prefix in _NESTED:
            out.setdefault(_NESTED[prefix], {})[rest] = value
            continue
        if key not in _FIELDS:
            raise ConfigError(
                f"{where}: unknown option {brief(key)} (see docs/training.md for the list)"
            )
        try:
            value = coerce(key, value)
        except ConfigError as exc:  # from a file: name it, as an unknown option does
            raise (exc if where in ("--set", "flags") else ConfigError(f"{where}: {exc}")) from None
        if isinstance(value, dict):
            out[key] = {**out.get(key, {}), **value}
        else:
            out[key] = value
    return out


#: the largest config file read (bytes): configs are a few hundred; a link to /dev/zero
#: or a runaway file is refused instead of read into memory
MAX_CONFIG_BYTES = 1 << 20


class _YamlAlias(Exception):
    """An anchor or alias in a config file, at `line` (from 1)."""

    def __init__(self, line: int) -> None:
        self.line = line


@functools.cache
def _loader() -> type:
    """yaml's SafeLoader without anchors and aliases: ten lines of `&a [*b, *b, ...]` expand
    to billions of values (an "alias bomb"), and no assay config needs them."""
    import yaml

    class NoAliasLoader(yaml.SafeLoader):
        def compose_node(self, parent: Any, index: Any) -> Any:
            event = self.peek_event()
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                raise _YamlAlias(event.start_mark.line + 1)
            return super().compose_node(parent, index)

    return NoAliasLoader


def load_yaml_text(text: str, where: str) -> Any:
    """The value of a YAML document from a user's file, or a `ConfigError` naming `where`
    (the file) and the line: invalid YAML, an anchor or an alias."""
    import yaml

    try:
        return yaml.load(text, Loader=_loader())  # a SafeLoader, less anchors and aliases
    except _YamlAlias as exc:
        raise ConfigError(f"{where}:{exc.line}: YAML anchors and aliases are not supported "
                          "(&name, *name): write the value out") from None
    except RecursionError:
        raise ConfigError(f"{where}: invalid YAML (nested too deeply)") from None
    except ValueError as exc:  # an integer of more digits than Python converts
        raise ConfigError(f"{where}: invalid YAML ({str(exc).split(';')[0][:100]})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        reason = str(getattr(exc, "problem", None) or exc).strip().splitlines() or ["?"]
        raise ConfigError(f"{where}{line}: invalid YAML ({reason[0][:200]})") from None


def read_yaml(path: str) -> dict[str, Any]:
    """The top-level mapping of a YAML config file, or a `ConfigError` naming the file."""
    try:
        with open(path, "rb") as handle:  # a pipe (`--config <(...)`) is read too
            data = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES >> 20} MiB; not a config file")
    try:
        text = data.decode("utf-8-sig")  # -sig: a byte-order mark is no key
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    values = load_yaml_text(text, path) or {}
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping of option: value at the top level")
    return values


def make_config(values: dict[str, Any], *, where: str = "config") -> TrainConfig:
    """A `TrainConfig` from merged values; bad values raise `ConfigError`."""
    try:
        return TrainConfig(**merge_values({}, values, where=where))
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def resolve(
    *,
    file: str | None = None,
    sets: dict[str, str] | None = None,
    flags: dict[str, Any] | None = None,
    base: dict[str, Any] | None = None,
    base_file: str = "saved config",
) -> TrainConfig:
    """Resolve a config: defaults < model hints < `base` (a resumed run's, read from
    `base_file`, which its errors name) < file < sets < flags."""
    values: dict[str, Any] = {}
    if base:
        values = merge_values(values, base, where=base_file)
    if file:
        values = merge_values(values, read_yaml(file), where=file)
    values = merge_values(values, sets or {}, where="--set")
    values = merge_values(
        values, {k: v for k, v in (flags or {}).items() if v is not None}, where="flags"
    )
    hints = model_hints(values.get("model", TrainConfig.model), values.get("prior"))
    merged = merge_values(hints.get("train_defaults", {}), values, where="model defaults")
    # A model's env options describe the env it was built for; another env ignores them.
    built_for = merged.get("env", TrainConfig.env) == hints.get("env")
    env_hints = hints.get("env_options", {}) if built_for else {}
    merged["env_options"] = {**env_hints, **merged.get("env_options", {})}
    return make_config(merged)


def model_hints(model: str, prior: dict[str, Any] | None = None) -> dict[str, Any]:
    """Settings a model recommends: the organism's, or a model folder's `assay.json`.

    Keys (each may be missing): "env", the env the model was built for; "env_options",
    options of that env; "train_defaults", `TrainConfig` values.
    """
    from assay import organism
    from assay.options import OptionError
    from assay.training import pretrained

    if pretrained.is_gguf_source(model):  # known without converting the model first
        return pretrained.hints(model)
    if organism.is_organism(model):
        try:
            skill = organism.skill_of(organism.parse_organism(model), **(prior or {}))
        except OptionError:  # loading the model reports it, with the rest of its errors
            return {}
        return {
            "env": skill.env_name,
            "env_options": skill.env_options,
            "train_defaults": skill.train_defaults,
        }
    if Path(model).name == "last" or (Path(model) / "checkpoints").is_dir():
        # a run named by its folder or `checkpoints/last`: its latest checkpoint's assay.json
        from assay.training.policy import ModelLoadError, run_checkpoint

        try:
            model = run_checkpoint(model) or model
        except ModelLoadError:  # no checkpoint yet: loading the model says so
            return {}
    try:
        meta = organism.read_metadata(model) if Path(model).is_dir() else {}
    except (OSError, ValueError) as exc:  # a hand-edited or truncated assay.json
        raise ConfigError(f"cannot read {model}/assay.json: {exc}") from None
    if not isinstance(meta, dict):
        raise ConfigError(f"{model}/assay.json: expected a JSON object")
    kinds = {"env": (str, "text"), "env_options": (dict, "an object"), "train_defaults": (dict, "an object")}
    for key, (kind, words) in kinds.items():  # a hand-edited file: named, not a traceback later
        if key in meta and not isinstance(meta[key], kind):
            raise ConfigError(f"{model}/assay.json: {key}: expected {words}, got {meta[key]!r:.40}")
    if "train_defaults" in meta:  # checked here, where the file can be named
        try:
            make_config(dict(meta["train_defaults"]))
        except ConfigError as exc:
            raise ConfigError(f"{model}/assay.json: train_defaults: {exc}") from None
    return {k: meta[k] for k in kinds if k in meta}


def dump_yaml(config: TrainConfig, path: str | Path) -> None:
    """Write the config as YAML, never with anchors or aliases (`read_yaml` refuses them)."""
    import yaml

    class NoAliasDumper(yaml.SafeDumper):
        def ignore_aliases(self, data: Any) -> bool:
            return True

    text = yaml.dump(config.to_dict(), Dumper=NoAliasDumper, sort_keys=False)
    path = Path(path)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)  # whole or not at all: a kill mid-write leaves no half config


#: what a resumed run may change: how long it runs, where and how it logs, and how its batch
#: is cut into micro-batches (the same numbers, less memory). Anything else (a reward, a
#: model, a learning rate) would change the run half way while config.yaml claimed the new
#: value for the whole of it, so `--resume` refuses it.
RESUMABLE = (
    "steps", "out", "progress", "eval_every", "save_every", "keep_checkpoints", "tensorboard",
    "wandb", "wandb_project", "micro_batch_size", "device", "monitor", "save_rollouts",
)


def _as_saved(value: Any) -> Any:
    """`value` as config.yaml gives it back: tuples (an env option such as the code
    organism's `families`) read back as lists, and must compare equal to them."""
    if isinstance(value, dict):
        return {k: _as_saved(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_as_saved(v) for v in value]
    return value


def resume_changes(
    saved: dict[str, Any], now: TrainConfig, *, also: tuple[str, ...] = ()
) -> list[str]:
    """The settings `now` changes from a run's saved config, as `key: old -> new` (empty when
    resuming with `now` is safe). Only `RESUMABLE` keys, and those in `also`, may differ."""
    before = _as_saved(make_config(saved, where="the run's config.yaml").to_dict())
    after = _as_saved(now.to_dict())
    return [
        f"{key}: {before[key]!r:.60} -> {after[key]!r:.60}"
        for key in after
        if key not in RESUMABLE + also and before.get(key) != after[key]
    ]
