"""Tartaglione et al. 2021 reproduction, declared as data: scales, runs (trained models) and experiments.

* :class:`Scale` — dataset, model, schedule, the method's hyper-parameters (R values, γ schedule, σ, s)
  and sweep sizes. Presets in :data:`SCALES`: ``quick`` (digits + simple-cnn, < 1 minute), ``cpu``
  (Fashion-MNIST + LeNet5-caffe, the paper's SGD schedule on fewer epochs and images; the default) and ``paper``
  (the paper's 100 epochs on all 60,000 training images: a GPU run).
* :class:`RunSpec` — one model: trained from scratch (plain, or watermarked with R replicas, split or
  full-batch) or derived from another run by the fine-tuning attack. :func:`plan` lists every run of a scale.
* :class:`Experiment` — one table/figure of the paper with the paper's values (:data:`EXPERIMENTS`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from netmark.bench.spec import RunSpecBase, ScaleBase, at_least, independent_run, independent_specs, pick_schedule
from netmark.bench.study import ExperimentBase, Study
from netmark.errors import ConfigError
from netmark.methods.tartaglione import PAPER_TRAIN
from netmark.training import TrainConfig

#: the R whose split fast path is compared with the paper's full-batch replicas (the reference).
REFERENCE_R = 4
#: R values every scale must train (acceptance: fidelity of R = 0, 1, 4; robustness of 0 vs 4).
REQUIRED_R = (0, 1, REFERENCE_R)
FULL_RUN = f"R{REFERENCE_R}-full"


@dataclass(frozen=True)
class Scale(ScaleBase):
    """Everything that differs between a quick run and the CPU run (paper values in brackets).

    Attributes:
        dataset / model / model_args: training data (``netmark.data.load``) and architecture [MNIST, LeNet5-caffe].
        layer: the layer whose weight distribution Fig. 3 shows [``conv2``].
        train / train_size: schedule and training-set size of every trained run [vanilla SGD lr 0.1, weight
            decay 1e-4, batch 100, 100 epochs, 60000 images]; ``None`` = the whole training split. The
            fine-tuning attack runs the same schedule (as many epochs as the embedding).
        replicas: the R values trained with the split fast path [0, 1, 4, 16]; ``R4-full`` (the paper's
            full-batch replicas) is always added.
        logo: ``(height, width)`` of the RGB ``demo_logo`` payload, N = 3·h·w [20×30 = 1800].
        gamma / gamma_step / gamma_decay: γ and its decay [1e-4, × 0.5 every 25 epochs].
        gamma_variants: further R = 4 (split) runs, each with one of these γ (same decay), fine-tuned like the
            others: does a stronger replica term buy robustness? The cpu scale adds γ = 2.5e-3 = 1e-4 × 60000 /
            2400, the paper's integrated ascent Σγ over its 60,000 steps spread over this scale's 2,400 steps.
        finetune_lrs: further learning rates of the fine-tuning attack on R = 0, 4 and the largest R (the paper
            does not give the attacker's lr; the main attack uses the embedding's).
        noise / sigma / mu: s, σ and μ [0.01, 0.01, 0].
        reinit: draw every parameter from N(μ, σ) before writing the watermark [yes]; the plain run gets
            the same initialisation (same seed) when set.
        replica_fraction: the split path's share of the minibatch (netmark's default 0.5).
        max_layer_fraction: at most this share of a layer is watermarked [1.0: Eq. 3 as written].
        small_train / small_train_size: cheaper schedule of the independent models (false positives).
        n_independent: independently trained models for the false-positive check (≥ 20).
        fixed_point_bits: bit widths of the compression sweep (Fig. 4b) [2..16].
        overhead_rounds / overhead_steps: interleaved rounds × steps per configuration of the step-cost
            measurement (one process, one torch thread, a fixed batch of ``train.batch_size``).
        landscape_images / landscape_directions / landscape_steps: Fig. 2's loss landscape: training images it
            is measured on, random directions per perturbation size, and the sizes (multiples of s).
        landscape_seed: seeds the landscape's images and directions.
    """

    dataset: str
    model: str
    layer: str
    train: TrainConfig
    small_train: TrainConfig
    train_size: int | None = None
    small_train_size: int | None = None
    replicas: tuple[int, ...] = (0, 1, 4)
    logo: tuple[int, int] = (20, 30)
    gamma: float = 1e-4
    gamma_step: int = 25
    gamma_decay: float = 0.5
    gamma_variants: tuple[float, ...] = ()
    finetune_lrs: tuple[float, ...] = ()
    noise: float = 0.01
    sigma: float = 0.01
    mu: float = 0.0
    reinit: bool = True
    replica_fraction: float = 0.5
    max_layer_fraction: float = 1.0
    model_args: tuple[tuple[str, Any], ...] = ()
    n_independent: int = 20
    fixed_point_bits: tuple[int, ...] = tuple(range(2, 17))
    overhead_rounds: int = 5
    overhead_steps: int = 10
    landscape_images: int = 2000
    landscape_directions: int = 3
    landscape_steps: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0)
    landscape_seed: int = 0
    key_seed: int = field(default=2021, kw_only=True)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not set(REQUIRED_R) <= set(self.replicas) or len(set(self.replicas)) != len(self.replicas) or any(
                r < 0 for r in self.replicas):
            raise ConfigError(f"replicas must be distinct integers >= 0 including {REQUIRED_R}, got {self.replicas}")
        at_least(self, 1, "n_independent", "overhead_rounds", "overhead_steps")
        if any(g <= 0 for g in self.gamma_variants) or self.gamma in self.gamma_variants:
            raise ConfigError(f"gamma_variants must be > 0 and differ from gamma, got {self.gamma_variants}")
        if any(lr <= 0 for lr in self.finetune_lrs) or self.train.lr in self.finetune_lrs:
            raise ConfigError(f"finetune_lrs must be > 0 and differ from the training lr, got {self.finetune_lrs}")
        if self.landscape_images < 1 or self.landscape_directions < 1 or not self.landscape_steps or any(
                t <= 0 for t in self.landscape_steps):
            raise ConfigError("landscape_images and landscape_directions must be >= 1 and landscape_steps > 0")
        if min(self.logo) < 1:
            raise ConfigError(f"logo must be (height, width) >= 1, got {self.logo}")

    @property
    def payload_shape(self) -> tuple[int, int, int]:
        return (3, *self.logo)


def _sgd(epochs: int) -> TrainConfig:
    """The paper's schedule (vanilla SGD lr 0.1, weight decay 1e-4, batch 100) with ``epochs`` epochs."""
    return replace(PAPER_TRAIN, epochs=epochs, progress=True)


