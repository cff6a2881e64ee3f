"""Verification from weights alone (:meth:`netmark.methods.base.WatermarkMethod.verify_weights`): the key's host
tensors read from any file by name (:mod:`netmark.weights`), and, when a deployment renamed the host tensor, a
search over the file's tensors of its shape with an honest correction.

Renamed hosts. Exporters rename weights: the TorchScript ONNX exporter stores a ``Linear`` weight of a Hugging Face
model as an anonymous ``MatMul`` constant (``onnx::MatMul_123``), transposed. For a key with one host tensor whose
name the file lacks, every tensor of the file with the host's shape (or, for a matrix, its transpose) is read as the
host in turn, and the best p-value is multiplied by the number ``k`` of readings tried (Bonferroni: the probability
that any of ``k`` readings of an independent model reaches ``p`` is at most ``k·p``), so the search cannot make an
unmarked file look marked. The details name the tensor that matched and ``k``.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import torch

from netmark.errors import ArchitectureError, ModelFileError
from netmark.keys import WatermarkKey
from netmark.verify import VerificationResult

if TYPE_CHECKING:
    from netmark.methods.base import WatermarkMethod
    from netmark.weights import WeightFile


def _oriented(t: torch.Tensor, spec: Any) -> torch.Tensor:
    """A file tensor in the shell's layout (a Conv1D's ``(in, out)`` weight transposed)."""
    return t.t() if isinstance(spec, dict) and spec.get("transposed") else t


def verify_file(method: WatermarkMethod, file: WeightFile, key: WatermarkKey, *, alpha: float) -> VerificationResult:
    """``key`` verified on ``file``'s tensors (module docstring)."""
    from netmark.methods.alignment import without_reference
    from netmark.weights import weight_shell

    plain = without_reference(key)
    wanted = method.host_names(key)
    try:
        tensors = {n: _oriented(t, wanted.get(n)) for n, t in file.tensors(wanted).items()}
    except ArchitectureError as missing:
        if "has no tensor" not in str(missing) or len(wanted) != 1:
            raise
        return _search(method, file, plain, wanted, alpha, missing)
    res = method.verify(weight_shell(tensors), plain, alpha=alpha)
    return replace(res, details={**res.details, "read": "weights only (no architecture)"})


def _search(method: WatermarkMethod, file: WeightFile, key: WatermarkKey, wanted: dict[str, Any], alpha: float,
            missing: ArchitectureError) -> VerificationResult:
    from netmark.weights import weight_shell

    ((name, spec),) = wanted.items()
    shape = list(spec["shape"]) if isinstance(spec, dict) else None
    if shape is None:
        raise missing
    readings: list[tuple[str, bool]] = []  # (file tensor, transposed)
    for other in file.names():  # shapes from the header: only the candidates are loaded
        size = file.shape(other)
        if size == shape:
            readings.append((other, False))
        if len(size) == 2 and size == shape[::-1]:  # a square one is read both ways (both counted)
            readings.append((other, True))
    results = []
    for other, turned in readings:
        try:
            t = file.get(other)
        except ModelFileError:  # an integer or non-finite tensor stands in for no weight (still counted in k)
            continue
        t = t.t() if turned else t
        results.append((other, method.verify(weight_shell({name: _oriented(t, spec)}), key, alpha=alpha)))
    if not results:
        raise missing
    found, best = min(results, key=lambda r: r[1].p_value)
    k = len(readings)
    own = best.details.get("log10_p_value", math.log10(best.p_value) if best.p_value > 0 else -math.inf)
    lg = min(0.0, float(own) + math.log10(k))
    p = 0.0 if lg == -math.inf else 10.0**lg
    note = (f"weights only; {name} is not in the file by name: read as each of its {k} tensors of that shape, "
            f"best {found}, p-value x {k} (Bonferroni)")
    return replace(best, p_value=p, detected=p <= alpha,
                   details={**best.details, "log10_p_value": lg, "read": note, "renamed_as": found,
                            "readings": k})
