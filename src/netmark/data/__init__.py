"""Datasets by name, as in-memory tensors: ``load(name, split, ...)`` → :class:`ArrayDataset`.

Supported names (see :data:`DATASETS`, the single registry): ``digits``, ``mnist``,
``fashion-mnist``, ``cifar10``, ``cifar100``. Images are float32 ``(N, C, H, W)`` in ``[0, 1]``,
labels int64. No torchvision is needed: small readers for IDX and CIFAR files are included.

Where the files go
------------------
Put the files in ``<dir>/<name>/`` (or directly in ``<dir>``) where ``<dir>`` is the ``data_dir``
argument or ``$NETMARK_DATA``; ``/usr/share/datasets/<name>/`` and ``~/.cache/netmark/<name>/`` are
searched next. Missing files are downloaded (unless ``download=False`` or ``NETMARK_OFFLINE=1``)
into ``<data_dir>/<name>/``, else ``$NETMARK_DATA/<name>/``, else ``~/.cache/netmark/<name>/``.
Full rules: :mod:`netmark.data.files`.

* ``mnist`` and ``fashion-mnist`` (shape (1, 28, 28), 10 classes): ``train-images-idx3-ubyte.gz``,
  ``train-labels-idx1-ubyte.gz``, ``t10k-images-idx3-ubyte.gz``, ``t10k-labels-idx1-ubyte.gz``
  (gzipped or not). Debian's ``dataset-fashion-mnist`` package installs them in
  ``/usr/share/datasets/fashion-mnist/``. Downloads: ``https://ossci-datasets.s3.amazonaws.com/mnist/``
  and ``http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/``.
* ``cifar10`` (3, 32, 32), 10 classes: ``cifar-10-python.tar.gz`` or its extracted folder
  ``cifar-10-batches-py/`` (``data_batch_1`` … ``data_batch_5``, ``test_batch``).
* ``cifar100`` (3, 32, 32), 100 classes (``label_mode="coarse"``: 20): ``cifar-100-python.tar.gz`` or
  its extracted folder ``cifar-100-python/`` (``train``, ``test``).
  The CIFAR pickles are read with a restricted unpickler that refuses every global except the numpy
  names needed to rebuild an array; archives are read in memory, never extracted.
* ``digits`` (1, 8, 8), 10 classes, 1797 images: bundled with scikit-learn, no files. It has no
  official split: a stratified split with the fixed seed 0 gives 1437 "train" / 360 "test".

Splits
------
``"test"`` is the official test set. ``"val"`` holds ``val_size`` samples of the official training
set and ``"train"`` the rest (disjoint; chosen by ``split_seed`` only); ``train_size`` subsamples
"train". Details: :mod:`netmark.data.loading`.
"""

from __future__ import annotations

from netmark.data.dataset import ArrayDataset, TensorPairs, inputs_of
from netmark.data.loading import available, get_spec, load
from netmark.data.registry import DATASETS, DatasetSpec

__all__ = ["DATASETS", "ArrayDataset", "DatasetSpec", "TensorPairs", "available", "get_spec", "inputs_of", "load"]
