use super::*;

const MINUTE: u64 = 60_000;

fn db(name: &str) -> (Inbox, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("toolwarden-inbox-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("state.db");
    (Inbox::open(&Spec::Sqlite(path.clone())).unwrap(), path)
}

fn request(arguments: &str) -> Request {
    let raw = Raw::parse(arguments).unwrap();
    Request {
        key: call_key("runpod", "alice", "delete_pod", Some(raw)),
        tool: "delete_pod".into(),
        arguments: serde_json::from_str(arguments).unwrap(),
        identity: "alice".into(),
        namespace: "runpod".into(),
        server: "npx -y @runpod/mcp-server@4.0.0".into(),
    }
}

fn waiting(found: Found) -> Pending {
    match found {
        Found::Waiting(pending) => pending,
        other => panic!("expected a waiting approval, got {other:?}"),
    }
}

#[test]
fn a_call_is_filed_once_and_its_approval_redeemed_once() {
    let (inbox, _) = db("once");
    let call = request(r#"{"pod":"p1"}"#);
    let filed = waiting(inbox.ask(&call, 1000, MINUTE).unwrap());
    assert_eq!(filed.status, Status::Pending);
    assert_eq!(filed.expires_at, 1000 + MINUTE);
    // The same call again finds the same approval, not a second one.
    assert_eq!(
        waiting(inbox.ask(&call, 2000, MINUTE).unwrap()).id,
        filed.id
    );
    assert_eq!(inbox.list(2000, false).unwrap().len(), 1);

    let decided = inbox
        .decide(&filed.id, true, "bob", None, 3000)
        .unwrap()
        .unwrap();
    assert_eq!(decided.decided_by.as_deref(), Some("bob"));
    assert!(inbox.list(3000, false).unwrap().is_empty());
    // Another call (other arguments) is not covered by it.
    let other = waiting(
        inbox
            .ask(&request(r#"{"pod":"p2"}"#), 3500, MINUTE)
            .unwrap(),
    );
    assert_ne!(other.id, filed.id);
    // The call itself redeems it, once.
    match inbox.ask(&call, 4000, MINUTE).unwrap() {
        Found::Approved(pending) => assert_eq!(pending.id, filed.id),
        other => panic!("{other:?}"),
    }
    let again = waiting(inbox.ask(&call, 5000, MINUTE).unwrap());
    assert_ne!(again.id, filed.id, "a redeemed approval is not used twice");
    assert_eq!(inbox.check(&filed.id, 5000, true).unwrap(), Found::Gone);
}

#[test]
fn a_decision_is_taken_once_and_only_in_time() {
    let (inbox, _) = db("decide");
    let filed = waiting(inbox.ask(&request("{}"), 1000, MINUTE).unwrap());
    assert_eq!(
        inbox.decide("nosuchid", true, "bob", None, 2000).unwrap(),
        Err(Refused::NoSuchId)
    );
    inbox
        .decide(&filed.id, false, "bob", Some("not today"), 2000)
        .unwrap()
        .unwrap();
    assert_eq!(
        inbox.decide(&filed.id, true, "eve", None, 2500).unwrap(),
        Err(Refused::Decided(Status::Denied, Some("bob".into())))
    );
    match inbox.check(&filed.id, 3000, true).unwrap() {
        Found::Denied(pending) => assert_eq!(pending.reason.as_deref(), Some("not today")),
        other => panic!("{other:?}"),
    }
    let late = waiting(inbox.ask(&request(r#"{"x":1}"#), 1000, MINUTE).unwrap());
    assert_eq!(
        inbox
            .decide(&late.id, true, "bob", None, 1000 + MINUTE)
            .unwrap(),
        Err(Refused::Expired)
    );
    assert_eq!(
        inbox.check(&late.id, 1000 + MINUTE, true).unwrap(),
        Found::Gone
    );
}

#[test]
fn two_processes_redeem_one_approval_once() {
    let (first, path) = db("two");
    let second = Inbox::open(&Spec::Sqlite(path)).unwrap();
    let call = request("{}");
    let filed = waiting(first.ask(&call, 1000, MINUTE).unwrap());
    assert_eq!(
        waiting(second.ask(&call, 1100, MINUTE).unwrap()).id,
        filed.id
    );
    second
        .decide(&filed.id, true, "bob", None, 1200)
        .unwrap()
        .unwrap();
    // Looking does not redeem.
    assert!(matches!(
        first.check(&filed.id, 1250, false).unwrap(),
        Found::Approved(_)
    ));
    let one = first.check(&filed.id, 1300, true).unwrap();
    let other = second.check(&filed.id, 1300, true).unwrap();
    assert!(matches!(one, Found::Approved(_)), "{one:?}");
    assert_eq!(other, Found::Gone);
}

/// A Redis server of this test's, on a Unix socket, stopped when dropped.
struct RedisServer {
    child: std::process::Child,
    socket: std::path::PathBuf,
}

impl RedisServer {
    fn start(name: &str) -> RedisServer {
        let dir =
            std::env::temp_dir().join(format!("toolwarden-inbox-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("redis.sock");
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                "0",
                "--save",
                "",
                "--appendonly",
                "no",
                "--unixsocket",
            ])
            .arg(&socket)
            .arg("--dir")
            .arg(&dir)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server runs (tests/setup installs it)");
        let start = std::time::Instant::now();
        while !socket.exists() {
            assert!(start.elapsed().as_secs() < 10, "redis-server did not start");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        RedisServer { child, socket }
    }

    fn url(&self) -> String {
        format!("redis+unix://{}", self.socket.display())
    }

    fn connection(&self) -> ::redis::Connection {
        ::redis::Client::open(self.url())
            .unwrap()
            .get_connection()
            .unwrap()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An inbox in each store, with a way to write into its records as
/// someone outside toolwarden could.
enum Outside {
    Sqlite(std::path::PathBuf),
    Redis(RedisServer),
}

struct Store {
    inbox: Inbox,
    raw: Outside,
}

fn stores(name: &str) -> Vec<Store> {
    let (inbox, path) = db(name);
    let redis = RedisServer::start(&format!("{name}-redis"));
    vec![
        Store {
            inbox,
            raw: Outside::Sqlite(path),
        },
        Store {
            inbox: Inbox::open(&Spec::Redis(redis.url())).unwrap(),
            raw: Outside::Redis(redis),
        },
    ]
}

impl Store {
    fn name(&self) -> &'static str {
        match self.raw {
            Outside::Sqlite(_) => "sqlite",
            Outside::Redis(_) => "redis",
        }
    }

    /// Marks `id` approved and makes its record unreadable.
    fn spoil(&self, id: &str) {
        match &self.raw {
            Outside::Sqlite(path) => {
                rusqlite::Connection::open(path)
                    .unwrap()
                    .execute(
                        "UPDATE approvals SET status = 'approved', arguments = 'not json', \
                         requested_at = 'yesterday' WHERE id = ?1",
                        [id],
                    )
                    .unwrap();
            }
            Outside::Redis(server) => {
                let _: () = ::redis::cmd("HSET")
                    .arg(format!("toolwarden-approvals:id:{id}"))
                    .arg(&["status", "approved", "record", "{not json"])
                    .query(&mut server.connection())
                    .unwrap();
            }
        }
    }

    /// Writes records that are garbage from the start; their ids.
    fn garbage(&self) -> Vec<String> {
        match &self.raw {
            Outside::Sqlite(path) => {
                let raw = rusqlite::Connection::open(path).unwrap();
                raw.execute(
                    "INSERT INTO approvals VALUES ('junk0001', x'00ff', 'ns', 7, '{}', 'me', 'srv', 1, 99999999999999, 'pending', NULL, NULL)",
                    [],
                )
                .unwrap();
                raw.execute(
                    "INSERT INTO approvals VALUES ('junk0002', 'k', 'ns', 'tool', '{}', 'me', 'srv', 1, 'never', 'maybe', NULL, NULL)",
                    [],
                )
                .unwrap();
            }
            Outside::Redis(server) => {
                let mut link = server.connection();
                let _: () = ::redis::cmd("SET")
                    .arg("toolwarden-approvals:id:junk0001")
                    .arg("not a hash")
                    .query(&mut link)
                    .unwrap();
                let _: () = ::redis::cmd("HSET")
                    .arg("toolwarden-approvals:id:junk0002")
                    .arg(&["status", "pending", "expires_at", "never", "record", "{}"])
                    .query(&mut link)
                    .unwrap();
            }
        }
        vec!["junk0001".into(), "junk0002".into()]
    }

    /// The record as stored, read past toolwarden.
    fn stored(&self, id: &str) -> String {
        match &self.raw {
            Outside::Sqlite(path) => rusqlite::Connection::open(path)
                .unwrap()
                .query_row(
                    "SELECT quote(call_key) || quote(namespace) || quote(tool) || quote(arguments) \
                     || quote(requested_at) || quote(expires_at) || quote(status) \
                     || quote(decided_by) || quote(reason) FROM approvals WHERE id = ?1",
                    [id],
                    |r| r.get(0),
                )
                .unwrap(),
            Outside::Redis(server) => {
                let dump: Vec<u8> = ::redis::cmd("DUMP")
                    .arg(format!("toolwarden-approvals:id:{id}"))
                    .query(&mut server.connection())
                    .unwrap();
                format!("{dump:?}")
            }
        }
    }
}

#[test]
fn a_record_that_does_not_read_is_named_and_approves_nothing() {
    for store in stores("bad-row") {
        let (inbox, name) = (&store.inbox, store.name());
        let call = request("{}");
        let spoilt = waiting(inbox.ask(&call, 1000, MINUTE).unwrap());
        let good = waiting(
            inbox
                .ask(&request(r#"{"pod":"p2"}"#), 1000, MINUTE)
                .unwrap(),
        );
        store.spoil(&spoilt.id);
        let junk = store.garbage();
        // Listed: the good one, and the ids of those that do not read.
        let listing = inbox.listing(2000, false).unwrap();
        let listed: Vec<&str> = listing.calls.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(listed, [good.id.as_str()], "{name}");
        let mut unreadable = listing.unreadable.clone();
        unreadable.sort();
        let mut expected = vec![spoilt.id.clone()];
        expected.extend(junk.iter().cloned());
        expected.sort();
        assert_eq!(unreadable, expected, "{name}");
        assert_eq!(
            inbox.listing(2000, true).unwrap().unreadable.len(),
            3,
            "{name}"
        );
        // Never decided, and nothing changes for trying.
        for id in expected.iter() {
            let before = store.stored(id);
            for approve in [true, false] {
                assert_eq!(
                    inbox.decide(id, approve, "bob", Some("no"), 2000).unwrap(),
                    Err(Refused::Unreadable),
                    "{name} {id}"
                );
            }
            assert_eq!(store.stored(id), before, "{name} {id}");
        }
        // Never taken for an approval: the call is filed afresh.
        assert_eq!(
            inbox.check(&spoilt.id, 2000, true).unwrap(),
            Found::Gone,
            "{name}"
        );
        let fresh = waiting(inbox.ask(&call, 2000, MINUTE).unwrap());
        assert_ne!(fresh.id, spoilt.id, "{name}");
        let listed: Vec<String> = inbox
            .list(2000, false)
            .unwrap()
            .into_iter()
            .map(|p| p.id)
            .collect();
        assert_eq!(listed, [good.id.clone(), fresh.id.clone()], "{name}");
        // And that one works as any other.
        inbox
            .decide(&fresh.id, true, "bob", None, 2500)
            .unwrap()
            .unwrap();
        assert!(
            matches!(inbox.ask(&call, 3000, MINUTE).unwrap(), Found::Approved(_)),
            "{name}"
        );
    }
}

#[test]
fn a_second_decision_says_who_took_the_first_and_changes_nothing() {
    for store in stores("twice") {
        let (inbox, name) = (&store.inbox, store.name());
        let call = request("{}");
        let filed = waiting(inbox.ask(&call, 1000, MINUTE).unwrap());
        inbox
            .decide(&filed.id, true, "bob", None, 2000)
            .unwrap()
            .unwrap();
        for (approve, by) in [(true, "eve"), (false, "eve"), (true, "bob")] {
            let refused = inbox
                .decide(&filed.id, approve, by, Some("late"), 2500)
                .unwrap();
            assert_eq!(
                refused,
                Err(Refused::Decided(Status::Approved, Some("bob".into()))),
                "{name}"
            );
            assert_eq!(
                refused.unwrap_err().to_string(),
                "this call was approved already, by bob",
                "{name}"
            );
        }
        let row = inbox.list(2500, true).unwrap().remove(0);
        assert_eq!(
            (row.status, row.decided_by.as_deref(), row.reason),
            (Status::Approved, Some("bob"), None),
            "{name}"
        );
        // Redeemed, it says so too.
        assert!(
            matches!(inbox.ask(&call, 3000, MINUTE).unwrap(), Found::Approved(_)),
            "{name}"
        );
        let refused = inbox
            .decide(&filed.id, false, "eve", None, 3500)
            .unwrap()
            .unwrap_err();
        assert_eq!(
            refused.to_string(),
            "this call was approved already, by bob, and has been made",
            "{name}"
        );
        assert_eq!(
            inbox.decide("nosuchid", true, "eve", None, 3500).unwrap(),
            Err(Refused::NoSuchId),
            "{name}"
        );
    }
}

#[test]
fn the_key_binds_namespace_identity_tool_and_strict_arguments() {
    let key = |ns: &str, who: &str, tool: &str, args: &str| {
        call_key(ns, who, tool, Some(Raw::parse(args).unwrap()))
    };
    let base = key("runpod", "alice", "delete_pod", r#"{"a":1,"b":2}"#);
    assert_eq!(
        base,
        key("runpod", "alice", "delete_pod", r#"{ "b": 2, "a": 1.0 }"#)
    );
    for other in [
        key("runpod2", "alice", "delete_pod", r#"{"a":1,"b":2}"#),
        key("runpod", "bob", "delete_pod", r#"{"a":1,"b":2}"#),
        key("runpod", "alice", "delete_pods", r#"{"a":1,"b":2}"#),
        key("runpod", "alice", "delete_pod", r#"{"a":"1","b":2}"#),
        // The parts cannot be shifted into each other.
        key("runpoda", "lice", "delete_pod", r#"{"a":1,"b":2}"#),
    ] {
        assert_ne!(base, other);
    }
    assert_eq!(
        call_key("n", "i", "t", None),
        key("n", "i", "t", "{}"),
        "no arguments are empty arguments"
    );
}

#[test]
fn ids_are_short_and_typable() {
    let id = new_id().unwrap();
    assert_eq!(id.len(), 8);
    assert!(id
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
    assert_ne!(new_id().unwrap(), id);
}

#[test]
fn what_the_agent_wrote_cannot_forge_a_line_or_repaint_the_terminal() {
    let (inbox, _) = db("shown");
    let mut call = request(r#"{"note":"ok\u009b2J\u2028"}"#);
    call.tool = "deploy\n[a]pprove \u{1b}[2J".into();
    call.arguments = serde_json::json!({"note": "ok\u{9b}2J\u{2028}"});
    let filed = waiting(inbox.ask(&call, 1000, MINUTE).unwrap());
    let shown = cli::block(&filed, 2000);
    assert_eq!(shown.lines().count(), 3, "{shown}");
    assert!(
        !shown.chars().any(|c| c.is_control() && c != '\n'),
        "{shown:?}"
    );
    assert!(shown.contains("`deploy\\n[a]pprove \\u{1b}[2J`"), "{shown}");
    assert!(
        shown.contains(r#"arguments: {"note":"ok\u{9b}2J\u{2028}"}"#),
        "{shown}"
    );
}
