"""Multi-process training speed-up: the same training at 1 and at N processes; prints ONE JSON line of figures.

    python bench/training_processes.py                       # 1 process x all cores, 1 x 1 thread, N x 1 thread
    python bench/training_processes.py --configs 1x4 2x2 4x1 --n-images 1200 --epochs 3

A config PxT is P processes of T CPU threads each (OMP_NUM_THREADS). Every run goes through
``model_core.launch.train_processes`` (torchrun, gloo), so all pay the same start-up; the figures separate it out.
The default compares one process using every core (what a CPU worker does in-process), one process of one thread,
and one single-threaded process per core (what torchrun does by default): torch's intra-op threads scale poorly on
a small, busy CPU, so the second run says how much of a speed-up is processes vs threads. Same synthetic data (64 px,
tiny random-init model, the platform's tiny-cpu settings: lr 5e-4, head lr 2e-3), same GLOBAL batch and the same
optimizer steps: N processes read batch / N records each of every step, so the results are comparable. Figures:

- wall_s: the whole run (start-up, training, MetaVoter stage, writing final/), the shortest of the rounds;
- examples_per_s: the training stage from its first progress report to its last (rank 0's clock), the best round;
- *_each: every round's figure (a busy machine spreads them);
- speedup_wall / speedup_train: 1-process time / N-process time;
- held-out: PLCC of every head on the synthetic test split (``evaluate``), and the MetaVoter's cross-fitted
  figure on the training run's own held-out records.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cores = len(os.sched_getaffinity(0))
    parser.add_argument("--configs", nargs="+", default=[f"1x{cores}", "1x1", f"{cores}x1"],
                        help="PxT: P processes of T threads; speed-ups are against the first")
    parser.add_argument("--n-images", type=int, default=600, help="synthetic images (80%% train, 20%% test)")
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--batch-size", type=int, default=16, help="the global batch (every N must divide it)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=2, help="alternating rounds of every config; best is kept")
    args = parser.parse_args()
    sys.path[:0] = [str(ROOT)]
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    import logging

    logging.basicConfig(level=logging.WARNING)
    import torch

    from model_core.evaluation import evaluate
    from model_core.launch import train_processes
    from model_core.model import ModelConfig, load_model
    from model_core.synthetic import write_humanbeauty
    from model_core.training import TrainConfig

    work = Path(tempfile.mkdtemp(prefix="aesp-bench-processes-"))
    half = args.n_images // 2
    summary = write_humanbeauty(work / "data", n_overall=half, n_expert=args.n_images - half, seed=args.seed,
                                size=(64, 64), test_fraction=0.2)
    runs: dict[str, dict] = {}
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    # Alternating rounds, the best of each kept: other programs on the machine slow single runs down at random.
    for round_ in range(args.repeats):
        for name in args.configs:
            n, threads = (int(x) for x in name.split("x"))
            config = TrainConfig(data=str(work / "data"), output_dir=str(work / f"run-{name}-{round_}"),
                                 model=ModelConfig(train_vision=True, head_dropout=0.0), max_tiles=1,
                                 epochs=args.epochs, batch_size=args.batch_size, lr=5e-4, head_lr=2e-3,
                                 warmup_steps=10, num_workers=0, checkpoint_every=0, log_every=5, device="cpu",
                                 precision="fp32", metavoter_fraction=0.1, seed=args.seed)
            progress = []
            started = time.monotonic()
            result = train_processes(config, processes=n, progress_callback=progress.append,
                                     env={"OMP_NUM_THREADS": str(threads)})
            wall = time.monotonic() - started
            steps = [p for p in progress if p.stage == "train"]
            first, last = steps[0], steps[-1]
            train_s = last.elapsed_s - first.elapsed_s
            rate = (last.step - first.step) * args.batch_size / train_s
            run = runs.setdefault(name, {"processes": n, "threads_per_process": threads, "steps": result.steps,
                                         "wall_s_each": [], "examples_per_s_each": []})
            run["wall_s_each"].append(round(wall, 1))
            run["examples_per_s_each"].append(round(rate, 1))
            if round_ == 0:  # the same figures every round (the same seeded run)
                torch.set_num_threads(os.cpu_count() or 1)
                report = evaluate(load_model(result.final_checkpoint), work / "data", split="test", max_tiles=1,
                                  plots=False)
                run.update(final_loss=round(result.history[-1]["loss"], 4),
                           test_plcc={head: round(m["plcc"], 4) for head, m in report.overall.items()},
                           test_expert_mean_plcc=round(report.expert_mean_plcc, 4),
                           holdout_metavoter_plcc=result.holdout["overall_plcc"].get("metavoter"))
    for run in runs.values():
        run["wall_s"], run["examples_per_s"] = min(run["wall_s_each"]), max(run["examples_per_s_each"])
    base = runs[args.configs[0]]
    for run in runs.values():
        run["speedup_wall"] = round(base["wall_s"] / run["wall_s"], 2)
        run["speedup_train"] = round(run["examples_per_s"] / base["examples_per_s"], 2)
    print(json.dumps({
        "bench": "training_processes", "backend": "gloo", "device": "cpu",
        "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} CPU cores, CPU only",
        "load_average_at_start": load_at_start, "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "data": {"train": summary.n_train, "test": summary.n_test, "size_px": 64}, "epochs": args.epochs,
        "global_batch": args.batch_size, "runs": runs,
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
