"""Chen & Wu 2018 reproduction, declared as data: scales, runs (trained models) and experiments.

* :class:`Scale` — dataset, the architectures with their epoch budgets, the paper's optimiser (SGD lr 0.1
  ÷ 10 at each quarter of training, momentum 0.9, weight decay 5e-4, batch 128), Eq. 3's weights, the
  transforms' parameters and the attacks' trial counts. Presets in :data:`SCALES`: ``quick`` (digits,
  under two minutes), ``cpu`` (full Fashion-MNIST, epochs cut to fit 2 CPU cores; the default) and
  ``gpu`` (simple CNN 40 / ResNet-20 20 epochs, 20 pair fits: ~12 minutes of one H100) and ``paper``
  (the paper's 85 epochs and 100 trials per attack; ~17 s per ResNet-20 epoch on an H100, 8 runs at once).
* :class:`RunSpec` — one model: the unprotected baseline or a protected model (Fixed / Learned /
  Generator) of one architecture. :func:`plan` lists every run of a scale.
* :class:`Experiment` — Table 2, Fig. 2, Table 3 and the acceptance block (issue 5), with the paper's values.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from netmark.access.protect import PAPER_ITERATIONS
from netmark.access.transforms import KINDS
from netmark.bench.spec import RunSpecBase, ScaleBase, at_least
from netmark.bench.study import ExperimentBase, Study
from netmark.errors import ConfigError
from netmark.training import TrainConfig

#: §3.1: SGD lr 0.1 (÷ 10 every 10k of the 40k iterations), momentum 0.9, weight decay 5e-4, batch 128.
PAPER_SGD = TrainConfig(epochs=1, batch_size=128, optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=5e-4,
                        gamma=0.1, progress=True)


def quarter_schedule(epochs: int, seed: int = 0, clip_grad_norm: float | None = None) -> TrainConfig:
    """The paper's schedule compressed to ``epochs``: lr ÷ 10 after each quarter of training (the paper's
    10k-iteration steps of its 40k iterations); ``clip_grad_norm`` is netmark's (the paper clips nothing)."""
    milestones = sorted({round(k * epochs / 4) for k in (1, 2, 3)} - {0, epochs})
    return replace(PAPER_SGD, epochs=epochs, milestones=tuple(milestones), seed=seed, clip_grad_norm=clip_grad_norm)


@dataclass(frozen=True)
class Scale(ScaleBase):
    """Everything that differs between a quick run and the CPU run (paper values in brackets).

    Attributes:
        dataset / train_size: training data [Fashion-MNIST, all 60,000 images] (``None``: the whole split).
        archs: ``(model, epochs)`` per architecture [simple CNN and ResNet-20, 40k iterations of batch 128
            = 85 epochs of 60k]; the first is the one of Fig. 2 and the acceptance figures.
        alpha / beta / gamma: Eq. 3's weights [1, 1, 0.01].
        sigma / p / hidden: Fixed's amplitude and probability [0.1, 0.2]; the Generator's channels [16].
        input_only_trials: the adversary's bipolar draws [100].
        pair_fractions / pair_trials / pair_epochs: the pair attack's shares of the training pairs [10%,
            50%, 100%], fits per share [100] and epochs per fit (not given in the paper).
        attack_test_size: test images the attacks are scored on (a fixed random subset; ``None``: all).
        clip_grad_norm: every run's gradient clipped to this global norm [none]. Not the paper's: at lr 0.1
            for more than a few epochs, protected simple CNNs collapsed (Learned, epoch 4: every ReLU dead)
            or diverged (Generator, epoch 10: NaN) on a GPU run of the ``gpu`` scale; the gradient norm is
            ~1–2 (median) with rare spikes of ~10, so 5 only cuts the spikes.
        key_seed / attack_seed: draw the transforms / the attacks' trials.
    """

    dataset: str
    archs: tuple[tuple[str, int], ...]
    train_size: int | None = None
    alpha: float = 1.0
    beta: float = 1.0
    gamma: float = 0.01
    sigma: float = 0.1
    p: float = 0.2
    hidden: int = 16
    input_only_trials: int = 100
    pair_fractions: tuple[float, ...] = (0.1, 0.5, 1.0)
    pair_trials: int = 100
    pair_epochs: int = 5
    attack_test_size: int | None = None
    clip_grad_norm: float | None = 5.0
    key_seed: int = field(default=2018, kw_only=True)
    attack_seed: int = 7

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.archs or any(e < 1 for _, e in self.archs) or len({a for a, _ in self.archs}) != len(self.archs):
            raise ConfigError(f"archs must be distinct (model, epochs >= 1) pairs, got {self.archs}")
        at_least(self, 1, "input_only_trials", "pair_trials", "pair_epochs")
        if not self.pair_fractions or any(not 0 < f <= 1 for f in self.pair_fractions):
            raise ConfigError(f"pair_fractions must be in (0, 1], got {self.pair_fractions}")
        if self.attack_test_size is not None and self.attack_test_size < 1:
            raise ConfigError("attack_test_size must be >= 1 or None")

    # the shared runner's header and results block expect these
    @property
    def model(self) -> str:
        return " + ".join(a for a, _ in self.archs)

    @property
    def layer(self) -> str:
        return "input transform (no host layer)"

    @property
    def n_independent(self) -> int:
        return 0

    @property
    def main_arch(self) -> str:
        return self.archs[0][0]

    def epochs(self, arch: str) -> int:
        return dict(self.archs)[arch]

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(),
                "train": {a: quarter_schedule(e, clip_grad_norm=self.clip_grad_norm).to_dict() for a, e in self.archs}}


