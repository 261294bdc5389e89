"""Training: LoRA on the language model + full training of the heads, then the MetaVoter on held-out records.

``train(config, progress_callback=...)`` is what the platform's GPU worker calls; ``python -m model_core train``
is the same function with a tqdm bar. Stages:

1. heads: loss = lm_weight x answer-token CE + regression_weight x MSE(regression, overall)
   + expert_weight x MSE(expert, scores) masked so that overall-only records train the expert head's overall
   output only (their 11 sub-dimension placeholders never enter a loss);
2. MetaVoter: the trained model scores a held-out part of the training records (``metavoter_fraction``, split
   off before stage 1 and never trained on) and the MetaVoter is fitted on those head outputs. Its own held-out
   figure cannot come from the records it is fitted on, so it is cross-fitted: the held-out records are cut
   into ``metavoter_folds`` folds, each fold is scored by a MetaVoter fitted on the other folds, and those
   out-of-fit scores make ``TrainResult.holdout``'s MetaVoter figure; the MetaVoter saved with the model is then
   fitted on all held-out records. ``holdout["metavoter_measured"]`` says how (method, folds, n).

Reliability: a checkpoint (``model.safetensors`` + ``config.json`` + optimizer state) is written atomically every
``checkpoint_every`` optimizer steps; starting again with the same ``output_dir`` resumes from the newest one at
the exact data position (the order of each epoch is a pure function of seed and epoch). A finished run
(``final/``) is returned as is, so a retried job is idempotent.

Several processes (GPUs, or CPU processes with gloo): run under ``torchrun`` / ``accelerate launch``, or call
:func:`model_core.launch.train_processes`. ``accelerate`` wraps the model in DDP. ``batch_size`` is the GLOBAL
micro-batch: each of the N processes reads ``batch_size / N`` records of every micro-batch (an error when it does
not divide), so a run takes the same optimizer steps over the same records per step as one process and its
learning-rate schedule and results compare with a one-process run. Only rank 0 writes checkpoints, ``final/``,
``result.json`` and reports progress; ``should_stop`` is agreed by all ranks at every step (any rank asking stops
all); every rank's RNG state goes into the checkpoint; the held-out records of the MetaVoter stage are scored in
shards and the MetaVoter is fitted once, on rank 0, and every rank returns rank 0's result. A checkpoint may be
resumed with another number of processes when the epoch has the same number of micro-batches at both (else a
clear error).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import random
import shutil
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from model_core.data import ImageDataset, Record, read_records
from model_core.model import (
    CheckpointMismatchError,
    HumanAesModel,
    MetaVoter,
    ModelConfig,
    _from_dict,
    build_model,
    config_differences,
    fit_metavoter,
    load_model,
    load_state,
    read_checkpoint_config,
    resolve_dtype,
    save_model,
)
from model_core.standard import NUM_DIMENSIONS

logger = logging.getLogger(__name__)
# Tokenisation runs in DataLoader workers (forked); the fast tokenizer's own thread pool must not be used there.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

CHECKPOINTS_DIR = "checkpoints"
FINAL_DIR = "final"
TRAINING_STATE = "training_state.pt"
TRAINER_STATE = "trainer_state.json"
RESULT_FILE = "result.json"
# Fields that must not change when a run resumes (they decide the data order and the meaning of a "step").
LOSS_NAMES = ("loss", "lm", "regression", "expert")  # compute_losses' keys, logged per step
RANK_SEED_STRIDE = 1_000_003  # rank r > 0 of a multi-process run draws from seed + r x this
RESUME_KEYS = ("data", "seed", "batch_size", "grad_accum", "max_tiles", "metavoter_fraction", "epochs", "max_steps")


@dataclass
class TrainConfig:
    data: str  # a training jsonl (ms-swift style) or a HumanBeauty root (reads train_label.jsonl)
    output_dir: str
    model: ModelConfig = field(default_factory=ModelConfig)
    init_checkpoint: str | None = None  # start from a saved model (e.g. the promoted one) instead of the backbone
    max_tiles: int = 6
    epochs: float = 1.0
    max_steps: int | None = None  # optimizer steps; when set it overrides epochs
    batch_size: int = 8  # the micro-batch of the whole run: batch_size / N records on each of N processes
    grad_accum: int = 1
    lr: float = 1e-4  # LoRA and the trained backbone parts
    head_lr: float = 1e-3
    weight_decay: float = 0.01  # matrices only (LoRA, heads): norms and biases are not decayed
    warmup_steps: int = 0
    max_grad_norm: float = 1.0
    lm_weight: float = 1.0
    regression_weight: float = 1.0
    expert_weight: float = 1.0
    metavoter_fraction: float = 0.1
    metavoter_steps: int = 300
    metavoter_folds: int = 5  # cross-fitting folds for the MetaVoter's out-of-fit held-out figure
    precision: str = "auto"  # auto: bf16 on a GPU with bf16, fp32 otherwise
    device: str = "auto"
    gradient_checkpointing: bool = False
    checkpoint_every: int = 200  # optimizer steps; 0 = only the final model
    keep_checkpoints: int = 2
    resume: bool = True
    num_workers: int = 2
    seed: int = 0
    on_bad_image: str = "raise"
    log_every: int = 10

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        return _from_dict(cls, data, "train")

    def validate(self) -> None:
        problems = []
        if self.batch_size < 1 or self.grad_accum < 1:
            problems.append("batch_size and grad_accum must be >= 1")
        if self.max_steps is None and not self.epochs > 0:
            problems.append("epochs must be > 0 (or set max_steps)")
        if self.max_steps is not None and self.max_steps < 1:
            problems.append("max_steps must be >= 1")
        if not 0.0 <= self.metavoter_fraction < 1.0:
            problems.append("metavoter_fraction must be in [0, 1)")
        if self.metavoter_folds < 2:
            problems.append("metavoter_folds must be >= 2")
        if self.max_tiles < 1:
            problems.append("max_tiles must be >= 1")
        if self.on_bad_image not in ("raise", "skip"):
            problems.append("on_bad_image must be 'raise' or 'skip'")
        if problems:
            raise ValueError("invalid training config: " + "; ".join(problems))


@dataclass
class TrainProgress:
    """What the progress callback receives (main process only)."""

    stage: str  # "train" | "metavoter" | "done"
    step: int
    total_steps: int
    epoch: float
    loss: float | None
    losses: dict[str, float]
    lr: float
    elapsed_s: float
    eta_s: float | None
    images_per_s: float | None


@dataclass
class TrainResult:
    output_dir: str
    final_checkpoint: str
    steps: int
    resumed_from: int | None
    history: list[dict[str, Any]]
    metavoter: dict[str, Any]  # fit statistics of the saved MetaVoter (in-sample: on the records it was fitted on)
    holdout: dict[str, Any]  # figures on the held-out records, the MetaVoter's out-of-fit (see metavoter_measured)
    skipped_images: int
    elapsed_s: float

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class TrainingStopped(RuntimeError):
    """Raised when ``should_stop`` asked to stop; a checkpoint of the last step has been written."""


# ---------------------------------------------------------------------------------------------------------------


def compute_losses(
    heads, scores: torch.Tensor, is_expert: torch.Tensor, config: TrainConfig
) -> dict[str, torch.Tensor]:
    """The three losses and their weighted sum. scores (B, 12), is_expert (B,)."""
    overall = scores[:, -1]  # (B,)
    regression = F.mse_loss(heads.regression, overall)
    # Expert mask (B, 12): sub-dimensions only for expert records, the overall output for every record.
    mask = is_expert[:, None].expand(-1, NUM_DIMENSIONS).clone()
    mask[:, -1] = True
    squared = (heads.expert - scores).square() * mask
    expert = squared.sum() / mask.sum().clamp_min(1)
    lm = heads.lm_loss if heads.lm_loss is not None else regression * 0.0
    total = config.lm_weight * lm + config.regression_weight * regression + config.expert_weight * expert
    return {"loss": total, "lm": lm, "regression": regression, "expert": expert}


def _split_holdout(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng([seed, 17]).permutation(n)
    n_hold = int(round(n * fraction))
    if fraction > 0 and n_hold < 4:
        n_hold = min(4, n // 2)
    return np.sort(order[n_hold:]), np.sort(order[:n_hold])


MIN_METAVOTER_FIT = 4  # fit_metavoter's minimum number of records


def _metavoter_folds(n: int, folds: int, seed: int) -> np.ndarray | None:
    """(n,) fold index per held-out record, or None when n records cannot give every fold's MetaVoter
    ``MIN_METAVOTER_FIT`` records to fit on and leave at least one to score. Folds grow in number (up to one
    record each) until the records outside the largest fold are enough to fit on."""
    k = min(folds, n)
    while k < n and n - math.ceil(n / k) < MIN_METAVOTER_FIT:
        k += 1
    if k < 2 or n - math.ceil(n / k) < MIN_METAVOTER_FIT:
        return None
    order = np.random.default_rng([seed, 23]).permutation(n)
    fold_of = np.empty(n, dtype=np.int64)
    fold_of[order] = np.arange(n) % k
    return fold_of


def _metavoter_out_of_fit(estimates: torch.Tensor, spread: torch.Tensor, target: torch.Tensor, *,
                          fold_of: np.ndarray, steps: int) -> np.ndarray:
    """(N,) MetaVoter scores, each from a MetaVoter fitted on the other folds only (never on that record)."""
    scores = np.full(len(target), np.nan)
    for fold in range(int(fold_of.max()) + 1):
        scored = torch.from_numpy(fold_of == fold)
        voter = MetaVoter()
        fit_metavoter(voter, estimates[~scored], spread[~scored], target[~scored], steps=steps)
        with torch.no_grad():
            out, _ = voter(estimates[scored], spread[scored])  # (fold size,)
        scores[scored.numpy()] = out.numpy()
    return scores


def _holdout_figures(preds, records, *, out_of_fit: np.ndarray | None, how: dict[str, Any]) -> dict[str, Any]:
    """Every head's figures on the held-out records; the MetaVoter's from its out-of-fit scores, or None (not
    measured) when there are none. ``preds`` are the head outputs on those records."""
    from model_core.evaluation import compute_report

    truth = np.array([r.scores for r in records], dtype=np.float64)
    is_expert = np.array([r.is_expert for r in records], dtype=bool)
    ok = preds.ok
    if out_of_fit is not None:
        voted = np.full(len(records), np.nan)
        voted[ok] = out_of_fit
        preds = dataclasses.replace(preds, metavoter=voted)
    report = compute_report(preds, truth, is_expert, true_levels=[r.text_level for r in records])
    if out_of_fit is None:
        report.overall["metavoter"] = {k: None for k in report.overall["metavoter"]}
        report.reference["metavoter"] = {k: None for k in report.reference["metavoter"]}
    return {"overall_plcc": {h: m["plcc"] for h, m in report.overall.items()}, "overall": report.overall,
            "reference": report.reference, "expert_mean_plcc": report.expert_mean_plcc, "n": report.n_records,
            "metavoter_measured": how}


def _epoch_batches(n: int, *, epoch: int, seed: int, batch_size: int, rank: int, world: int) -> list[list[int]]:
    """This rank's micro-batches of one epoch: a seeded permutation cut into global micro-batches of ``batch_size``
    (as one process reads them), each shared out across the ``world`` ranks (``batch_size / world`` records each),
    so the union of the ranks' i-th micro-batches is one process's i-th. With several ranks a last micro-batch of
    fewer than ``world`` records is dropped (every rank must have records in every micro-batch)."""
    order = np.random.default_rng([seed, epoch]).permutation(n).tolist()
    chunks = [order[i:i + batch_size] for i in range(0, n, batch_size)]
    if world > 1 and chunks and len(chunks[-1]) < world:
        chunks.pop()
    return [chunk[rank::world] for chunk in chunks]


def _lr_lambda(warmup: int, total: int) -> Callable[[int], float]:
    def fn(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return fn


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _latest_checkpoint(output_dir: Path) -> Path | None:
    root = output_dir / CHECKPOINTS_DIR
    if not root.is_dir():
        return None
    done = [p for p in root.glob("step-*") if p.is_dir() and (p / TRAINER_STATE).is_file()]
    return max(done, key=lambda p: int(p.name.split("-")[1])) if done else None


def _check_resume_compatible(checkpoint: Path, config: TrainConfig) -> None:
    saved = json.loads((checkpoint / TRAINER_STATE).read_text())["train_config"]
    current = config.to_dict()
    diffs = [f"{k}: {saved.get(k)!r} != {current.get(k)!r}" for k in RESUME_KEYS if saved.get(k) != current.get(k)]
    diffs += config_differences(saved.get("model", {}), current["model"], prefix="model.")
    if diffs:
        raise CheckpointMismatchError(
            f"{checkpoint}: cannot resume, the run was started with another config ({'; '.join(diffs)}). Use a new "
            "output_dir, or resume=False to start over."
        )


def _rng_state() -> dict[str, Any]:
    """This process's random number generators (a checkpoint keeps every rank's)."""
    return {"torch_rng": torch.get_rng_state(), "numpy_rng": np.random.get_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "python_rng": random.getstate()}


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch_rng"].cpu())
    if state.get("cuda_rng") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda_rng"]])
    np.random.set_state(state["numpy_rng"])
    random.setstate(state["python_rng"])


def _write_checkpoint(model: HumanAesModel, optimizer, scheduler, *, output_dir: Path, step: int,
                      config: TrainConfig, history: list[dict[str, Any]], keep: int,
                      rng_states: list[dict[str, Any]] | None = None, micro_per_epoch: int | None = None) -> Path:
    """Rank 0 only. ``rng_states``: every rank's generators, rank order (this process's alone when None)."""
    rng_states = rng_states or [_rng_state()]
    root = output_dir / CHECKPOINTS_DIR
    final = root / f"step-{step:08d}"
    tmp = root / f".tmp-step-{step:08d}"
    shutil.rmtree(tmp, ignore_errors=True)
    save_model(model, tmp, metadata={"step": step})
    # rank 0's generators at the top level (what a one-process run restores), every rank's in rank_rng
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "step": step,
                **rng_states[0], "rank_rng": rng_states, "world": len(rng_states)}, tmp / TRAINING_STATE)
    # trainer_state.json last: its presence marks a complete checkpoint.
    (tmp / TRAINER_STATE).write_text(json.dumps({"step": step, "train_config": config.to_dict(),
                                                  "world": len(rng_states), "micro_per_epoch": micro_per_epoch,
                                                  "history": history}, indent=1))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    old = sorted((p for p in root.glob("step-*") if p.is_dir()), key=lambda p: int(p.name.split("-")[1]))
    for path in old[:-keep] if keep > 0 else []:
        shutil.rmtree(path, ignore_errors=True)
    logger.info("checkpoint written: %s", final)
    return final


def _progress(callback, bar, **kwargs) -> None:
    progress = TrainProgress(**kwargs)
    if callback is not None:
        callback(progress)
    if bar is not None and progress.stage == "train":
        bar.n = progress.step
        bar.set_postfix(loss=f"{progress.loss:.4f}" if progress.loss is not None else "-", refresh=False)
        bar.refresh()


# ---------------------------------------------------------------------------------------------------------------
# train(): the stages, in order, and the small records passed between them.


@dataclass
class _Run:
    """What every stage reads: the config, where the run lives, this process's place and the caller's hooks."""

    config: TrainConfig
    accelerator: Any  # accelerate.Accelerator
    device: torch.device
    output_dir: Path
    started: float  # time.monotonic() at the start of train()
    progress_callback: Callable[[TrainProgress], None] | None
    should_stop: Callable[[], bool] | None

    @property
    def final_dir(self) -> Path:
        return self.output_dir / FINAL_DIR

    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process

    @property
    def world(self) -> int:
        return self.accelerator.num_processes

    @property
    def rank(self) -> int:
        return self.accelerator.process_index

    def report(self, bar, **kwargs) -> None:
        """A TrainProgress to the callback (and the bar), from the main process only."""
        if self.is_main:
            _progress(self.progress_callback, bar, elapsed_s=time.monotonic() - self.started, **kwargs)

    # Collectives: every rank must call them at the same point; with one process they return the local value.
    def reduce(self, values: list[float], op: str = "sum") -> list[float]:
        """``values`` summed (or their max / min) over the ranks."""
        if self.world == 1:
            return list(values)
        import torch.distributed as dist

        tensor = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor, op={"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX,
                                    "min": dist.ReduceOp.MIN}[op])
        return tensor.tolist()

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order."""
        if self.world == 1:
            return [obj]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if self.world == 1:
            return obj
        import torch.distributed as dist

        box = [obj if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]


