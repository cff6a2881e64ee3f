"""Tartaglione et al. 2021: positions (Eq. 3), mapping (Eqs. 4, 7), locking (Eq. 5), replicas (Eqs. 8-10)
and the correlation p-value."""

from __future__ import annotations

import copy
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from netmark.errors import ArchitectureError, ConfigError
from netmark.keys import WatermarkKey
from netmark.methods.tartaglione import (
    PAPER_TRAIN,
    Tartaglione,
    TartaglioneConfig,
    TartaglioneHook,
    demo_logo,
    draw_positions,
    image_payload,
    layer_sizes,
    paper_config,
    pearson,
    reinit,
)
from netmark.models import build
from netmark.training import TrainConfig, train
from netmark.verify import log10_pearson_tail, pearson_result
from tests.conftest import make_cnn
from tests.method_contract import hooked_step


def _locked_values(model: torch.nn.Module, key: WatermarkKey) -> torch.Tensor:
    return Tartaglione.from_key(key).extract(model, key).scores


def test_paper_defaults() -> None:
    cfg = paper_config()
    assert (cfg.size, cfg.mu, cfg.sigma, cfg.noise, cfg.gamma, cfg.gamma_step, cfg.gamma_decay) == (
        1800, 0.0, 0.01, 0.01, 1e-4, 25, 0.5)
    assert cfg.replica_batch == "full" and cfg.replica_fraction == 1.0 and cfg.reinit
    assert TartaglioneConfig().replica_batch == "split" and TartaglioneConfig().replica_fraction == 0.5
    assert (PAPER_TRAIN.optimizer, PAPER_TRAIN.lr, PAPER_TRAIN.weight_decay, PAPER_TRAIN.batch_size,
            PAPER_TRAIN.epochs, PAPER_TRAIN.momentum) == ("sgd", 0.1, 1e-4, 100, 100, 0.0)
    assert demo_logo().shape == (3, 20, 30) and demo_logo().numel() == 1800
    assert float(demo_logo().min()) >= 0 and float(demo_logo().max()) <= 1


@pytest.mark.parametrize("bad", [{"size": 0}, {"replicas": -1}, {"sigma": 0.0}, {"noise": -1.0}, {"gamma": math.nan},
                                 {"replica_batch": "half"}, {"max_layer_fraction": 0.0}, {"reinit": "yes"},
                                 {"replica_fraction": 0.0}, {"replica_fraction": 1.5}])
def test_bad_configs(bad) -> None:
    with pytest.raises(ConfigError):
        TartaglioneConfig(**bad)


def test_positions_follow_eq3_and_are_reproducible_from_the_seed() -> None:
    sizes = [500, 25_000, 400_000, 5_000]
    layer, index = draw_positions(sizes, 4000, root=3)
    again = draw_positions(sizes, 4000, root=3)
    assert torch.equal(layer, again[0]) and torch.equal(index, again[1])
    assert not torch.equal(layer, draw_positions(sizes, 4000, root=4)[0])
    pairs = set(zip(layer.tolist(), index.tolist(), strict=True))
    assert len(pairs) == 4000  # no parameter carries two elements
    counts = torch.bincount(layer, minlength=4).tolist()
    assert counts[0] <= 500 and all(900 < c < 1300 for c in counts[1:])  # layers uniformly, small one full
    assert all(0 <= i < sizes[j] for j, i in pairs)
    capped, _ = draw_positions(sizes, 4000, root=3, max_fraction=0.1)
    assert int((capped == 0).sum()) <= 50
    with pytest.raises(ConfigError, match="does not fit"):
        draw_positions([10, 10], 21, root=0)