SCALES: dict[str, Scale] = {
    "quick": Scale(name="quick", dataset="digits", archs=(("simple-cnn", 15), ("resnet20", 4)),
                   input_only_trials=10, pair_fractions=(0.1, 1.0), pair_trials=2, pair_epochs=3, threads=1,
                   command="netmark reproduce chen-wu --quick"),
    "cpu": Scale(name="cpu", dataset="fashion-mnist", archs=(("simple-cnn", 8), ("resnet20", 2)), pair_trials=10,
                 pair_epochs=3, attack_test_size=2000,
                 command="netmark reproduce chen-wu --jobs 2 --cache-dir .cache/chen-wu"),
    # ~12 minutes of one H100 (8 runs trained concurrently in ~6 min, then the attacks)
    "gpu": Scale(name="gpu", dataset="fashion-mnist", archs=(("simple-cnn", 40), ("resnet20", 20)), pair_trials=20,
                 pair_epochs=3, command="netmark reproduce chen-wu --scale gpu --device cuda --jobs 8 "
                         "--cache-dir .cache/chen-wu-gpu --out reports/chen-wu-gpu"),
    # the paper's budget (40k iterations of batch 128 = 85 epochs) and trial counts: a GPU's work
    "paper": Scale(name="paper", dataset="fashion-mnist", archs=(("simple-cnn", 85), ("resnet20", 85)),
                   clip_grad_norm=None, command="netmark reproduce chen-wu --scale paper --device cuda --jobs 8 "
                           "--cache-dir .cache/chen-wu-paper --out reports/chen-wu-paper"),
}

#: §3.1–3.2 (the "paper" column of the scale table).
PAPER_SETUP = {
    "dataset": "Fashion-MNIST 60000 train / 10000 test images (also MNIST, CIFAR-10), grey in [0, 1]",
    "models": "simple CNN (Table 1) and ResNet-20",
    "schedule": f"SGD lr 0.1 ÷ 10 every 10k iterations, momentum 0.9, weight decay 5e-4, batch 128, "
                f"{PAPER_ITERATIONS // 1000}k iterations (≈ 85 epochs of 60k images)",
    "loss": "E = α·E_p + β·E_r + γ·‖x_p − x_r‖², α = β = 1, γ = 0.01",
    "transforms": "Fixed σ = 0.1, p = 0.2; Learned; Generator conv 5×5 (16 ch) → 1×1, tanh",
    "attacks": "ResNet-20 / Fashion, 100 trials each; pair attack on 10/50/100% of the training pairs",
}


# ----------------------------------------------------------------------------- runs


