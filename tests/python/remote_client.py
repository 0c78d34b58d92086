"""An agent's view of a remote server behind toolwarden, through the
official Python MCP SDK over stdio: toolwarden is the command, the server
a URL it reaches over HTTP. Prints what the SDK handed back as one JSON
object.

usage:
  remote_client.py everything -- TOOLWARDEN ARGS...
      server-everything: list, a call, a denied call, a limited tool twice,
      the server's own requests (sampling, elicitation, roots), progress
      and logging notifications.
  remote_client.py token -- TOOLWARDEN ARGS...
      the token server (tests/python/token_server.py), with the SDK's
      Client in mode auto: 2026-07-28 when the server speaks it.
"""

import asyncio
import json
import os
import sys

import mcp_types as types
from mcp import ClientSession, StdioServerParameters
from mcp.client.client import Client
from mcp.client.stdio import stdio_client


def text_of(result):
    return " ".join(c.text for c in result.content if getattr(c, "type", "") == "text")


def summary(result):
    return {
        "isError": result.is_error,
        "text": text_of(result),
        "decision": ((result.meta or {}).get("toolwarden/decision") or {}).get("decision"),
    }


async def everything(params):
    asked = []
    progress = []
    logged = []

    async def sampling(context, params):
        asked.append("sampling")
        return types.CreateMessageResult(
            role="assistant",
            content=types.TextContent(type="text", text="sampled answer"),
            model="test-model",
            stop_reason="endTurn",
        )

    async def elicitation(context, params):
        asked.append("elicitation")
        return types.ElicitResult(action="decline")

    async def roots(context):
        asked.append("roots")
        return types.ListRootsResult(roots=[types.Root(uri="file:///tmp/remote-root", name="remote-root")])

    async def logging(params):
        logged.append(params.level)

    async def on_progress(done, total, message):
        progress.append(done)

    async with stdio_client(params) as (read, write):
        async with ClientSession(
            read,
            write,
            sampling_callback=sampling,
            elicitation_callback=elicitation,
            list_roots_callback=roots,
            logging_callback=logging,
        ) as session:
            init = await session.initialize()
            listed = await session.list_tools()
            echo = await session.call_tool("echo", {"message": "hello over http"})
            denied = await session.call_tool("get-env", {})
            first_sum = await session.call_tool("get-sum", {"a": 1, "b": 2})
            second_sum = await session.call_tool("get-sum", {"a": 3, "b": 4})
            sampled = await session.call_tool("trigger-sampling-request", {"prompt": "say hi", "maxTokens": 20})
            elicited = await session.call_tool("trigger-elicitation-request", {})
            rooted = await session.call_tool("get-roots-list", {})
            await session.set_logging_level("debug")
            await session.call_tool("toggle-simulated-logging", {})
            long = await session.call_tool(
                "trigger-long-running-operation",
                {"duration": 1, "steps": 3},
                progress_callback=on_progress,
            )
            # The simulated log messages come every few seconds.
            for _ in range(100):
                if logged:
                    break
                await asyncio.sleep(0.1)
            return {
                "protocol": init.protocol_version,
                "tools": sorted(t.name for t in listed.tools),
                "echo": summary(echo),
                "denied": summary(denied),
                "first_sum": summary(first_sum),
                "second_sum": summary(second_sum),
                "sampled": summary(sampled),
                "elicited": summary(elicited),
                "rooted": summary(rooted),
                "long": summary(long),
                "asked": sorted(set(asked)),
                "progress": progress,
                "logged": bool(logged),
            }


async def token(params):
    async with Client(params) as client:
        # Called first, before any listing: toolwarden lists the tools
        # itself for the parameters this one mirrors into headers.
        deployed = await client.call_tool("deploy", {"region": "eu-wëst", "replicas": 3})
        whoami = await client.call_tool("whoami", {})
        reversed_ = await client.call_tool("reverse", {"text": "stressed"})
        unicode_name = await client.call_tool("grüß", {})
        return {
            "protocol": client.protocol_version,
            "whoami": summary(whoami),
            "reverse": summary(reversed_),
            "unicode": summary(unicode_name),
            "deploy": summary(deployed),
        }


async def main(mode, command):
    # The SDK passes on only a few variables by default: toolwarden reads
    # its headers' from the environment.
    params = StdioServerParameters(command=command[0], args=command[1:], env=dict(os.environ))
    result = await {"everything": everything, "token": token}[mode](params)
    print(json.dumps(result))


if __name__ == "__main__":
    at = sys.argv.index("--")
    asyncio.run(main(sys.argv[1], sys.argv[at + 1 :]))