@dataclass
class _Data:
    train_records: list[Record]
    holdout_records: list[Record]  # split off before stage 1, never trained on: the MetaVoter's records
    n_skipped_reading: int  # records read_records skipped (on_bad_image="skip")


@dataclass
class _Schedule:
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    micro_per_epoch: int  # this rank's micro-batches per epoch
    total_steps: int  # optimizer steps


@dataclass
class _Position:
    """Where the heads stage stands: optimizer steps done, micro-batches consumed (the data position), history."""

    step: int = 0
    micro: int = 0
    resumed_from: int | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    skipped_images: int = 0  # images that failed to load during the heads stage

    def epoch(self, micro_per_epoch: int) -> float:
        return self.micro / micro_per_epoch


@dataclass
class _LogWindow:
    """Loss values and image counts since the last log entry."""

    started: float  # time.monotonic() when the window opened
    losses: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in LOSS_NAMES})
    images: int = 0

    def add(self, losses: dict[str, torch.Tensor], images: int) -> None:
        for k in self.losses:
            self.losses[k].append(float(losses[k].detach()))
        self.images += images

    def means(self, run: _Run) -> tuple[dict[str, float], int]:
        """The mean of each loss over every rank's micro-batches in the window, and the images of all ranks."""
        local = [float(np.sum(self.losses[k])) for k in LOSS_NAMES] + [float(len(self.losses[k])) for k in LOSS_NAMES]
        total = run.reduce(local + [float(self.images)])
        k = len(LOSS_NAMES)
        return {name: total[i] / total[k + i] for i, name in enumerate(LOSS_NAMES) if total[k + i]}, int(total[-1])


