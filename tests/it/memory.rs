//! What toolwarden keeps resident: the static build users install holds
//! its bounds with a 4 MiB message (SECURITY.md, "Bounds"; measured in
//! docs/BENCHMARKS.md, "Memory").

use crate::common::*;

/// The build `cargo dist` makes is linked statically: it has no program
/// interpreter (the ELF header's PT_INTERP), which every dynamic build has.
fn is_static(binary: &std::path::Path) -> bool {
    let elf = std::fs::read(binary).unwrap();
    let u16_at = |at: usize| u16::from_le_bytes([elf[at], elf[at + 1]]) as usize;
    let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into().unwrap()) as usize;
    let (size, count) = (u16_at(0x36), u16_at(0x38));
    const PT_INTERP: u32 = 3;
    !(0..count).any(|i| {
        let at = phoff + i * size;
        u32::from_le_bytes(elf[at..at + 4].try_into().unwrap()) == PT_INTERP
    })
}

/// KiB of the binary's own pages resident in a process (its code and
/// data, from `/proc/PID/smaps`).
fn binary_pages_kib(pid: u32, binary: &std::path::Path) -> u64 {
    let binary = binary.canonicalize().unwrap();
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap();
    let (mut ours, mut found) = (false, false);
    let mut kib = 0;
    for line in smaps.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields
            .first()
            .is_some_and(|f| f.contains('-') && !f.ends_with(':'))
        {
            ours = fields[5..].join(" ") == binary.to_str().unwrap();
            found |= ours;
        } else if let (true, ["Rss:", n, ..]) = (ours, &fields[..]) {
            kib += n.parse::<u64>().unwrap();
        }
    }
    assert!(
        found,
        "no mapping of {} in /proc/{pid}/smaps",
        binary.display()
    );
    kib
}

#[test]
fn the_static_build_holds_its_bounds_with_a_4_mib_message() {
    let binary = toolwarden_bin();
    if !is_static(&binary) {
        eprintln!(
            "skipped: {} is not the static build (.ci/run tests it)",
            binary.display()
        );
        return;
    }
    let dir = temp_dir("memory-static");
    let policy = dir.join("policy.json");
    std::fs::write(
        &policy,
        r#"{"version":"1","default":"deny","tools":{"echo":{"limits":[{"window":"second","max":1000000}]}}}"#,
    )
    .unwrap();
    // As users run it: the default store, the default log level.
    let mut s = Session::start(
        toolwarden()
            .arg("--policy")
            .arg(&policy)
            .arg("--")
            .arg(mock_server())
            .arg("--tools")
            .arg(root().join("examples/tools/bench.json")),
    );
    let pid = s.child.id();
    s.send(r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#);
    s.recv_json();
    let call = |id: u64, message: &str| {
        format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"echo","arguments":{{"message":"{message}"}}}}}}"#
        )
    };
    for id in 1..=500 {
        s.send(&call(id, "hello"));
        assert!(s.recv_json()["result"].is_object());
    }
    s.send(&call(501, &"x".repeat(4 << 20)));
    assert!(s.recv_json()["result"].is_object());
    for id in 502..=1000 {
        s.send(&call(id, "hello"));
        assert!(s.recv_json()["result"].is_object());
    }
    let (code, peak) = (binary_pages_kib(pid, &binary), peak_rss_kib(pid));
    assert!(
        code <= 3 * 1024,
        "{code} KiB of the binary resident after 1,000 calls (at most 3 MiB: the code a \
         session runs, laid out together); if the layout is stale, run dist/code-order.py"
    );
    assert!(
        peak <= 8 * 1024,
        "a peak of {peak} KiB with a 4 MiB message (at most 8 MiB)"
    );
    s.close_stdin();
    assert_eq!(s.wait().code(), Some(0));
}
