"""VGG16 for CIFAR-sized inputs (Simonyan & Zisserman 2014, configuration D), as used as host by
Wang et al. (2020), Sec. 4: "For the host VGG16, we embedded the watermark into the first CONV3-64
layer", i.e. ``features.conv1_1`` (3·3·3·64 = 1728 weights for RGB inputs and ``width=1``).
"""

from __future__ import annotations

from collections import OrderedDict

from torch import Tensor, nn

from netmark.models.registry import check_fraction, check_positive, register, scaled

#: Output channels of the 13 convolutions, grouped by the max-pool that ends each block.
VGG16_BLOCKS: tuple[tuple[int, ...], ...] = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512,) * 3)


class VGG(nn.Module):
    """VGG with BatchNorm: ``features`` (conv/bn/relu + max-pools) → global avg-pool → ``classifier``.

    Convolutions are named ``features.conv{block}_{index}`` (``conv1_1`` … ``conv5_3``); the
    classifier is ``classifier.fc1`` (512 → 512, ReLU, dropout) and ``classifier.fc2`` (output).
    Max-pools use ``ceil_mode=True`` and an adaptive average pool precedes the classifier, so
    32×32 (32→16→8→4→2→1) and 28×28 (28→14→7→4→2→1) inputs both work.
    """

    def __init__(self, in_channels: int, num_classes: int, blocks: tuple[tuple[int, ...], ...], width: float,
                 dropout: float) -> None:
        super().__init__()
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        channels = in_channels
        for b, block in enumerate(blocks, start=1):
            for i, out in enumerate(block, start=1):
                out = scaled(out, width)
                layers[f"conv{b}_{i}"] = nn.Conv2d(channels, out, 3, padding=1)
                layers[f"bn{b}_{i}"] = nn.BatchNorm2d(out)
                layers[f"relu{b}_{i}"] = nn.ReLU(inplace=True)
                channels = out
            layers[f"pool{b}"] = nn.MaxPool2d(2, ceil_mode=True)
        self.features = nn.Sequential(layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        hidden = scaled(512, width)
        self.classifier = nn.Sequential(OrderedDict(fc1=nn.Linear(channels, hidden), relu=nn.ReLU(inplace=True),
                                                    dropout=nn.Dropout(dropout), fc2=nn.Linear(hidden, num_classes)))

    def forward(self, x: Tensor) -> Tensor:
        """Class scores (logits) for a batch ``(N, C, H, W)``."""
        return self.classifier(self.avgpool(self.features(x)).flatten(1))


@register("vgg16", host_layer="features.conv1_1",
          summary="VGG16 (CIFAR variant): 13 conv3x3+BN+ReLU, 5 max-pools, avg-pool, fc 512, fc classes.",
          paper="Wang et al. 2020, Sec. 4 (host VGG16 on CIFAR-10); Simonyan & Zisserman 2014, config. D")
def vgg16(in_channels: int = 3, image_size: int = 32, num_classes: int = 10, width: float = 1.0,
          dropout: float = 0.5) -> nn.Module:
    """VGG16 with BatchNorm for small images; ``width`` scales every layer's channel count.

    ``image_size`` only needs to be positive: the ceil-mode pools never shrink a map below 1×1.
    """
    check_positive("vgg16", "width", width)
    check_fraction("vgg16", "dropout", dropout)
    return VGG(in_channels, num_classes, VGG16_BLOCKS, width, dropout)
