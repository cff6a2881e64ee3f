"""Hugging Face transformers as registry architectures for image tasks: ``hf-bert`` and ``hf-gpt2``.

``netmark evaluate --preset hf`` (issue 22) runs the whole evaluation on models whose hidden layers are those of
``transformers``' BERT (``nn.Linear``) and GPT-2 (``Conv1D``, weights stored ``(in, out)``), so that the attacks a
thief applies to such models (a PEFT LoRA fine-tune merged into the base, ONNX export, ``torch.ao`` dynamic int8,
fp16/bf16) are measured against every method on real data. The image is read as a sequence of patch tokens, the way
a vision transformer reads it (Dosovitskiy et al. 2021, §3.1): non-overlapping ``patch`` × ``patch`` patches,
row-major, each linearly embedded (``embed``) and fed as ``inputs_embeds`` to the transformer (``hf``: ``BertModel``
or ``GPT2Model`` built from a config, random init, no hub download; position embeddings are the model's own); the
mean of the last hidden states goes through the output layer ``head``. Inputs stay images, so every method, data
split and attack of the evaluation works unchanged; token inputs (``input_ids``) are covered by
:mod:`netmark.methods.tokens` and ``tests/test_hf.py``.

The models need the optional extra ``netmark[hf]`` (``transformers``); without it building one raises an
:class:`~netmark.errors.ArchitectureError` naming the extra. Default sizes are tiny (2 layers, hidden 32, 2 heads,
MLP 64: about 30 thousand parameters for Fashion-MNIST with 4 × 4 patches): the preset is a CPU-sized evaluation, not
a reproduction of any paper's transformer.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from netmark.errors import ArchitectureError
from netmark.models.registry import register

__all__ = ["PatchSequenceClassifier"]


class PatchSequenceClassifier(nn.Module):
    """Image ``(N, C, H, W)`` → patch tokens → ``embed`` → transformer ``hf`` → mean over tokens → ``head``."""

    def __init__(self, hf: nn.Module, *, in_channels: int, patch: int, hidden: int, num_classes: int) -> None:
        super().__init__()
        self.patch = patch
        self.embed = nn.Linear(in_channels * patch * patch, hidden)
        self.hf = hf
        self.head = nn.Linear(hidden, num_classes)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """The ``(N, L, C·p·p)`` patch sequence of images ``x`` (row-major patches)."""
        n, c, _, _ = x.shape
        p = self.patch
        t = x.unfold(2, p, p).unfold(3, p, p)  # N, C, H/p, W/p, p, p
        return t.permute(0, 2, 3, 1, 4, 5).reshape(n, -1, c * p * p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.hf(inputs_embeds=self.embed(self.tokens(x))).last_hidden_state
        return self.head(hidden.mean(dim=1))


def _transformers() -> Any:
    try:
        import transformers
    except ImportError:
        raise ArchitectureError("the hf-bert and hf-gpt2 models need transformers: pip install 'netmark[hf]'") from None
    return transformers


def _sequence_length(image_size: int, patch: int) -> int:
    if image_size % patch:
        raise ArchitectureError(f"image_size {image_size} is not a multiple of patch {patch}")
    return (image_size // patch) ** 2


def _check_heads(hidden: int, heads: int) -> None:
    if hidden % heads:
        raise ArchitectureError(f"hidden {hidden} is not a multiple of heads {heads}")


@register("hf-bert", host_layer="hf.encoder.layer.1.output.dense",
          summary="transformers' BertModel (from a config) over 4x4 patch tokens, mean-pooled, Linear output.",
          paper="Devlin et al. 2019 (BERT encoder); patch tokens as Dosovitskiy et al. 2021, §3.1")
def hf_bert(in_channels: int = 1, image_size: int = 28, num_classes: int = 10, patch: int = 4, hidden: int = 32,
            layers: int = 2, heads: int = 2, intermediate: int = 64) -> nn.Module:
    """A BERT encoder (``transformers.BertModel``, no pooler, dropout as BERT's config: 0.1) of ``layers`` layers;
    the default host ``hf.encoder.layer.1.output.dense`` is the second layer's MLP output (``nn.Linear``)."""
    tf = _transformers()
    _check_heads(hidden, heads)
    config = tf.BertConfig(vocab_size=2, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                           intermediate_size=intermediate,
                           max_position_embeddings=_sequence_length(image_size, patch))
    encoder = tf.BertModel(config, add_pooling_layer=False)
    return PatchSequenceClassifier(encoder, in_channels=in_channels, patch=patch, hidden=hidden,
                                   num_classes=num_classes)


@register("hf-gpt2", host_layer="hf.h.1.mlp.c_fc",
          summary="transformers' GPT2Model (from a config) over 4x4 patch tokens, mean-pooled, Linear output.",
          paper="Radford et al. 2019 (GPT-2 decoder); patch tokens as Dosovitskiy et al. 2021, §3.1")
def hf_gpt2(in_channels: int = 1, image_size: int = 28, num_classes: int = 10, patch: int = 4, hidden: int = 32,
            layers: int = 2, heads: int = 2, intermediate: int = 64) -> nn.Module:
    """A GPT-2 decoder (``transformers.GPT2Model``, causal attention, dropout 0.1) of ``layers`` blocks; the default
    host ``hf.h.1.mlp.c_fc`` is the second block's MLP input projection (a ``Conv1D``: weight stored (in, out))."""
    tf = _transformers()
    _check_heads(hidden, heads)
    config = tf.GPT2Config(vocab_size=2, n_embd=hidden, n_layer=layers, n_head=heads, n_inner=intermediate,
                           n_positions=_sequence_length(image_size, patch), bos_token_id=0, eos_token_id=0)
    decoder = tf.GPT2Model(config)
    return PatchSequenceClassifier(decoder, in_channels=in_channels, patch=patch, hidden=hidden,
                                   num_classes=num_classes)
