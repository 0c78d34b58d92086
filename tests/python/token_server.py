"""A Streamable HTTP server of the official Python MCP SDK that wants a
bearer token: a request without `Authorization: Bearer $TOKEN` gets 401.
Each request's method and MCP headers are appended to RECORD as a JSON
line (never the token). Its events are stored, so that its `interrupted`
tool can close the answer's stream midway and the client resume it with
`Last-Event-ID` (2025-11-25's polling). Its `deploy` tool marks two
parameters with `x-mcp-header`: the SDK refuses a 2026-07-28 call of it
whose `Mcp-Param-*` headers do not match the arguments. /moved redirects
(307) to /mcp, /away to /mcp under another origin.

usage: TOKEN=... token_server.py PORT RECORD
"""

import json
import os
import sys

from typing import Annotated

import anyio
import uvicorn
from pydantic import Field
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.streamable_http import EventMessage, EventStore

server = MCPServer("token-server")


class Events(EventStore):
    """Every event kept in memory, in order."""

    def __init__(self):
        self.events = []

    async def store_event(self, stream_id, message):
        event_id = str(len(self.events) + 1)
        self.events.append((event_id, stream_id, message))
        return event_id

    async def replay_events_after(self, last_event_id, send_callback):
        stream = next((s for e, s, _ in self.events if e == last_event_id), None)
        if stream is None:
            return None
        after = False
        for event_id, stream_id, message in self.events:
            if after and stream_id == stream and message is not None:
                await send_callback(EventMessage(message, event_id))
            after = after or event_id == last_event_id
        return stream


@server.tool()
async def interrupted(ctx: Context) -> str:
    """Closes its answer's stream before it answers."""
    await ctx.info("about to close the stream")
    await ctx.close_sse_stream()
    await anyio.sleep(0.5)
    return "answered after the stream was closed"


@server.tool()
def whoami() -> str:
    """Says that the caller holds the token."""
    return "you hold the token"


@server.tool()
def reverse(text: str) -> str:
    """Reverses a text."""
    return text[::-1]


@server.tool()
def deploy(
    region: Annotated[str, Field(json_schema_extra={"x-mcp-header": "Region"})],
    replicas: Annotated[int, Field(json_schema_extra={"x-mcp-header": "Replicas"})] = 1,
) -> str:
    """Deploys; routed on its region and replicas."""
    return f"deployed to {region} x{replicas}"


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
        if scope["type"] == "http" and scope["path"] in ("/moved", "/away"):
            # /moved: the endpoint moved on this origin; /away: to another
            # origin (the same port under another host name).
            port = scope["server"][1]
            host = "127.0.0.1" if scope["path"] == "/moved" else "localhost"
            await send({
                "type": "http.response.start",
                "status": 307,
                "headers": [(b"location", f"http://{host}:{port}/mcp".encode())],
            })
            await send({"type": "http.response.body", "body": b""})
            return
        if scope["type"] == "http":
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
            authorized = headers.get("authorization") == self.expected
            seen = {
                "method": scope["method"],
                "authorized": authorized,
                **{k: headers.get(k) for k in ("mcp-method", "mcp-name", "mcp-protocol-version", "last-event-id")},
                "params": {k: v for k, v in headers.items() if k.startswith("mcp-param-")},
                "session": "mcp-session-id" in headers,
                # The client's port: one per connection.
                "port": (scope.get("client") or [None, None])[1],
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
    app = Guard(server.streamable_http_app(event_store=Events(), retry_interval=100), os.environ["TOKEN"], record)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