SCALES: dict[str, Scale] = {
    "quick": Scale(
        name="quick", dataset="digits", model="simple-cnn", layer="conv2", train=_sgd(6), small_train=_sgd(1),
        gamma_variants=(1e-3,), finetune_lrs=(0.01,), reinit=False, max_layer_fraction=0.25, overhead_rounds=3,
        overhead_steps=4, threads=1, landscape_images=500, landscape_directions=2, landscape_steps=(1.0, 4.0),
        command="netmark reproduce tartaglione --quick",
    ),
    "cpu": Scale(
        name="cpu", dataset="fashion-mnist", model="lenet5", layer="conv2", train=_sgd(20), train_size=12000,
        small_train=_sgd(3), small_train_size=6000, replicas=(0, 1, 4, 16), gamma_step=5, gamma_variants=(2.5e-3,),
        finetune_lrs=(0.01, 0.001), command="netmark reproduce tartaglione --jobs 2 --cache-dir .cache/tartaglione",
    ),
    # §IV-A's schedule on the whole Fashion-MNIST training split: 100 epochs, γ halved every 25 (hours on 2 CPU
    # cores; minutes on one GPU with a worker per run)
    "paper": Scale(
        name="paper", dataset="fashion-mnist", model="lenet5", layer="conv2", train=_sgd(100), small_train=_sgd(3),
        small_train_size=6000, replicas=(0, 1, 4, 16), finetune_lrs=(0.01,),
        command="netmark reproduce tartaglione --scale paper --device cuda --jobs 16 --cache-dir "
                ".cache/tartaglione-paper --out reports/tartaglione-paper",
    ),
}

#: §IV-A, LeNet5-caffe on MNIST (the "paper" column of the scale table).
PAPER_SETUP = {
    "dataset": "MNIST: 60000 train / 10000 test images", "model": "LeNet5-caffe",
    "schedule": "vanilla SGD lr 0.1, weight decay 1e-4, batch 100, 100 epochs",
    "watermark": "RGB image 20×30×3, N = 1800 (≈ 0.4% of the parameters); μ = 0, σ = 0.01, s = 0.01",
    "replicas": "R = 0, 1, 4, 16 (every replica sees the whole minibatch)",
    "gamma": "γ = 1e-4, × 0.5 every 25 epochs", "init": "every parameter from N(0, 0.01) (Eq. 2)",
}


