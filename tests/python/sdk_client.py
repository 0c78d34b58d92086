"""An agent's view of toolwarden, through the official Python MCP SDK.

Starts toolwarden around the mock Fractera server with the shipped policy,
lists the tools, makes an allowed call, a refused call and a call with bad
arguments, and prints what the SDK handed back as one JSON object.

usage: sdk_client.py TOOLWARDEN POLICY MOCK_SERVER TOOLS_FILE
"""

import asyncio
import json
import sys

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client


def summary(result):
    return {
        "isError": result.is_error,
        "text": " ".join(c.text for c in result.content if getattr(c, "type", "") == "text"),
        "decision": ((result.meta or {}).get("toolwarden/decision") or {}).get("decision"),
    }


async def main(toolwarden, policy, mock, tools):
    params = StdioServerParameters(
        command=toolwarden,
        args=["--policy", policy, "--log-level", "warn", "--", mock, "--tools", tools],
    )
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            listed = await session.list_tools()
            allowed = await session.call_tool("retry_deploy", {"server_token": "srv_live_8f2a61c0"})
            refused = await session.call_tool("check_status", {"session_id": "s-1"})
            invalid = await session.call_tool("retry_deploy", {"server_token": 42})
            print(json.dumps({
                "tools": [t.name for t in listed.tools],
                "allowed": summary(allowed),
                "refused": summary(refused),
                "invalid": summary(invalid),
            }))


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
