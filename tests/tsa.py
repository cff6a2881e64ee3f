"""A local RFC 3161 Time-Stamping Authority for tests: ``openssl ts -reply`` behind an HTTP server on 127.0.0.1.

:func:`local_tsa` makes a root CA and a TSA certificate (extended key usage timeStamping, critical) with the
``cryptography`` library, writes an ``openssl ts`` configuration, and serves ``POST /`` (a DER timestamp query) by
running ``openssl ts -reply`` on it. No network beyond the loopback.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CONFIG = """[ tsa ]
default_tsa = tsa_config1
[ tsa_config1 ]
dir = {dir}
serial = $dir/serial
signer_cert = $dir/tsa.pem
certs = $dir/tsa.pem
signer_key = $dir/tsa.key
signer_digest = sha256
default_policy = 1.2.3.4.1
digests = sha256
accuracy = secs:1
ordering = yes
tsa_name = yes
ess_cert_id_chain = no
ess_cert_id_alg = sha256
"""


@dataclass
class LocalTSA:
    url: str
    root_pem: Path


def _cert(subject: str, key: ec.EllipticCurvePrivateKey, issuer: str, issuer_key: ec.EllipticCurvePrivateKey,
          ca: bool) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    b = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
         .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)])).public_key(key.public_key())
         .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
         .not_valid_after(now + dt.timedelta(days=30))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        b = b.add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                          data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                          crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
    else:
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
        b = b.add_extension(x509.KeyUsage(digital_signature=True, content_commitment=True, key_encipherment=False,
                                          data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                          crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
    return b.sign(issuer_key, hashes.SHA256())


@contextmanager
def local_tsa() -> Iterator[LocalTSA]:
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        ca_key, tsa_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
        ca = _cert("netmark test root", ca_key, "netmark test root", ca_key, ca=True)
        tsa = _cert("netmark test tsa", tsa_key, "netmark test root", ca_key, ca=False)
        (root / "root.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        (root / "tsa.pem").write_bytes(tsa.public_bytes(serialization.Encoding.PEM))
        (root / "tsa.key").write_bytes(tsa_key.private_bytes(serialization.Encoding.PEM,
                                                             serialization.PrivateFormat.PKCS8,
                                                             serialization.NoEncryption()))
        (root / "serial").write_text("01\n")
        (root / "ts.cnf").write_text(CONFIG.format(dir=root))
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                query = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with lock, tempfile.TemporaryDirectory() as t:
                    (Path(t) / "q.tsq").write_bytes(query)
                    proc = subprocess.run(["openssl", "ts", "-reply", "-config", str(root / "ts.cnf"), "-queryfile",
                                           str(Path(t) / "q.tsq"), "-out", str(Path(t) / "r.tsr")],
                                          capture_output=True, timeout=30, check=False)
                    reply = (Path(t) / "r.tsr").read_bytes() if proc.returncode == 0 else b""
                self.send_response(200 if reply else 500)
                self.send_header("Content-Type", "application/timestamp-reply")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield LocalTSA(f"http://127.0.0.1:{server.server_address[1]}/", root / "root.pem")
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)
