"""Fkirin et al. 2022 reproduction (the optimizer study) and issue 6's scheme checks, declared as data.

* :class:`Scale` — datasets (owner's training part, the attacker's disjoint part), the model, the
  embedding schedule per optimizer, the fine-tuning attack, the number of runs and independent models.
  Presets in :data:`SCALES`: ``quick`` (digits only, a minute) and ``cpu`` (Fashion-MNIST subset +
  digits, the default).
* :class:`RunSpec` — one model: unmarked, or marked with one scheme by one optimizer (run index ``run``),
  or derived from such a model by the fine-tuning attack. :func:`plan` lists every run of a scale.
* :class:`Experiment` — the survey's Tables 5/6 (optimizer study), the per-scheme acceptance (fidelity,
  trigger accuracy, fine-tuning) and the false-positive check (independent models, file and HTTP).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from netmark.bench.spec import RunSpecBase, ScaleBase, at_least
from netmark.bench.study import ExperimentBase, Study
from netmark.errors import ConfigError
from netmark.training import OPTIMIZERS, TrainConfig

#: the survey's six optimizers (§5, Tables 5-6), with Keras 2's default learning rates (DeepSigns and the
#: survey are Keras code; the survey does not state its rates): SGD 0.01, Adagrad 0.01, NAdam 0.002,
#: RMSprop 0.001, Adam 0.001, Adamax 0.002.
PAPER_OPTIMIZERS: tuple[tuple[str, float], ...] = (
    ("sgd", 0.01), ("adagrad", 0.01), ("nadam", 0.002), ("rmsprop", 0.001), ("adam", 0.001), ("adamax", 0.002))
#: the schemes of issue 6 (``deepsigns`` in its black-box mode unless ``-white``).
SCHEMES: tuple[str, ...] = ("adi", "zhang-content", "zhang-noise", "zhang-unrelated", "frontier-stitching",
                            "deepsigns", "deepsigns-white")
#: the optimizer study's schemes (issue 6: DeepSigns black-box, Adi for comparison).
STUDY_SCHEMES: tuple[str, ...] = ("deepsigns", "adi")


@dataclass(frozen=True)
class Scale(ScaleBase):
    """Everything that differs between a quick run and the CPU run (paper values in brackets).

    Attributes:
        datasets: ``(name, owner_train_size)`` per dataset [MNIST and CIFAR-10 all 50-60k]; the first is the
            "main" one (scheme checks); ``None`` = every image left after the attacker's part.
        attacker_size: images held out of the owner's training set for the fine-tuning attacker (disjoint).
        model / model_args: the network [DeepSigns' MNIST MLP; the survey: "ReLU"].
        epochs / batch_size: embedding schedule [50 epochs].
        optimizers: ``(name, lr)`` [:data:`PAPER_OPTIMIZERS`]; SGD uses momentum ``momentum``.
        runs: repetitions per (dataset, optimizer, scheme) [10].
        finetune_epochs / finetune_lr: the attacker's SGD fine-tuning on its own part [not stated].
        scheme_finetune_epochs: the per-scheme fine-tuning sweep (p-value per epoch).
        per_batch: triggers appended to each batch.
        frontier_finetune_epochs: the cap on frontier stitching's fine-tuning phase, which stops once every
            adversary is classified correctly (the paper: no cap; the toolbox: 5).
        null_models / null_epochs: reference models calibrating the null of image-dependent keys.
        n_independent: independent models for the false-positive check [issue 6: >= 20].
        model_seed / train_seed / key_seed: run ``r`` of the study adds ``r`` to each.
    """

    datasets: tuple[tuple[str, int | None], ...]
    attacker_size: int
    model: str = "mlp"
    model_args: dict[str, Any] = field(default_factory=lambda: {"hidden": [512, 512]})
    epochs: int = 50
    batch_size: int = 64
    momentum: float = 0.9
    optimizers: tuple[tuple[str, float], ...] = PAPER_OPTIMIZERS
    runs: int = 10
    finetune_epochs: int = 10
    finetune_lr: float = 0.01
    scheme_finetune_epochs: int = 20
    per_batch: int = 2
    frontier_finetune_epochs: int = 30
    null_models: int = 4
    null_epochs: int | None = None
    n_independent: int = 20
    key_seed: int = field(default=2022, kw_only=True)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.datasets:
            raise ConfigError("a scale needs at least one dataset")
        bad = [o for o, _ in self.optimizers if o not in OPTIMIZERS]
        if bad:
            raise ConfigError(f"unknown optimizer(s) {bad}")
        at_least(self, 1, "runs", "epochs", "finetune_epochs", "scheme_finetune_epochs", "per_batch", "attacker_size")
        at_least(self, 2, "n_independent")

    @property
    def dataset(self) -> str:
        return " + ".join(d for d, _ in self.datasets)

    @property
    def layer(self) -> str:
        return "trigger sets (no host layer; DeepSigns white-box: fc2)"

    def train(self, optimizer: str, lr: float, seed: int) -> TrainConfig:
        """The embedding schedule with ``optimizer`` (momentum for SGD only, as Keras' defaults)."""
        return TrainConfig(epochs=self.epochs, batch_size=self.batch_size, optimizer=optimizer,  # type: ignore[arg-type]
                           lr=lr, momentum=self.momentum if optimizer == "sgd" else 0.0, seed=seed, progress=False)

    def finetune(self, seed: int, epochs: int | None = None) -> TrainConfig:
        return TrainConfig(epochs=epochs or self.finetune_epochs, batch_size=self.batch_size, optimizer="sgd",
                           lr=self.finetune_lr, momentum=self.momentum, seed=seed, progress=False)


SCALES: dict[str, Scale] = {
    "quick": Scale(name="quick", datasets=(("digits", None),), attacker_size=400, model_args={"hidden": [128]},
                   epochs=12, batch_size=32, runs=2, finetune_epochs=3, scheme_finetune_epochs=3, per_batch=8,
                   null_models=2, n_independent=3, threads=1, command="netmark reproduce fkirin --quick"),
    "cpu": Scale(name="cpu", datasets=(("fashion-mnist", 5000), ("digits", None)), attacker_size=400,
                 model_args={"hidden": [256]}, epochs=15, per_batch=8,
                 command="netmark reproduce fkirin --jobs 2 --cache-dir .cache/fkirin"),
}

#: §5 of the survey (the "paper" column of the scale table).
PAPER_SETUP = {
    "datasets": "MNIST and CIFAR-10 (CIFAR10-CNN)",
    "watermark": "DeepSigns (Rouhani et al. 2019) black-box mode",
    "optimizers": "SGD (DeepSigns' own), Adagrad, NAdam, RMSprop, Adam, Adamax",
    "schedule": "50 epochs, ReLU, averaged over 10 runs",
    "attack": "fine-tuning (budget not stated)",
}


# ----------------------------------------------------------------------------- runs


@dataclass(frozen=True)
class RunSpec(RunSpecBase):
    """One model. ``scheme`` None: unmarked; ``independent``: a false-positive model (own seed)."""

    dataset: str
    scheme: str | None = None
    optimizer: str = "sgd"
    lr: float = 0.01
    run: int = 0
    key_seed: int = field(default=2022, kw_only=True)
    finetune_epochs: int = 0

    @property
    def data(self) -> str:
        return self.dataset


def study_name(dataset: str, scheme: str, optimizer: str, run: int) -> str:
    return f"{dataset}/{scheme}/{optimizer}/{run}"


def plan(scale: Scale) -> dict[str, RunSpec]:
    """Every run: the study (dataset × optimizer × scheme × run, each fine-tuned), the main dataset's
    unmarked baseline and per-scheme models (SGD, run 0, fine-tuned), and the independent models."""
    runs: list[RunSpec] = []
    main = scale.datasets[0][0]
    sgd_lr = dict(scale.optimizers).get("sgd", 0.01)
    seeds = scale.seeds
    for d, _ in scale.datasets:
        for opt, lr in scale.optimizers:
            for s in STUDY_SCHEMES:
                for r in range(scale.runs):
                    name = study_name(d, s, opt, r)
                    runs.append(RunSpec(name, d, s, opt, lr, r, model_seed=scale.model_seed + r,
                                        train_seed=scale.train_seed + r, key_seed=scale.key_seed + r))
                    runs.append(RunSpec(name + "/ft", d, s, opt, lr, r, parent=name, attack="finetune",
                                        finetune_epochs=scale.finetune_epochs, train_seed=scale.train_seed + r + 1))
    runs.append(RunSpec(f"{main}/plain", main, None, "sgd", sgd_lr, **seeds))
    for s in SCHEMES:
        if s in STUDY_SCHEMES:
            continue  # the study's SGD run 0 is the scheme's model
        runs.append(RunSpec(study_name(main, s, "sgd", 0), main, s, "sgd", sgd_lr, **seeds))
    for s in SCHEMES:
        runs.append(RunSpec(f"{main}/{s}/sgd/0/sweep", main, s, "sgd", sgd_lr, parent=study_name(main, s, "sgd", 0),
                            attack="finetune", finetune_epochs=scale.scheme_finetune_epochs,
                            train_seed=scale.train_seed + 1))
    for i in range(scale.n_independent):
        runs.append(RunSpec(f"{main}/independent/{i}", main, None, "sgd", sgd_lr, i, model_seed=1000 + i,
                            train_seed=1000 + i))
    return {r.name: r for r in runs}


# ----------------------------------------------------------------------------- experiments


@dataclass(frozen=True)
class Experiment(ExperimentBase):
    """One table (``runs``: ``@study`` / ``@schemes`` / ``@independent`` expand per scale)."""

    def groups(self, scale: Scale) -> dict[str, list[str]]:
        p, main = plan(scale), scale.datasets[0][0]
        return {
            "@study": [n for n, r in p.items() if r.scheme in STUDY_SCHEMES and not n.endswith("/sweep")],
            "@schemes": [f"{main}/plain"] + [f"{main}/{s}/sgd/0/sweep" for s in SCHEMES],
            "@independent": [n for n in p if "/independent/" in n] + [study_name(main, s, "sgd", 0) for s in SCHEMES],
        }


#: the survey's Table 5 (MNIST) and Table 6 (CIFAR10-CNN): only which optimizers came out ahead is stated
#: in its text (the table values are not in the stored text).
SURVEY_CLAIMS = {
    "better_than_sgd": ["adagrad", "adamax"],
    "worst": "adam",
}

EXPERIMENTS: tuple[Experiment, ...] = (
    Experiment("optimizers", "Tables 5-6", "Optimizer study: task and watermark accuracy after fine-tuning",
               ("@study",), paper=SURVEY_CLAIMS,
               notes="Each run trains a fresh model with the scheme's triggers mixed in, using one optimizer, then "
                     "the attacker fine-tunes it with SGD on its own disjoint part of the training set."),
    Experiment("schemes", "issue 6", "Every scheme: fidelity, trigger accuracy, fine-tuning sweep", ("@schemes",),
               paper={"trigger_accuracy_min": 0.95, "fidelity_pp_max": 1.0}),
    Experiment("false_positives", "issue 6", "Independent models against every key: model file and HTTP",
               ("@independent",), paper={"n_independent_min": 20}),
)


def schedule_of(scale: Scale, spec: RunSpec) -> TrainConfig:
    """A derived run's fine-tuning, else the embedding schedule with the run's optimizer."""
    if spec.parent:
        return scale.finetune(spec.train_seed, spec.finetune_epochs)
    return scale.train(spec.optimizer, spec.lr, spec.train_seed)


EXPERIMENT_ID = "fkirin2022"
PAPER = ("Fkirin, Attiya, El-Sayed, Shouman: Copyright protection of deep neural network models using digital "
         "watermarking: a comparative study, Multimedia Tools and Applications 2022")
STUDY = Study(EXPERIMENT_ID, PAPER, "Fkirin et al. 2022", SCALES, "cpu", plan, schedule_of, EXPERIMENTS)
get_scale = STUDY.get_scale
