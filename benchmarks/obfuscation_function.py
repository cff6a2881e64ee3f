"""Function preservation and cost of the obfuscation attacks (issue 21, item 1) at the registry's default sizes.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/obfuscation_function.py --seeds 0-2

For every registered architecture at its default arguments (freshly initialised; BatchNorm running statistics updated
by one training-mode batch and affine parameters perturbed, so that they matter; eval mode) and every seed, runs each
attack (default config, that seed; dummy-neurons in both modes) and prints: max |Δ logit| on 16 random inputs, the
largest |logit| and the ratio of the two (untrained ResNets have logits in the hundreds, so float rounding is larger
in absolute terms), top-1 agreement, the share of floating-point tensors changed and the attack's wall time. Untrained
models: the point is exactness, not accuracy.

"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from netmark._util import seeded
from netmark.attacks import ATTACKS
from netmark.models import MODELS, build

#: (label, attack, config changes): dummy units at the issue's k = 50 % of every widenable layer, both modes
ATTACK_RUNS = (("permute", "permute", {}), ("rescale", "rescale", {}), ("dummy-zero", "dummy-neurons", {}),
               ("dummy-split", "dummy-neurons", {"mode": "split"}))


def seeds(text: str) -> list[int]:
    lo, _, hi = text.partition("-")
    return list(range(int(lo), int(hi or lo) + 1))


def model_for(arch: str, seed: int) -> tuple[nn.Module, torch.Tensor]:
    with seeded(seed):
        model = build(arch)
        args = model.netmark_arch["args"]
        x = torch.randn(16, args["in_channels"], args["image_size"], args["image_size"])
        with torch.no_grad():  # BatchNorm statistics updated by one batch, affine parameters perturbed
            model.train()(torch.randn(32, *x.shape[1:]) + 0.5)
            for bn in (m for m in model.modules() if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d)):
                for p in bn.parameters():
                    p.add_(0.2 * torch.randn_like(p))
    return model.eval(), x


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0-2", help="seed range, e.g. 0-2")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"{'arch':<11} {'attack':<11} {'seed':>4} {'max|dlogit|':>12} {'max|logit|':>11} {'relative':>9} "
          f"{'agree':>6} {'changed':>8} {'ms':>6}")
    for arch in sorted(MODELS):
        for seed in seeds(args.seeds):
            model, x = model_for(arch, seed)
            with torch.no_grad():
                before = model(x)
                for name, attack, changes in ATTACK_RUNS:
                    cls = ATTACKS[attack]
                    start = time.perf_counter()
                    out = cls(cls.config_cls(seed=seed, **changes))(model)
                    ms = 1000 * (time.perf_counter() - start)
                    after = out(x)
                    a, b = model.state_dict(), out.state_dict()
                    floats = [k for k in a if a[k].is_floating_point()]
                    changed = sum(not torch.equal(a[k], b[k]) for k in floats) / len(floats)
                    agree = (after.argmax(1) == before.argmax(1)).float().mean().item()
                    delta, scale = (after - before).abs().max().item(), before.abs().max().item()
                    print(f"{arch:<11} {name:<11} {seed:>4} {delta:>12.2e} {scale:>11.3g} {delta / scale:>9.1e} "
                          f"{agree:>6.2f} {changed:>8.2f} {ms:>6.0f}")


if __name__ == "__main__":
    main()
