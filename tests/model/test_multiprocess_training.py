"""Training in two processes (torchrun, gloo on CPU) through the same training code as one process.

Real ``python -m torch.distributed.run --standalone --nproc_per_node 2`` subprocesses (model_core.launch), one CPU
thread each. The 2-process run keeps the global batch and the optimizer steps of the 1-process run, so the two
read the same records at every step; their held-out figures must agree within HELD_OUT_TOLERANCE.

Why 0.05: the runs differ only in how each step's loss is averaged (per process, then over the processes, so
expert records and answer tokens weigh a little differently when they fall unevenly between the processes) and in
floating-point order; measured on this config the held-out PLCCs differ by < 0.005. 0.05 is still well inside
the noise of a PLCC on 16 test images (its standard error near 0.8 is ~0.1), and far below what a broken
multi-process run (a rank training on the wrong records, unsynchronised weights, a lost half of every batch) shows.
"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from model_core.evaluation import evaluate
from model_core.launch import TrainingProcessesFailed, launch_files, train_processes
from model_core.model import ModelConfig, load_model
from model_core.synthetic import write_humanbeauty
from model_core.training import TrainConfig, TrainingStopped, train

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

HELD_OUT_TOLERANCE = 0.05
ONE_THREAD = {"OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    write_humanbeauty(root, n_overall=40, n_expert=40, seed=5, size=(64, 64), test_fraction=0.2)
    return root


def _config(data, out, **overrides) -> TrainConfig:
    base = dict(data=str(data), output_dir=str(out), model=ModelConfig(train_vision=True, head_dropout=0.0),
                max_tiles=1, max_steps=8, batch_size=8, lr=5e-4, head_lr=2e-3, num_workers=0, checkpoint_every=3,
                log_every=1, device="cpu", precision="fp32", metavoter_fraction=0.2, metavoter_steps=30, seed=0)
    base.update(overrides)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def two_process_run(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("two") / "run"
    progress = []
    result = train_processes(_config(data, out), processes=2, progress_callback=progress.append, env=ONE_THREAD)
    return out, result, progress


def _test_plcc(checkpoint, data) -> dict[str, float]:
    report = evaluate(load_model(checkpoint), data, split="test", max_tiles=1, plots=False)
    return {head: m["plcc"] for head, m in report.overall.items()}


def test_two_processes_reach_the_held_out_quality_of_one(data, tmp_path, two_process_run):
    out, two, progress = two_process_run
    one = train(_config(data, tmp_path / "one"))
    assert two.steps == one.steps == 8 and len(two.history) == len(one.history) == 8
    plcc_one, plcc_two = _test_plcc(one.final_checkpoint, data), _test_plcc(two.final_checkpoint, data)
    print(json.dumps({"one_process": plcc_one, "two_processes": plcc_two}))
    for head in ("regression", "expert", "metavoter"):
        assert plcc_two[head] == pytest.approx(plcc_one[head], abs=HELD_OUT_TOLERANCE), (head, plcc_one, plcc_two)
    assert plcc_two["regression"] > 0.3  # both learned something: the comparison is not between two flat lines
    assert two.holdout["n"] == one.holdout["n"] and two.holdout["metavoter_measured"]["method"] == "cross_fit"
    # the logged loss is every rank's mean: the curves follow each other step by step
    for a, b in zip(one.history, two.history):
        assert a["step"] == b["step"] and b["loss"] == pytest.approx(a["loss"], abs=0.25)
    # progress reached the caller from rank 0 only: once per step, then the MetaVoter stage and done
    assert [p.step for p in progress if p.stage == "train"] == list(range(1, 9))
    assert [p.stage for p in progress][-2:] == ["metavoter", "done"]


def test_two_processes_write_each_checkpoint_once(two_process_run):
    out, result, _ = two_process_run
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-00000003", "step-00000006"]
    state = json.loads((out / "checkpoints" / "step-00000006" / "trainer_state.json").read_text())
    assert state["world"] == 2 and state["step"] == 6
    assert len(torch.load(out / "checkpoints" / "step-00000006" / "training_state.pt",
                          weights_only=False)["rank_rng"]) == 2
    assert not list(out.glob(".tmp*")) and not list((out / "checkpoints").glob(".tmp*"))
    log = launch_files(out)["log"].read_text()
    for step in (3, 6):  # one writer: rank 0 (both ranks log to this file)
        assert log.count(f"checkpoint written: {out / 'checkpoints' / f'step-{step:08d}'}") == 1
    assert json.loads((out / "result.json").read_text())["steps"] == 8 and (out / "final" / "config.json").is_file()


def test_a_stopped_two_process_run_resumes_to_the_weights_of_an_uninterrupted_one(data, tmp_path, two_process_run):
    # asked to stop before the first step: the ranks agree, checkpoint step 1 once, and stop
    with pytest.raises(TrainingStopped, match="step 1 of 8"):
        train_processes(_config(data, tmp_path / "run"), processes=2, should_stop=lambda: True, env=ONE_THREAD)
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["step-00000001"]
    assert not (tmp_path / "run" / "final").exists()
    resumed = train_processes(_config(data, tmp_path / "run"), processes=2, env=ONE_THREAD)
    assert resumed.resumed_from == 1 and resumed.steps == 8
    assert [h["step"] for h in resumed.history] == list(range(1, 9))
    # the same records at every step and every rank's generators restored: the same weights, bit for bit
    whole = load_file(str(two_process_run[0] / "final" / "model.safetensors"))
    split = load_file(str(tmp_path / "run" / "final" / "model.safetensors"))
    assert whole.keys() == split.keys()
    for key in whole:
        torch.testing.assert_close(split[key], whole[key], atol=1e-6, rtol=1e-5, msg=key)


def test_a_failing_rank_ends_the_run_with_its_error(tmp_path):
    with pytest.raises(TrainingProcessesFailed, match=r"rank \d: .*no-such-data"):
        train_processes(_config(tmp_path / "no-such-data", tmp_path / "run"), processes=2, env=ONE_THREAD)


def test_a_micro_batch_whose_images_all_fail_on_one_rank_is_skipped_by_every_rank(tmp_path):
    """on_bad_image="skip" with one record per rank and micro-batch: a rank left with no image would leave the other
    waiting in DDP's backward forever; all ranks skip that micro-batch instead (and average what they had
    accumulated when it was the last of an accumulation) and the run completes."""
    from model_core.data import read_records

    root = tmp_path / "data"
    write_humanbeauty(root, n_overall=12, n_expert=12, seed=9, size=(64, 64), test_fraction=0.2)
    records = read_records(root, split="train").records
    for record in records[::3]:  # undecodable from here on: found missing only when a process loads it
        record.image.write_bytes(b"not an image")
    result = train_processes(_config(root, tmp_path / "run", batch_size=2, grad_accum=2, max_steps=6,
                                     checkpoint_every=0, on_bad_image="skip", metavoter_fraction=0.25),
                             processes=2, env=ONE_THREAD)
    assert result.steps == 6 and result.skipped_images > 0
    assert len(result.history) == 6 and all(h["loss"] > 0 for h in result.history if "loss" in h)
