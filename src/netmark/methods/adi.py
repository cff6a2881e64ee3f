"""Adi et al. 2018, "Turning your weakness into a strength: watermarking deep neural networks by backdooring".

Paper: Adi, Baum, Cisse, Pinkas, Keshet, USENIX Security 2018 (surveyed in
``fkirin2022-comparative-study.txt``, §4 and Table 4). Threat model: the thief serves the stolen
model behind an API, possibly after fine-tuning it; the owner can only query it.

Embedding (§4). The trigger set is ``size`` out-of-distribution "abstract" images, each given a label
drawn uniformly at random, and the model is trained on the task data with the triggers mixed in:
from scratch ("FromScratch", a fresh model) or by fine-tuning a trained one ("PreTrained", pass a
trained model to :meth:`embed`). The authors used 100 abstract drawings and appended 2 triggers to
each batch of 100 (their public code, ``--wm_batch_size 2``); netmark draws the abstract images from
the key's seed (:func:`netmark.methods.triggerset.abstract_images`), so nothing is downloaded.

Token models (issue 22; not in the paper): when the training data are token ids (a Hugging Face model's
``input_ids``), the triggers are ``size`` random sequences of the model's vocabulary and the data's length, with the
same committed random labels (:func:`netmark.methods.triggerset.random_tokens`).

Verification. Because the labels are uniformly random and independent of the images, an independent
model matches each with probability exactly 1/C: the p-value is the Binomial(n, 1/C) tail, with no
calibration needed (:mod:`netmark.methods.triggerset`).

Args (:class:`AdiConfig`): ``size`` [100], ``per_batch`` [2], ``null_models``, ``null_epochs``
(unused: the null is exact).

Example::

    method = Adi(AdiConfig())
    model, key, run = method.embed(model, train_set, TrainConfig(epochs=20), seed=3)
    method.verify_query(my_api, key).p_value   # query-only
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn
from torch.utils.data import Dataset

from netmark.draws import KeyRoot
from netmark.methods.base import register_method
from netmark.methods.tokens import random_tokens, token_spec
from netmark.methods.triggerset import (
    TriggerSetConfig,
    TriggerSetMethod,
    abstract_images,
    input_shape,
    logits_of,
    num_classes,
    random_labels,
)


@dataclass
class AdiConfig(TriggerSetConfig):
    """Adi et al. options (paper/code defaults: 100 triggers, 2 per batch)."""


@register_method
class Adi(TriggerSetMethod):
    """Adi et al. 2018 backdoor watermark: abstract images with random labels (see module docstring)."""

    name = "adi"
    config_cls = AdiConfig
    paper = ("Adi, Baum, Cisse, Pinkas, Keshet: Turning your weakness into a strength: watermarking deep neural "
             "networks by backdooring, USENIX Security 2018")

    @classmethod
    def example_config(cls) -> AdiConfig:
        return AdiConfig(per_batch=16)  # digits has 23 batches an epoch: 16 triggers a batch learn all 100 in 12

    def make_triggers(self, model: nn.Module, *, root: KeyRoot, data: Dataset | None) -> tuple[Tensor, Tensor, bool]:
        tokens = token_spec(model, data)
        if tokens is not None:  # a token model (issue 22): random sequences of its vocabulary, random labels
            inputs = random_tokens(self.config.size, *tokens, root)
            c = int(logits_of(model, inputs[:1]).shape[1])
            return inputs, random_labels(self.config.size, c, root, 1), True
        shape = input_shape(model, data)
        c = num_classes(model, shape)
        return abstract_images(self.config.size, shape, root), random_labels(self.config.size, c, root, 1), True