# ----------------------------------------------------------------------------- runs


@dataclass(frozen=True)
class RunSpec(RunSpecBase):
    """One model of the reproduction.

    Attributes:
        replicas: R (``None``: a plain model, no watermark).
        replica_batch: ``split`` (netmark's fast path) or ``full`` (the paper's replicas).
        payload_shape: ``[3, h, w]`` of the ``demo_logo`` payload (watermarked runs).
        init: ``(μ, σ)`` when a plain run is re-initialised from N(μ, σ) like the watermarked ones.
        data: ``main`` | ``small``; schedule: ``main`` | ``small`` | ``finetune``.
        parent / attack: a derived model: ``finetune`` of run ``parent`` on the training set.
        gamma: γ of this run (``None``: the scale's).
        lr: learning rate of this run's schedule (``None``: the scale's).
        variant: the embedding's ``TartaglioneConfig.variant`` (``None``: the paper's).

    ``gamma`` / ``lr`` / ``variant`` at ``None`` (the scale's value, the paper's variant) are left out of
    ``to_dict()``, so runs cached before the fields existed keep their key.
    """

    OPTIONAL = ("gamma", "lr", "variant")
    replicas: int | None = None
    replica_batch: str = "split"
    payload_shape: tuple[int, ...] | None = None
    init: tuple[float, float] | None = None
    data: str = "main"
    schedule: str = "main"
    key_seed: int = field(default=2021, kw_only=True)
    gamma: float | None = None
    lr: float | None = None
    variant: str | None = None


def marked_run(r: int) -> str:
    return f"R{r}"


def gamma_run(gamma: float) -> str:
    return f"R{REFERENCE_R}-g{gamma:g}"


def finetuned_run(name: str, lr: float | None = None) -> str:
    return f"{name}-ft" + (f"-lr{lr:g}" if lr is not None else "")


def lr_sweep_runs(scale: Scale) -> list[str]:
    """The parents of the attacker-lr sweep: R = 0, the reference R and the largest R."""
    return list(dict.fromkeys(marked_run(r) for r in (0, REFERENCE_R, max(scale.replicas))))


def marked_runs(scale: Scale) -> list[str]:
    """Every watermarked run: the split R values, the full-batch reference, then the γ variants."""
    return [*(marked_run(r) for r in scale.replicas), FULL_RUN, *(gamma_run(g) for g in scale.gamma_variants)]


def plan(scale: Scale) -> dict[str, RunSpec]:
    """Every run the experiments can ask for at ``scale`` (trained lazily, at most once)."""
    seeds, ts, shape = scale.seeds, scale.train_seed, scale.payload_shape
    runs = [RunSpec("plain", init=(scale.mu, scale.sigma) if scale.reinit else None, **seeds)]
    marked = [RunSpec(marked_run(r), replicas=r, payload_shape=shape, **seeds) for r in scale.replicas]
    marked.append(RunSpec(FULL_RUN, replicas=REFERENCE_R, replica_batch="full", payload_shape=shape, **seeds))
    marked += [RunSpec(gamma_run(g), replicas=REFERENCE_R, payload_shape=shape, gamma=g, **seeds)
               for g in scale.gamma_variants]
    runs += marked
    runs += [RunSpec(finetuned_run(m.name), schedule="finetune", train_seed=ts + 1, parent=m.name, attack="finetune")
             for m in marked]
    runs += [RunSpec(finetuned_run(m, lr), schedule="finetune", train_seed=ts + 1, parent=m, attack="finetune", lr=lr)
             for lr in scale.finetune_lrs for m in lr_sweep_runs(scale)]
    runs += independent_specs(RunSpec, scale.n_independent, data="small", schedule="small")
    return {r.name: r for r in runs}


def schedule_of(scale: Scale, spec: RunSpec) -> TrainConfig:
    """The TrainConfig of a run: the scale's schedule (the attack's is the embedding's) with the run's seed."""
    base = pick_schedule(spec, {"main": scale.train, "finetune": scale.train, "small": scale.small_train})
    return replace(base, lr=base.lr if spec.lr is None else spec.lr)


# ----------------------------------------------------------------------------- experiments


