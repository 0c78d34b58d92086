"""A Streamable HTTP server of the official Python MCP SDK that wants a
bearer token: a request without `Authorization: Bearer $TOKEN` gets 401.
Each request's method and MCP headers are appended to RECORD as a JSON
line (never the token).

usage: TOKEN=... token_server.py PORT RECORD
"""

import json
import os
import sys

import uvicorn
from mcp.server.mcpserver import MCPServer

server = MCPServer("token-server")


@server.tool()
def whoami() -> str:
    """Says that the caller holds the token."""
    return "you hold the token"


@server.tool()
def reverse(text: str) -> str:
    """Reverses a text."""
    return text[::-1]


@server.tool(name="grüß")
def greet() -> str:
    """A tool whose name is not plain ASCII."""
    return "grüß dich"


class Guard:
    """Lets through only requests with the token; records each one."""

    def __init__(self, app, token, record):
        self.app = app
        self.expected = f"Bearer {token}"
        self.record = record

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
            authorized = headers.get("authorization") == self.expected
            seen = {
                "method": scope["method"],
                "authorized": authorized,
                **{k: headers.get(k) for k in ("mcp-method", "mcp-name", "mcp-protocol-version", "mcp-session-id")},
            }
            self.record.write(json.dumps(seen) + "\n")
            self.record.flush()
            if not authorized:
                await send({
                    "type": "http.response.start",
                    "status": 401,
                    "headers": [(b"www-authenticate", b'Bearer realm="token-server"'), (b"content-type", b"text/plain")],
                })
                await send({"type": "http.response.body", "body": b"unauthorized"})
                return
        await self.app(scope, receive, send)


if __name__ == "__main__":
    port, record = int(sys.argv[1]), open(sys.argv[2], "a", encoding="utf-8")
    app = Guard(server.streamable_http_app(), os.environ["TOKEN"], record)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
