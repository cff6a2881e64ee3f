"""CIFAR ResNets of He et al. (2016), Sec. 4.2: a 3×3 conv with 16 channels, three stages of n
basic blocks with 16/32/64 channels (stride 1/2/2), global average pooling and a fully connected
layer; depth = 6n + 2 (ResNet-20: n = 3, ResNet-32: n = 5).

Shortcuts use **option A** of the paper (identity; when the shape changes, the input is
subsampled by 2 and zero-padded to the new channel count), so there are no projection weights and
the parameter counts match the paper (0.27M for ResNet-20, 0.46M for ResNet-32). Weights use He
(Kaiming normal) initialisation. Used by Chen & Wu (2018, ResNet-20, Sec. 3.1) and Tartaglione
et al. (2021, ResNet-32, Sec. V-B). Layers: ``conv1``, ``layer{1,2,3}.{block}.conv{1,2}``, ``fc``.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from netmark.errors import ArchitectureError
from netmark.models.registry import Builder, register


class BasicBlock(nn.Module):
    """``conv1``-``bn1``-ReLU-``conv2``-``bn2`` plus an option-A shortcut, then ReLU."""

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.stride = stride
        self.pad = planes - in_planes

    def _shortcut(self, x: Tensor) -> Tensor:
        if self.stride != 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.pad:
            x = F.pad(x, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
        return x

    def forward(self, x: Tensor) -> Tensor:
        """Residual output ``relu(bn2(conv2(...)) + shortcut(x))``."""
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + self._shortcut(x))


class CifarResNet(nn.Module):
    """ResNet-(6n+2): ``conv1`` → ``layer1``/``layer2``/``layer3`` → avg-pool → ``fc``."""

    def __init__(self, in_channels: int, num_classes: int, depth: int) -> None:
        super().__init__()
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_channels, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        in_planes = 16
        stages = []
        for planes, stride in ((16, 1), (32, 2), (64, 2)):
            blocks = []
            for i in range(n):
                blocks.append(BasicBlock(in_planes, planes, stride if i == 0 else 1))
                in_planes = planes
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                nn.init.kaiming_normal_(m.weight)

    def forward(self, x: Tensor) -> Tensor:
        """Class scores (logits) for a batch ``(N, C, H, W)``."""
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.avgpool(x).flatten(1))


def cifar_resnet(in_channels: int, num_classes: int, depth: int) -> nn.Module:
    """Shared implementation behind ``resnet``, ``resnet20`` and ``resnet32``."""
    if (depth - 2) % 6 != 0 or depth < 8:
        raise ArchitectureError(f"model 'resnet': depth must be 6n+2 with n >= 1 (8, 14, 20, 32, ...), got {depth}.")
    return CifarResNet(in_channels, num_classes, depth)


_PAPER = "He et al. 2016, Sec. 4.2 (CIFAR-10 ResNets, option-A shortcuts)"


@register("resnet", host_layer="layer1.0.conv2",
          summary="CIFAR ResNet-(6n+2): conv 16, 3 stages of n basic blocks (16/32/64 ch), avg-pool, fc.",
          paper=_PAPER)
def resnet(in_channels: int = 3, image_size: int = 32, num_classes: int = 10, depth: int = 20) -> nn.Module:
    """CIFAR ResNet of any depth 6n+2; ``image_size`` only needs to be positive."""
    return cifar_resnet(in_channels, num_classes, depth)


def _fixed_depth(depth: int) -> Builder:
    """The builder of ResNet-``depth`` (the registry reads its signature: the common arguments only)."""

    def builder(in_channels: int = 3, image_size: int = 32, num_classes: int = 10) -> nn.Module:
        return cifar_resnet(in_channels, num_classes, depth)

    builder.__name__ = builder.__qualname__ = f"resnet{depth}"
    builder.__doc__ = f"ResNet-{depth} (He et al.): ``resnet`` with ``depth={depth}``."
    return builder


#: The registered fixed-depth ResNets: depth -> the paper that uses it.
FIXED_DEPTHS = {20: "Chen & Wu 2018, Sec. 3.1", 32: "Tartaglione et al. 2021, Sec. V-B"}

for _depth, _used_by in FIXED_DEPTHS.items():
    _summary = f"CIFAR ResNet-{_depth} (n={(_depth - 2) // 6} basic blocks per stage, 16/32/64 channels)."
    register(f"resnet{_depth}", host_layer="layer1.0.conv2", summary=_summary,
             paper=f"{_PAPER}; used by {_used_by}")(_fixed_depth(_depth))
