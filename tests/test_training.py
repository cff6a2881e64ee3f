from __future__ import annotations

import pytest
import torch

from netmark.errors import ConfigError
from netmark.training import OPTIMIZERS, TrainConfig, TrainHook, evaluate, make_optimizer, train
from tests.conftest import make_cnn


def _params_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


@pytest.mark.parametrize("opt", OPTIMIZERS)
def test_every_optimizer_reduces_loss(opt: str, tiny_data) -> None:
    lr = {"sgd": 0.1, "adagrad": 0.05, "rmsprop": 0.001}.get(opt, 0.01)
    model = make_cnn(num_classes=4)
    before = evaluate(model, tiny_data)["loss"]
    train(model, tiny_data, TrainConfig(epochs=5, optimizer=opt, lr=lr, batch_size=16, progress=False))
    assert evaluate(model, tiny_data)["loss"] < before


def test_training_is_deterministic_and_leaves_global_rng_alone(tiny_data) -> None:
    cfg = TrainConfig(epochs=2, lr=0.05, batch_size=16, seed=7, progress=False)
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    a, b = make_cnn(num_classes=4), make_cnn(num_classes=4)
    train(a, tiny_data, cfg)
    train(b, tiny_data, cfg)
    assert _params_equal(a, b)
    assert torch.equal(torch.random.get_rng_state(), state)
    c = make_cnn(num_classes=4)
    train(c, tiny_data, TrainConfig(epochs=2, lr=0.05, batch_size=16, seed=8, progress=False))
    assert not _params_equal(a, c)


def test_step_schedule_and_nesterov(tiny_data) -> None:
    cfg = TrainConfig(epochs=3, lr=0.1, nesterov=True, milestones=(1, 2), gamma=0.2, progress=False)
    run = train(make_cnn(num_classes=4), tiny_data, cfg)
    assert [round(h["lr"], 6) for h in run.history] == [0.1, 0.02, 0.004]
    opt = make_optimizer(make_cnn().parameters(), cfg)
    assert opt.param_groups[0]["nesterov"] is True


class _Recorder(TrainHook):
    def __init__(self) -> None:
        self.calls: list[str] = []

    def on_train_start(self, model):
        self.calls.append("start")

    def transform_batch(self, x, y):
        self.calls.append("batch")
        return x * 0, y

    def extra_loss(self, model, x, y, logits):
        assert float(x.abs().sum()) == 0.0  # transform_batch ran first
        return {"extra": logits.sum() * 0 + 1.0}

    def after_step(self, model):
        self.calls.append("step")

    def on_epoch_end(self, model, epoch, metrics):
        metrics["custom"] = 42.0

    def on_train_end(self, model):
        self.calls.append("end")


def test_hooks_are_called_in_order(tiny_data) -> None:
    rec = _Recorder()
    run = train(make_cnn(num_classes=4), tiny_data, TrainConfig(epochs=1, batch_size=32, progress=False), hooks=[rec])
    assert rec.calls == ["start", "batch", "step", "batch", "step", "end"]
    assert run.final["custom"] == 42.0
    assert run.final["extra"] == pytest.approx(1.0)
    assert run.final["loss"] == pytest.approx(run.final["task_loss"] + 1.0)


class _StopAfter(TrainHook):
    def __init__(self, n: int) -> None:
        self.n, self.seen = n, 0

    def on_epoch_end(self, model, epoch, metrics):
        self.seen = epoch

    def stop_training(self) -> bool:
        return self.seen >= self.n


def test_a_hook_can_stop_training_after_an_epoch(tiny_data) -> None:
    cfg = TrainConfig(epochs=5, lr=0.05, batch_size=16, seed=1, progress=False)
    stopped = make_cnn(num_classes=4)
    run = train(stopped, tiny_data, cfg, hooks=[_StopAfter(2), TrainHook()])
    assert [h["epoch"] for h in run.history] == [1.0, 2.0]
    two = make_cnn(num_classes=4)  # the same as a 2-epoch schedule
    train(two, tiny_data, TrainConfig(epochs=2, lr=0.05, batch_size=16, seed=1, progress=False))
    assert _params_equal(stopped, two) and not stopped.training


def test_distillation_uses_teacher_not_labels(tiny_data) -> None:
    teacher = make_cnn(seed=1, num_classes=4)
    student = make_cnn(seed=2, num_classes=4)
    shuffled = type(tiny_data)(tiny_data.x, tiny_data.y.flip(0), name="t", num_classes=4)
    train(student, shuffled, TrainConfig(epochs=30, lr=0.1, batch_size=16, progress=False), teacher=teacher)
    with torch.no_grad():
        agree = (student(tiny_data.x).argmax(1) == teacher(tiny_data.x).argmax(1)).float().mean()
    assert agree > 0.8


@pytest.mark.parametrize("kwargs", [
    {"optimizer": "lbfgs"}, {"epochs": -1}, {"batch_size": 0}, {"lr": 0.0}, {"lr": float("nan")},
    {"nesterov": True, "optimizer": "adam"}, {"milestones": (0,)}, {"clip_grad_norm": 0.0},
    {"clip_grad_norm": float("nan")}, {"device": "warp-drive"},
])
def test_bad_train_config(kwargs) -> None:
    with pytest.raises(ConfigError):
        TrainConfig(**kwargs)


def test_clip_grad_norm_bounds_each_step(tiny_data) -> None:
    """One full-batch plain-SGD step with lr 1 moves the weights by exactly the (clipped) gradient."""
    moved = {}
    for clip in (None, 1e-3):
        net = make_cnn(num_classes=4)
        before = torch.cat([p.detach().flatten().clone() for p in net.parameters()])
        train(net, tiny_data, TrainConfig(epochs=1, batch_size=len(tiny_data), lr=1.0, momentum=0.0,
                                           clip_grad_norm=clip, progress=False))
        moved[clip] = float((torch.cat([p.detach().flatten() for p in net.parameters()]) - before).norm())
    assert moved[1e-3] == pytest.approx(1e-3, rel=1e-3)
    assert moved[None] > 10 * moved[1e-3]


def test_divergence_is_a_clear_error(tiny_data) -> None:
    with pytest.raises(ConfigError, match="diverged"):
        train(make_cnn(num_classes=4), tiny_data, TrainConfig(epochs=3, lr=1e30, progress=False))
