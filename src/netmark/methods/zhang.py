"""Zhang et al. 2018, "Protecting intellectual property of deep neural networks with watermarking".

Paper: Zhang, Gu, Jang, Wu, Stoecklin, Huang, Molloy, ACM AsiaCCS 2018 (surveyed in
``fkirin2022-comparative-study.txt``, §4 and Table 4). Threat model: the thief serves the stolen
model behind an API, possibly after fine-tuning, pruning or compressing it; the owner can only query it.

Embedding (§3). Three ways to make the watermark images, each labelled with one pre-chosen *target*
class, then trained together with the task data (netmark: ``per_batch`` of them appended to every
training batch, :mod:`netmark.methods.triggerset`):

* ``zhang-content`` (WM_content): meaningful content stamped onto training images of another class; the
  paper's example writes the word "TEST" onto CIFAR-10 "automobile" images labelled "airplane". netmark
  renders ``text`` (default "TEST") in a 3×5 block-letter font drawn in code (no font files), scaled into
  a band along the bottom ``text_height`` of the image and blended in white with ``strength``.
* ``zhang-noise`` (WM_noise): pre-specified Gaussian noise added to training images of another class.
  netmark draws one fixed pattern N(0, ``noise_std``²) per key and clips to [0, 1].
* ``zhang-unrelated`` (WM_unrelated): images from an unrelated domain (the paper: MNIST handwriting for a
  CIFAR-10 model; the toolbox below uses Omniglot characters). netmark draws Omniglot-like stroke glyphs
  (segments and ellipse arcs on a dark background) from the key's seed (:func:`glyph_images`), so nothing
  is downloaded and no training image is used.

Paper settings and where they come from. The paper's text could not be retrieved here; the three generators,
the single target class and the automobile → airplane / MNIST-for-CIFAR examples are as summarised by
secondary sources (viblo.asia reviews of the paper). The Watermark Robustness Toolbox
(``dnn-security/Watermark-Robustness-Toolbox``: ``wrt/defenses/watermark/zhang.py`` and
``configs/imagenet/wm_configs/{content,noise,unrelated}.yaml``) takes ``keylength: 100`` watermark images
from one source class relabelled to one target class, pastes a white block for WM_content, adds Gaussian
noise of std 0.3 (code default; 0.4 in its ImageNet config) with clipping, and uses Omniglot characters as the
unrelated domain; a PyTorch re-implementation (``ProtectingIP``) writes "TEST" at row 18 of 28 with strength
0.5 on MNIST and adds N(0, 1) noise. How the watermark images are mixed into training was not found: netmark
keeps the trigger-set defaults (``size`` 100, ``per_batch`` 2). netmark's choices where the sources are silent
or disagree: the target class is drawn from the key's seed unless ``target_class`` is set (the paper's
"airplane" is class 0 of CIFAR-10); the source images are any class but the target unless ``source_class``
is set (the paper's example uses one); the noise pattern is fixed per key ("pre-specified").

Verification. The labels are one class for every trigger, so independent models agree with them at a rate
that depends on the images (rarely exactly 1/C): the key's null is calibrated on reference models that
:meth:`~netmark.methods.triggerset.TriggerSetMethod.embed` trains (``null_models``), and the p-value comes
from that measured null (:mod:`netmark.methods.triggerset`). How often independent models answer the target
depends on it: on digits (simple-cnn, 12 epochs) they answer 0 for 0-6 % of the triggers of every generator,
but e.g. 40-64 % of the glyphs look like a 4 to them and up to 39 % of stamped digits like an 8. The
calibration accounts for this; the test's power is lowest for such targets (set ``target_class``). Under an ownership
claim (:mod:`netmark.methods.ownership`) the verifier measures this null on its own reference models, and a step
``specificity`` asks whether the model answers the claimed triggers more than those of keys drawn from other roots:
one target for every trigger means a model that learnt the generator's public part (the stamp) answers anyone's
triggers. Measured (``benchmarks/forgery_claims.py``, digits simple-cnn): zhang-noise models pass it, zhang-content
models answer the target for every redrawn key as well as for their own, zhang-unrelated models for some.

Args (:class:`ZhangConfig` and subclasses): ``size`` [100], ``per_batch`` [2], ``null_models`` [4],
``null_epochs``, ``target_class`` [from the seed], ``source_class`` [any other class]; content: ``text``
["TEST"], ``text_height`` [0.4], ``strength`` [1.0]; noise: ``noise_std`` [0.3].

Example::

    method = ZhangContent(ZhangContentConfig(per_batch=16))
    model, key, run = method.embed(model, train_set, TrainConfig(epochs=20), seed=3)
    method.verify_query(my_api, key).p_value   # query-only, against the calibrated null
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from netmark._util import check_finite, check_int, check_unit
from netmark.draws import KeyRoot, draw
from netmark.errors import ConfigError
from netmark.methods.base import register_method
from netmark.methods.traits import MethodTraits
from netmark.methods.triggerset import TriggerSetConfig, TriggerSetMethod, dataset_images, input_shape, num_classes

PAPER = ("Zhang, Gu, Jang, Wu, Stoecklin, Huang, Molloy: Protecting intellectual property of deep neural "
         "networks with watermarking, ACM AsiaCCS 2018")

#: 3×5 block letters, one row of three pixels per group ("#" ink).
_FONT: dict[str, str] = {
    "A": ".#. #.# ### #.# #.#", "B": "##. #.# ##. #.# ##.", "C": ".## #.. #.. #.. .##", "D": "##. #.# #.# #.# ##.",
    "E": "### #.. ##. #.. ###", "F": "### #.. ##. #.. #..", "G": ".## #.. #.# #.# .##", "H": "#.# #.# ### #.# #.#",
    "I": "### .#. .#. .#. ###", "J": "..# ..# ..# #.# .#.", "K": "#.# #.# ##. #.# #.#", "L": "#.. #.. #.. #.. ###",
    "M": "#.# ### ### #.# #.#", "N": "##. #.# #.# #.# #.#", "O": ".#. #.# #.# #.# .#.", "P": "##. #.# ##. #.. #..",
    "Q": ".#. #.# #.# ##. .##", "R": "##. #.# ##. #.# #.#", "S": ".## #.. .#. ..# ##.", "T": "### .#. .#. .#. .#.",
    "U": "#.# #.# #.# #.# ###", "V": "#.# #.# #.# #.# .#.", "W": "#.# #.# ### ### #.#", "X": "#.# #.# .#. #.# #.#",
    "Y": "#.# #.# .#. .#. .#.", "Z": "### ..# .#. #.. ###", "0": "### #.# #.# #.# ###", "1": ".#. ##. .#. .#. ###",
    "2": "##. ..# .#. #.. ###", "3": "##. ..# .#. ..# ##.", "4": "#.# #.# ### ..# ..#", "5": "### #.. ##. ..# ##.",
    "6": ".## #.. ### #.# ###", "7": "### ..# .#. .#. .#.", "8": "### #.# ### #.# ###", "9": "### #.# ### ..# ##.",
    " ": "... ... ... ... ...",
}


def text_mask(text: str) -> Tensor:
    """``text`` in the 3×5 block font: a ``(5, 4·len - 1)`` 0/1 mask (one blank column between letters)."""
    if not text or any(ch not in _FONT for ch in text.upper()):
        raise ConfigError(f"text must be non-empty and use only A-Z, 0-9 and spaces, got {text!r}")
    cols: list[list[float]] = [[] for _ in range(5)]
    for i, ch in enumerate(text.upper()):
        for r, row in enumerate(_FONT[ch].split()):
            cols[r].extend(([0.0] if i else []) + [1.0 if p == "#" else 0.0 for p in row])
    return torch.tensor(cols)


def stamp_text(images: Tensor, text: str, height: float, strength: float) -> Tensor:
    """Blend ``text`` in white into the bottom ``height`` fraction of every image (full width, 1-pixel margin
    where the image is large enough); the glyphs are resized with antialiasing, so small images get a
    blurred but fixed pattern."""
    h, w = images.shape[-2:]
    ph = max(2, min(h, round(h * height)))
    margin = 1 if w >= 16 else 0
    pw = max(2, w - 2 * margin)
    m = text_mask(text)[None, None]
    m = F.interpolate(m, size=(ph, pw), mode="bilinear", align_corners=False, antialias=True)[0, 0]
    m = (m / m.max().clamp(min=1e-12)).clamp(0, 1)
    bottom = h - (margin if ph + margin <= h else 0)
    mask = torch.zeros(h, w)
    mask[bottom - ph:bottom, margin:margin + pw] = m
    a = (strength * mask).to(images.dtype)
    return (images * (1 - a) + a).clamp(0, 1)


def glyph_images(n: int, shape: Sequence[int], root: KeyRoot, k: int = 0) -> Tensor:
    """``n`` "unrelated domain" images from stream ``k`` of ``root``: two to four bright strokes (line segments
    or ellipse arcs, random width and colour) on a dark noisy background — handwriting-like marks that belong to
    no class of the task."""
    c, h, w = (int(s) for s in shape)
    g = draw(root, k)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    px = 1.0 / max(h, w, 2)
    out = 0.08 * g.rand(n, c, h, w)
    strokes = 2 + g.randint(0, 3, (n,))
    for s in range(4):
        u = g.rand(n, 10, 1, 1)
        # segment from (x0, y0) to (x1, y1): distance to it
        x0, y0, x1, y1 = (0.1 + 0.8 * u[:, i] for i in range(4))
        dx, dy = x1 - x0, y1 - y0
        t = (((xx - x0) * dx + (yy - y0) * dy) / (dx * dx + dy * dy).clamp(min=1e-6)).clamp(0, 1)
        d_seg = torch.sqrt((xx - x0 - t * dx) ** 2 + (yy - y0 - t * dy) ** 2)
        # arc of an ellipse: centre, radii, and the angular span kept
        cx, cy = 0.3 + 0.4 * u[:, 4], 0.3 + 0.4 * u[:, 5]
        rx, ry = 0.12 + 0.25 * u[:, 6], 0.12 + 0.25 * u[:, 7]
        ang = torch.atan2((yy - cy) / ry, (xx - cx) / rx)
        start = u[:, 8] * 2 * math.pi
        on_arc = torch.remainder(ang - start, 2 * math.pi) < (0.8 + 1.2 * u[:, 9]) * math.pi
        r = torch.sqrt(((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2)
        d_arc = torch.where(on_arc, (r - 1).abs() * torch.minimum(rx, ry), torch.full_like(r, 9.0))
        kind = g.rand(n, 1, 1) < 0.5
        d = torch.where(kind, d_seg, d_arc)
        width = px * (0.4 + 0.8 * g.rand(n, 1, 1))  # half-width: strokes 2-3 pixels wide
        ink = ((width + px - d) / px).clamp(0, 1) * (s < strokes).float().view(n, 1, 1)
        colour = 0.6 + 0.4 * g.rand(n, c, 1, 1)
        out = torch.maximum(out, ink.unsqueeze(1) * colour)
    return out.clamp(0, 1)


@dataclass
class ZhangConfig(TriggerSetConfig):
    """Options shared by the three Zhang et al. generators.

    Args:
        target_class: the label every watermark image gets (paper: one pre-chosen class, e.g. "airplane");
            ``None``: drawn from the key's seed.
        source_class: content/noise only: stamp images of this class (paper's example: "automobile");
            ``None``: images of any class but the target.
    """

    target_class: int | None = None
    source_class: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("target_class", "source_class"):
            if getattr(self, name) is not None:
                check_int(name, getattr(self, name), 0)
        if self.source_class is not None and self.source_class == self.target_class:
            raise ConfigError("source_class must differ from target_class")


@dataclass
class ZhangContentConfig(ZhangConfig):
    """WM_content options: ``text`` (A-Z, 0-9, spaces) ["TEST"], the band it fills ``text_height``
    (fraction of the image height, bottom) [0.4] and its blend ``strength`` in (0, 1] [1.0]."""

    text: str = "TEST"
    text_height: float = 0.4
    strength: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.text, str):
            raise ConfigError(f"text must be a string, got {self.text!r}")
        text_mask(self.text)
        check_unit("text_height", self.text_height)
        check_unit("strength", self.strength)


@dataclass
class ZhangNoiseConfig(ZhangConfig):
    """WM_noise options: ``noise_std`` of the fixed Gaussian pattern, in pixel units of [0, 1] images [0.3,
    the Watermark Robustness Toolbox's default]."""

    noise_std: float = 0.3

    def __post_init__(self) -> None:
        super().__post_init__()
        check_finite("noise_std", self.noise_std, positive=True)


@dataclass
class ZhangUnrelatedConfig(ZhangConfig):
    """WM_unrelated options (``source_class`` does not apply: the images come from no class of the task)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.source_class is not None:
            raise ConfigError("zhang-unrelated takes no source_class: its images belong to no class of the task")


class Zhang(TriggerSetMethod):
    """Base of the three Zhang et al. generators: one target class for every watermark image."""

    paper = PAPER
    config: ZhangConfig

    @classmethod
    def example_config(cls) -> ZhangConfig:
        """Class 0 as target (the paper's "airplane"; a seed-drawn target 8 draws 39% agreement from independent
        models); image-dependent labels: 2 reference models calibrate each key's null (4 by default)."""
        return cls.config_cls(per_batch=16, target_class=0, null_models=2)  # type: ignore[call-arg,return-value]

    def target(self, c: int, root: KeyRoot) -> int:
        t = self.config.target_class
        for name, v in (("target_class", t), ("source_class", self.config.source_class)):
            if v is not None and v >= c:
                raise ConfigError(f"{name}={v} but the model has only {c} classes")
        if t is not None:
            return t
        return int(draw(root, 2).randint(0, c, (1,)))

    def source_images(self, data: Dataset | None, target: int, root: KeyRoot) -> Tensor:
        if data is None:
            raise ConfigError(f"{self.name} makes its triggers from training images: pass data=")
        src = self.config.source_class
        x, _ = dataset_images(data, self.config.size, root, 3, exclude_label=None if src is not None else target,
                              only_label=src)
        return x

    def make_triggers(self, model: nn.Module, *, root: KeyRoot, data: Dataset | None) -> tuple[Tensor, Tensor, bool]:
        shape = input_shape(model, data)
        c = num_classes(model, shape)
        t = self.target(c, root)
        x = self.watermark_images(shape, data, t, root)
        return x, torch.full((len(x),), t, dtype=torch.int64), False

    @abstractmethod
    def watermark_images(self, shape: Sequence[int], data: Dataset | None, target: int, root: KeyRoot) -> Tensor:
        """The ``size`` watermark images of a key of ``seed`` (their label is ``target``)."""


@register_method
class ZhangContent(Zhang):
    """WM_content: ``text`` stamped onto training images of other classes, labelled the target class."""

    name = "zhang-content"
    config_cls = ZhangContentConfig
    TRAITS = MethodTraits(payload="labels", query_verifiable=True, needs_data=True)
    config: ZhangContentConfig

    def watermark_images(self, shape: Sequence[int], data: Dataset | None, target: int, root: KeyRoot) -> Tensor:
        cfg = self.config
        return stamp_text(self.source_images(data, target, root), cfg.text, cfg.text_height, cfg.strength)


@register_method
class ZhangNoise(Zhang):
    """WM_noise: one fixed Gaussian pattern added to training images of other classes, labelled the target."""

    name = "zhang-noise"
    config_cls = ZhangNoiseConfig
    TRAITS = MethodTraits(payload="labels", query_verifiable=True, needs_data=True)
    config: ZhangNoiseConfig

    def watermark_images(self, shape: Sequence[int], data: Dataset | None, target: int, root: KeyRoot) -> Tensor:
        x = self.source_images(data, target, root)
        noise = draw(root, 4).randn(*x.shape[1:]) * self.config.noise_std
        return (x + noise).clamp(0, 1)


@register_method
class ZhangUnrelated(Zhang):
    """WM_unrelated: procedurally drawn glyphs (no class of the task), labelled the target class."""

    name = "zhang-unrelated"
    config_cls = ZhangUnrelatedConfig
    config: ZhangUnrelatedConfig

    def watermark_images(self, shape: Sequence[int], data: Dataset | None, target: int, root: KeyRoot) -> Tensor:
        return glyph_images(self.config.size, shape, root, 3)
