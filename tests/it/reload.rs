//! Hot reload: a change to the policy file that loads is in force for the
//! next call, with counters kept by name; one that does not load leaves
//! the old policy and is logged once; a change to what is hidden tells a
//! client whose server can change its list.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::*;

fn retry_policy(max: u32) -> String {
    format!(
        r#"{{"version":"1","tools":{{"retry_task":{{"limits":[{{"counter":"retries","window":"hour","max":{max}}}]}}}}}}"#
    )
}

/// Waits until the audit log has `n` `policy_reloaded` events.
fn wait_for_reloads(audit: &Path, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let events: Vec<Value> = std::fs::read_to_string(audit)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|e| e["event"] == "policy_reloaded")
            .collect();
        if events.len() >= n {
            return events;
        }
        assert!(
            Instant::now() < deadline,
            "no reload seen in {}",
            audit.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Replaces the file as editors do: a new file renamed over the old one.
fn save(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[test]
fn a_changed_policy_is_in_force_for_the_next_call_with_counters_kept() {
    let dir = temp_dir("reload");
    let policy = dir.join("policy.json");
    let audit = dir.join("audit.jsonl");
    std::fs::write(&policy, retry_policy(2)).unwrap();
    let mut s = Session::start(
        toolwarden()
            .arg("--policy")
            .arg(&policy)
            .arg("--audit")
            .arg(&audit)
            .arg("--state=memory")
            .arg("--")
            .arg(mock_server())
            .arg("--tools")
            .arg(root().join("examples/tools/genieacs.json")),
    );
    let mut id = 0;
    let mut next = |s: &mut Session| {
        id += 1;
        s.send(&call(id, "retry_task", r#"{"task_id":"t"}"#));
        decision(&s.recv_json())
    };
    assert_eq!(next(&mut s), None);
    assert_eq!(next(&mut s), None);
    assert_eq!(next(&mut s).as_deref(), Some("rate_limited"));

    // A file that does not load, saved twice: logged once, old policy kept.
    save(
        &policy,
        r#"{"version":"1","tools":{"retry_task":{"limts":[]}}}"#,
    );
    std::thread::sleep(Duration::from_millis(600));
    save(
        &policy,
        r#"{"version":"1","tools":{"retry_task":{"limts":[]}}}"#,
    );
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(next(&mut s).as_deref(), Some("rate_limited"));

    // A new rule is in force for the next call; the counter "retries"
    // keeps the calls it took.
    let changed = retry_policy(2).replace(r#""tools":{"#, r#""tools":{"reboot":{},"#);
    std::fs::write(&policy, &changed).unwrap();
    let reloads = wait_for_reloads(&audit, 1);
    use sha2::Digest;
    let sha: String = sha2::Sha256::digest(changed.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(reloads[0]["policy_sha256"], sha.as_str());
    assert_eq!(next(&mut s).as_deref(), Some("rate_limited"));
    s.send(&call(99, "reboot", "{}"));
    assert_eq!(decision(&s.recv_json()), None);
    assert_eq!(s.wait().code(), Some(0));
    let stderr = s.stderr();
    assert_eq!(
        stderr
            .matches("the changed policy does not load, the one in force stays")
            .count(),
        1,
        "{stderr}"
    );
    assert!(stderr.contains("unknown field `limts`"), "{stderr}");
}

#[test]
fn hiding_another_tool_tells_the_client_to_list_again() {
    for list_changed in [true, false] {
        let dir = temp_dir("reload-list");
        let policy = dir.join("policy.json");
        let audit = dir.join("audit.jsonl");
        std::fs::write(&policy, r#"{"version":"1","default":"allow"}"#).unwrap();
        let mut cmd = toolwarden();
        cmd.arg("--policy")
            .arg(&policy)
            .arg("--audit")
            .arg(&audit)
            .arg("--state=memory")
            .arg("--")
            .arg(mock_server())
            .arg("--tools")
            .arg(root().join("examples/tools/flowforge.json"));
        if list_changed {
            cmd.arg("--list-changed");
        }
        let mut s = Session::start(&mut cmd);
        s.send(&initialize("2025-06-18"));
        s.recv();
        s.send(r#"{"jsonrpc":"2.0","id":"l1","method":"tools/list"}"#);
        assert_eq!(tool_names(&s.recv_json()).len(), 12);
        // The same hidden set (none): no notification.
        save(
            &policy,
            r#"{"version":"1","default":"allow","description":"same"}"#,
        );
        wait_for_reloads(&audit, 1);
        // Deleting is hidden now.
        save(
            &policy,
            r#"{"version":"1","default":"allow","hide":["flowforge_delete_*"]}"#,
        );
        wait_for_reloads(&audit, 2);
        s.send(r#"{"jsonrpc":"2.0","id":"l2","method":"tools/list"}"#);
        let mut notified = 0;
        let listed = loop {
            let message = s.recv_json();
            if message["method"] == "notifications/tools/list_changed" {
                notified += 1;
                continue;
            }
            break message;
        };
        assert_eq!(notified, usize::from(list_changed));
        let names = tool_names(&listed);
        assert_eq!(names.len(), 10, "{names:?}");
        assert!(!names.iter().any(|n| n.starts_with("flowforge_delete_")));
        assert_eq!(s.wait().code(), Some(0));
    }
}

#[test]
fn no_reload_reads_the_policy_once() {
    let dir = temp_dir("no-reload");
    let policy = dir.join("policy.json");
    std::fs::write(&policy, r#"{"version":"1"}"#).unwrap();
    let mut s = Session::start(
        toolwarden()
            .arg("--policy")
            .arg(&policy)
            .args(["--no-reload", "--state=memory", "--"])
            .arg(mock_server())
            .arg("--tools")
            .arg(root().join("examples/tools/genieacs.json")),
    );
    s.send(&call(1, "retry_task", r#"{"task_id":"t"}"#));
    assert_eq!(decision(&s.recv_json()).as_deref(), Some("not_allowed"));
    save(&policy, r#"{"version":"1","default":"allow"}"#);
    // Reloads take effect within a fraction of this.
    std::thread::sleep(Duration::from_millis(1500));
    s.send(&call(2, "retry_task", r#"{"task_id":"t"}"#));
    assert_eq!(decision(&s.recv_json()).as_deref(), Some("not_allowed"));
    assert_eq!(s.wait().code(), Some(0));
}

/// Points the symlink `link` at `target` as `ln -sfn` does, in one step:
/// a new link renamed over the old one.
fn point(link: &Path, target: &Path) {
    let new = link.with_extension("new-link");
    let _ = std::fs::remove_file(&new);
    std::os::unix::fs::symlink(target, &new).unwrap();
    std::fs::rename(&new, link).unwrap();
}

fn guarded(policy: &Path, audit: &Path) -> Session {
    Session::start(
        toolwarden()
            .arg("--policy")
            .arg(policy)
            .arg("--audit")
            .arg(audit)
            .arg("--state=memory")
            .arg("--")
            .arg(mock_server())
            .arg("--tools")
            .arg(root().join("examples/tools/genieacs.json")),
    )
}

const DENY: &str = r#"{"version":"1"}"#;
const ALLOW: &str = r#"{"version":"1","default":"allow"}"#;

#[test]
fn a_policy_reached_through_a_symlink_reloads_when_its_target_changes() {
    let dir = temp_dir("reload-link");
    for sub in ["dotfiles", "other", "config"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    let (first, second) = (dir.join("dotfiles/policy.json"), dir.join("other/p.json"));
    std::fs::write(&first, DENY).unwrap();
    std::fs::write(&second, DENY).unwrap();
    // A relative link in a directory of its own, as dotfile managers make.
    let link = dir.join("config/policy.json");
    std::os::unix::fs::symlink("../dotfiles/policy.json", &link).unwrap();
    let audit = dir.join("audit.jsonl");
    let mut s = guarded(&link, &audit);
    let mut id = 0;
    let mut next = |s: &mut Session| {
        id += 1;
        s.send(&call(id, "retry_task", r#"{"task_id":"t"}"#));
        decision(&s.recv_json())
    };
    assert_eq!(next(&mut s).as_deref(), Some("not_allowed"));
    // The target saved by its editor, away from the link's directory.
    save(&first, ALLOW);
    wait_for_reloads(&audit, 1);
    assert_eq!(next(&mut s), None);
    // The link pointed at another file: that file is in force...
    point(&link, &second);
    wait_for_reloads(&audit, 2);
    assert_eq!(next(&mut s).as_deref(), Some("not_allowed"));
    // ...and its own changes are seen, the old target's no longer count.
    std::fs::write(&second, ALLOW).unwrap();
    wait_for_reloads(&audit, 3);
    assert_eq!(next(&mut s), None);
    assert_eq!(s.wait().code(), Some(0));
}

#[test]
fn only_a_regular_file_of_bounded_size_is_read_as_a_policy() {
    let dir = temp_dir("reload-kinds");
    let fifo = dir.join("fifo");
    let made = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo(3) on a path we own.
    assert_eq!(unsafe { libc::mkfifo(made.as_ptr(), 0o600) }, 0);
    let big = dir.join("big.json");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(17 << 20)
        .unwrap();
    // At start: refused at once (a FIFO blocked the start for good).
    for (policy, says) in [
        (fifo.as_path(), "not a regular file"),
        (Path::new("/dev/zero"), "not a regular file"),
        (big.as_path(), "larger than 16 MiB"),
    ] {
        let mut s = guarded(policy, &dir.join("start.jsonl"));
        assert_eq!(s.wait().code(), Some(2), "{}", policy.display());
        assert!(s.stderr().contains(says), "{}", s.stderr());
    }

    // On reload: refused with a warning, the policy in force kept, and the
    // reload still working afterwards.
    let (allow, deny) = (dir.join("allow.json"), dir.join("deny.json"));
    std::fs::write(&allow, ALLOW).unwrap();
    std::fs::write(&deny, DENY).unwrap();
    let link = dir.join("policy.json");
    std::os::unix::fs::symlink(&deny, &link).unwrap();
    let audit = dir.join("audit.jsonl");
    let mut s = guarded(&link, &audit);
    s.send(&call(1, "retry_task", r#"{"task_id":"t"}"#));
    assert_eq!(decision(&s.recv_json()).as_deref(), Some("not_allowed"));
    point(&link, &fifo);
    std::thread::sleep(Duration::from_millis(600));
    s.send(&call(2, "retry_task", r#"{"task_id":"t"}"#));
    assert_eq!(decision(&s.recv_json()).as_deref(), Some("not_allowed"));
    point(&link, &allow);
    wait_for_reloads(&audit, 1);
    point(&link, Path::new("/dev/zero"));
    std::thread::sleep(Duration::from_millis(600));
    s.send(&call(3, "retry_task", r#"{"task_id":"t"}"#));
    assert_eq!(decision(&s.recv_json()), None);
    assert!(rss_kib(s.child.id()) < 200 * 1024, "memory grew");
    point(&link, &deny);
    wait_for_reloads(&audit, 2);
    assert_eq!(s.wait().code(), Some(0));
    let stderr = s.stderr();
    assert_eq!(
        stderr
            .matches("cannot be read: not a regular file (a policy is read from a file only); the policy in force stays")
            .count(),
        2,
        "{stderr}"
    );
}