@dataclass(frozen=True)
class Experiment(ExperimentBase):
    """One table or figure (``runs``: ``@marked`` / ``@finetuned`` / ``@independent`` expand per scale)."""

    def groups(self, scale: Scale) -> dict[str, list[str]]:
        return {"@marked": marked_runs(scale), "@finetuned": [finetuned_run(m) for m in marked_runs(scale)],
                "@lr_sweep": [finetuned_run(m, lr) for lr in scale.finetune_lrs for m in lr_sweep_runs(scale)],
                "@independent": [independent_run(i) for i in range(scale.n_independent)]}


#: Table I, MNIST / LeNet5-caffe, 100 epochs: test error (%) by R.
TABLE1_PAPER = {"epochs": 100, "test_error": {"0": 0.78, "1": 0.83, "4": 0.82, "16": 0.85}}

EXPERIMENTS: tuple[Experiment, ...] = (
    Experiment("table1", "Table I", "Test error after training, by R", ("plain", "@marked"), paper=TABLE1_PAPER,
               notes="Paper: LeNet5-caffe on MNIST, 100 epochs (its CIFAR-10 rows are not reproduced). `plain` "
                     "carries no watermark and trains the same initialisation; every `R*` run locks the same "
                     "N values at the same key positions."),
    Experiment("fig2", "Fig. 2", "Loss along the watermarked vs free parameter dimensions of the trained models",
               ("plain", "@marked"),
               paper={"claim": "trained with Eq. 10, the loss is clearly steeper along the watermarked dimensions "
                               "(a narrow minimum) than along the free ones (a wide minimum)"},
               notes="Each model is perturbed by Gaussian noise of standard deviation δ on its watermarked entries "
                     "only, or on as many free entries drawn at random from the same tensors (the same count per "
                     "tensor), ± each direction; the table gives the mean rise of the training loss over directions "
                     "and signs, and the mean |∂L/∂w| of both sets at the trained point (the force with which the "
                     "first fine-tuning step moves them)."),
    Experiment("fig4a", "Fig. 4a", "Pearson correlation of the payload during fine-tuning, by R",
               ("@finetuned", "@lr_sweep"),
               paper={"claim": "with R = 0 the watermark tends to vanish; the larger R, the longer it persists "
                               "(values are only plotted in the paper)"},
               notes="The attack fine-tunes on the training set, without the lock, with the embedding's optimizer, "
                     "learning rate and epoch count; epoch 0 is the watermarked model."),
    Experiment("fig4b", "Fig. 4b", "Compression: fixed point with LSB masking, test error and Pearson vs bits",
               (f"R{REFERENCE_R}",),
               paper={"claim": "the watermark vanishes below 4 bits per parameter, exactly when the test error "
                               "rises; above 6 bits the Pearson correlation is very close to (not exactly) 1",
                      "model": "R = 16", "expected_8bit_pearson": 1.0},
               notes=f"Here the R = {REFERENCE_R} (split) model; the paper compresses its R = 16 model. Every "
                     "floating-point parameter is stored in signed fixed point, truncating (masking) the LSBs."),
    Experiment("fig3", "Fig. 3", "Weight distribution of a conv layer: init, after writing the watermark, trained",
               (f"R{REFERENCE_R}",),
               paper={"claim": "the watermarked parameters (about 0.4% of the total) cannot be easily detected "
                               "from the observed empirical distribution", "layer": "conv2 of LeNet5-caffe"}),
    Experiment("overhead", "§III-C", "Per-step cost of the replicas (full vs split) and robustness of the fast path",
               (f"R{REFERENCE_R}", FULL_RUN, finetuned_run(f"R{REFERENCE_R}"), finetuned_run(FULL_RUN)),
               paper={"claim": "the paper's replicas are R extra forward/backward passes per step (not timed there)"}),
    Experiment("acceptance", "issue 4",
               "Acceptance: fidelity, payload, fine-tuning, compression, cost, false positives",
               ("plain", "@marked", "@finetuned", "@independent"),
               paper={"fidelity_spread_pp_max": 0.5, "payload_min": 1800, "r4_finetuned_pearson_min": 0.99,
                      "pearson_8bit_min": 0.99, "step_cost_ratio_max": 2.0, "split_vs_full_pearson_max": 0.01,
                      "false_positives": 0}),
)


EXPERIMENT_ID = "tartaglione2021"
PAPER = ("Tartaglione, Grangetto, Cavagnino, Botta: Delving in the loss landscape to embed robust watermarks into "
         "neural networks, ICPR 2020")
STUDY = Study(EXPERIMENT_ID, PAPER, "Tartaglione et al. 2021", SCALES, "cpu", plan, schedule_of, EXPERIMENTS)
get_scale = STUDY.get_scale