@dataclass
class _MetaVoterOutcome:
    stats: dict[str, Any] = field(default_factory=dict)  # fit statistics of the saved MetaVoter (in-sample)
    holdout: dict[str, Any] = field(default_factory=dict)  # figures on the held-out records


def train(
    config: TrainConfig, *, progress_callback: Callable[[TrainProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None, show_progress: bool = False,
) -> TrainResult:
    """Train the three heads (+ LoRA), fit the MetaVoter, write ``<output_dir>/final`` and return a summary.

    ``progress_callback(TrainProgress)`` is called every ``log_every`` steps and at stage changes.
    ``should_stop()`` is polled every optimizer step; when it returns True a checkpoint is written and
    :class:`TrainingStopped` is raised (the next call with the same ``output_dir`` resumes).
    """
    config.validate()
    started = time.monotonic()
    finished = _finished_run(config)
    if finished is not None:
        return finished
    run = _start_run(config, started=started, progress_callback=progress_callback, should_stop=should_stop)
    data = _prepare_data(config)
    model = _build_training_model(run)
    schedule = _build_optimizer(run, model, data)
    position = _restore(run, model, schedule)
    _write_run_config(run)
    _train_heads(run, model, data, schedule, position, show_progress=show_progress)
    metavoter = _fit_metavoter_stage(run, model, data, schedule, position)
    return _save_final(run, model, data, schedule, position, metavoter)


def _finished_run(config: TrainConfig) -> TrainResult | None:
    """The result of a run that already finished in ``output_dir`` (a retried job is idempotent), else None."""
    output_dir = Path(config.output_dir)
    if config.resume and (output_dir / RESULT_FILE).is_file() and (output_dir / FINAL_DIR / "config.json").is_file():
        logger.info("%s already holds a finished run; returning it", output_dir)
        return TrainResult(**json.loads((output_dir / RESULT_FILE).read_text()))
    return None


def _start_run(config: TrainConfig, *, started: float, progress_callback, should_stop) -> _Run:
    """The accelerator (DDP under torchrun/accelerate launch), the device, a precision check, the seeded RNGs."""
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=config.device == "cpu")
    device = accelerator.device if config.device in ("auto", "cpu") else torch.device(config.device)
    resolve_dtype(config.precision, device)  # a clear error before any work when bf16 is impossible here
    world = accelerator.num_processes
    if config.batch_size % world:
        raise ValueError(f"batch_size {config.batch_size} cannot be shared out evenly across {world} processes: it "
                         f"is the micro-batch of the whole run (batch_size / processes records on each process); "
                         f"choose a multiple of {world}")
    _seed_everything(config.seed)
    return _Run(config=config, accelerator=accelerator, device=device, output_dir=Path(config.output_dir),
                started=started, progress_callback=progress_callback, should_stop=should_stop)


def _prepare_data(config: TrainConfig) -> _Data:
    """The training records, with the MetaVoter's held-out part split off."""
    read = read_records(config.data, split="train", on_bad_image=config.on_bad_image)  # type: ignore[arg-type]
    records = read.records
    if len(records) < 2:
        raise ValueError(f"{config.data}: need at least 2 training records, got {len(records)}")
    train_idx, hold_idx = _split_holdout(len(records), config.metavoter_fraction, config.seed)
    return _Data(train_records=[records[i] for i in train_idx], holdout_records=[records[i] for i in hold_idx],
                 n_skipped_reading=read.n_skipped)


def _build_training_model(run: _Run) -> HumanAesModel:
    """A new model (or ``init_checkpoint``'s), with LoRA, the configured backbone parts and the heads trainable."""
    config = run.config
    if config.init_checkpoint:
        model = load_model(config.init_checkpoint, device=run.device, precision=config.precision,
                           expect_config=config.model)
    else:
        model = build_model(config.model, device=run.device, precision=config.precision)
    if config.gradient_checkpointing:
        model.backbone.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.backbone.enable_input_require_grads()
    model.set_trainable(heads=True)
    if run.rank:
        # Every rank builds the same model from the same seed; from here on each draws its own random numbers
        # (dropout), not a copy of rank 0's. Rank 0 keeps the stream a one-process run has.
        _seed_everything(config.seed + RANK_SEED_STRIDE * run.rank)
    return model


def parameter_groups(model: HumanAesModel, config: TrainConfig) -> list[dict[str, Any]]:
    """AdamW's parameter groups: the backbone's trainable parameters (LoRA, and the projector / vision tower when
    trained) at ``lr``, the heads at ``head_lr``; in each, the 1-D parameters (norm weights, biases) are not
    decayed: decay would pull a LayerNorm's scale towards 0 and biases carry no capacity to regularise. Matrices
    (LoRA, the heads' Linear weights) keep ``weight_decay``. Empty groups are left out."""
    head_ids = {id(p) for p in model.head_parameters()}
    backbone = [p for p in model.parameters() if p.requires_grad and id(p) not in head_ids]
    heads = model.head_parameters()
    groups = []
    for params, lr in ((backbone, config.lr), (heads, config.head_lr)):
        for decayed in (True, False):
            chosen = [p for p in params if (p.ndim >= 2) == decayed]
            if chosen:
                groups.append({"params": chosen, "lr": lr, "weight_decay": config.weight_decay if decayed else 0.0})
    return groups


def _build_optimizer(run: _Run, model: HumanAesModel, data: _Data) -> _Schedule:
    """AdamW over :func:`parameter_groups`, the run's length in optimizer steps and its warmup + cosine schedule."""
    config = run.config
    optimizer = torch.optim.AdamW(parameter_groups(model, config), weight_decay=config.weight_decay)
    micro_per_epoch = len(_epoch_batches(len(data.train_records), epoch=0, seed=config.seed,
                                         batch_size=config.batch_size, rank=run.rank, world=run.world))
    if micro_per_epoch == 0:
        raise ValueError(f"{config.data}: {len(data.train_records)} training records are too few for {run.world} "
                         "process(es)")
    total_steps = config.max_steps or max(1, math.ceil(config.epochs * micro_per_epoch / config.grad_accum))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(config.warmup_steps, total_steps))
    return _Schedule(optimizer=optimizer, scheduler=scheduler, micro_per_epoch=micro_per_epoch,
                     total_steps=total_steps)


