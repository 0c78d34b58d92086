//! toolwarden stands between an MCP client and an MCP server (a child on
//! stdio, or a remote one at a URL) and applies a policy to every
//! `tools/call` before it reaches the server.
//!
//! The map:
//! - [`cli`]: the command line (clap types, no IO).
//! - [`policy`]: the policy file, compiled once; [`policy::Policy::check`]
//!   is the decision, a pure function of the call and the clock.
//! - [`json`](wire::json): one-pass JSON validation that hands out top-level members
//!   as slices of the line.
//! - [`jsonrpc`](wire::jsonrpc): strict parsing of one line into a borrowed envelope, and
//!   the replies toolwarden writes itself.
//! - [`framing`](wire::framing): the bounded line reader and the flushing line writer.
//! - [`relay`](session::relay): the two pumps (client to server, server to client) and the
//!   session state they share: requests in flight each way.
//! - [`upstream`]: the server as two byte streams and an end: a child
//!   (spawned, stopped in order, exit codes) or a remote server
//!   (Streamable HTTP or HTTP+SSE behind the same streams).
//! - [`tools_list`](session::tools_list): hidden tools taken out of tools/list responses.
//! - [`approval`](session::approval): the prompt that asks a person about one call, and the
//!   answer.
//! - [`audit`]: the audit log and its writer task; [`redact`]: keeping
//!   secrets out of it.
//! - [`blocking`](session::blocking): the pumps' IO, blocking calls on threads of their own.
//! - [`pin`](commands::pin): pinned tool definitions, checked on every `tools/list`.
//! - [`wrap`](commands::wrap): `toolwarden wrap`/`unwrap`, an MCP client's config file
//!   edited to run its servers through toolwarden.
//! - [`reload`](session::reload): the policy file watched, and replaced between two calls.
//! - [`run`](session::run): ties them together for one session, from the
//!   policy's load ([`serve`](session::run::serve)) to the exit code;
//!   [`startup`](session::startup): a start that fails, said on stderr and
//!   to the client's `initialize`.
//! - [`commands`]: every subcommand but a session, each a module whose
//!   `run` returns its report and exit code to `main`; among them
//!   [`state`](commands::state) (`state show|reset`) and
//!   [`audit`](commands::audit) (`audit verify`).
//! - [`check`](commands::check): `toolwarden check`, a policy described without relaying.
//! - [`import`](commands::import): `toolwarden import`, an Intercept YAML policy converted.
//! - [`init`](commands::init): `toolwarden init`, a first policy written from a server's
//!   tools.
//! - [`plural`]: counts in what people read ("1 bucket", "2 buckets").
//! - [`cases`](commands::cases): `toolwarden test`, a policy's written-down calls and the
//!   decisions they should get.
//! - [`report`](commands::report): `toolwarden report`, audit logs summed up per tool, as
//!   a table, JSON or a page with charts.
//! - [`notify`](session::notify): the desktop notification for a call that waits in the
//!   inbox (not the `notify` crate, which watches the policy file).

pub mod audit;
pub mod cli;
pub mod commands;
pub mod html;
pub mod inbox;
pub mod plural;
pub mod policy;
pub mod redact;
pub mod session;
pub mod state;
pub mod telemetry;
pub mod upstream;
pub mod wire;
