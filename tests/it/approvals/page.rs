//! `toolwarden approvals serve`: the page that decides held calls, over
//! raw HTTP (what it refuses) and in a real browser (Chromium, driven by
//! tests/python/approve_in_browser.py).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{calls_reached, session, waiting, TOKEN};
use crate::common::*;

/// `toolwarden approvals serve` on `home`'s store, and the address its
/// first line gives.
fn serve(home: &Path, options: &[&str]) -> (Session, Page) {
    let mut cmd = toolwarden();
    cmd.env("XDG_STATE_HOME", home)
        .args(["approvals", "serve"])
        .args(options);
    let mut server = Session::start(&mut cmd);
    let url = server.recv();
    let rest = url
        .strip_prefix("http://")
        .unwrap_or_else(|| panic!("not the page's address: {url}"));
    let (host, token) = rest.split_once("/?token=").unwrap();
    assert_eq!(token.len(), 32, "128 bits in hex: {url}");
    let page = Page {
        host: host.to_owned(),
        token: token.to_owned(),
        url,
    };
    (server, page)
}

struct Page {
    /// `127.0.0.1:PORT`.
    host: String,
    token: String,
    url: String,
}

struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Page {
    fn origin(&self) -> String {
        format!("http://{}", self.host)
    }

    /// One request as raw bytes, and the whole answer.
    fn send(&self, request: &[u8]) -> Answer {
        let mut stream = TcpStream::connect(&self.host).unwrap();
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        stream.write_all(request).unwrap();
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).unwrap();
        let answer = String::from_utf8(answer).unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
        let status = head.split(' ').nth(1).unwrap_or_default().parse().unwrap();
        Answer {
            status,
            head: head.to_owned(),
            body: body.to_owned(),
        }
    }

    fn get(&self, target: &str) -> Answer {
        self.send(format!("GET {target} HTTP/1.1\r\nHost: {}\r\n\r\n", self.host).as_bytes())
    }

    /// A form's POST to /decide (with `?token=...` in `query`), with
    /// header lines `extra`.
    fn post(&self, query: &str, extra: &str, body: &str) -> Answer {
        self.send(
            format!(
                "POST /decide{query} HTTP/1.1\r\nHost: {}\r\n{extra}\
                 Content-Type: application/x-www-form-urlencoded\r\n\
                 Content-Length: {}\r\n\r\n{body}",
                self.host,
                body.len()
            )
            .as_bytes(),
        )
    }
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// How the approval `id` stands, from `approvals list --all`.
fn status(home: &Path, id: &str) -> Value {
    let out = super::approvals(home, &["list", "--json", "--all"]);
    let list: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    list.into_iter()
        .find(|p| p["id"] == id)
        .unwrap_or_else(|| panic!("no approval {id}"))
}

