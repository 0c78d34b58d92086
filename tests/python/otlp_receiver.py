"""A real OTLP/HTTP receiver for tests/it/telemetry.rs: decodes what
arrives with the reference protobuf classes (opentelemetry-proto) and
writes one JSON line per export to OUT: {"signal", "headers", "body", "raw"}.

Usage: otlp_receiver.py OUT [--status CODE] [--delay SECONDS] [--hold] [--tls DIR]
Prints the loopback port it listens on, then serves until killed.

--hold: every request is read, "held" printed, and no answer given until
a line (or the end) arrives on stdin; then it is answered as usual.
--tls DIR: serves https with a certificate for localhost and 127.0.0.1
signed by a CA made on the spot, whose certificate it writes to DIR/ca.pem."""

import datetime
import ipaddress
import json
import os
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

OUT = sys.argv[1]
STATUS = int(sys.argv[sys.argv.index("--status") + 1]) if "--status" in sys.argv else 200
DELAY = float(sys.argv[sys.argv.index("--delay") + 1]) if "--delay" in sys.argv else 0.0
TLS = sys.argv[sys.argv.index("--tls") + 1] if "--tls" in sys.argv else None
RELEASED = threading.Event()
if "--hold" not in sys.argv:
    RELEASED.set()
SIGNALS = {
    "/v1/traces": ("traces", ExportTraceServiceRequest, ExportTraceServiceResponse),
    "/v1/metrics": ("metrics", ExportMetricsServiceRequest, ExportMetricsServiceResponse),
}


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if not RELEASED.is_set():
            print("held", flush=True)
            RELEASED.wait()
        time.sleep(DELAY)
        signal, request, response = SIGNALS.get(self.path, (None, None, None))
        if signal is None or self.headers["Content-Type"] != "application/x-protobuf":
            self.send_response(404)
            self.end_headers()
            return
        decoded = request()
        decoded.ParseFromString(body)
        line = {
            "signal": signal,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": MessageToDict(decoded),
            "raw": body.hex(),
        }
        with open(OUT, "a") as out:
            out.write(json.dumps(line) + "\n")
        answer = response().SerializeToString()
        self.send_response(STATUS)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


def certificates(directory):
    """A CA's certificate in DIR/ca.pem; a server key and certificate
    signed by it in DIR/server.pem, for localhost and 127.0.0.1."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def name(cn):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def signed(subject, key, issuer, issuer_key, extensions):
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2))
        )
        for extension, critical in extensions:
            builder = builder.add_extension(extension, critical=critical)
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = signed(
        name("toolwarden test CA"),
        ca_key,
        name("toolwarden test CA"),
        ca_key,
        [(x509.BasicConstraints(ca=True, path_length=0), True)],
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = signed(
        name("localhost"),
        key,
        ca.subject,
        ca_key,
        [
            (x509.BasicConstraints(ca=False, path_length=None), True),
            (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False),
            (
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                False,
            ),
        ],
    )
    pem = serialization.Encoding.PEM
    with open(os.path.join(directory, "ca.pem"), "wb") as out:
        out.write(ca.public_bytes(pem))
    server = os.path.join(directory, "server.pem")
    with open(server, "wb") as out:
        out.write(
            key.private_bytes(
                pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        out.write(leaf.public_bytes(pem))
    return server


def release():
    sys.stdin.readline()
    RELEASED.set()


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
if TLS is not None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificates(TLS))
    server.socket = context.wrap_socket(server.socket, server_side=True)
threading.Thread(target=release, daemon=True).start()
print(server.server_address[1], flush=True)
server.serve_forever()
