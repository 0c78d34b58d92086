// Connects to an MCP server with the official TypeScript SDK and says what
// the client sees: "CONNECTED <tool count>", or "ERROR <message>".
// Usage: [CONNECT_ENV='{"NAME":"value"}'] node connect.mjs COMMAND [ARG...]
// CONNECT_ENV is a config entry's `env`, given to the command on top of
// the SDK's default environment, as a client does.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import {
  StdioClientTransport,
  getDefaultEnvironment,
} from "@modelcontextprotocol/sdk/client/stdio.js";

const [command, ...args] = process.argv.slice(2);
const extra = process.env.CONNECT_ENV ? JSON.parse(process.env.CONNECT_ENV) : null;
const env = extra ? { ...getDefaultEnvironment(), ...extra } : undefined;
const transport = new StdioClientTransport({ command, args, env, stderr: "ignore" });
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
