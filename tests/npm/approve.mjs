// A client with the official TypeScript SDK that declares no elicitation
// (as Claude Desktop and most clients do), calling one tool twice: once,
// then again after a line on stdin. Prints each result as a JSON line:
// {"isError", "decision", "approvalId", "text"}.
// Usage: node approve.mjs TOOL ARGUMENTS_JSON COMMAND [ARG...]
import { createInterface } from "node:readline";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";

const [tool, args, command, ...rest] = process.argv.slice(2);
// The whole environment: the SDK passes only a few variables by default,
// and the test keeps toolwarden's state in a directory of its own.
const transport = new StdioClientTransport({ command, args: rest, env: process.env, stderr: "inherit" });
const client = new Client({ name: "toolwarden-tests", version: "1" });
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();

async function call() {
  const result = await client.callTool({ name: tool, arguments: JSON.parse(args) });
  const decision = result._meta?.["toolwarden/decision"] ?? {};
  console.log(JSON.stringify({
    isError: result.isError ?? false,
    decision: decision.decision ?? null,
    approvalId: decision.approval_id ?? null,
    text: result.content.map((c) => c.text ?? "").join(" "),
  }));
}

await client.connect(transport);
await call();
await lines.next();
await call();
await client.close();
process.exit(0);
