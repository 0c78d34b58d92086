//! `toolwarden approvals serve`: the inbox as a page in a browser, for a
//! person who would rather click than type ids.
//!
//! The page listens on loopback and answers only a request that carries
//! the token it printed and names an address of its own as `Host` (a name
//! another site points at this machine, DNS rebinding, never does); it
//! takes a decision only from its own forms (`Origin`). So neither a
//! process without the token nor a web page the person visits can read
//! the calls or decide one. A decision is `Inbox::decide` as
//! `toolwarden approvals approve|deny` takes it, by the same OS user.

mod http;

use std::convert::Infallible;
use std::io::Write;
use std::net::{IpAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use super::cli::ago;
use super::{approver, now_ms, Inbox, Pending};
use crate::cli::{ServeArgs, StoreArgs};
use crate::html::escape;
use crate::state::{self, Spec};
use http::{Request, Response, Unread};

/// Connections answered at once; more are closed unanswered (a browser
/// makes one a second).
const MAX_CONNECTIONS: usize = 32;

const TEMPLATE: &str = include_str!("page.html");

/// Runs the page until killed: exits only when it cannot start (2).
pub fn run(args: &ServeArgs) -> (String, u8) {
    match serve(args) {
        Ok(never) => match never {},
        Err(e) => {
            eprintln!("toolwarden: {e:#}");
            (String::new(), 2)
        }
    }
}

fn serve(args: &ServeArgs) -> anyhow::Result<Infallible> {
    let listen = args.listen;
    if !listen.ip().is_loopback() && !args.allow_remote {
        anyhow::bail!(
            "--listen {listen}: not a loopback address; the page has no TLS, so anyone \
             who can watch that network could read its token and decide calls \
             (add --allow-remote to serve it there anyway)"
        );
    }
    let (spec, inbox) = open(&args.store)?;
    let token = crate::audit::unguessable_id()
        .context("the system gives no randomness (/dev/urandom) for the page's token")?;
    let listener =
        TcpListener::bind(listen).with_context(|| format!("--listen {listen}: cannot listen"))?;
    let address = listener.local_addr()?;
    if !address.ip().is_loopback() {
        tracing::warn!(
            "the page is served on {address} without TLS: anyone who can watch the network \
             between it and your browser can read its token and decide calls"
        );
    }
    let page = Arc::new(Page {
        inbox,
        spec,
        token,
        port: address.port(),
        by: approver(),
    });
    say(&format!("http://{address}/?token={}", page.token));
    let live = Arc::new(AtomicUsize::new(0));
    loop {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors, most likely: let some close.
                tracing::warn!("cannot accept a connection: {e}");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        if live.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            live.fetch_sub(1, Ordering::SeqCst);
            continue;
        }
        let slot = Slot(live.clone());
        let page = page.clone();
        let _ = std::thread::Builder::new()
            .name("approval page".into())
            .spawn(move || {
                let _slot = slot;
                connection(stream, &page);
            });
    }
}

/// One connection's place among [`MAX_CONNECTIONS`], given back however
/// its thread ends.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The inbox, as `toolwarden approvals` opens it; a database not made
/// yet is made as a session would make it (0600), so that the page shows
/// the first call filed.
fn open(store: &StoreArgs) -> anyhow::Result<(Spec, Inbox)> {
    let spec = state::spec(store.state.as_deref())?.inbox();
    if let Spec::Sqlite(path) = &spec {
        if !path.exists() {
            state::State::open(spec.clone(), String::new(), String::new())?;
        }
    }
    match Inbox::open(&spec)? {
        Inbox::Unavailable(why) => anyhow::bail!("{spec}: {why}"),
        inbox => Ok((spec, inbox)),
    }
}

/// A line on stdout, at once: the page's address first, then each
/// decision taken.
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn connection(mut stream: TcpStream, page: &Page) {
    let response = match http::read(&mut stream) {
        Ok(request) => page.answer(&request),
        Err(Unread::TimedOut) => {
            Response::text(408, "toolwarden: the request did not come in time")
        }
        Err(Unread::TooLarge) => Response::text(
            413,
            &format!(
                "toolwarden: a request to this page is at most {} KiB",
                http::MAX_REQUEST_BYTES / 1024
            ),
        ),
        Err(Unread::Malformed(why)) => Response::text(400, &format!("toolwarden: {why}")),
    };
    let _ = http::write(&mut stream, &response);
}

struct Page {
    inbox: Inbox,
    spec: Spec,
    token: String,
    port: u16,
    /// Who decides: the OS user running the page.
    by: String,
}

