"""Wide residual networks WRN-N-k (Zagoruyko & Komodakis 2016), the host network of Uchida et al.
(2017), Sec. 4.1 and Table 3.

Uchida et al. embed into "the second convolution layer in the conv 2, conv 3, and conv 4 groups"
and give the sizes M = S·S·D of those layers as 576, 1152 and 2304 (Sec. 4.3). The values of N and
k are lost in the extracted paper text ("we set N = ? and k = ?"). The parameter counts fix k = 4
(3·3·16k = 576), and in Table 3 (copied from Zagoruyko & Komodakis' Table 1) N is the number of
blocks per group; the authors' released configuration (yu4u/dnn-watermark, ``"N": 1, "k": 4``)
confirms N = 1, i.e. WRN-10-4 (depth 6N + 4 = 10), our default. Module names follow Table 3:

=========  =====================  ==============  ========================  =====================
Group      module                 output (32×32)  block convs               host layer (M, k=4)
=========  =====================  ==============  ========================  =====================
conv 1     ``conv1``              16 × 32 × 32    3×3, 16                   —
conv 2     ``conv2`` (n blocks)   16k × 32 × 32   [3×3, 16k; 3×3, 16k] × n  ``conv2.0.conv2`` 576
conv 3     ``conv3`` (n blocks)   32k × 16 × 16   [3×3, 32k; 3×3, 32k] × n  ``conv3.0.conv2`` 1152
conv 4     ``conv4`` (n blocks)   64k × 8 × 8     [3×3, 64k; 3×3, 64k] × n  ``conv4.0.conv2`` 2304
avg-pool   ``bn``, ``fc``         num_classes     —                         —
=========  =====================  ==============  ========================  =====================

with n = (N − 4) / 6 blocks per group and M = S·S·D = 3·3·(16k, 32k, 64k). The host is the
*first* block's second convolution of each group.
"""

from __future__ import annotations

from torch import Tensor, nn

from netmark.errors import ArchitectureError
from netmark.models.registry import check_fraction, register


class WideBasicBlock(nn.Module):
    """Pre-activation basic block: BN-ReLU-``conv1`` (3×3, stride) → BN-ReLU-dropout-``conv2`` (3×3).

    When the shape changes, the shortcut is a 1×1 convolution (``shortcut``) applied to the
    pre-activated input, as in the reference WRN implementation.
    """

    def __init__(self, in_planes: int, planes: int, stride: int, dropout: float) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        """Residual output ``conv2(...) + shortcut(x)``."""
        pre = self.relu1(self.bn1(x))
        out = self.conv2(self.dropout(self.relu2(self.bn2(self.conv1(pre)))))
        return out + (x if self.shortcut is None else self.shortcut(pre))


class WideResNet(nn.Module):
    """WRN-``depth``-``widen``: ``conv1``, groups ``conv2``/``conv3``/``conv4``, BN-ReLU, avg-pool, ``fc``."""

    def __init__(self, in_channels: int, num_classes: int, depth: int, widen: int, dropout: float) -> None:
        super().__init__()
        n = (depth - 4) // 6
        widths = (16 * widen, 32 * widen, 64 * widen)
        self.conv1 = nn.Conv2d(in_channels, 16, 3, padding=1, bias=False)
        in_planes = 16
        groups = []
        for planes, stride in zip(widths, (1, 2, 2), strict=True):
            blocks = []
            for i in range(n):
                blocks.append(WideBasicBlock(in_planes, planes, stride if i == 0 else 1, dropout))
                in_planes = planes
            groups.append(nn.Sequential(*blocks))
        self.conv2, self.conv3, self.conv4 = groups
        self.bn = nn.BatchNorm2d(in_planes)
        self.relu = nn.ReLU(inplace=True)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_planes, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        """Class scores (logits) for a batch ``(N, C, H, W)``."""
        x = self.conv4(self.conv3(self.conv2(self.conv1(x))))
        return self.fc(self.avgpool(self.relu(self.bn(x))).flatten(1))


@register("wrn", host_layer="conv2.0.conv2",
          summary="Wide ResNet WRN-N-k: conv1 16ch, groups conv2/conv3/conv4 of 16k/32k/64k ch, avg-pool, fc.",
          paper="Uchida et al. 2017, Sec. 4.1 and Table 3; Zagoruyko & Komodakis 2016")
def wrn(in_channels: int = 3, image_size: int = 32, num_classes: int = 10, depth: int = 10, widen: int = 4,
        dropout: float = 0.0) -> nn.Module:
    """WRN-``depth``-``widen`` with (depth − 4) / 6 pre-activation blocks per group (He init).

    The default WRN-10-4 (N = 1 block per group, k = 4) is Uchida et al.'s host network.
    ``image_size`` only needs to be positive (3×3 convs with padding 1 never shrink a map below 1×1).
    """
    if depth < 10 or (depth - 4) % 6 != 0:
        raise ArchitectureError(f"model 'wrn': depth must be 6n+4 with n >= 1 (10, 16, 22, 28, ...), got {depth}.")
    check_fraction("wrn", "dropout", dropout)
    return WideResNet(in_channels, num_classes, depth, widen, dropout)