@dataclass(frozen=True)
class RunSpec(RunSpecBase):
    """One model: ``arch`` trained unprotected (``transform`` None) or with the ``transform`` kind."""

    arch: str
    transform: str | None = None
    data: str = "main"
    key_seed: int = field(default=2018, kw_only=True)


def run_name(arch: str, transform: str | None) -> str:
    return f"{arch}-{transform or 'baseline'}"


def plan(scale: Scale) -> dict[str, RunSpec]:
    """Every run of ``scale``: per architecture the baseline and one protected model per transform."""
    runs = [RunSpec(run_name(a, t), arch=a, transform=t, **scale.seeds) for a, _ in scale.archs for t in (None, *KINDS)]
    return {r.name: r for r in runs}


# ----------------------------------------------------------------------------- experiments


@dataclass(frozen=True)
class Experiment(ExperimentBase):
    """One table or figure (``runs``: ``@all`` / ``@protected`` / ``@main`` expand per scale)."""

    def groups(self, scale: Scale) -> dict[str, list[str]]:
        return {"@all": list(plan(scale)), "@protected": [run_name(a, t) for a, _ in scale.archs for t in KINDS],
                "@main": [run_name(scale.main_arch, t) for t in (None, *KINDS)]}


#: Table 2, Fashion column of each architecture: authorized accuracy (unauthorized in brackets), %.
TABLE2_PAPER = {
    "simple-cnn": {"baseline": 91.80, "fixed": (91.88, 1.09), "learned": (92.06, 2.18), "generator": (91.82, 2.76)},
    "resnet20": {"baseline": 92.63, "fixed": (91.65, 0.63), "learned": (92.56, 0.65), "generator": (92.55, 1.55)},
}
#: Table 3, ResNet-20 on Fashion (100 trials per attack), %.
TABLE3_PAPER = {
    "fixed": {"authorized": 91.65, "direct": 0.63, "input_only": (66.23, 78.96)},
    "learned": {"authorized": 92.56, "direct": 0.65, "input_only": (55.37, 79.42)},
    "generator": {"authorized": 92.55, "direct": 1.55, "input_only": (3.17, 4.95),
                  "pair": {"0.1": (75.05, 82.11), "0.5": (76.31, 84.17), "1": (77.24, 86.00)}},
}

EXPERIMENTS: tuple[Experiment, ...] = (
    Experiment("table2", "Table 2", "Authorized (unauthorized) accuracy: baseline and the three transforms",
               ("@all",), paper=TABLE2_PAPER,
               notes="Authorized: the model on G(x); unauthorized: the same model on raw x. The baseline is trained "
                     "without protection on the same budget."),
    Experiment("fig2", "Fig. 2", "Raw inputs, processed inputs and perturbations (×5)", ("@main",),
               paper={"claim": "raw and processed inputs appear very similar; the learned transforms give subtler "
                               "perturbations than Fixed"}),
    Experiment("table3", "Table 3", "Piracy attacks: direct, input-only, pair and one-pair", ("@protected",),
               paper=TABLE3_PAPER,
               notes="Every attack forges a transform G' for the stolen model and is scored on a fixed random "
                     "subset of the test set (the scale's attack_test_size), the same subset for every row."),
    Experiment("acceptance", "issue 5", "Acceptance: fidelity, unauthorized accuracy, attacks", ("@all",),
               paper={"fidelity_pp_max": 1.0, "unauthorized_max": 5.0, "input_only_generator_mean_max": 10.0,
                      "pair_100_best_gap_pp_min": 5.0}),
)


def schedule_of(scale: Scale, spec: RunSpec) -> TrainConfig:
    """The run's architecture's epochs in :func:`quarter_schedule`, on the run's train seed."""
    return quarter_schedule(scale.epochs(spec.arch), seed=spec.train_seed, clip_grad_norm=scale.clip_grad_norm)


EXPERIMENT_ID = "chen-wu2018"
PAPER = ("Chen, Wu: Protect your deep neural networks from piracy, IEEE WIFS 2018 "
         "(US patent 11,687,623 B2, University of Maryland)")
STUDY = Study(EXPERIMENT_ID, PAPER, "Chen & Wu 2018", SCALES, "cpu", plan, schedule_of, EXPERIMENTS)
get_scale = STUDY.get_scale