def _restore(run: _Run, model: HumanAesModel, schedule: _Schedule) -> _Position:
    """Resume from the newest checkpoint in ``output_dir`` (weights, optimizer, scheduler, every RNG, history), or
    start at step 0 (``resume=False`` first removes earlier checkpoints)."""
    config = run.config
    latest = _latest_checkpoint(run.output_dir) if config.resume and run.is_main else None
    latest = run.broadcast(latest)  # every rank resumes from the checkpoint rank 0 chose
    if latest is None:
        if not config.resume and run.is_main:
            shutil.rmtree(run.output_dir / CHECKPOINTS_DIR, ignore_errors=True)
        run.accelerator.wait_for_everyone()
        return _Position()
    _check_resume_compatible(latest, config)
    trainer_state = json.loads((latest / TRAINER_STATE).read_text())
    saved_world = int(trainer_state.get("world") or 1)
    if saved_world != run.world and trainer_state.get("micro_per_epoch") != schedule.micro_per_epoch:
        # The data position is the micro-batch counter; it means the same records only if the epochs are cut alike.
        raise CheckpointMismatchError(
            f"{latest}: cannot resume with {run.world} process(es): the run was checkpointed with {saved_world}, and "
            f"an epoch has {trainer_state.get('micro_per_epoch')} micro-batches there and "
            f"{schedule.micro_per_epoch} here (with several processes a last micro-batch of fewer records than "
            f"processes is dropped), so the data position would not carry over. Resume with {saved_world} "
            "process(es), or use a new output_dir."
        )
    read_checkpoint_config(latest)
    load_state(model, latest)
    # torch.load knows no "cpu:0", which accelerate's device is under a multi-process CPU run
    state = torch.load(latest / TRAINING_STATE, map_location="cpu" if run.device.type == "cpu" else run.device,
                       weights_only=False)
    saved_groups = [len(g["params"]) for g in state["optimizer"]["param_groups"]]
    current_groups = [len(g["params"]) for g in schedule.optimizer.param_groups]
    if saved_groups != current_groups:
        # e.g. a checkpoint written before norms and biases were exempted from weight decay (one group per lr)
        raise CheckpointMismatchError(
            f"{latest}: cannot resume, its optimizer state has parameter groups of sizes {saved_groups} and this "
            f"run has {current_groups}. Use a new output_dir, or resume=False to start over."
        )
    schedule.optimizer.load_state_dict(state["optimizer"])
    schedule.scheduler.load_state_dict(state["scheduler"])
    step = int(state["step"])
    rank_rng = state.get("rank_rng")
    if rank_rng and len(rank_rng) == run.world:
        _set_rng_state(rank_rng[run.rank])
    elif run.rank == 0:
        _set_rng_state(state)  # rank 0's generators (the top level of every checkpoint)
    else:  # another number of processes: this rank has no saved generators
        _seed_everything(config.seed + RANK_SEED_STRIDE * run.rank + step)
    history = trainer_state.get("history", [])
    logger.info("resuming from %s (step %d of %d%s)", latest, step, schedule.total_steps,
                f"; checkpointed with {saved_world} process(es), now {run.world}" if saved_world != run.world else "")
    return _Position(step=step, micro=step * config.grad_accum, resumed_from=step, history=history)


