"""Small convolutional networks for digits: LeNet5-caffe and Chen & Wu's simple CNN.

* ``lenet5``: LeNet5-caffe as used by Tartaglione et al. (2021), Sec. V-A, on MNIST: conv 20@5×5,
  max-pool 2, conv 50@5×5, max-pool 2, fc 500, fc classes, ReLU. Their Fig. 3 shows the weights of
  ``conv2``, the typical host layer.
* ``simple-cnn``: Chen & Wu (2018), Table 1: conv1 [3×3, 32], max-pool 2×2, conv2 [3×3, 64],
  max-pool 2×2, fc1 1024 with dropout 0.5, fc2 (softmax) output; ReLU everywhere (Sec. 3.1).
"""

from __future__ import annotations

from torch import Tensor, nn

from netmark.models.registry import check_fraction, check_spatial, conv_out, register


class _TwoConvNet(nn.Module):
    """``conv1`` → ReLU → pool → ``conv2`` → ReLU → pool → ``fc1`` → ReLU (→ dropout) → ``fc2``: the shape both
    digit CNNs share (square kernels, 2×2 max-pools; ``dropout=None``: no dropout layer)."""

    def __init__(self, model: str, in_channels: int, image_size: int, num_classes: int, *, channels: tuple[int, int],
                 kernel: int, padding: int, hidden: int, dropout: float | None = None) -> None:
        super().__init__()
        s1 = conv_out(image_size, kernel, padding=padding)
        p1 = s1 // 2
        s2 = conv_out(p1, kernel, padding=padding)
        p2 = s2 // 2
        check_spatial(model, image_size, [("conv1", s1), ("pool1", p1), ("conv2", s2), ("pool2", p2)])
        self.conv1 = nn.Conv2d(in_channels, channels[0], kernel, padding=padding)
        self.conv2 = nn.Conv2d(channels[0], channels[1], kernel, padding=padding)
        self.pool = nn.MaxPool2d(2)
        self.relu = nn.ReLU(inplace=True)
        self.fc1 = nn.Linear(channels[1] * p2 * p2, hidden)
        self.dropout = None if dropout is None else nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """Class scores (logits) for a batch ``(N, C, H, W)``."""
        x = self.pool(self.relu(self.conv1(x)))
        x = self.pool(self.relu(self.conv2(x)))
        x = self.relu(self.fc1(x.flatten(1)))
        return self.fc2(x if self.dropout is None else self.dropout(x))


class LeNet5(_TwoConvNet):
    """LeNet5-caffe: ``conv1`` → pool → ``conv2`` → pool → ``fc1`` → ``fc2`` (ReLU activations)."""

    def __init__(self, in_channels: int, image_size: int, num_classes: int, padding: int) -> None:
        super().__init__("lenet5", in_channels, image_size, num_classes, channels=(20, 50), kernel=5, padding=padding,
                         hidden=500)


@register("lenet5", host_layer="conv2", min_values={"padding": 0},
          summary="LeNet5-caffe: conv 20@5x5, pool, conv 50@5x5, pool, fc 500, fc classes (ReLU).",
          paper="Tartaglione et al. 2021, Sec. V-A and Table I (LeNet5-caffe on MNIST)")
def lenet5(in_channels: int = 1, image_size: int = 28, num_classes: int = 10, padding: int = 0) -> nn.Module:
    """LeNet5-caffe; 28×28 inputs give a 50·4·4 flattened feature map before ``fc1``.

    ``padding`` (default 0, as in the original) pads both convolutions so that tiny inputs work,
    e.g. 8×8 digits with ``padding=2`` (8 → 8 → 4 → 4 → 2).
    """
    return LeNet5(in_channels, image_size, num_classes, padding)


class SimpleCNN(_TwoConvNet):
    """Chen & Wu's simple CNN: ``conv1`` → pool → ``conv2`` → pool → ``fc1`` (+dropout) → ``fc2``."""

    def __init__(self, in_channels: int, image_size: int, num_classes: int, dropout: float) -> None:
        super().__init__("simple-cnn", in_channels, image_size, num_classes, channels=(32, 64), kernel=3, padding=1,
                         hidden=1024, dropout=dropout)


@register("simple-cnn", host_layer="conv2",
          summary="Chen & Wu simple CNN: conv 32@3x3, pool, conv 64@3x3, pool, fc 1024 + dropout, fc classes.",
          paper="Chen & Wu 2018, Table 1 (simple CNN) and Sec. 3.1")
def simple_cnn(in_channels: int = 1, image_size: int = 28, num_classes: int = 10, dropout: float = 0.5) -> nn.Module:
    """Chen & Wu's simple CNN (same-padded 3×3 convs, so 28 → 14 → 7 and 8 → 4 → 2)."""
    check_fraction("simple-cnn", "dropout", dropout)
    return SimpleCNN(in_channels, image_size, num_classes, dropout)