def test_eq4_and_eq7_round_trip_and_the_key_needs_nothing_else(tmp_path: Path) -> None:
    model = make_cnn(seed=0)
    method = Tartaglione(TartaglioneConfig(size=200, replicas=0, reinit=False, mu=0.02, sigma=0.05))
    key = method.create_key(model, seed=9)
    hook = method.hook(key)
    hook.on_train_start(model)
    assert torch.allclose(_locked_values(model, key), key.tensors["payload"], atol=1e-5)
    back = WatermarkKey.load(key.save(tmp_path / "t.key"))  # positions come back from the seed alone
    assert torch.allclose(_locked_values(model, back), key.tensors["payload"], atol=1e-5)
    assert back.config["layers"] == layer_sizes(model) and set(back.tensors) == {"payload"}
    res = method.verify(model, back)
    assert res.detected and res.score == pytest.approx(1.0) and res.details["exact_8bit"] == 1.0
    w = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    assert int(((w - 0.02).abs() <= 0.05 + 1e-7).sum()) >= 200  # every element lies in [μ − σ, μ + σ]


@pytest.mark.parametrize("opt", [dict(optimizer="sgd", momentum=0.9, weight_decay=1e-2),
                                 dict(optimizer="adam", lr=1e-3, weight_decay=1e-2)])
def test_locked_weights_never_change_even_with_weight_decay_and_momentum(opt, digits_train) -> None:
    model = make_cnn(seed=1)
    method = Tartaglione(TartaglioneConfig(size=300, replicas=1, reinit=False))
    key = method.create_key(model, seed=2)
    cfg = TrainConfig(epochs=2, batch_size=64, seed=0, progress=False, **{"lr": 0.05, **opt})
    model, key, _ = method.embed(model, digits_train, cfg, key=key)
    fresh = make_cnn(seed=1)
    TartaglioneHook(key, method.config).on_train_start(fresh)  # the values written before training
    assert torch.equal(_locked_values(model, key), _locked_values(fresh, key))
    assert not torch.equal(model.fc1.weight, fresh.fc1.weight)  # the free weights did train