#[test]
fn the_page_decides_held_calls_only_with_its_token_and_from_its_own_forms() {
    let dir = temp_dir("page-decide");
    let (home, record) = (state_home("page-decide"), dir.join("record"));
    let mut s = session(&home, &record, &[]);
    s.send(&call(1, "retry_deploy", TOKEN));
    let script = r#"{"server_token":"srv_live_8f2a61c0","note":"<script>alert(1)</script>"}"#;
    s.send(&call(2, "retry_deploy", script));
    let list = waiting(&home, 2);
    // The second call's arguments hold a note, the first's do not.
    let id = |noted: bool| {
        let pending = list
            .iter()
            .find(|p| p["arguments"].get("note").is_some() == noted)
            .unwrap();
        pending["id"].as_str().unwrap().to_owned()
    };
    let (first, second) = (id(false), id(true));
    let (mut server, page) = serve(&home, &[]);
    let (origin, token) = (page.origin(), page.token.clone());
    let approve = format!("id={first}&answer=approve");

    // Without the token, or with another, nothing is shown nor decided.
    for target in [
        "/".to_owned(),
        "/?token=".to_owned(),
        "/?token=0123456789abcdef0123456789abcdef".to_owned(),
        format!("/?token={}", &token[..31]),
        "/calls".to_owned(),
    ] {
        let answer = page.get(&target);
        assert_eq!(answer.status, 403, "{target}: {}", answer.body);
        assert!(answer.body.contains("token"), "{}", answer.body);
        assert!(!answer.body.contains("retry_deploy"), "{}", answer.body);
    }
    let refused = [
        // No token: with the page's Origin, and with none at all.
        page.post("", &format!("Origin: {origin}\r\n"), &approve),
        page.post("", "", &approve),
        page.post("?token=bad", &format!("Origin: {origin}\r\n"), &approve),
        // The token, posted by another site's page (or an opaque one).
        page.post(
            &format!("?token={token}"),
            "Origin: http://evil.example\r\n",
            &approve,
        ),
        page.post(&format!("?token={token}"), "Origin: null\r\n", &approve),
        page.post(
            &format!("?token={token}"),
            &format!("Origin: {origin}.evil.example\r\n"),
            &approve,
        ),
    ];
    for answer in refused {
        assert_eq!(answer.status, 403, "{}", answer.body);
    }
    // A name that points here from elsewhere (DNS rebinding) is not the
    // page's address, token or not.
    let port = page.host.rsplit_once(':').unwrap().1;
    let rebound = page.send(
        format!("GET /?token={token} HTTP/1.1\r\nHost: evil.example:{port}\r\n\r\n").as_bytes(),
    );
    assert_eq!(rebound.status, 403, "{}", rebound.body);
    assert!(!rebound.body.contains("retry_deploy"));
    assert_eq!(status(&home, &first)["status"], "pending");
    assert_eq!(calls_reached(&record), 0);

    // With the token: the calls, redacted and escaped, under a strict CSP.
    let shown = page.get(&format!("/?token={token}"));
    assert_eq!(shown.status, 200, "{}", shown.body);
    for text in [
        "retry_deploy",
        first.as_str(),
        second.as_str(),
        "[redacted]",
    ] {
        assert!(shown.body.contains(text), "{text}: {}", shown.body);
    }
    assert!(!shown.body.contains("srv_live"), "{}", shown.body);
    assert!(shown.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(!shown.body.contains("<script>alert"), "{}", shown.body);
    let csp = shown.header("content-security-policy").unwrap();
    assert!(
        csp.starts_with("default-src 'none'; script-src 'nonce-"),
        "{csp}"
    );
    assert_eq!(shown.header("referrer-policy"), Some("same-origin"));
    assert!(page
        .get(&format!("/calls?token={token}"))
        .body
        .contains(&first));

    // Approved from the page's own form: forwarded, said on stdout.
    let answer = page.post(
        &format!("?token={token}"),
        &format!("Origin: {origin}\r\n"),
        &approve,
    );
    assert_eq!(answer.status, 303, "{}", answer.body);
    let location = answer.header("location").unwrap().to_owned();
    assert!(
        location.starts_with(&format!("/?token={token}&said=")),
        "{location}"
    );
    let forwarded = s.recv_json();
    assert_eq!(forwarded["id"], 1);
    assert_eq!(decision(&forwarded), None, "{forwarded}");
    assert_eq!(calls_reached(&record), 1);
    let said = server.recv();
    assert!(
        said.starts_with(&format!("{first} `retry_deploy`: approved")),
        "{said}"
    );
    assert!(page
        .get(&location)
        .body
        .contains("approved: the session holding it"));
    let approved = status(&home, &first);
    assert_eq!(approved["decided_by"], toolwarden::inbox::approver());
    // Twice: refused with what happened, nothing else changes.
    let again = page.post(
        &format!("?token={token}"),
        &format!("Origin: {origin}\r\n"),
        &approve,
    );
    let location = again.header("location").unwrap().to_owned();
    let body = page.get(&location).body;
    assert!(body.contains("already, by"), "{body}");
    let unknown = page.post(&format!("?token={token}"), "", "id=nosuchid&answer=approve");
    let body = page.get(unknown.header("location").unwrap()).body;
    assert!(body.contains("no approval has this id"), "{body}");

    // Denied with a reason, by a client that sends no Origin (curl).
    let answer = page.post(
        &format!("?token={token}"),
        "",
        &format!("id={second}&answer=deny&reason=not+during+the+freeze"),
    );
    assert_eq!(answer.status, 303, "{}", answer.body);
    let declined = s.recv_json();
    assert_eq!(declined["id"], 2);
    assert_eq!(decision(&declined).as_deref(), Some("approval_declined"));
    let text = declined["result"]["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("not during the freeze"), "{text}");
    assert!(server
        .recv()
        .starts_with(&format!("{second} `retry_deploy`: denied")));
    s.close_stdin();
    s.wait();
    assert_eq!(calls_reached(&record), 1);
}

#[test]
fn bad_requests_are_answered_and_the_page_goes_on() {
    let home = state_home("page-bounds");
    let (_server, page) = serve(&home, &[]);
    // One client that sends half a request and waits holds up nobody,
    // and is cut off after 10 s.
    let mut slow = TcpStream::connect(&page.host).unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: ").unwrap();
    let started = Instant::now();
    let too_long = format!("/?token={}&pad={}", page.token, "x".repeat(20 * 1024));
    assert_eq!(page.get(&too_long).status, 413);
    let body = "x".repeat(17 * 1024);
    let answer = page.post(&format!("?token={}", page.token), "", &body);
    assert_eq!(answer.status, 413, "{}", answer.body);
    assert_eq!(page.send(b"NONSENSE\r\n\r\n").status, 400);
    let twice = format!(
        "GET /?token={} HTTP/1.1\r\nHost: {}\r\nHost: evil.example\r\n\r\n",
        page.token, page.host
    );
    assert_eq!(page.send(twice.as_bytes()).status, 400);
    assert_eq!(page.get(&format!("/?token={}", page.token)).status, 200);
    let mut answer = String::new();
    slow.set_read_timeout(Some(PATIENCE)).unwrap();
    slow.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(9) && waited < Duration::from_secs(30),
        "{waited:?}"
    );
    assert_eq!(page.get(&format!("/?token={}", page.token)).status, 200);
}

#[test]
fn the_page_listens_elsewhere_than_loopback_only_when_told_to() {
    let home = state_home("page-remote");
    let out = toolwarden()
        .env("XDG_STATE_HOME", &home)
        .args(["approvals", "serve", "--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("not a loopback address") && stderr.contains("--allow-remote"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
    let (server, page) = serve(&home, &["--listen", "0.0.0.0:0", "--allow-remote"]);
    assert!(page.url.starts_with("http://0.0.0.0:"), "{}", page.url);
    let port = page.host.rsplit_once(':').unwrap().1;
    let local = Page {
        host: format!("127.0.0.1:{port}"),
        ..page
    };
    assert_eq!(local.get(&format!("/?token={}", local.token)).status, 200);
    assert!(
        server.stderr().contains("without TLS"),
        "{}",
        server.stderr()
    );
    let out = toolwarden()
        .args(["approvals", "serve", "--state", "memory"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--state memory"));
}

#[test]
fn a_person_approves_a_call_in_a_real_browser() {
    let python = root().join("tests/python/.venv/bin/python");
    for needed in [
        python.as_path(),
        Path::new("/usr/bin/chromium"),
        Path::new("/usr/bin/chromedriver"),
    ] {
        assert!(
            needed.exists(),
            "{} is missing: run tests/setup",
            needed.display()
        );
    }
    let dir = temp_dir("page-browser");
    let (home, record) = (state_home("page-browser"), dir.join("record"));
    let (_server, page) = serve(&home, &[]);
    let screenshot = dir.join("approval-page.png");
    let mut browser = Session::start(
        std::process::Command::new(python)
            .arg(root().join("tests/python/approve_in_browser.py"))
            .arg(&page.url)
            .arg(&screenshot),
    );
    assert_eq!(browser.recv(), "ready", "{}", browser.stderr());
    // Filed once the page is open: its script shows it without a reload.
    let mut s = session(&home, &record, &[]);
    s.send(&call(1, "retry_deploy", TOKEN));
    let seen = browser.recv_json();
    let shown = seen["shown"].as_str().unwrap();
    assert!(shown.contains("retry_deploy"), "{shown}");
    assert!(
        shown.contains("[redacted]") && !shown.contains("srv_live"),
        "{shown}"
    );
    assert_eq!(seen["kept"], "typed while the list refreshes", "{seen}");
    assert!(
        seen["said"].as_str().unwrap().contains("approved"),
        "{seen}"
    );
    assert_eq!(seen["errors"], serde_json::json!([]), "{seen}");
    let forwarded = s.recv_json();
    assert_eq!(decision(&forwarded), None, "{forwarded}");
    assert_eq!(calls_reached(&record), 1);
    assert!(std::fs::metadata(&screenshot).unwrap().len() > 10_000);
    assert_eq!(browser.wait().code(), Some(0), "{}", browser.stderr());
    s.close_stdin();
    s.wait();
}
