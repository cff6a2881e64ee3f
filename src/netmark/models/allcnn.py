"""All-CNN-C of Springenberg et al. (2015), "Striving for simplicity: the all convolutional net",
Tables 1–2, watermarked on CIFAR-10 by Tartaglione et al. (2021), Sec. V-B.

Layers ``conv1`` … ``conv9``: 3×3 conv 96, 3×3 conv 96, 3×3 conv 96 stride 2 (replacing max-pool),
3×3 conv 192, 3×3 conv 192, 3×3 conv 192 stride 2, 3×3 conv 192 (valid), 1×1 conv 192,
1×1 conv ``num_classes``, then global average pooling (over 6×6 for 32×32 inputs). All convs but
the two last 3×3/1×1 ones are same-padded, so sizes go 32 → 16 → 8 → 6 (28 → 14 → 7 → 5).
"""

from __future__ import annotations

from collections import OrderedDict

from torch import Tensor, nn

from netmark.models.registry import check_fraction, check_positive, check_spatial, conv_out, register, scaled


class AllCNNC(nn.Module):
    """All-CNN-C: ``features`` (nine convs with ReLU, optional dropout) → global avg-pool.

    The last 1×1 convolution's outputs, averaged over space, are the class scores; unlike
    Table 1 of the paper no ReLU is applied to them (so logits may be negative).
    """

    def __init__(self, in_channels: int, num_classes: int, width: float, dropout: float, input_dropout: float) -> None:
        super().__init__()
        c1, c2 = scaled(96, width), scaled(192, width)
        # (name, out_channels, kernel, stride, padding)
        plan = [
            ("conv1", c1, 3, 1, 1),
            ("conv2", c1, 3, 1, 1),
            ("conv3", c1, 3, 2, 1),
            ("conv4", c2, 3, 1, 1),
            ("conv5", c2, 3, 1, 1),
            ("conv6", c2, 3, 2, 1),
            ("conv7", c2, 3, 1, 0),
            ("conv8", c2, 1, 1, 0),
            ("conv9", num_classes, 1, 1, 0),
        ]
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        if input_dropout > 0:
            layers["dropout0"] = nn.Dropout(input_dropout)
        channels = in_channels
        for name, out, k, s, p in plan:
            layers[name] = nn.Conv2d(channels, out, k, stride=s, padding=p)
            channels = out
            if name != "conv9":
                layers[f"relu{name[4:]}"] = nn.ReLU(inplace=True)
            if name in ("conv3", "conv6") and dropout > 0:
                layers[f"dropout{name[4:]}"] = nn.Dropout(dropout)
        self.features = nn.Sequential(layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: Tensor) -> Tensor:
        """Class scores (logits) for a batch ``(N, C, H, W)``."""
        return self.avgpool(self.features(x)).flatten(1)


@register("all-cnn-c", host_layer="features.conv7",
          summary="All-CNN-C: 3x3 convs 96/96/96s2/192/192/192s2/192, 1x1 192, 1x1 classes, global avg-pool.",
          paper="Tartaglione et al. 2021, Sec. V-B; Springenberg et al. 2015, Table 2 (model C)")
def all_cnn_c(in_channels: int = 3, image_size: int = 32, num_classes: int = 10, width: float = 1.0,
              dropout: float = 0.0, input_dropout: float = 0.0) -> nn.Module:
    """All-CNN-C; ``width`` scales the 96/192 channel counts.

    The paper trains with ``input_dropout=0.2`` and ``dropout=0.5`` (after each stride-2 conv);
    both default to 0 (off) here. Inputs smaller than 9×9 collapse below 1×1 at ``conv7``.
    """
    check_positive("all-cnn-c", "width", width)
    check_fraction("all-cnn-c", "dropout", dropout)
    check_fraction("all-cnn-c", "input_dropout", input_dropout)
    size, sizes = image_size, []
    for name, k, s, p in [("conv3", 3, 2, 1), ("conv6", 3, 2, 1), ("conv7", 3, 1, 0)]:
        size = conv_out(size, k, s, p)
        sizes.append((name, size))
    check_spatial("all-cnn-c", image_size, sizes)
    return AllCNNC(in_channels, num_classes, width, dropout, input_dropout)
