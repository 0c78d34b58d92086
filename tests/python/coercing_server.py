"""A server built on the official Python SDK that writes down the
arguments its tools run with, after the SDK's own coercion: `"true"` and
`1` become `True`, and a JSON string where a model belongs is parsed into
it. toolwarden's conditions must not be weaker than that reading.

Usage: RECORD=FILE coercing_server.py
"""

import json
import os

from pydantic import BaseModel

from mcp.server.mcpserver import MCPServer

server = MCPServer("coercing")


class Gpu(BaseModel):
    count: int


class Body(BaseModel):
    gpu: Gpu


def record(tool, arguments):
    with open(os.environ["RECORD"], "a") as f:
        f.write(json.dumps({"tool": tool, "arguments": arguments}) + "\n")


@server.tool()
def deploy(force: bool = False) -> str:
    record("deploy", {"force": force})
    return f"deployed, force={force}"


@server.tool()
def create_pod(body: Body) -> str:
    record("create_pod", body.model_dump())
    return f"created a pod with {body.gpu.count} GPUs"


@server.tool()
def set_region(region: str) -> str:
    record("set_region", {"region": region})
    return f"region {region}"


if __name__ == "__main__":
    server.run()