impl Page {
    fn answer(&self, request: &Request) -> Response {
        let host = request.header("host").unwrap_or_default();
        if !self.is_own_host(host) {
            return Response::text(
                403,
                "toolwarden: this page answers only at the address it printed (the request's Host names another)",
            );
        }
        let query = http::form(&request.query);
        let field = |name: &str| {
            query
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        if !same(field("token").unwrap_or_default(), &self.token) {
            return Response::text(
                403,
                "toolwarden: this page needs the address `toolwarden approvals serve` printed, with its token",
            );
        }
        match (request.method.as_str(), request.path.as_str()) {
            ("GET", "/") => self.page(field("said")),
            ("GET", "/calls") => html(self.calls(), None),
            ("POST", "/decide") => self.decide(request, host),
            (_, "/" | "/calls" | "/decide") => Response::text(
                405,
                "toolwarden: this page takes GET, and POST from its forms",
            ),
            _ => Response::text(404, "toolwarden: this page has no such part"),
        }
    }

    /// Whether `host` (a request's `Host`) is an IP address or
    /// `localhost`, with the page's port: never a name that could be made
    /// to point here.
    fn is_own_host(&self, host: &str) -> bool {
        let (name, port) = match host.rsplit_once(':') {
            Some((name, port)) if !port.contains(']') => (name, port.parse::<u16>().ok()),
            _ => (host, Some(80)),
        };
        let name = name
            .strip_prefix('[')
            .and_then(|n| n.strip_suffix(']'))
            .unwrap_or(name);
        port == Some(self.port)
            && (name.eq_ignore_ascii_case("localhost") || name.parse::<IpAddr>().is_ok())
    }

    /// A form's decision. A browser's form says where it comes from
    /// (`Origin`): only the page's own is taken, so another site's page
    /// cannot post a decision here. A request with no Origin is not a
    /// browser's (curl), and carries the token.
    fn decide(&self, request: &Request, host: &str) -> Response {
        if let Some(origin) = request.header("origin") {
            if origin != format!("http://{host}") {
                tracing::warn!(origin = %crate::redact::loggable(origin), "a decision posted from another site's page was refused");
                return Response::text(
                    403,
                    "toolwarden: a decision is taken only from this page's own forms (the request came from another site)",
                );
            }
        }
        let body = String::from_utf8_lossy(&request.body);
        let fields = http::form(&body);
        let field = |name: &str| {
            fields
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        let (approve, Some(id)) = (field("answer"), field("id")) else {
            return Response::text(400, "toolwarden: a decision names the call's `id`");
        };
        let approve = match approve {
            Some("approve") => true,
            Some("deny") => false,
            _ => {
                return Response::text(
                    400,
                    "toolwarden: a decision is `answer=approve` or `answer=deny`",
                )
            }
        };
        let reason = field("reason").map(str::trim).filter(|r| !r.is_empty());
        let said = match self.inbox.decide(id, approve, &self.by, reason, now_ms()) {
            Ok(Ok(pending)) => {
                let line = decided(&pending, approve);
                say(&line);
                line
            }
            Ok(Err(refused)) => format!("{id}: {refused}"),
            Err(e) => format!("{}: {}", self.spec, e.0),
        };
        Response {
            status: 303,
            headers: vec![(
                "Location",
                format!("/?token={}&said={}", self.token, http::encode(&said)),
            )],
            body: Vec::new(),
        }
    }

    /// The whole page: what was just decided, if anything, and the calls.
    fn page(&self, said: Option<&str>) -> Response {
        let nonce = crate::audit::unguessable_id().unwrap_or_else(|| self.token.clone());
        let mut main = format!(
            "<header><h1>Calls waiting for approval</h1>\
             <p class=\"meta\">{} &middot; you decide as <b>{}</b></p></header>\n",
            escape(&self.spec.to_string()),
            escape(&self.by)
        );
        if let Some(said) = said {
            main.push_str(&format!(
                "<p class=\"said\" role=\"status\">{}</p>\n",
                escape(said)
            ));
        }
        main.push_str(&self.calls());
        let text = TEMPLATE
            .replace("{nonce}", &nonce)
            .replacen("{main}", &main, 1);
        html(text, Some(&nonce))
    }

    /// The list of calls waiting, oldest first, each with its forms: in
    /// the page, and alone for the page's script to refresh it.
    fn calls(&self) -> String {
        let now = now_ms();
        let list = match self.inbox.list(now, false) {
            Ok(list) => list,
            Err(e) => {
                return format!(
                    "<div id=\"calls\"><p id=\"none\" class=\"error\">The store does not answer: {}</p></div>\n",
                    escape(&e.0)
                )
            }
        };
        let mut out = String::from("<div id=\"calls\">\n");
        if list.is_empty() {
            out.push_str("<p id=\"none\">No calls are waiting for approval.</p>\n");
        }
        for pending in &list {
            out.push_str(&self.call(pending, now));
        }
        out.push_str("</div>\n");
        out
    }

    fn call(&self, pending: &Pending, now: u64) -> String {
        let id = escape(&pending.id);
        let arguments = serde_json::to_string_pretty(&pending.arguments).unwrap_or_default();
        let action = format!("/decide?token={}", self.token);
        format!(
            r#"<article id="call-{id}">
<h2><code>{tool}</code> <span class="id">{id}</span></h2>
<dl>
<dt>arguments</dt><dd><pre>{arguments}</pre></dd>
<dt>identity</dt><dd>{identity}</dd>
<dt>policy</dt><dd>{namespace}</dd>
<dt>server</dt><dd><code>{server}</code></dd>
</dl>
<p class="when">asked {asked} ago &middot; expires in {expires}</p>
<div class="actions">
<form method="post" action="{action}"><input type="hidden" name="id" value="{id}"><input type="hidden" name="answer" value="approve"><button class="approve">Approve</button></form>
<form method="post" action="{action}" class="deny"><input type="hidden" name="id" value="{id}"><input type="hidden" name="answer" value="deny"><input name="reason" placeholder="Reason (optional)" aria-label="Why it is denied"><button>Deny</button></form>
</div>
</article>
"#,
            tool = escape(&pending.tool),
            arguments = escape(&arguments),
            identity = escape(&pending.identity),
            namespace = escape(&pending.namespace),
            server = escape(&pending.server),
            asked = ago(now.saturating_sub(pending.requested_at)),
            expires = ago(pending.expires_at.saturating_sub(now)),
        )
    }
}

/// What `toolwarden approvals approve|deny` says of a decision taken.
fn decided(pending: &Pending, approve: bool) -> String {
    let done = if approve {
        "approved: the session holding it forwards it, or the agent's next try of the same call does"
    } else {
        "denied: the agent is told so"
    };
    format!("{} `{}`: {done}.", pending.id, pending.tool)
}

/// An HTML answer. Scripts and styles run only with the page's `nonce`;
/// nothing is loaded from anywhere, and only the page itself may be
/// fetched or posted to.
fn html(text: String, nonce: Option<&str>) -> Response {
    let inline = nonce
        .map(|n| format!("'nonce-{n}'"))
        .unwrap_or_else(|| "'none'".into());
    Response {
        status: 200,
        headers: vec![
            ("Content-Type", "text/html; charset=utf-8".into()),
            (
                "Content-Security-Policy",
                format!(
                    "default-src 'none'; script-src {inline}; style-src {inline}; img-src data:; \
                     connect-src 'self'; form-action 'self'; base-uri 'none'; \
                     frame-ancestors 'none'"
                ),
            ),
        ],
        body: text.into_bytes(),
    }
}

/// Whether a token given is the page's, in a time that does not depend
/// on where they differ.
fn same(given: &str, token: &str) -> bool {
    given.len() == token.len()
        && given
            .bytes()
            .zip(token.bytes())
            .fold(0, |diff, (a, b)| diff | (a ^ b))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_character_that_means_something_in_html_is_escaped() {
        assert_eq!(
            escape(r#"<script>alert("x")</script> & 'y' {nonce}"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39; {nonce}"
        );
    }

    #[test]
    fn tokens_match_only_whole() {
        let token = "0123456789abcdef0123456789abcdef";
        assert!(same(token, token));
        assert!(!same("0123456789abcdef0123456789abcdee", token));
        assert!(!same("0123456789abcdef", token));
        assert!(!same("", token));
    }

    #[test]
    fn only_an_address_of_its_own_is_taken_as_host() {
        let page = Page {
            inbox: Inbox::Unavailable(String::new()),
            spec: Spec::Memory,
            token: String::new(),
            port: 43121,
            by: String::new(),
        };
        for host in [
            "127.0.0.1:43121",
            "localhost:43121",
            "LOCALHOST:43121",
            "[::1]:43121",
            "192.168.1.4:43121",
        ] {
            assert!(page.is_own_host(host), "{host}");
        }
        for host in [
            "",
            "127.0.0.1",
            "127.0.0.1:80",
            "127.0.0.1:43122",
            "evil.example:43121",
            "localhost.evil.example:43121",
            "127.0.0.1.nip.io:43121",
            "[::1]",
            "127.0.0.1:43121:43121",
        ] {
            assert!(!page.is_own_host(host), "{host}");
        }
    }
}