def _write_run_config(run: _Run) -> None:
    if run.is_main:
        run.output_dir.mkdir(parents=True, exist_ok=True)
        (run.output_dir / "train_config.json").write_text(json.dumps(run.config.to_dict(), indent=2))


def _train_heads(run: _Run, model: HumanAesModel, data: _Data, schedule: _Schedule, position: _Position, *,
                 show_progress: bool) -> None:
    """Stage 1: the heads + LoRA, from ``position`` to ``total_steps`` (``position`` is advanced in place).

    The data position is a function of the global micro-batch counter alone (each epoch's order is a pure function
    of seed and epoch), so a resumed run reads exactly the batches an uninterrupted one would."""
    config = run.config
    wrapped = run.accelerator.prepare_model(model)  # DDP under torchrun/accelerate launch; the model itself otherwise
    dataset = ImageDataset(data.train_records, tile_size=model.tile_size, max_tiles=config.max_tiles,
                           on_bad_image=config.on_bad_image)  # type: ignore[arg-type]
    collate = model.collator(train=True, seed=config.seed)  # the run's seed draws the prompts
    bar = None
    if show_progress and run.is_main:
        from tqdm.auto import tqdm

        bar = tqdm(total=schedule.total_steps, initial=position.step, desc="train", unit="step", dynamic_ncols=True)

    start_step = position.step
    window = _LogWindow(started=time.monotonic())
    t_stage = time.monotonic()
    wrapped.train()
    while position.step < schedule.total_steps:
        epoch, offset = divmod(position.micro, schedule.micro_per_epoch)
        batches = _epoch_batches(len(data.train_records), epoch=epoch, seed=config.seed,
                                 batch_size=config.batch_size, rank=run.rank, world=run.world)[offset:]
        # Its own generator: creating a DataLoader iterator draws a seed, and drawing it from the global RNG would
        # shift the dropout masks of a resumed run away from those of an uninterrupted one.
        loader = torch.utils.data.DataLoader(dataset, batch_sampler=batches, collate_fn=collate,
                                             num_workers=config.num_workers, pin_memory=run.device.type == "cuda",
                                             generator=torch.Generator().manual_seed(config.seed + epoch))
        for batch in loader:
            if not _accumulate(run, wrapped, batch, position, window):
                continue
            _optimizer_step(run, schedule)
            position.step += 1
            if position.step % config.log_every == 0 or position.step == schedule.total_steps:
                window = _log_step(run, schedule, position, window, bar, start_step=start_step, t_stage=t_stage)
            _checkpoint_or_stop(run, model, schedule, position, bar)
            if position.step >= schedule.total_steps:
                break
    if bar is not None:
        bar.close()
    run.accelerator.wait_for_everyone()
    model.eval()


