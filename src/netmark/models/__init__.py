"""Registry of the networks used by the papers netmark implements.

>>> from netmark.models import build, arch_of
>>> model = build("lenet5", in_channels=1, image_size=28, num_classes=10)
>>> arch_of(model)["name"]
'lenet5'

Registered architectures (``available()``): ``mlp`` (Wang et al. 2020), ``lenet5``
(Tartaglione et al. 2021), ``simple-cnn`` (Chen & Wu 2018), ``vgg16`` (Wang et al. 2020),
``wrn`` (Uchida et al. 2017), ``resnet``/``resnet20``/``resnet32`` (He et al. 2016) and
``all-cnn-c`` (Springenberg et al. 2015). ``MODELS[name].host_layer`` names the layer the papers
typically watermark.
"""

from __future__ import annotations

# Importing the family modules registers their builders in MODELS; the package's API is the registry's.
from netmark.models import allcnn, hf, lenet, mlp, registry, resnet, vgg, wrn  # noqa: F401
from netmark.models.registry import *  # noqa: F403

__all__ = registry.__all__
