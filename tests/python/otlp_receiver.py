"""A real OTLP/HTTP receiver for tests/it/telemetry.rs: decodes what
arrives with the reference protobuf classes (opentelemetry-proto) and
writes one JSON line per export to OUT: {"signal", "body", "raw"}.

Usage: otlp_receiver.py OUT [--status CODE] [--delay SECONDS]
Prints the loopback port it listens on, then serves until killed."""

import json
import sys
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
SIGNALS = {
    "/v1/traces": ("traces", ExportTraceServiceRequest, ExportTraceServiceResponse),
    "/v1/metrics": ("metrics", ExportMetricsServiceRequest, ExportMetricsServiceResponse),
}


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
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


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