def _accumulate(run: _Run, wrapped, batch, position: _Position, window: _LogWindow) -> bool:
    """Forward + backward of one micro-batch (gradients synchronised across ranks only on the last one of an
    accumulation); True when an optimizer step is due."""
    config = run.config
    position.skipped_images += len(batch.failed)
    last_micro = (position.micro + 1) % config.grad_accum == 0
    usable = len(batch) > 0
    if run.world > 1 and config.on_bad_image == "skip":
        # A rank whose images all failed has nothing to run forward; DDP needs every rank in every backward, so
        # all ranks skip that micro-batch (one process skips an empty batch alike).
        usable = run.reduce([float(len(batch))], op="min")[0] > 0
    sync = nullcontext() if last_micro or not hasattr(wrapped, "no_sync") else wrapped.no_sync()
    with sync:
        if usable:
            b = batch.to(run.device)
            heads = wrapped(**b.model_inputs(), labels=b.labels)
            losses = compute_losses(heads, b.scores, b.is_expert, config)
            run.accelerator.backward(losses["loss"] / config.grad_accum)
            window.add(losses, len(batch))
    if not usable and last_micro and run.world > 1 and config.grad_accum > 1:
        _average_gradients(run, wrapped)  # the accumulated gradients were kept local (no_sync) for the skipped backward
    position.micro += 1
    return last_micro


