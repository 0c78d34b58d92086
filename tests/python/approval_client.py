"""Approval through the official Python MCP SDK's elicitation callback.

usage: approval_client.py MODE TOOLWARDEN POLICY MOCK_SERVER TOOLS_FILE RECORD_FILE

MODE is one of:
  accept      the person says yes: the call runs
  decline     the person says no: the call is refused
  none        the client has no elicitation callback, and toolwarden runs with
              --approval client: refused as unavailable
  concurrent  another call runs while the first waits for its answer

Prints one JSON object with what the client saw.
"""

import asyncio
import json
import sys

from mcp import ClientSession, StdioServerParameters, types
from mcp.client.stdio import stdio_client


def summary(result):
    return {
        "isError": result.is_error,
        "text": " ".join(c.text for c in result.content if getattr(c, "type", "") == "text"),
        "decision": ((result.meta or {}).get("toolwarden/decision") or {}).get("decision"),
    }


async def main(mode, toolwarden, policy, mock, tools, record):
    params = StdioServerParameters(
        command=toolwarden,
        args=["--policy", policy, "--log-level", "warn"]
        + (["--approval", "client"] if mode == "none" else [])
        + ["--", mock, "--tools", tools, "--record", record],
    )
    seen = {"prompts": [], "order": []}
    release = asyncio.Event()

    async def on_elicit(context, request):
        seen["prompts"].append(request.message)
        if mode == "concurrent":
            await release.wait()
        if mode == "decline":
            return types.ElicitResult(action="decline")
        return types.ElicitResult(action="accept", content={"approve": True})

    callback = None if mode == "none" else on_elicit
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write, elicitation_callback=callback) as session:
            await session.initialize()
            token = {"server_token": "srv_live_8f2a61c0"}
            if mode == "concurrent":
                held = asyncio.create_task(session.call_tool("retry_deploy", token))
                while not seen["prompts"]:
                    await asyncio.sleep(0.01)
                other = await session.call_tool("check_status", {"session_id": "s-1"})
                seen["order"].append("check_status")
                seen["other"] = summary(other)
                release.set()
                result = await held
                seen["order"].append("retry_deploy")
            else:
                result = await session.call_tool("retry_deploy", token)
            seen["result"] = summary(result)
    print(json.dumps(seen))


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:7]))
