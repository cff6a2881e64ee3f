"""The single registry of datasets netmark can load: name → :class:`DatasetSpec`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from netmark.data.readers import CifarReader, DigitsReader, IdxReader, Reader

__all__ = ["DATASETS", "DatasetSpec"]


@dataclass(frozen=True)
class DatasetSpec:
    """Everything netmark knows about one dataset.

    Attributes:
        name: registry key, also the sub-directory name ``<data_dir>/<name>/``.
        shape: ``(C, H, W)`` of one image.
        classes: class names, index = label (their number: :attr:`num_classes`).
        reader: the on-disk format; knows the file names and how to read them.
        base_url: download prefix; each file's URL is ``base_url + file`` (empty: nothing to download).
        max_value: raw pixel maximum; images are divided by it to land in ``[0, 1]``.
        coarse_classes: CIFAR-100 super-class names for ``label_mode="coarse"`` (empty otherwise).
    """

    name: str
    shape: tuple[int, int, int]
    classes: tuple[str, ...]
    reader: Reader
    base_url: str = ""
    max_value: float = 255.0
    coarse_classes: tuple[str, ...] = ()

    @property
    def num_classes(self) -> int:
        """The number of (fine) classes."""
        return len(self.classes)

    @property
    def files(self) -> tuple[str, ...]:
        """Canonical file names that belong in the dataset directory."""
        return self.reader.files

    @property
    def urls(self) -> tuple[str, ...]:
        """Download URL of each of :attr:`files` (same order); empty when nothing is downloadable."""
        return tuple(self.base_url + f for f in self.files) if self.base_url else ()


_DIGIT_NAMES = tuple(str(i) for i in range(10))

_FASHION_NAMES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip

_CIFAR10_NAMES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip

_CIFAR100_NAMES = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle",
    "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle",
    "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch", "crab", "crocodile", "cup", "dinosaur",
    "dolphin", "elephant", "flatfish", "forest", "fox", "girl", "hamster", "house", "kangaroo", "keyboard",
    "lamp", "lawn_mower", "leopard", "lion", "lizard", "lobster", "man", "maple_tree", "motorcycle",
    "mountain", "mouse", "mushroom", "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear",
    "pickup_truck", "pine_tree", "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon",
    "ray", "road", "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail",
    "snake", "spider", "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank", "telephone",
    "television", "tiger", "tractor", "train", "trout", "tulip", "turtle", "wardrobe", "whale",
    "willow_tree", "wolf", "woman", "worm",
)  # fmt: skip

_CIFAR100_COARSE_NAMES = (
    "aquatic_mammals", "fish", "flowers", "food_containers", "fruit_and_vegetables",
    "household_electrical_devices", "household_furniture", "insects", "large_carnivores",
    "large_man-made_outdoor_things", "large_natural_outdoor_things", "large_omnivores_and_herbivores",
    "medium_mammals", "non-insect_invertebrates", "people", "reptiles", "small_mammals", "trees",
    "vehicles_1", "vehicles_2",
)  # fmt: skip

_CIFAR_URL = "https://www.cs.toronto.edu/~kriz/"


def _idx(name: str, classes: tuple[str, ...], base_url: str) -> DatasetSpec:
    """A 1×28×28 dataset in MNIST's IDX files (MNIST, Fashion-MNIST)."""
    return DatasetSpec(name, (1, 28, 28), classes, IdxReader(), base_url)


def _cifar(name: str, classes: tuple[str, ...], coarse_classes: tuple[str, ...] = (), **reader: Any) -> DatasetSpec:
    """A 3×32×32 dataset in the CIFAR python archives of :data:`_CIFAR_URL` (``reader``: its :class:`CifarReader`)."""
    return DatasetSpec(name, (3, 32, 32), classes, CifarReader(**reader), _CIFAR_URL, coarse_classes=coarse_classes)


_SPECS = (
    _idx("mnist", _DIGIT_NAMES, "https://ossci-datasets.s3.amazonaws.com/mnist/"),
    _idx("fashion-mnist", _FASHION_NAMES, "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"),
    _cifar("cifar10", _CIFAR10_NAMES, archive="cifar-10-python.tar.gz", folder="cifar-10-batches-py",
           train_batches=tuple(f"data_batch_{i}" for i in range(1, 6)), test_batches=("test_batch",),
           label_key="labels"),
    _cifar("cifar100", _CIFAR100_NAMES, _CIFAR100_COARSE_NAMES, archive="cifar-100-python.tar.gz",
           folder="cifar-100-python", train_batches=("train",), test_batches=("test",), label_key="fine_labels",
           coarse_label_key="coarse_labels"),
    DatasetSpec("digits", (1, 8, 8), _DIGIT_NAMES, DigitsReader(), max_value=16.0),
)

DATASETS: dict[str, DatasetSpec] = {spec.name: spec for spec in _SPECS}
"""Registry: dataset name → :class:`DatasetSpec`. The only list of supported datasets."""
