"""Wang et al. 2020 reproduction, declared as data: scales, runs (trained models) and experiments.

* :class:`Scale` — dataset, model, host layer, schedules and sweep sizes. Presets in :data:`SCALES`:
  ``quick`` (digits + mlp, and a simple-cnn for the convolutional case; about a minute) and ``cpu``
  (Fashion-MNIST + the paper's 784-64-10 MLP for 50 epochs, and LeNet5-caffe's first conv layer for the
  convolutional case; about 1.5 hours on 2 cores with ``--jobs 2 --cache-dir .cache/wang``; the default).
* :class:`RunSpec` — one model: trained from scratch (plain, Uchida, MANU or AUTO) or derived from
  another run by fine-tuning (same domain ``sd``, different domain ``dd``). :func:`plan` lists every run.
* :class:`Experiment` — one table/figure of the paper with the paper's values (:data:`EXPERIMENTS`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from netmark.bench.spec import RunSpecBase, ScaleBase, at_least, independent_run, independent_specs, pick_schedule
from netmark.bench.study import ExperimentBase, Study
from netmark.errors import ConfigError
from netmark.methods.wang import PAPER_TRAIN_MLP
from netmark.training import TrainConfig

#: the methods compared, in the paper's order ("[7]" is Uchida et al.).
METHODS = ("uchida", "manu", "auto")
#: name prefix of the convolutional case's runs.
CONV_PREFIX = "cnn-"
DD_SOURCES = ("digits-28", "permuted-labels")


@dataclass(frozen=True)
class Scale(ScaleBase):
    """Everything that differs between a quick run and the full CPU run.

    Attributes:
        dataset / model: training data (``netmark.data.load``) and architecture (``netmark.models.build``).
        layer: host layer (paper: the MLP's hidden→output weights ``fc2``, M = 640).
        bits: message length of the main runs (paper 512).
        capacity_bits: message lengths of Table 5 (paper 256…4096).
        train: schedule of every trained model (paper: Adam 1e-3, batch 32, 50 epochs).
        val_size: images held out of the official training set (paper 12,000); the same-domain
            fine-tuning attack draws its data from them.
        converge_epochs: MANU's selection epoch (paper 6 for the MLP).
        finetune_epochs: epochs of both fine-tuning attacks (paper 50), Adam at the training lr.
        dd_source: different-domain data that keeps the 10-way head (``fc2`` is both host and output
            layer): ``digits-28`` (sklearn digits upsampled to 28×28) or ``permuted-labels`` (the
            training images with a fixed derangement of the labels).
        small_train / small_train_size: cheaper schedule of the independent models (false positives).
        n_independent: independently trained models for the false-positive check (≥ 20).
        plain_seeds: unmarked models (seeds 0, 1, ...) whose spread puts the fidelity gaps in scale.
        fidelity_seeds / fidelity_methods: the largest-capacity model of each of ``fidelity_methods`` is
            also trained with model/shuffling seeds 1 .. ``fidelity_seeds`` - 1 (key unchanged), paired
            with the unmarked seed of the same number; the fidelity criterion then uses the mean of the
            paired gaps (one final-epoch accuracy swings by a few tenths of a pp between seeds).
        conv_model / conv_layer: the convolutional case (paper: VGG16, first CONV3-64 layer, M = 1728);
            ``None`` leaves it out. Its runs train ``conv_train`` on ``conv_train_size`` images, MANU
            selects after ``conv_converge_epochs``; SD fine-tunes on ``conv_sd_size`` held-out images, DD
            puts a new head on the digits (another label space, as the paper's CIFAR-100 head) for
            ``conv_finetune_epochs``; ``conv_n_independent`` independent CNNs (``conv_train`` for
            ``conv_small_epochs`` on the ``small`` data) test false positives.
        prune_rates: compression rates α of Fig. 4.
        uchida_strength: λ of the Uchida comparison (its paper's 0.01, summed BCE, ``average=False``).
    """

    dataset: str
    model: str
    layer: str
    bits: int
    capacity_bits: tuple[int, ...]
    train: TrainConfig
    small_train: TrainConfig
    val_size: int
    converge_epochs: int = 6
    finetune_epochs: int = 50
    dd_source: str = "digits-28"
    small_train_size: int | None = None
    n_independent: int = 20
    plain_seeds: int = 1
    fidelity_seeds: int = 1
    fidelity_methods: tuple[str, ...] = ("auto", "manu")
    conv_model: str | None = None
    conv_layer: str = "conv1"
    conv_train: TrainConfig | None = None
    conv_train_size: int | None = None
    conv_converge_epochs: int = 6
    conv_finetune_epochs: int = 20
    conv_sd_size: int | None = None
    conv_n_independent: int = 0
    conv_small_epochs: int = 3
    prune_rates: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
    uchida_strength: float = 0.01
    key_seed: int = field(default=2020, kw_only=True)

    def __post_init__(self) -> None:
        super().__post_init__()
        at_least(self, 1, "n_independent", "plain_seeds")
        if self.dd_source not in DD_SOURCES:
            raise ConfigError(f"dd_source must be one of {', '.join(DD_SOURCES)}, got {self.dd_source!r}")
        if self.train.epochs <= self.converge_epochs:
            raise ConfigError("MANU needs more training epochs than converge_epochs")
        if not 1 <= self.fidelity_seeds <= self.plain_seeds:
            raise ConfigError("fidelity_seeds must be between 1 and plain_seeds (each marked seed is paired with "
                              "the unmarked model of the same seed)")
        if not set(self.fidelity_methods) <= set(METHODS):
            raise ConfigError(f"fidelity_methods must be among {', '.join(METHODS)}, got {self.fidelity_methods}")
        if self.conv_model is not None and (self.conv_train is None
                                            or self.conv_train.epochs <= self.conv_converge_epochs):
            raise ConfigError("the convolutional case needs conv_train with more epochs than conv_converge_epochs")


def _adam(epochs: int) -> TrainConfig:
    """The paper's MLP schedule (Adam lr 1e-3, batch 32) with ``epochs`` epochs."""
    return replace(PAPER_TRAIN_MLP, epochs=epochs, progress=True)


SCALES: dict[str, Scale] = {
    "quick": Scale(
        name="quick", dataset="digits", model="mlp", layer="fc2", bits=256, capacity_bits=(256, 1024),
        train=_adam(20), small_train=_adam(4), val_size=360, converge_epochs=5, finetune_epochs=10,
        dd_source="permuted-labels", plain_seeds=2, fidelity_seeds=2, conv_model="simple-cnn", conv_train=_adam(8),
        conv_converge_epochs=5, conv_finetune_epochs=4, conv_n_independent=5, conv_small_epochs=2,
        command="netmark reproduce wang --quick",
    ),
    "cpu": Scale(
        name="cpu", dataset="fashion-mnist", model="mlp", layer="fc2", bits=512,
        capacity_bits=(256, 512, 1024, 2048, 4096), train=_adam(50), small_train=_adam(10), small_train_size=12000,
        val_size=12000, plain_seeds=5, fidelity_seeds=5, fidelity_methods=("auto",), conv_model="lenet5",
        conv_train=_adam(20), conv_train_size=12000, conv_sd_size=6000, conv_n_independent=20, conv_small_epochs=2,
        command="netmark reproduce wang --jobs 2 --cache-dir .cache/wang",
    ),
}


# ----------------------------------------------------------------------------- runs


@dataclass(frozen=True)
class RunSpec(RunSpecBase):
    """One model of the reproduction.

    Attributes:
        method: ``None`` (plain), ``uchida``, ``manu`` or ``auto``.
        bits: message length (``None`` for a plain model).
        data: ``main`` | ``small`` (training data) | ``sd`` | ``dd`` (attack data).
        schedule: ``main`` | ``small`` | ``finetune``.
        parent / attack: a derived model: ``finetune`` of run ``parent`` on ``data`` (``finetune-new-head``:
            with a fresh output layer for the data's labels).
        part: ``mlp`` (the scale's ``model``) or ``conv`` (its ``conv_model``, host ``conv_layer``).
    """

    method: str | None = None
    bits: int | None = None
    data: str = "main"
    schedule: str = "main"
    key_seed: int = field(default=2020, kw_only=True)
    part: str = "mlp"


def _prefix(part: str) -> str:
    return CONV_PREFIX if part == "conv" else ""


def marked_run(method: str, bits: int, part: str = "mlp") -> str:
    return f"{_prefix(part)}{method}-{bits}"


def seeded_run(method: str, bits: int, seed: int) -> str:
    """A marked MLP run with model/shuffling seed ``seed`` (0: the main run itself)."""
    return marked_run(method, bits) + (f"-s{seed}" if seed else "")


def attacked_run(method: str, bits: int, domain: str, part: str = "mlp") -> str:
    return f"{marked_run(method, bits, part)}-{domain}"


def plain_run(seed: int = 0, part: str = "mlp") -> str:
    return f"{_prefix(part)}plain" + (f"-s{seed}" if seed else "")


def all_bits(scale: Scale) -> list[int]:
    return sorted({scale.bits, *scale.capacity_bits})


def _attacked(scale: Scale, method: str, part: str, dd_attack: str) -> list[RunSpec]:
    """Fine-tuning of ``method``'s main run of ``part`` on the ``sd`` and ``dd`` data (``dd`` by ``dd_attack``)."""
    return [RunSpec(attacked_run(method, scale.bits, d, part), data=d if part == "mlp" else f"conv-{d}",
                    schedule="finetune", train_seed=scale.train_seed + 1, parent=marked_run(method, scale.bits, part),
                    attack=attack, part=part) for d, attack in (("sd", "finetune"), ("dd", dd_attack))]


def plan(scale: Scale) -> dict[str, RunSpec]:
    """Every run the experiments can ask for at ``scale`` (trained lazily, at most once)."""
    ms, ts, seeds, big = scale.model_seed, scale.train_seed, scale.seeds, max(all_bits(scale))
    runs = [RunSpec(plain_run(i), model_seed=ms + i, train_seed=ts + i) for i in range(scale.plain_seeds)]
    for method in METHODS:
        runs += [RunSpec(marked_run(method, bits), method=method, bits=bits, **seeds) for bits in all_bits(scale)]
        if method in scale.fidelity_methods:
            runs += [RunSpec(seeded_run(method, big, i), method=method, bits=big, model_seed=ms + i,
                             train_seed=ts + i, key_seed=scale.key_seed) for i in range(1, scale.fidelity_seeds)]
        runs += _attacked(scale, method, "mlp", "finetune")
    runs += independent_specs(RunSpec, scale.n_independent, data="small", schedule="small")
    if scale.conv_model is not None:
        runs.append(RunSpec(plain_run(0, "conv"), data="conv-main", model_seed=ms, train_seed=ts, part="conv"))
        for method in METHODS:
            runs.append(RunSpec(marked_run(method, scale.bits, "conv"), method=method, bits=scale.bits,
                                data="conv-main", part="conv", **seeds))
            runs += _attacked(scale, method, "conv", "finetune-new-head")
        runs += independent_specs(RunSpec, scale.conv_n_independent, lambda i: independent_run(i, CONV_PREFIX),
                                  data="small", schedule="small", part="conv")
    return {r.name: r for r in runs}


def schedule_of(scale: Scale, spec: RunSpec) -> TrainConfig:
    """The TrainConfig of a run: the scale's schedule of the run's part with the run's seed."""
    if spec.part == "conv":
        conv = scale.conv_train if scale.conv_train is not None else scale.train
        return pick_schedule(spec, {"main": conv, "small": replace(conv, epochs=scale.conv_small_epochs),
                                    "finetune": replace(conv, epochs=scale.conv_finetune_epochs)})
    return pick_schedule(spec, {"main": scale.train, "small": scale.small_train,
                                "finetune": replace(scale.train, epochs=scale.finetune_epochs)})


# ----------------------------------------------------------------------------- experiments


@dataclass(frozen=True)
class Experiment(ExperimentBase):
    """One table or figure of the paper (``runs``: ``@capacity`` / ``@independent`` expand to the sweeps)."""

    def groups(self, scale: Scale) -> dict[str, list[str]]:
        conv = [plain_run(0, "conv"), *(marked_run(m, scale.bits, "conv") for m in METHODS),
                *(attacked_run(m, scale.bits, d, "conv") for m in METHODS for d in ("sd", "dd")),
                *(independent_run(i, CONV_PREFIX) for i in range(scale.conv_n_independent))]
        big = max(all_bits(scale))
        return {"@main": ["plain", *(marked_run(m, scale.bits) for m in METHODS)],
                "@capacity": ["plain", *(marked_run(m, b) for b in scale.capacity_bits for m in METHODS)],
                "@finetuned": [attacked_run(m, scale.bits, d) for m in METHODS for d in ("sd", "dd")],
                "@independent": [independent_run(i) for i in range(scale.n_independent)],
                "@plain": [plain_run(i) for i in range(scale.plain_seeds)],
                "@fidelity": [seeded_run(m, big, i) for m in scale.fidelity_methods
                              for i in range(1, scale.fidelity_seeds)],
                "@conv": conv if scale.conv_model is not None else []}


#: Table 3, MLP on MNIST: test accuracy (%) non-marked / marked and L2 (VGG16 rows for reference).
TABLE3_PAPER: dict[str, dict[str, Any]] = {
    "mlp": {"plain": {"accuracy": 97.45}, "uchida": {"accuracy": 97.28, "l2": 1.55e-1},
            "manu": {"accuracy": 97.44, "l2": 8.50e-5}, "auto": {"accuracy": 97.49, "l2": 5.90e-8}},
    "vgg16": {"plain": {"accuracy": 83.65}, "uchida": {"accuracy": 82.62, "l2": 2.38e-3},
              "manu": {"accuracy": 83.41, "l2": 7.28e-8}, "auto": {"accuracy": 83.21, "l2": 6.63e-8}},
    "manu_selected": {"mlp": "163 of 640 after 6 epochs", "vgg16": "793 of 1728 after 26 epochs"},
}

#: Table 4 (VGG16 on CIFAR-10; SD: 12,000 CIFAR-10 images, DD: 12,000 CIFAR-100 images, 50 epochs).
TABLE4_PAPER = {
    "uchida": {"sd": {"l2_before": 2.38e-3, "l2_after": 4.03e-2, "bit_accuracy": 98.83},
               "dd": {"l2_before": 2.38e-3, "l2_after": 1.59e-1, "bit_accuracy": 63.87}},
    "manu": {"sd": {"l2_before": 7.28e-8, "l2_after": 5.95e-6, "bit_accuracy": 100.0},
             "dd": {"l2_before": 7.28e-8, "l2_after": 8.23e-2, "bit_accuracy": 100.0}},
    "auto": {"sd": {"l2_before": 6.63e-8, "l2_after": 2.09e-7, "bit_accuracy": 100.0},
             "dd": {"l2_before": 6.63e-8, "l2_after": 2.45e-2, "bit_accuracy": 100.0}},
}

#: Table 5, MLP: bits → method → (AO = task accuracy %, AW = bit accuracy %).
TABLE5_PAPER = {
    "256": {"uchida": [97.36, 100.0], "manu": [97.44, 100.0], "auto": [97.44, 100.0]},
    "512": {"uchida": [97.28, 98.05], "manu": [97.44, 100.0], "auto": [97.49, 100.0]},
    "1024": {"uchida": [97.27, 79.20], "manu": [97.42, 100.0], "auto": [97.43, 100.0]},
    "2048": {"uchida": [97.15, 65.87], "manu": [97.39, 100.0], "auto": [97.41, 100.0]},
    "4096": {"uchida": [97.12, 58.84], "manu": [97.32, 100.0], "auto": [97.33, 100.0]},
}

#: Table 7, MLP: histogram correlations (Eq. 2) of the embedded layer's weights.
TABLE7_PAPER = {
    "auto": {"auto": 1.0, "manu": 0.9731, "uchida": 0.9371, "plain": 0.9191},
    "manu": {"auto": 0.9731, "manu": 1.0, "uchida": 0.9162, "plain": 0.8844},
    "uchida": {"auto": 0.9371, "manu": 0.9162, "uchida": 1.0, "plain": 0.8462},
    "plain": {"auto": 0.9191, "manu": 0.8844, "uchida": 0.8462, "plain": 1.0},
}

EXPERIMENTS: tuple[Experiment, ...] = (
    Experiment("table3", "Table 3", "Fidelity (test accuracy) and watermark loss L2, non-marked vs marked",
               ("@main",), paper=TABLE3_PAPER,
               notes="L2 is the per-bit mean BCE between the extracted and the embedded message (Eq. 1); for "
                     "Uchida it is its embedding loss E_R per bit, the paper's 'watermark loss' of [7]."),
    Experiment("table4", "Table 4", "Robustness to fine-tuning: L2 and bit accuracy before/after SD and DD",
               ("@main", "@finetuned"), paper=TABLE4_PAPER,
               notes="The paper's Table 4 is VGG16 only (host conv1_1; DD extends the head to CIFAR-100's 100 "
                     "classes). The MLP's host fc2 is its output layer, so a new head would delete the watermark: "
                     "DD here keeps the 10-way head and fine-tunes on another 10-class domain. The extractor is not "
                     "used during fine-tuning."),
    Experiment("fig4", "Fig. 4", "Task accuracy, L2 and bit accuracy vs compression rate of the embedded layer",
               ("@main",),
               paper={"claim": "at 90% 'ascending' compression AUTO still reconstructs the watermark perfectly "
                               "while [7] is random guessing; 'ascending' hurts L2 least for every method",
                      "auto_bit_accuracy_ascending_90": 100.0}),
    Experiment("table5", "Table 5", "Capacity: task accuracy (AO) and bit accuracy (AW) by watermark size",
               ("@capacity",), paper=TABLE5_PAPER),
    Experiment("table7", "Tables 7-8", "Histogram correlation (Eq. 2, bin width 0.1) of the embedded layer",
               ("@main", "@capacity"), paper=TABLE7_PAPER,
               notes="Paper Table 7 is the MLP (Table 8 VGG16, not reproduced); all 640 weights of fc2."),
    Experiment("conv", "Tables 3-4, Fig. 4 (VGG16)", "The convolutional case: fidelity, L2, fine-tuning and pruning",
               ("@conv",), paper={"table3": TABLE3_PAPER["vgg16"], "table4": TABLE4_PAPER,
                                  "manu_selected": TABLE3_PAPER["manu_selected"]["vgg16"]},
               notes="Paper: VGG16 on CIFAR-10, host = first CONV3-64 layer (M = 1728), SGD lr 0.01, 150 epochs; "
                     "DD fine-tunes on CIFAR-100 with a new head. Here a small CNN on Fashion-MNIST, host = its "
                     "first conv layer; DD puts a new 10-way head on the digits (28×28)."),
    Experiment("acceptance", "issue 3", "Acceptance: capacity, fidelity, pruning, fine-tuning, false positives",
               ("@main", "@capacity", "@finetuned", "@independent", "@plain", "@fidelity"),
               paper={"fidelity_gap_pp_max": 0.5, "bit_accuracy": 1.0, "pruned_90_ascending_bit_accuracy": 1.0,
                      "sd_bit_accuracy": 1.0, "false_positives": 0}),
)


EXPERIMENT_ID = "wang2020"
PAPER = ("Wang, Li, Li, Zhang, Wu, Wang, Gu: Watermarking in Deep Neural Networks via Error Back-propagation, "
         "Electronic Imaging 2020")
STUDY = Study(EXPERIMENT_ID, PAPER, "Wang et al. 2020", SCALES, "cpu", plan, schedule_of, EXPERIMENTS)
get_scale = STUDY.get_scale