def _average_gradients(run: _Run, wrapped) -> None:
    """What DDP's synchronised backward would have done: every gradient averaged over the ranks (the same
    parameters have gradients on every rank, as all ranks ran the same micro-batches)."""
    import torch.distributed as dist

    for param in wrapped.parameters():
        if param.grad is not None:
            dist.all_reduce(param.grad)
            param.grad /= run.world


def _optimizer_step(run: _Run, schedule: _Schedule) -> None:
    optimizer = schedule.optimizer
    if run.config.max_grad_norm:
        run.accelerator.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]],
                                        run.config.max_grad_norm)
    optimizer.step()
    schedule.scheduler.step()
    optimizer.zero_grad(set_to_none=True)


def _log_step(run: _Run, schedule: _Schedule, position: _Position, window: _LogWindow, bar, *, start_step: int,
              t_stage: float) -> _LogWindow:
    """Append the window's means to the history, report them, and return a new window."""
    means, images = window.means(run)
    now = time.monotonic()
    rate = images / max(now - window.started, 1e-9)
    done_here = position.step - start_step
    eta = (now - t_stage) / done_here * (schedule.total_steps - position.step) if done_here else None
    entry = {"step": position.step, "epoch": round(position.epoch(schedule.micro_per_epoch), 4), **means,
             "lr": schedule.scheduler.get_last_lr()[0]}
    position.history.append(entry)
    run.report(bar, stage="train", step=position.step, total_steps=schedule.total_steps, epoch=entry["epoch"],
               loss=means.get("loss"), losses=means, lr=entry["lr"], eta_s=eta, images_per_s=rate)
    return _LogWindow(started=now)


def _checkpoint_or_stop(run: _Run, model: HumanAesModel, schedule: _Schedule, position: _Position, bar) -> None:
    """Write a checkpoint when one is due or ``should_stop()`` asks to stop; then raise :class:`TrainingStopped`
    if it did. With several processes the ranks agree first: any rank asking to stop stops them all, at the same
    step, and none goes on (or exits) before rank 0 has written the checkpoint."""
    config, step = run.config, position.step
    checkpoint_due = config.checkpoint_every and step % config.checkpoint_every == 0 and step < schedule.total_steps
    stop = run.should_stop is not None and run.should_stop()
    if run.world > 1:
        stop = run.reduce([float(stop)], op="max")[0] > 0
    if not (checkpoint_due or stop):
        return
    rng_states = run.gather(_rng_state())
    if run.is_main:
        _write_checkpoint(model, schedule.optimizer, schedule.scheduler, output_dir=run.output_dir, step=step,
                          config=config, history=position.history, keep=config.keep_checkpoints,
                          rng_states=rng_states, micro_per_epoch=schedule.micro_per_epoch)
    run.accelerator.wait_for_everyone()
    if stop:
        if bar is not None:
            bar.close()
        raise TrainingStopped(f"stopped at step {step} of {schedule.total_steps}; a checkpoint was written")


