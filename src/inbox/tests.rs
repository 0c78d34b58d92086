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

#[test]
fn a_row_that_does_not_read_approves_nothing() {
    let (inbox, path) = db("bad-row");
    let call = request("{}");
    let filed = waiting(inbox.ask(&call, 1000, MINUTE).unwrap());
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.execute(
        "UPDATE approvals SET status = 'approved!', arguments = 'not json' WHERE id = ?1",
        [&filed.id],
    )
    .unwrap();
    assert_eq!(inbox.check(&filed.id, 2000, true).unwrap(), Found::Gone);
    assert_eq!(
        inbox.decide(&filed.id, true, "bob", None, 2000).unwrap(),
        Err(Refused::Unreadable)
    );
    // The call is filed afresh; the list leaves the bad row out.
    let fresh = waiting(inbox.ask(&call, 2000, MINUTE).unwrap());
    assert_ne!(fresh.id, filed.id);
    let listed: Vec<String> = inbox
        .list(2000, false)
        .unwrap()
        .into_iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(listed, [fresh.id]);
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
