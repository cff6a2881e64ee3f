"""A netmark model on MLServer (Open Inference Protocol v2): the custom runtime :class:`NetmarkRuntime`.

``model-settings.json`` of a model folder served by ``mlserver start``::

    {"name": "suspect", "implementation": "netmark.serve.mlserver_runtime.NetmarkRuntime",
     "parameters": {"uri": "./model.safetensors", "extra": {"outputs": "logits"}}}

``extra`` may hold ``outputs`` (``logits``, the default, or ``labels``) and ``key`` (a key file whose architecture
rebuilds a plain ``.pt`` state dict). The one input (any name) is a float batch ``(N, C, H, W)``; the one output,
``output-0``, holds the answers. With :data:`~netmark.serve.runtimes.TOKEN_ENV` set, a request without its bearer
token is answered 401. Needs ``mlserver`` (``pip install 'netmark[serve]'``); do not import it in a process that
imports ``kserve`` (their protobuf modules clash).
"""

from __future__ import annotations

from typing import Any

from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.errors import MLServerError
from mlserver.types import InferenceRequest, InferenceResponse
from mlserver.utils import get_model_uri

from netmark.serve.runtimes import answer, authorized, check_outputs, load_served_model


class NetmarkRuntime(MLModel):
    """MLServer runtime answering a netmark model's scores or labels (see the module's documentation)."""

    async def load(self) -> bool:
        params = self.settings.parameters
        extra: dict[str, Any] = (params.extra if params is not None else None) or {}
        self._outputs = check_outputs(str(extra.get("outputs", "logits")))
        self._model = load_served_model(await get_model_uri(self.settings), extra.get("key"))
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        headers = payload.parameters.headers if payload.parameters is not None else None
        if not authorized(headers):
            raise MLServerError("missing or wrong bearer token", status_code=401)
        if len(payload.inputs) != 1:
            raise MLServerError(f"expected one input tensor, got {len(payload.inputs)}")
        try:
            out = answer(self._model, NumpyCodec.decode_input(payload.inputs[0]), self._outputs)
        except (RuntimeError, ValueError) as e:
            raise MLServerError(f"the model does not take this input: {str(e).splitlines()[0][:200]}") from None
        return InferenceResponse(model_name=self.name, model_version=self.version,
                                 outputs=[NumpyCodec.encode_output("output-0", out)])
