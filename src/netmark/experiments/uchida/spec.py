"""Uchida et al. 2017 reproduction, declared as data: scales, runs (trained models) and experiments.

* :class:`Scale` — dataset, model, host layer, schedules and sweep sizes. Presets in :data:`SCALES`:
  ``quick`` (digits + simple-cnn, < 1 minute), ``cpu`` (Fashion-MNIST + LeNet5, ~20 minutes on
  2 cores; the default "full" mode) and ``paper`` (WRN-10-4 on CIFAR-10, 200 epochs — §4.1;
  selectable but meant for a GPU).
* :class:`RunSpec` — one model: trained from scratch (with or without a watermark key) or derived
  from another run by an attack (fine-tuning, overwriting). :func:`plan` lists every run of a scale.
* :class:`Experiment` — one table/figure of the paper with the paper's values (:data:`EXPERIMENTS`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from netmark.bench.spec import RunSpecBase, ScaleBase, at_least, independent_run, independent_specs, pick_schedule
from netmark.bench.study import ExperimentBase, Study
from netmark.errors import ConfigError
from netmark.methods.uchida import PAPER_TRAIN
from netmark.training import TrainConfig


@dataclass(frozen=True)
class Scale(ScaleBase):
    """Everything that differs between a CPU-sized run and the paper's setting.

    Attributes:
        dataset / model / model_args: data set (``netmark.data.load``) and architecture
            (``netmark.models.build``; ``in_channels``/``image_size``/``num_classes`` come from the data).
        layer: host layer (paper: second conv of the conv 2 group).
        capacity_layers: host layers compared in Table 6 (paper: conv 2/3/4 groups).
        bits / strength: message length T and λ of the main watermark (paper 256, 0.01).
        capacity_bits: message lengths of Table 6.
        train / train_size: schedule and training-set size of every main run (embedding, plain
            baseline, fine-tuning, overwriting); ``None`` = the whole official training set.
        capacity_train / capacity_train_size: schedule and training-set size of the Table 6 sweep.
        small_train / small_train_size: cheaper schedule of the independent models of the
            false-positive check.
        finetune_lr: initial learning rate of the attacks (fine-tuning, overwriting); ``None`` = reset
            to the training lr, as the paper does (footnote 5).
        n_independent: independently trained models for the false-positive check (≥ 20).
        domain_a / domain_b: disjoint class sets for different-domain fine-tuning (embed on A,
            fine-tune on B with a new output head).
        prune_rates: pruning rates α of Fig. 5.
        table7_lams / table7_steps: λ sweep and Adam steps of "embedding without training".
    """

    dataset: str
    model: str
    layer: str
    capacity_layers: tuple[str, ...]
    bits: int
    capacity_bits: tuple[int, ...]
    train: TrainConfig
    capacity_train: TrainConfig
    small_train: TrainConfig
    train_size: int | None = None
    capacity_train_size: int | None = None
    small_train_size: int | None = None
    finetune_lr: float | None = None
    model_args: tuple[tuple[str, Any], ...] = ()
    strength: float = 0.01
    n_independent: int = 20
    domain_a: tuple[int, ...] = (0, 1, 2, 3, 4)
    domain_b: tuple[int, ...] = (5, 6, 7, 8, 9)
    prune_rates: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.65, 0.7, 0.8, 0.9, 0.95)
    table7_lams: tuple[float, ...] = (0.0, 1.0, 10.0, 100.0)
    table7_steps: int = 2000
    key_seed: int = field(default=2017, kw_only=True)

    def __post_init__(self) -> None:
        super().__post_init__()
        at_least(self, 1, "n_independent")
        if set(self.domain_a) & set(self.domain_b):
            raise ConfigError("domain_a and domain_b must be disjoint class sets")


def _sgd(epochs: int, lr: float, *, milestones: tuple[int, ...] = (), batch_size: int = 64) -> TrainConfig:
    """SGD + Nesterov momentum 0.9, weight decay 5e-4, batch 64, ×0.2 steps: §4.1 on a smaller budget."""
    return TrainConfig(epochs=epochs, batch_size=batch_size, optimizer="sgd", lr=lr, momentum=0.9, nesterov=True,
                       weight_decay=5e-4, milestones=milestones, gamma=0.2, progress=True)


SCALES: dict[str, Scale] = {
    "quick": Scale(
        name="quick", dataset="digits", model="simple-cnn", layer="conv2", capacity_layers=("conv2", "fc1"),
        bits=128, capacity_bits=(64, 512), train=_sgd(12, 0.05, milestones=(9,), batch_size=32), finetune_lr=0.02,
        capacity_train=_sgd(5, 0.05, batch_size=32), small_train=_sgd(3, 0.05), small_train_size=720,
        prune_rates=(0.0, 0.2, 0.4, 0.5, 0.6, 0.65, 0.7, 0.8, 0.9, 0.95), table7_steps=300, threads=1,
        command="netmark reproduce uchida --quick",
    ),
    "cpu": Scale(
        name="cpu", dataset="fashion-mnist", model="lenet5", layer="conv2", capacity_layers=("conv2", "fc1"),
        bits=256, capacity_bits=(256, 512, 1024, 2048), train=_sgd(5, 0.01, milestones=(4,)),
        capacity_train=_sgd(4, 0.01, milestones=(3,)), capacity_train_size=15000, small_train=_sgd(2, 0.01),
        small_train_size=10000, command="netmark reproduce uchida --jobs 2 --cache-dir .cache/uchida",
    ),
    "paper": Scale(
        name="paper", dataset="cifar10", model="wrn", model_args=(("depth", 10), ("widen", 4)),
        layer="conv2.0.conv2", capacity_layers=("conv2.0.conv2", "conv3.0.conv2", "conv4.0.conv2"),
        bits=256, capacity_bits=(256, 512, 1024, 2048), train=PAPER_TRAIN, capacity_train=PAPER_TRAIN,
        small_train=PAPER_TRAIN, command="netmark reproduce uchida --scale paper",
    ),
}


# ----------------------------------------------------------------------------- runs


@dataclass(frozen=True)
class RunSpec(RunSpecBase):
    """One model of the reproduction.

    Attributes:
        key_type: ``None`` for a plain model, else the Uchida key type (``random``/``direct``/``diff``).
        bits / layer: message length and host layer (``None``: the scale's).
        data: ``main`` | ``capacity`` | ``small`` (the sweep subsets) | ``domain-a`` | ``domain-b``.
        schedule: ``main`` | ``capacity`` | ``small`` (the scale's ``train`` / ``capacity_train`` /
            ``small_train``); attacks start at ``finetune_lr`` when the scale sets one.
        parent / attack: a derived model — ``attack`` (``finetune``, ``finetune-new-head``,
            ``overwrite``) applied to run ``parent`` on ``data``.
        attacker_key_seed: key seed of the attacker's watermark (``overwrite``).
    """

    key_type: str | None = None
    bits: int | None = None
    layer: str | None = None
    data: str = "main"
    schedule: str = "main"
    key_seed: int = field(default=2017, kw_only=True)
    attacker_key_seed: int | None = None


def plan(scale: Scale) -> dict[str, RunSpec]:
    """Every run the experiments can ask for at ``scale`` (trained lazily, at most once)."""
    seeds, ts = scale.seeds, scale.train_seed
    runs = [
        RunSpec("plain", model_seed=scale.model_seed, train_seed=ts),
        *(RunSpec(kt, key_type=kt, **seeds) for kt in ("direct", "diff", "random")),
        RunSpec("random-domain-a", key_type="random", data="domain-a", **seeds),
        RunSpec("finetune-same", parent="random", attack="finetune", train_seed=ts + 1),
        RunSpec("finetune-domain-b", parent="random-domain-a", attack="finetune-new-head", data="domain-b",
                train_seed=ts + 1),
        RunSpec("overwrite", parent="random", attack="overwrite", train_seed=ts + 2, attacker_key_seed=666),
        *(RunSpec(capacity_run(layer, bits), key_type="random", bits=bits, layer=layer, data="capacity",
                  schedule="capacity", **seeds) for layer in scale.capacity_layers for bits in scale.capacity_bits),
        RunSpec("capacity-plain", data="capacity", schedule="capacity", model_seed=scale.model_seed, train_seed=ts),
        *independent_specs(RunSpec, scale.n_independent, data="small", schedule="small"),
    ]
    return {r.name: r for r in runs}


def capacity_run(layer: str, bits: int) -> str:
    return f"capacity-{layer}-{bits}"


def schedule_of(scale: Scale, spec: RunSpec) -> TrainConfig:
    """The TrainConfig of a run: the scale's schedule with the run's seed (and ``finetune_lr`` for attacks)."""
    lr = {"lr": scale.finetune_lr} if spec.attack is not None and scale.finetune_lr is not None else {}
    return pick_schedule(spec, {"main": scale.train, "capacity": scale.capacity_train, "small": scale.small_train},
                         **lr)


# ----------------------------------------------------------------------------- experiments


@dataclass(frozen=True)
class Experiment(ExperimentBase):
    """One table or figure of the paper (``runs``: ``@capacity`` / ``@independent`` expand to the scale's sweep
    runs; ``paper``: ``None`` where the extracted text lost a value)."""

    def groups(self, scale: Scale) -> dict[str, list[str]]:
        return {"@capacity": [*(capacity_run(la, b) for la in scale.capacity_layers for b in scale.capacity_bits),
                              "capacity-plain"],
                "@independent": [independent_run(i) for i in range(scale.n_independent)]}


TABLE4_PAPER = {  # test error (%) on CIFAR-10; E_R values are lost in the extracted text
    "none": {"test_error": 8.04, "embed_loss": None},
    "direct": {"test_error": 8.21, "embed_loss": None},
    "diff": {"test_error": 8.37, "embed_loss": None},
    "random": {"test_error": 7.97, "embed_loss": None},
}

TABLE6_PAPER = {  # test error (%) by embedded bits × group (M = 576 / 1152 / 2304); E_R lost
    "layers": {"conv 2": 576, "conv 3": 1152, "conv 4": 2304},
    "test_error": {"256": [7.97, 7.98, 7.92], "512": [8.47, 8.22, 7.84], "1024": [8.43, 8.12, 7.84],
                   "2048": [8.17, 8.93, 7.75]},
}

TABLE7_PAPER = {  # λ → ‖W−W0‖², E_R, test error (%), BER
    "0": {"weight_distance": 0.000, "embed_loss": 1.066, "test_error": 8.04, "ber": 0.531},
    "1": {"weight_distance": 0.184, "embed_loss": 0.609, "test_error": 8.52, "ber": 0.324},
    "10": {"weight_distance": 1.652, "embed_loss": 0.171, "test_error": 10.57, "ber": 0.000},
    "100": {"weight_distance": 7.989, "embed_loss": 0.029, "test_error": 13.00, "ber": 0.000},
}

EXPERIMENTS: tuple[Experiment, ...] = (
    Experiment("fig1", "Fig. 1", "Training curves: test error and training loss per epoch",
               ("plain", "direct", "diff", "random"),
               paper={"claim": "random's training loss stays close to not-embedded; direct/diff stay higher"}),
    Experiment("table4", "Table 4", "Test error and embedding loss with and without embedding",
               ("plain", "direct", "diff", "random"), paper=TABLE4_PAPER,
               notes="E_R is reported per bit (mean BCE over the T bits), the scale of the paper's Table 7 "
                     "(E_R = 1.066 for a model without watermark; a 256-bit sum would be ~180)."),
    Experiment("fig2", "Fig. 2 / 6", "Histogram of the extracted projections σ(Xw), embedded vs not embedded",
               ("plain", "direct", "diff", "random"),
               paper={"claim": "σ(Xw) > 0.5 for every bit of every embedded model (the message is all ones in "
                               "the paper); without embedding the values spread around 0.5"}),
    Experiment("table6", "Table 6", "Capacity: test error and E_R by message length and host layer",
               ("@capacity",), paper=TABLE6_PAPER,
               notes="The paper's groups have M = 576/1152/2304; embedding fails once T > M (overdetermined)."),
    Experiment("table7", "Table 7", "Embedding without training (Eq. 6) into the trained plain model",
               ("plain", "random"), paper=TABLE7_PAPER,
               notes="Minimises λ·E_R + ‖W−W0‖² over the host layer only (Adam), with the owner's key."),
    Experiment("table8", "Table 8", "Robustness against fine-tuning (same and different domain)",
               ("random", "random-domain-a", "finetune-same", "finetune-domain-b"),
               paper={"same": {"test_error": 7.69, "ber_after": 0.0, "embed_loss_before": None,
                               "embed_loss_after": None},
                      "different": {"test_error": 7.88, "ber_after": 0.0, "embed_loss_before": None,
                                    "embed_loss_after": None}},
               notes="Paper: CIFAR-10→CIFAR-10 and Caltech-101→CIFAR-10, learning rate reset to its initial "
                     "value, as many epochs as the first training."),
    Experiment("fig5", "Fig. 5", "Embedding loss and BER vs pruning rate of the host layer",
               ("plain", "random"),
               paper={"claim": "BER 0 up to α = 0.65 and even 0.8 with ascending (magnitude) pruning; E_R grows "
                               "slowest for ascending", "ber_ascending": {"0.65": 0.0, "0.8": 0.0}}),
    Experiment("overwrite", "§5.1", "Overwriting: owner BER after the attacker embeds a 256-bit watermark",
               ("random", "overwrite"),
               paper={"ber": {"conv 2": 0.309, "conv 3": 0.086, "conv 4": 0.004}},
               notes="Attacker: own random key in the same layer, same bits, λ and schedule, on the same data."),
    Experiment("acceptance", "acceptance", "Acceptance criteria (fidelity, pruning, fine-tuning, false positives)",
               ("plain", "random", "finetune-same", "finetune-domain-b", "overwrite", "@independent"),
               paper={"fidelity_gap_pp_max": 0.5, "ber_owner": 0.0, "ber_pruned_65": 0.0, "ber_finetuned": 0.0,
                      "false_positives": 0}),
)


EXPERIMENT_ID = "uchida2017"
PAPER = "Uchida, Nagai, Sakazawa, Satoh: Embedding Watermarks into Deep Neural Networks, ICMR 2017"
STUDY = Study(EXPERIMENT_ID, PAPER, "Uchida et al. 2017", SCALES, "cpu", plan, schedule_of, EXPERIMENTS)
get_scale = STUDY.get_scale