def _predict_shared(run: _Run, model: HumanAesModel, records: list[Record]):
    """The held-out records scored by all ranks, each scoring every world-th record; the whole on every rank."""
    from model_core.scoring import Predictions, predict

    config = run.config
    preds = predict(model, records[run.rank::run.world], max_tiles=config.max_tiles,
                    batch_size=max(1, config.batch_size // run.world), num_workers=config.num_workers,
                    on_bad_image=config.on_bad_image)  # type: ignore[arg-type]
    if run.world == 1:
        return preds
    parts = run.gather(preds)
    n = len(records)
    merged = Predictions(lm=np.full(n, np.nan), regression=np.full(n, np.nan),
                         expert=np.full((n, NUM_DIMENSIONS), np.nan), metavoter=np.full(n, np.nan),
                         spread=np.full(n, np.nan), level_probs=np.full((n, 5), np.nan))
    for rank, part in enumerate(parts):
        for name in ("lm", "regression", "expert", "metavoter", "spread", "level_probs"):
            getattr(merged, name)[rank::run.world] = getattr(part, name)
        merged.failed.update({i * run.world + rank: reason for i, reason in part.failed.items()})
    return merged


def _fit_metavoter_stage(run: _Run, model: HumanAesModel, data: _Data, schedule: _Schedule,
                         position: _Position) -> _MetaVoterOutcome:
    """Stage 2: score the held-out records with the trained heads, measure the MetaVoter out of fit (cross-fitted
    folds) and fit the saved MetaVoter on all of them."""
    config, records = run.config, data.holdout_records
    if not records:
        logger.warning("metavoter_fraction=0: the MetaVoter is not fitted and returns the mean of the heads")
        return _MetaVoterOutcome()
    run.report(None, stage="metavoter", step=position.step, total_steps=schedule.total_steps,
               epoch=position.epoch(schedule.micro_per_epoch), loss=None, losses={}, lr=0.0, eta_s=None,
               images_per_s=None)
    # The head outputs do not depend on the MetaVoter: one pass serves the cross-fit and the final fit.
    preds = _predict_shared(run, model, records)
    if not run.is_main:
        return _MetaVoterOutcome()  # the MetaVoter is fitted once, on rank 0; _save_final shares its outcome
    ok = preds.ok
    target = torch.tensor([r.overall for r in records], dtype=torch.float32)[torch.from_numpy(ok)]
    estimates = torch.from_numpy(preds.estimates[ok]).float()  # (n, 3)
    spread = torch.from_numpy(preds.spread[ok]).float()  # (n,)
    n = len(target)
    fold_of = _metavoter_folds(n, config.metavoter_folds, config.seed)
    out_of_fit = None
    if fold_of is not None:
        out_of_fit = _metavoter_out_of_fit(estimates, spread, target, fold_of=fold_of, steps=config.metavoter_steps)
        how = {"method": "cross_fit", "folds": int(fold_of.max()) + 1, "n": n,
               "detail": "each held-out record scored by a MetaVoter fitted on the other folds only; the saved "
                         "MetaVoter is fitted on all n"}
    else:
        how = {"method": "not_measured", "folds": 0, "n": n,
               "detail": f"{n} usable held-out records cannot both fit a MetaVoter (at least "
                         f"{MIN_METAVOTER_FIT}) and leave records it did not see to score"}
        logger.warning("the MetaVoter's held-out figure is not measured: %s", how["detail"])
    stats: dict[str, Any] = {}
    if n >= MIN_METAVOTER_FIT:
        stats = fit_metavoter(model.metavoter, estimates, spread, target, steps=config.metavoter_steps)
        stats["measured_on"] = "the records it was fitted on (in-sample)"
    else:
        logger.warning("only %d usable held-out records: the MetaVoter stays the plain mean", n)
    return _MetaVoterOutcome(stats=stats, holdout=_holdout_figures(preds, records, out_of_fit=out_of_fit, how=how))


def _save_final(run: _Run, model: HumanAesModel, data: _Data, schedule: _Schedule, position: _Position,
                metavoter: _MetaVoterOutcome) -> TrainResult:
    """Write ``final/`` atomically and ``result.json`` (its presence marks a finished run), report "done"."""
    config, output_dir, final_dir = run.config, run.output_dir, run.final_dir
    metavoter = run.broadcast(metavoter)  # rank 0's: the one fitted
    result = TrainResult(output_dir=str(output_dir), final_checkpoint=str(final_dir), steps=position.step,
                         resumed_from=position.resumed_from, history=position.history, metavoter=metavoter.stats,
                         holdout=metavoter.holdout, skipped_images=data.n_skipped_reading + position.skipped_images,
                         elapsed_s=time.monotonic() - run.started)
    if run.is_main:
        tmp = output_dir / ".tmp-final"
        shutil.rmtree(tmp, ignore_errors=True)
        save_model(model, tmp, metadata={"step": position.step, "train_config": config.to_dict(),
                                         "holdout": metavoter.holdout})
        shutil.rmtree(final_dir, ignore_errors=True)
        os.replace(tmp, final_dir)
        (output_dir / RESULT_FILE).write_text(json.dumps(result.to_dict(), indent=1, default=str))
        _progress(run.progress_callback, None, stage="done", step=position.step, total_steps=schedule.total_steps,
                  epoch=position.epoch(schedule.micro_per_epoch),
                  loss=position.history[-1].get("loss") if position.history else None, losses={}, lr=0.0,
                  elapsed_s=result.elapsed_s, eta_s=0.0, images_per_s=None)
    run.accelerator.wait_for_everyone()
    return result
