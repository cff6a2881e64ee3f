"""The contract every registered watermarking method must pass, as functions of one method (name and config).

``tests/test_methods.py`` runs them for every shipped method (parametrised over :data:`netmark.methods.METHODS`);
``tests/test_extension.py`` runs the same :data:`CONTRACT` on a method that a test registers, which is how a new
method shows that it needs no file but its own (and its golden entry). An :class:`Embedded` is one example config
embedded on digits with a simple-cnn (:data:`EMBED`); each ``check_*`` function asserts one clause of the contract.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import torch
import torch.nn.functional as F

from netmark.data import ArrayDataset
from netmark.errors import ArchitectureError, KeyFileError
from netmark.keys import WatermarkKey
from netmark.methods import MethodConfig, WatermarkMethod, get_method, method_from_key, verify
from netmark.methods.check import EmbedCheck
from netmark.training import TrainConfig, TrainHook, evaluate, train
from tests.conftest import make_cnn

EMBED = TrainConfig(epochs=12, lr=0.05, batch_size=64, seed=0, progress=False)
#: deliberately under-trained: 1 epoch of digits (and the options below where a config has them)
UNDER_TRAINED = TrainConfig(epochs=1, lr=0.05, batch_size=64, seed=0, progress=False)
#: one trigger a batch, one fine-tuning epoch (frontier stitching)
UNDER_OPTIONS = {"per_batch": 1, "finetune_epochs": 1}


class Embedded(NamedTuple):
    """One method's example config embedded with :data:`EMBED` (``warnings``: what ``embed`` logged)."""

    name: str
    method: WatermarkMethod
    model: torch.nn.Module
    key: WatermarkKey
    run: Any
    warnings: list[str]


@contextlib.contextmanager
def embed_warnings() -> Iterator[list[str]]:
    """The messages of the warnings WatermarkMethod.embed logs inside the block."""
    got: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno >= logging.WARNING:
                got.append(record.getMessage())

    logger, handler = logging.getLogger("netmark.methods.base"), Keep()
    logger.addHandler(handler)
    try:
        yield got
    finally:
        logger.removeHandler(handler)


def embed_example(name: str, config: MethodConfig, data: ArrayDataset,
                  null_models: Sequence[torch.nn.Module] | None = None) -> Embedded:
    """Method ``name`` with ``config`` embedded into a fresh simple-cnn (seed 0) on ``data``, key seed 11."""
    method = get_method(name)(config)
    shared = {"null_models": null_models} if null_models is not None else {}
    with embed_warnings() as warned:
        model, key, run = method.embed(make_cnn(seed=0), data, EMBED, seed=11, **shared)
    return Embedded(name, method, model, key, run, warned)


def check_detected(e: Embedded, test: ArrayDataset) -> None:
    res = verify(e.model, e.key)
    assert res.method == e.name
    assert res.detected and res.p_value <= res.threshold
    if e.method.traits().payload == "labels":  # zero-bit: the share of triggers answered with the key's label
        assert res.score >= 0.95
        assert res.details["trigger_accuracy"] == res.score
    else:  # every bit, or Pearson's r of a real-valued payload
        assert res.score == pytest.approx(1.0, abs=1e-6)
        assert res.bit_error_rate in (0.0, None)
    assert evaluate(e.model, test)["accuracy"] > 0.85


def check_independent_not_detected(e: Embedded, train_data: ArrayDataset) -> None:
    for seed in (101, 102):
        other = make_cnn(seed=seed)
        train(other, train_data, TrainConfig(epochs=3, lr=0.05, seed=seed, progress=False))
        res = verify(other, e.key)
        assert not res.detected and res.p_value > 1e-3


def check_key_round_trip(e: Embedded, tmp_path: Path) -> None:
    back = WatermarkKey.load(e.key.save(tmp_path / "k.key"))
    m2 = method_from_key(back)
    assert type(m2) is type(e.method) and m2.config == method_from_key(e.key).config
    assert verify(e.model, back).matched_bits == verify(e.model, e.key).matched_bits


def check_wrong_architecture(e: Embedded) -> None:
    from netmark.models import build

    other = build("mlp", in_channels=3, image_size=8, num_classes=10)  # no such layer / not the key's inputs
    with pytest.raises(ArchitectureError):
        verify(other, e.key)


def check_foreign_key_refused(e: Embedded) -> None:
    forged = WatermarkKey(method="no-such-method", layer=e.key.layer, message=e.key.message, tensors=e.key.tensors)
    with pytest.raises(KeyFileError):
        method_from_key(forged)


def hooked_step(model: torch.nn.Module, hook: TrainHook, opt: torch.optim.Optimizer, x: torch.Tensor,
                y: torch.Tensor) -> None:
    """One SGD step of a user's own loop: the task loss plus the hook's extra losses, then ``after_step``."""
    logits = model(x)
    loss = F.cross_entropy(logits, y) + sum(hook.extra_loss(model, x, y, logits).values())
    opt.zero_grad()
    loss.backward()
    opt.step()
    hook.after_step(model)