@pytest.mark.parametrize("mode", ["full", "split"])
def test_update_is_eq10_for_vanilla_sgd(mode) -> None:
    """With s = 0 every replica is Γ0 itself, so Eq. 10 reads w ← w − (η − γ)∇L on the free weights."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(8, 1, 8, 8, generator=g), torch.randint(0, 10, (8,), generator=g)
    lr, gamma = 0.1, 0.03
    model = make_cnn(seed=3)
    method = Tartaglione(TartaglioneConfig(size=50, replicas=4, noise=0.0, gamma=gamma, replica_batch=mode,
                                           replica_fraction=1.0, reinit=False))
    key = method.create_key(model, seed=1)
    hook = method.hook(key)
    hook.on_train_start(model)
    ref = copy.deepcopy(model)
    model.eval(), ref.eval()  # no dropout: the replicas must see the same network
    grads = torch.autograd.grad(F.cross_entropy(ref(x), y), list(ref.parameters()))
    hooked_step(model, hook, torch.optim.SGD(model.parameters(), lr=lr), x, y)
    locked = hook.masks
    for (name, p), p0, gr in zip(model.named_parameters(), ref.parameters(), grads, strict=True):
        expected = p0.detach() - (lr - gamma) * gr
        if name in locked:
            expected = torch.where(locked[name] > 0, p0.detach(), expected)
        assert torch.allclose(p.detach(), expected, atol=1e-6), name


def test_gamma_is_halved_every_gamma_step_epochs(digits_train) -> None:
    method = Tartaglione(TartaglioneConfig(size=100, replicas=1, gamma=1e-3, gamma_step=2, reinit=False))
    model, key, run = method.embed(make_cnn(seed=0), digits_train.subset(range(128)),
                                   TrainConfig(epochs=5, batch_size=64, progress=False), seed=1)
    assert [h["tartaglione_gamma"] for h in run.history] == pytest.approx([1e-3, 5e-4, 5e-4, 2.5e-4, 2.5e-4])
    assert all(h["pearson"] == pytest.approx(1.0) for h in run.history)
    assert all("replica_loss" in h for h in run.history)


def test_reinit_draws_every_layer_from_the_papers_gaussian() -> None:
    model = build("lenet5", in_channels=1, image_size=28, num_classes=10)
    reinit(model, 0.0, 0.01, root=0)
    w = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    assert abs(float(w.mean())) < 1e-4 and float(w.std()) == pytest.approx(0.01, rel=0.02)


def test_wrong_architecture_and_bad_payloads_are_refused(tmp_path: Path) -> None:
    method = Tartaglione(TartaglioneConfig(size=100, reinit=False))
    key = method.create_key(make_cnn(seed=0), seed=1)
    with pytest.raises(ArchitectureError):
        method.extract(make_cnn(seed=0, num_classes=4), key)
    for bad in (torch.tensor([0.1, 1.5, 0.2]), torch.tensor([0.1, math.nan, 0.3]), torch.tensor([0.5])):
        with pytest.raises(ConfigError):
            method.create_key(make_cnn(seed=0), seed=1, payload=bad)
    with pytest.raises(ConfigError):
        method.create_key(make_cnn(seed=0), seed=1, message="0101")
    with pytest.raises(ConfigError, match="does not fit"):
        Tartaglione(TartaglioneConfig(size=10**7)).create_key(make_cnn(seed=0), seed=1)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(ConfigError, match="cannot read"):
        image_payload(str(tmp_path / "broken.png"))


def test_image_payload_reads_rgb_pixels(tmp_path: Path) -> None:
    from PIL import Image

    img = (demo_logo().permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
    Image.fromarray(img).save(tmp_path / "logo.png")
    values, shape = image_payload(str(tmp_path / "logo.png"))
    assert shape == [3, 20, 30] and torch.allclose(values, demo_logo().reshape(-1), atol=1e-6)


def test_pearson_p_value_matches_the_permutation_null() -> None:
    """A skewed payload, moderate r: the t approximation agrees with 20,000 random pairings."""
    g = torch.Generator().manual_seed(0)
    n = 200
    payload = torch.rand(n, generator=g) ** 4  # far from normal
    other = torch.randn(n, generator=g)
    null = torch.tensor([pearson(other[torch.randperm(n, generator=g)], payload) for _ in range(20_000)])
    for r in (0.1, 0.17, 0.2):
        empirical = float((null >= r).double().mean())
        approx = 10 ** log10_pearson_tail(r, n)
        assert empirical / 1.6 - 2e-4 <= approx <= empirical * 1.6 + 2e-4, (r, empirical, approx)
    assert log10_pearson_tail(1.0, n) == -math.inf and log10_pearson_tail(-0.5, n) > -0.01
    res = pearson_result(0.12, 1800, method="tartaglione")
    assert res.detected and res.p_value < 1e-6 and not pearson_result(0.08, 1800, method="tartaglione").detected


def test_independent_models_are_not_detected_and_fine_tuning_is_measured(digits_train) -> None:
    method = Tartaglione(TartaglioneConfig(size=400, replicas=0, reinit=False))
    model, key, _ = method.embed(make_cnn(seed=0), digits_train, TrainConfig(epochs=3, lr=0.05, progress=False),
                                 seed=4)
    for seed in range(5):
        other = make_cnn(seed=100 + seed)
        train(other, digits_train, TrainConfig(epochs=1, lr=0.05, seed=seed, progress=False))
        res = method.verify(other, key)
        assert not res.detected and abs(res.score) < 0.2
    tuned = copy.deepcopy(model)
    train(tuned, digits_train, TrainConfig(epochs=3, lr=0.05, progress=False))  # no lock: the payload drifts
    r = method.verify(tuned, key).score
    assert r < 0.999 and method.verify(model, key).score == pytest.approx(1.0)


def test_split_replicas_cost_less_than_full_ones(digits_train) -> None:
    """Count network evaluations: full runs R replica passes per step over the batch, split R passes over
    disjoint slices of half of it."""
    model = make_cnn(seed=0)
    seen: list[int] = []
    model.fc2.register_forward_hook(lambda _m, inputs, _o: seen.append(len(inputs[0])))
    data = digits_train.subset(range(64))
    cfg = TrainConfig(epochs=1, batch_size=64, progress=False)
    for mode, samples in (("full", [64] * 5), ("split", [64, 8, 8, 8, 8])):
        seen.clear()
        method = Tartaglione(replace(TartaglioneConfig(size=50, replicas=4, reinit=False), replica_batch=mode))
        method.embed(model, data, cfg, seed=0)
        assert seen[:5] == samples, mode  # one step, then the end-of-epoch evaluation


def test_cli_embed_an_image_payload_verify_and_an_independent_model(tmp_path: Path) -> None:
    from PIL import Image
    from typer.testing import CliRunner

    from netmark.cli import app

    Image.fromarray((demo_logo(10, 12).permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()).save(
        tmp_path / "logo.png")
    runner = CliRunner()
    common = ["--model", "simple-cnn", "--dataset", "digits", "--epochs", "3", "--lr", "0.05", "--quiet"]
    r = runner.invoke(app, ["embed", "--method", "tartaglione", "--key-seed", "0",
                            "--payload", str(tmp_path / "logo.png"),
                            "--method-arg", "reinit=false", "--method-arg", "replicas=1", *common,
                            "--out", str(tmp_path / "owner")])
    assert r.exit_code == 0, r.output
    key_path = tmp_path / "owner" / "owner.key"
    key = WatermarkKey.load(key_path)
    assert key.config["payload_shape"] == [3, 10, 12] and key.tensors["payload"].numel() == 360
    r = runner.invoke(app, ["verify", str(tmp_path / "owner" / "model.safetensors"), "--key", str(key_path)])
    assert r.exit_code == 0 and "DETECTED: Pearson r 1.0000 over 360 values" in r.output, r.output
    r = runner.invoke(app, ["train", *common, "--seed", "7", "--out", str(tmp_path / "other")])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["verify", str(tmp_path / "other" / "model.safetensors"), "--key", str(key_path)])
    assert r.exit_code == 1 and "NOT DETECTED" in r.output, r.output
    r = runner.invoke(app, ["embed", "--method", "uchida", "--payload", str(tmp_path / "logo.png"), *common,
                            "--out", str(tmp_path / "bad")])
    assert r.exit_code == 2 and "--payload" in r.output and not (tmp_path / "bad" / "owner.key").exists()


def test_landscape_restores_the_model_and_measures_both_sets() -> None:
    """Fig. 2's measurement: perturbing and restoring leaves every weight bit-identical; on a linear model (the
    cross-entropy is convex in its weights) the mean rise over ± a direction is never negative; both sets have as
    many entries as the payload."""
    from torch import nn

    from netmark.experiments.tartaglione.measure import landscape
    from netmark.methods.tartaglione import watermark_masks

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(8, 3))
    key = Tartaglione(TartaglioneConfig(size=6, replicas=0)).create_key(model, seed=3)
    x, y = torch.randn(64, 8), torch.randint(0, 3, (64,))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    out = landscape(model, key, x, y, [1.0, 4.0], directions=3, noise=0.5, seed=0)
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())
    assert out["n"] == 6 == sum(int(m.sum()) for m in watermark_masks(model, key).values())
    for kind in ("watermarked", "free"):
        assert len(out["rise"][kind]) == 2 and min(out["rise"][kind]) >= -1e-6 and out["grad_abs_mean"][kind] > 0
    assert out["rise"]["watermarked"][1] > out["rise"]["watermarked"][0]  # 4× the noise, more loss


# ----------------------------------------------------------------------------- the official code's variant (issue 18)


def test_official_code_variant_writes_the_payload_at_plus_minus_10_and_reads_it_back(tmp_path: Path) -> None:
    from netmark.methods.tartaglione import watermark_masks

    payload = torch.linspace(0, 1, 200)  # 0 and 1 included: the extremes of the amplitude
    model = make_cnn(seed=0)
    method = Tartaglione(TartaglioneConfig(size=200, replicas=0, reinit=False, variant="official-code"))
    key = method.create_key(model, seed=9, payload=payload)
    assert key.config["variant"] == "official-code"
    method.hook(key).on_train_start(model)
    params = dict(model.named_parameters())
    written = torch.cat([params[n].detach().reshape(-1)[m.reshape(-1) != 0]
                         for n, m in watermark_masks(model, key).items()])
    assert len(written) == 200
    assert float(written.max()) == pytest.approx(10.0) and float(written.min()) == pytest.approx(-10.0)
    assert torch.allclose(written.sort().values, ((2 * payload - 1) / 0.1).sort().values, atol=1e-5)
    back = WatermarkKey.load(key.save(tmp_path / "v.key"))
    assert torch.allclose(_locked_values(model, back), payload, atol=1e-6)
    assert method.verify(model, back).score == pytest.approx(1.0)
    # the paper's key (same seed and payload) writes within ±σ; a key from before variants existed reads as paper
    paper = Tartaglione(TartaglioneConfig(size=200, replicas=0, reinit=False))
    pkey = paper.create_key(make_cnn(seed=0), seed=9, payload=payload)
    assert pkey.config["variant"] == "paper"
    pmodel = make_cnn(seed=0)
    paper.hook(pkey).on_train_start(pmodel)
    old = WatermarkKey(method=pkey.method, layer=None, message="", tensors=pkey.tensors, seed=pkey.seed,
                       config={k: v for k, v in pkey.config.items() if k != "variant"}, message_random=False)
    assert torch.allclose(_locked_values(pmodel, old), payload, atol=1e-5)
    with pytest.raises(ConfigError, match="variant"):
        TartaglioneConfig(variant="authors")


def test_official_code_draws_layers_in_proportion_to_their_size() -> None:
    from scipy.stats import chisquare

    sizes, n = [500, 25_000, 400_000, 5_000], 4000
    expected = [n * s / sum(sizes) for s in sizes]
    for seed in range(5):
        layer, index = draw_positions(sizes, n, root=seed, proportional=True)
        again = draw_positions(sizes, n, root=seed, proportional=True)
        assert torch.equal(layer, again[0]) and torch.equal(index, again[1])
        assert len(set(zip(layer.tolist(), index.tolist(), strict=True))) == n  # no reuse
        assert all(0 <= i < sizes[j] for j, i in zip(layer.tolist(), index.tolist(), strict=True))
        counts = torch.bincount(layer, minlength=4).tolist()
        assert chisquare(counts, expected).pvalue > 1e-3
        # the paper's uniform layer draw is far from proportional: the test can tell them apart
        uniform = torch.bincount(draw_positions(sizes, n, root=seed)[0], minlength=4).tolist()
        assert chisquare(uniform, expected).pvalue < 1e-12
    capped, _ = draw_positions(sizes, n, root=0, max_fraction=0.01, proportional=True)  # quotas 5, 250, 4000, 50
    assert all(c <= q for c, q in zip(torch.bincount(capped, minlength=4).tolist(), [5, 250, 4000, 50], strict=True))


@pytest.mark.parametrize("variant", ["paper", "official-code"])
def test_both_variants_embed_train_and_verify(variant, digits_train) -> None:
    method = Tartaglione(TartaglioneConfig(size=300, replicas=1, reinit=False, variant=variant))  # type: ignore[arg-type]
    model, key, _ = method.embed(make_cnn(seed=0), digits_train, TrainConfig(epochs=1, lr=0.05, progress=False),
                                 seed=4)
    res = method.verify(model, key)
    assert res.detected and res.score == pytest.approx(1.0)
    assert res.details["exact_8bit"] == pytest.approx(1.0)
    other = make_cnn(seed=100)
    train(other, digits_train, TrainConfig(epochs=1, lr=0.05, seed=1, progress=False))
    assert not method.verify(other, key).detected
