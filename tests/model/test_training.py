"""Training mechanics: masked expert loss, checkpoints, stop + resume equals an uninterrupted run, bad configs, the
MetaVoter's held-out figure measured out of fit."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from model_core.launch import train_processes
from model_core.model import CheckpointMismatchError, HeadOutputs, ModelConfig, PrecisionError
from model_core.training import (
    TrainConfig,
    TrainingStopped,
    _epoch_batches,
    compute_losses,
    parameter_groups,
    train,
)


def _config(data, out, **overrides) -> TrainConfig:
    base = dict(data=str(data), output_dir=str(out), model=ModelConfig(train_vision=True, head_dropout=0.0),
                max_tiles=1, max_steps=6, batch_size=4, grad_accum=2, lr=5e-4, head_lr=2e-3, num_workers=0,
                checkpoint_every=2, log_every=1, device="cpu", precision="fp32", metavoter_fraction=0.25,
                metavoter_steps=20)
    base.update(overrides)
    return TrainConfig(**base)


def test_overall_only_records_never_train_the_sub_dimensions():
    expert = torch.full((2, 12), 0.5, requires_grad=True)
    heads = HeadOutputs(level_probs=torch.full((2, 5), 0.2), lm_score=torch.zeros(2), lm_spread=torch.zeros(2),
                        regression=torch.full((2,), 0.5), expert=expert, metavoter=torch.zeros(2),
                        metavoter_weights=torch.zeros(2, 3), lm_loss=torch.tensor(0.0))
    scores = torch.tensor([[0.0] * 11 + [0.9], [0.1] * 12])
    losses = compute_losses(heads, scores, torch.tensor([False, True]), _config("d", "o"))
    losses["loss"].backward()
    assert torch.all(expert.grad[0, :11] == 0)  # the placeholders of the overall-only record
    assert expert.grad[0, 11] != 0 and torch.all(expert.grad[1] != 0)


def test_stopped_run_resumes_to_the_same_weights_as_an_uninterrupted_run(tmp_path, small_data):
    progress = []
    whole = train(_config(small_data, tmp_path / "whole"), progress_callback=progress.append)
    assert whole.steps == 6 and progress[-1].stage == "done"
    train_events = [p for p in progress if p.stage == "train"]
    assert [p.step for p in train_events] == [1, 2, 3, 4, 5, 6] and train_events[-1].eta_s == 0
    assert all(p.loss is not None and p.loss > 0 for p in train_events)
    # 4 held-out records: the MetaVoter is fitted on them, but none is left to measure it on -> not measured
    assert whole.holdout["metavoter_measured"]["method"] == "not_measured" and whole.holdout["n"] == 4
    assert whole.holdout["overall_plcc"]["metavoter"] is None and whole.holdout["overall_plcc"]["lm"] is not None
    assert whole.metavoter["n"] == 4

    calls = {"n": 0}

    def stop_after_three() -> bool:
        calls["n"] += 1
        return calls["n"] == 3

    with pytest.raises(TrainingStopped, match="step 3 of 6"):
        train(_config(small_data, tmp_path / "split"), should_stop=stop_after_three)
    assert (tmp_path / "split" / "checkpoints" / "step-00000003" / "trainer_state.json").is_file()
    resumed = train(_config(small_data, tmp_path / "split"))
    assert resumed.resumed_from == 3 and resumed.steps == 6

    a = load_file(str(tmp_path / "whole" / "final" / "model.safetensors"))
    b = load_file(str(tmp_path / "split" / "final" / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=1e-4, msg=key)
    # keep_checkpoints=2: only the newest two survive
    kept = sorted(p.name for p in (tmp_path / "whole" / "checkpoints").iterdir())
    assert kept == ["step-00000002", "step-00000004"]
    # a finished run is returned as is (idempotent retries)
    again = train(_config(small_data, tmp_path / "whole"))
    assert again.steps == 6 and json.loads((tmp_path / "whole" / "result.json").read_text())["steps"] == 6


def test_resuming_with_another_config_is_refused(tmp_path, small_data):
    with pytest.raises(TrainingStopped):
        train(_config(small_data, tmp_path / "run"), should_stop=lambda: True)
    with pytest.raises(CheckpointMismatchError, match=r"batch_size: 4 != 2"):
        train(_config(small_data, tmp_path / "run", batch_size=2))


def test_bf16_training_on_cpu_is_refused_before_any_work(tmp_path, small_data):
    with pytest.raises(PrecisionError, match="bf16"):
        train(_config(small_data, tmp_path / "run", precision="bf16"))
    assert not (tmp_path / "run").exists()


def test_invalid_training_config_lists_the_problems(tmp_path, small_data):
    with pytest.raises(ValueError, match="batch_size and grad_accum must be >= 1; metavoter_fraction"):
        train(_config(small_data, tmp_path / "run", batch_size=0, metavoter_fraction=1.5))


def test_the_metavoters_holdout_figure_comes_from_records_it_was_not_fitted_on(tmp_path, small_data, monkeypatch):
    """Instrumented real run: which held-out rows every MetaVoter was fitted on, and which rows it scored."""
    import model_core.training as training
    from model_core.model import MetaVoter

    fitted: dict[int, set] = {}  # id(MetaVoter) -> rows it was fitted on
    fits: list[set] = []
    truth: dict[tuple, float] = {}
    scored: list[tuple[tuple, float]] = []  # (row, score) from a fitted MetaVoter, outside its fitting
    inside_fit = {"on": False}
    real_fit, real_forward = training.fit_metavoter, MetaVoter.forward

    def key(estimates, spread, i) -> tuple:
        return (*estimates[i].tolist(), float(spread[i]))

    def spy_fit(metavoter, estimates, spread, target, **kwargs):
        rows = {key(estimates, spread, i) for i in range(len(target))}
        truth.update({key(estimates, spread, i): float(target[i]) for i in range(len(target))})
        fitted[id(metavoter)] = rows
        fits.append(rows)
        inside_fit["on"] = True
        try:
            return real_fit(metavoter, estimates, spread, target, **kwargs)
        finally:
            inside_fit["on"] = False

    def spy_forward(self, estimates, spread):
        score, weights = real_forward(self, estimates, spread)
        if not inside_fit["on"] and id(self) in fitted:
            for i in range(len(score)):
                row = key(estimates, spread, i)
                assert row not in fitted[id(self)], "a MetaVoter scored a record it was fitted on"
                scored.append((row, float(score[i])))
        return score, weights

    monkeypatch.setattr(training, "fit_metavoter", spy_fit)
    monkeypatch.setattr(MetaVoter, "forward", spy_forward)
    result = train(_config(small_data, tmp_path / "run", max_steps=2, grad_accum=1, checkpoint_every=0,
                           metavoter_fraction=0.5, metavoter_steps=10))

    how = result.holdout["metavoter_measured"]
    assert how["method"] == "cross_fit" and how["folds"] == 5 and how["n"] == result.holdout["n"] == 9
    everything = set(truth)
    assert len(everything) == 9 and fits[-1] == everything  # the saved MetaVoter: fitted on all held-out records
    assert len(fits) == 6 and all(len(rows) in (7, 8) for rows in fits[:-1])
    assert sorted(row for row, _ in scored) == sorted(everything)  # every record scored once, out of fit
    # The stored figure is the one these out-of-fit scores give (Pearson written out).
    pred = np.array([s for _, s in scored])
    true = np.array([truth[row] for row, _ in scored])
    dp, dt = pred - pred.mean(), true - true.mean()
    expected = float((dp * dt).sum() / np.sqrt((dp ** 2).sum() * (dt ** 2).sum()))
    assert result.holdout["overall"]["metavoter"]["plcc"] == pytest.approx(expected, abs=1e-6)
    assert result.holdout["overall_plcc"]["metavoter"] == result.holdout["overall"]["metavoter"]["plcc"]
    assert result.metavoter["n"] == 9 and "in-sample" in result.metavoter["measured_on"]
    saved = json.loads((tmp_path / "run" / "result.json").read_text())["holdout"]
    assert saved["metavoter_measured"] == how


def test_adamw_decays_matrices_but_not_norms_or_biases(tiny_model):
    tiny_model.set_trainable(heads=True)
    config = _config("d", "o", weight_decay=0.05)
    groups = parameter_groups(tiny_model, config)
    names = {id(p): name for name, p in tiny_model.named_parameters()}
    grouped = [id(p) for g in groups for p in g["params"]]
    assert sorted(grouped) == sorted(id(p) for p in tiny_model.parameters() if p.requires_grad)  # each once
    assert len(grouped) == len(set(grouped))
    decay = {names[id(p)] for g in groups if g["weight_decay"] == 0.05 for p in g["params"]}
    no_decay = {names[id(p)] for g in groups if g["weight_decay"] == 0.0 for p in g["params"]}
    assert decay and no_decay and all(g["weight_decay"] in (0.0, 0.05) for g in groups)
    params = dict(tiny_model.named_parameters())
    assert all(params[n].ndim == 1 for n in no_decay) and all(params[n].ndim >= 2 for n in decay)
    # the heads' LayerNorm and biases, the vision tower's norms (train_vision=True): not decayed
    assert {"regression_head.norm.weight", "regression_head.norm.bias", "regression_head.fc1.bias",
            "expert_head.fc2.bias"} <= no_decay
    assert any("vision_tower" in n and "norm" in n for n in no_decay)
    # LoRA and the heads' matrices keep their decay
    assert any("lora_A" in n for n in decay) and any("lora_B" in n for n in decay)
    assert {"regression_head.fc1.weight", "expert_head.fc2.weight"} <= decay
    head_ids = {id(p) for p in tiny_model.head_parameters()}
    for g in groups:
        in_heads = {id(p) in head_ids for p in g["params"]}
        assert in_heads == {True} and g["lr"] == config.head_lr or in_heads == {False} and g["lr"] == config.lr


def test_a_checkpoint_with_other_optimizer_groups_is_refused_on_resume(tmp_path, small_data):
    """A checkpoint from before norms and biases were exempted from decay (one group per lr) fails clearly."""
    config = _config(small_data, tmp_path / "run", max_steps=2, grad_accum=1)
    with pytest.raises(TrainingStopped):
        train(config, should_stop=lambda: True)
    state_file = tmp_path / "run" / "checkpoints" / "step-00000001" / "training_state.pt"
    state = torch.load(state_file, weights_only=False)
    state["optimizer"]["param_groups"] = state["optimizer"]["param_groups"][:2]
    torch.save(state, state_file)
    with pytest.raises(CheckpointMismatchError, match="parameter groups"):
        train(config)


def test_a_batch_that_does_not_divide_is_refused_before_any_process_starts(tmp_path):
    with pytest.raises(ValueError, match="batch_size 5 cannot be shared out evenly across 2 processes"):
        train_processes(_config("unused", tmp_path / "run", batch_size=5), processes=2)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("world", [2, 3])
@pytest.mark.parametrize("n", [47, 49])
def test_the_ranks_micro_batches_make_up_one_process_micro_batches(world, n):
    """The data position means the same records at any number of processes (but the dropped short tail)."""
    batch = 6
    one = _epoch_batches(n, epoch=2, seed=4, batch_size=batch, rank=0, world=1)
    ranks = [_epoch_batches(n, epoch=2, seed=4, batch_size=batch, rank=r, world=world) for r in range(world)]
    assert len({len(r) for r in ranks}) == 1 and all(len(b) > 0 for r in ranks for b in r)
    for i, parts in enumerate(zip(*ranks)):
        assert sorted(sum(parts, [])) == sorted(one[i])
        if len(one[i]) == batch:
            assert {len(p) for p in parts} == {batch // world}
    dropped = one[len(ranks[0]):]
    assert all(len(b) < world for b in dropped) and len(dropped) == (1 if n % batch < world else 0)


def test_a_checkpoint_of_another_number_of_processes_resumes_only_where_the_epochs_are_cut_alike(tmp_path, small_data):
    """Written by 2 processes (as their trainer_state says), resumed by 1: fine when an epoch has as many
    micro-batches at both, refused with a clear error when it does not (the data position would move)."""
    config = _config(small_data, tmp_path / "run", max_steps=3, grad_accum=1)
    with pytest.raises(TrainingStopped):
        train(config, should_stop=lambda: True)
    state_file = tmp_path / "run" / "checkpoints" / "step-00000001" / "trainer_state.json"
    state = json.loads(state_file.read_text())
    assert state["world"] == 1 and state["micro_per_epoch"] > 0
    state_file.write_text(json.dumps({**state, "world": 2, "micro_per_epoch": state["micro_per_epoch"] + 1}))
    with pytest.raises(CheckpointMismatchError, match="cannot resume with 1 process.*checkpointed with 2"):
        train(config)
    state_file.write_text(json.dumps({**state, "world": 2}))
    result = train(config)
    assert result.resumed_from == 1 and result.steps == 3