def check_users_own_loop(e: Embedded, train_data: ArrayDataset,
                         loop_null_models: Callable[[], Sequence[torch.nn.Module]]) -> None:
    """The README's "your own training loop" recipe: create_key, on_train_start / transform_batch / extra_loss /
    after_step / on_train_end, then finalize; the key verifies, and the hook never wrote into the key.
    ``loop_null_models``: models trained without the key (called only for image-dependent trigger labels)."""
    method = e.method
    model = make_cnn(seed=5)
    loop_epochs = 12
    if method.traits().needs_trained_model:  # frontier stitching crafts its key on a trained model
        train(model, train_data, TrainConfig(epochs=12, lr=0.05, seed=5, progress=False))
        loop_epochs = 8
    key = method.create_key(model, seed=12, data=train_data if method.traits().needs_data else None)
    before = {n: t.clone() for n, t in key.tensors.items()}
    hook = method.hook(key)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    hook.on_train_start(model)
    g = torch.Generator().manual_seed(0)
    for _ in range(loop_epochs):
        for x, y in train_data.loader(64, shuffle=True, generator=g):
            hooked_step(model, hook, opt, *hook.transform_batch(x, y))
    hook.on_train_end(model)
    assert key.tensors.keys() == before.keys()  # hooks never mutate keys: finalize makes the final key
    assert all(torch.equal(key.tensors[n], t) for n, t in before.items())
    # image-dependent trigger labels: the null is measured on models trained without the key
    null = loop_null_models() if method.traits().payload == "labels" and not key.message_random else None
    final = method.finalize(key, model, hook=hook, null_models=null)
    assert verify(model.eval(), final).detected


def check_good_embedding(e: Embedded) -> None:
    """WatermarkMethod.embed's check (netmark.methods.check): detected, above chance, nothing logged."""
    run = e.run
    assert isinstance(run.check, EmbedCheck)
    assert run.check.detected and not run.check.at_chance and run.check.ok
    assert run.check.problem() is None and run.check.data == "train"  # no eval_data: measured on the training set
    assert run.check.accuracy > 0.85 and run.final  # still the training history too
    assert e.warnings == []


def check_under_trained(name: str, config: MethodConfig, options: dict[str, Any], at_chance: bool,
                        train_data: ArrayDataset, test: ArrayDataset, caplog: pytest.LogCaptureFixture) -> None:
    """Embedded under-trained (:data:`UNDER_TRAINED`, :data:`UNDER_OPTIONS` where the config has them, then
    ``options``): the check fails, says why (``at_chance``: the task did not learn; else: not detected) in exactly
    one warning that names the method and its advice."""
    names = {f.name for f in dataclasses.fields(config)}
    changes = {**{k: v for k, v in UNDER_OPTIONS.items() if k in names}, **options}
    method = get_method(name)(dataclasses.replace(config, **changes))
    with caplog.at_level(logging.WARNING, logger="netmark.methods.base"):
        model, key, run = method.embed(make_cnn(seed=0), train_data, UNDER_TRAINED, seed=11, eval_data=test)
    check = run.check
    assert isinstance(check, EmbedCheck) and not check.ok and check.data == "test" and check.images == len(test)
    assert check.accuracy == pytest.approx(run.final["test_accuracy"])  # the same test set as the history's
    if at_chance:
        assert check.at_chance and check.accuracy < 0.158  # 57 of 360 correct is the bound (netmark.methods.check)
    else:
        assert not check.detected and not check.at_chance
    assert check.verification.p_value == verify(model, key).p_value  # the same decision as `netmark verify`
    warnings = [r for r in caplog.records if r.name == "netmark.methods.base" and r.levelno == logging.WARNING]
    assert len(warnings) == 1
    msg = warnings[0].getMessage()
    assert msg.startswith(f"{name}: ") and check.advice and check.advice in msg
    assert ("watermark not detected" in msg) == (not check.detected)
    assert ("at chance" in msg) == check.at_chance


def run_contract(e: Embedded, *, train_data: ArrayDataset, test: ArrayDataset, tmp_path: Path,
                 loop_null_models: Callable[[], Sequence[torch.nn.Module]]) -> None:
    """Every clause of the contract that reads an embedded example (all but :func:`check_under_trained`, which
    embeds on its own), in the order of ``tests/test_methods.py``."""
    check_detected(e, test)
    check_independent_not_detected(e, train_data)
    check_key_round_trip(e, tmp_path)
    check_wrong_architecture(e)
    check_foreign_key_refused(e)
    check_users_own_loop(e, train_data, loop_null_models)
    check_good_embedding(e)
