"""Netmark models on KServe's Python ``ModelServer`` (KServe v1 ``:predict`` and Open Inference Protocol v2).

Run ``python -m netmark.serve.kserve_server --model NAME=FILE[,labels] [--model ...] --http-port 8080`` (bound to
``--host``, 127.0.0.1 by default): each model
answers ``POST /v1/models/NAME:predict`` (``{"instances": [C×H×W lists]}`` → ``{"predictions": [...]}``) and ``POST
/v2/models/NAME/infer`` (one FP32 input ``(N, C, H, W)`` → the output ``output-0``), with its scores (logits, the
default) or, with ``,labels``, its labels. gRPC is off. With :data:`~netmark.serve.runtimes.TOKEN_ENV` set, a request
without its bearer token is answered 401. Needs ``kserve`` (``pip install 'netmark[serve]'``); do not import it in a
process that imports ``mlserver`` (their protobuf modules clash).
"""

from __future__ import annotations

import argparse
import sys
import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np

from netmark.errors import ConfigError
from netmark.serve.runtimes import OUTPUTS, answer, authorized, check_outputs, load_served_model


def parse_model_spec(spec: str) -> tuple[str, str, str]:
    """``NAME=FILE[,OUTPUTS]`` as ``(name, file, outputs)``."""
    name, sep, rest = spec.partition("=")
    path, _, outputs = rest.partition(",")
    if not sep or not name or not path:
        raise ConfigError(f"--model must be NAME=FILE[,{'|'.join(OUTPUTS)}], got {spec!r}")
    return name, path, check_outputs(outputs or "logits")


def make_model(name: str, path: str, outputs: str = "logits") -> Any:
    """A loaded ``kserve.Model`` named ``name`` serving the netmark model file ``path``."""
    import kserve
    from fastapi import HTTPException
    from kserve.errors import InvalidInput
    from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

    check_outputs(outputs)

    class NetmarkModel(kserve.Model):
        def load(self) -> bool:
            self.net = load_served_model(path)
            self.ready = True
            return True

        async def predict(self, payload: dict[str, Any] | InferRequest, headers: dict[str, str] | None = None,
                          response_headers: dict[str, str] | None = None) -> dict[str, Any] | InferResponse:
            if not authorized(headers):
                raise HTTPException(status_code=401, detail="missing or wrong bearer token")
            try:
                if isinstance(payload, InferRequest):
                    if len(payload.inputs) != 1:
                        raise InvalidInput(f"expected one input tensor, got {len(payload.inputs)}")
                    out = answer(self.net, payload.inputs[0].as_numpy(), outputs)
                    res = InferOutput(name="output-0", shape=list(out.shape),
                                      datatype="INT64" if out.dtype == np.int64 else "FP32")
                    res.set_data_from_numpy(out, binary_data=False)
                    return InferResponse(response_id=payload.id or str(uuid.uuid4()), model_name=self.name,
                                         infer_outputs=[res])
                if not isinstance(payload, dict) or not isinstance(payload.get("instances"), list):
                    raise InvalidInput("expected a JSON object with an \"instances\" list")
                out = answer(self.net, np.asarray(payload["instances"], dtype=np.float32), outputs)
            except (RuntimeError, ValueError, TypeError) as e:
                if isinstance(e, InvalidInput):
                    raise
                raise InvalidInput(f"the model does not take this input: {str(e).splitlines()[0][:200]}") from None
            return {"predictions": out.tolist()}

    model = NetmarkModel(name)
    model.load()
    return model


def main(argv: Sequence[str] | None = None) -> None:
    """Serve the ``--model`` files on ``127.0.0.1:--http-port`` until stopped (SIGTERM or Ctrl-C)."""
    p = argparse.ArgumentParser(prog="python -m netmark.serve.kserve_server", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", action="append", required=True, help="NAME=FILE[,logits|labels] (repeatable)")
    p.add_argument("--http-port", type=int, default=8080)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: this machine only)")
    args = p.parse_args(argv)
    try:
        specs = [parse_model_spec(s) for s in args.model]
    except ConfigError as e:
        p.error(str(e))
    sys.argv = sys.argv[:1]  # kserve parses the command line when imported
    import kserve
    from kserve.protocol.rest import server as rest

    models = [make_model(*s) for s in specs]
    init = rest.RESTServer.__init__

    def bind_host(self: Any, *a: Any, **kw: Any) -> None:  # kserve 0.16 binds 0.0.0.0 whatever it is told
        init(self, *a, **kw)
        self.config.host = args.host

    rest.RESTServer.__init__ = bind_host
    kserve.ModelServer(http_port=args.http_port, enable_grpc=False, workers=1).start(models)


if __name__ == "__main__":
    main()
