"""Multi-layer perceptron of Wang et al. (2020), "Watermarking in deep neural networks via error
back-propagation", Sec. 2: a 784-D input layer, a 64-D hidden layer and a 10-D output layer with
ReLU. The watermark host is the hidden→output weight matrix (64·10 = 640 weights, Sec. 4), i.e.
layer ``fc2`` with the default ``hidden=64``.
"""

from __future__ import annotations

from collections import OrderedDict
from itertools import pairwise

from torch import nn

from netmark.models.registry import register


@register("mlp", host_layer="fc2",
          summary="Wang et al. 784-64-10 MLP: flatten, Linear+ReLU hidden layer(s), Linear output.",
          paper="Wang et al. 2020, Sec. 2 (MLP with a 784-D input, 64-D hidden and 10-D output layer)")
def mlp(in_channels: int = 1, image_size: int = 28, num_classes: int = 10, hidden: int | list[int] = 64) -> nn.Module:
    """Flatten → ``fc1`` (C·H·W → hidden) → ReLU → … → ``fcN`` (last hidden → num_classes).

    ``hidden`` is one width or a list of widths (one ``Linear`` + ReLU each); the layers are
    named ``fc1``, ``fc2``, … and the last one is the output layer. With 1×28×28 inputs and the
    default ``hidden=64`` this is exactly Wang et al.'s 784-64-10 network.
    """
    widths = [hidden] if isinstance(hidden, int) else list(hidden)
    sizes = [in_channels * image_size * image_size, *widths, num_classes]
    layers: OrderedDict[str, nn.Module] = OrderedDict(flatten=nn.Flatten())
    for i, (fan_in, fan_out) in enumerate(pairwise(sizes), start=1):
        layers[f"fc{i}"] = nn.Linear(fan_in, fan_out)
        if i < len(sizes) - 1:
            layers[f"relu{i}"] = nn.ReLU(inplace=True)
    return nn.Sequential(layers)
