// Connects to an MCP server with the official TypeScript SDK and says what
// the client sees: "CONNECTED <tool count>", or "ERROR <message>".
// Usage: node connect.mjs COMMAND [ARG...]
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";

const [command, ...args] = process.argv.slice(2);
const transport = new StdioClientTransport({ command, args, stderr: "ignore" });
const client = new Client({ name: "toolwarden-tests", version: "1" });
try {
  await client.connect(transport);
  const { tools } = await client.listTools();
  console.log(`CONNECTED ${tools.length}`);
  await client.close();
} catch (e) {
  console.log(`ERROR ${e.message}`);
}
process.exit(0);
