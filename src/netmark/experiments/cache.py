"""The run cache's old home, named by committed reports (``reports/wang``, ``reports/tartaglione``): it now lives in
:mod:`netmark.bench.cache`, shared by every study."""

from netmark.bench.cache import RunCache, attack_versions, fingerprint, method_part, tensor_digest

__all__ = ["RunCache", "attack_versions", "fingerprint", "method_part", "tensor_digest"]
