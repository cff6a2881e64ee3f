"""RFC 3161 timestamps on claims: a third party's signed statement of *when* (issue 20, item 4).

A claim's signature says who; a timestamp token from a Time-Stamping Authority (TSA) says the signed claim existed at
the token's time. :func:`request_token` sends the claim's signed bytes (``claim.body()`` and its signature) to a
TSA over HTTP (``application/timestamp-query``) and returns the token (DER, a ``.tsr`` file); :func:`token_time`
verifies a token against the claim and the TSA's root certificate(s) and returns its time. Parsing and verification
are the ``rfc3161-client`` library's (``pip install 'netmark[timestamp]'``); nothing here is hand-written
cryptography.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from datetime import datetime
from typing import Any

from cryptography import x509

from netmark._util import read_bounded
from netmark.claims import Claim
from netmark.errors import NetmarkError

#: a timestamp token or a certificate file is a few kB
MAX_FILE_BYTES = 1024 * 1024


class TimestampError(NetmarkError):
    """No timestamp library, an unreachable or refusing TSA, a damaged token, or a token that does not verify."""


def _lib() -> Any:
    try:
        import rfc3161_client
    except ImportError:
        raise TimestampError("RFC 3161 timestamps need the rfc3161-client library: pip install "
                             "'netmark[timestamp]'") from None
    return rfc3161_client


def signed_bytes(claim: Claim) -> bytes:
    """What a token timestamps: the claim's signed body followed by its signature."""
    return claim.body() + bytes.fromhex(claim.signature)


def request_token(claim: Claim, url: str, *, timeout: float = 30.0) -> bytes:
    """A token for ``claim`` from the TSA at ``url`` (DER bytes), checked to be granted and to cover the claim."""
    lib = _lib()
    builder = lib.TimestampRequestBuilder().data(signed_bytes(claim)).hash_algorithm(lib.HashAlgorithm.SHA256)
    req = builder.nonce(nonce=True).cert_request(cert_request=True).build()
    http = urllib.request.Request(url, data=req.as_bytes(), method="POST",
                                  headers={"Content-Type": "application/timestamp-query"})
    try:
        with urllib.request.urlopen(http, timeout=timeout) as r:
            body = r.read(MAX_FILE_BYTES + 1)
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise TimestampError(f"the TSA at {url} did not answer: {getattr(e, 'reason', None) or e}") from None
    if len(body) > MAX_FILE_BYTES:
        raise TimestampError(f"the TSA at {url} answered more than {MAX_FILE_BYTES} bytes: not a timestamp")
    try:
        resp = lib.decode_timestamp_response(body)
    except Exception:  # the library raises its own parse errors
        raise TimestampError(f"the TSA at {url} did not answer with a timestamp response") from None
    if int(resp.status) not in (0, 1):  # RFC 3161: granted, or granted with modifications
        raise TimestampError(f"the TSA at {url} refused: {resp.status_string or f'status {resp.status}'}")
    if resp.tst_info.nonce != req.nonce:
        raise TimestampError("the TSA's token answers another request (nonce mismatch)")
    return bytes(body)


def read_file(path: str | os.PathLike[str], what: str) -> bytes:
    return read_bounded(path, MAX_FILE_BYTES, what, TimestampError)


def read_token(path: str | os.PathLike[str]) -> bytes:
    """A token file's bytes, refused (:class:`TimestampError`) unless it parses as a timestamp response: bad input,
    as opposed to a token that parses but does not verify for a claim."""
    data = read_file(path, "timestamp token")
    try:
        _lib().decode_timestamp_response(data)
    except TimestampError:
        raise
    except Exception:
        raise TimestampError(f"{path}: not a timestamp token (damaged file?)") from None
    return data


def load_roots(path: str | os.PathLike[str]) -> list[x509.Certificate]:
    """The TSA root certificate(s) in a PEM file."""
    try:
        roots = x509.load_pem_x509_certificates(read_file(path, "certificate file"))
    except ValueError:
        raise TimestampError(f"{path}: not a PEM certificate file") from None
    return roots


def token_time(token: bytes, claim: Claim, roots: list[x509.Certificate]) -> datetime:
    """The time ``token`` states for ``claim``, after verifying it (signature chain to ``roots``, the claim's
    imprint): :class:`TimestampError` when it does not verify."""
    lib = _lib()
    try:
        resp = lib.decode_timestamp_response(token)
    except Exception:
        raise TimestampError("not a timestamp token (damaged file?)") from None
    builder = lib.VerifierBuilder()
    for r in roots:
        builder = builder.add_root_certificate(r)
    try:
        builder.build().verify_message(resp, signed_bytes(claim))
    except lib.VerificationError as e:
        raise TimestampError(f"the timestamp does not verify for this claim: {e}") from None
    return resp.tst_info.gen_time
