"""Token inputs for trigger sets (issue 22, item 3): what a model that reads token ids (a Hugging Face model's
``input_ids``) is given as triggers.

Adi et al.'s abstract images have a token analogue: random sequences of the model's vocabulary, of the data's
length, carrying no task content, with committed random labels (:class:`netmark.methods.adi.Adi`). A sequence never
contains the model's padding id: GPT-2's classification head reads a sequence only up to its first padding token.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from netmark.draws import KeyRoot, draw
from netmark.errors import ConfigError
from netmark.training import split_batch


def first_input(data: Dataset | DataLoader) -> Tensor:
    """The inputs of ``data``'s first example (a dict example's ``input_ids``)."""
    ds = data.dataset if isinstance(data, DataLoader) else data
    x, _ = split_batch(ds[0])
    return x["input_ids"] if isinstance(x, Mapping) else x


def token_spec(model: nn.Module, data: Dataset | DataLoader | None) -> tuple[int, int, int | None] | None:
    """``(length, vocabulary, padding id)`` when ``data``'s inputs are token ids (an integer tensor): the sequence
    length of its first example, the size of ``model``'s first embedding table and the id it pads with (the table's
    ``padding_idx``, else a Hugging Face config's ``pad_token_id``; ``None`` if neither); ``None`` for images."""
    if data is None:
        return None
    x = first_input(data)
    if x.is_floating_point():
        return None
    tables = [m for m in model.modules() if isinstance(m, nn.Embedding)]
    if x.ndim != 1 or not tables:
        raise ConfigError("token inputs need one sequence of ids per example and a model with an nn.Embedding")
    pad = tables[0].padding_idx
    if pad is None:
        pad = getattr(getattr(model, "config", None), "pad_token_id", None)  # the Hugging Face convention
    return int(x.shape[0]), int(tables[0].num_embeddings), int(pad) if isinstance(pad, int) else None


def random_tokens(n: int, length: int, vocab: int, pad: int | None, root: KeyRoot, k: int = 0) -> Tensor:
    """``n`` token sequences of ``length``, each id uniform over ``vocab`` but the padding id ``pad`` (a model reads
    a sequence only up to its first padding), from stream ``k`` of ``root``: the token analogue of Adi et al.'s
    abstract images, out-of-distribution inputs that carry no task content."""
    if pad is None or not 0 <= pad < vocab:
        return draw(root, k).randint(0, vocab, (n, length))
    ids = draw(root, k).randint(0, vocab - 1, (n, length))
    return ids + (ids >= pad).to(ids.dtype)
