//! Every shipped policy: it loads, `toolwarden check` accepts it, and the
//! JSON Schema of the format, generated from the Rust types, is current.

use std::path::PathBuf;

use crate::common::*;

fn shipped() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("policies"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "json") && !p.ends_with("policy.schema.json")
        })
        .collect();
    for dir in ["policies/examples", "tests/it/policylayer"] {
        files.extend(
            std::fs::read_dir(root().join(dir))
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|e| e == "json")),
        );
    }
    files.sort();
    assert!(files.len() >= 14, "{files:?}");
    files
}

#[test]
fn toolwarden_check_accepts_every_shipped_policy() {
    for file in shipped() {
        let out = toolwarden().arg("check").arg(&file).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains(": ok\n") && stdout.contains("default: "),
            "{stdout}"
        );
        assert!(!stdout.contains("warning:"), "{stdout}");
    }
}

/// The Intercept policies shipped for `toolwarden import` import, and what
/// they become loads without a warning.
#[test]
fn every_shipped_intercept_policy_imports_into_one_that_loads() {
    let dir = temp_dir("shipped-intercept");
    let yamls: Vec<PathBuf> = std::fs::read_dir(root().join("policies/examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    assert!(!yamls.is_empty());
    for yaml in yamls {
        let out = toolwarden().arg("import").arg(&yaml).output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}: {}",
            yaml.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let json = dir.join("imported.json");
        std::fs::write(&json, &out.stdout).unwrap();
        let check = toolwarden().arg("check").arg(&json).output().unwrap();
        let stdout = String::from_utf8_lossy(&check.stdout);
        assert_eq!(check.status.code(), Some(0), "{}: {stdout}", yaml.display());
        assert!(!stdout.contains("warning:"), "{}: {stdout}", yaml.display());
    }
}

#[test]
fn a_schema_that_checks_less_than_it_seems_is_flagged() {
    let dir = temp_dir("check-typo");
    let file = dir.join("typo.json");
    std::fs::write(
        &file,
        r#"{"version":"1","default":"deny","tools":{
            "flowforge_delete_*":{"action":"deny"},
            "flowforge_delete_f*":{},
            "flowforge_retry_run":{"arguments":{"type":"object","requried":["run_id"],
                "properties":{"run_id":{"type":"string","patern":"^run_"}}}}}}"#,
    )
    .unwrap();
    let out = toolwarden()
        .arg("check")
        .arg(&file)
        .arg("--")
        .arg(mock_server())
        .arg("--tools")
        .arg(root().join("examples/tools/flowforge.json"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    for warning in [
        "warning: /tools/flowforge_retry_run/arguments/requried: `requried` is not a JSON Schema keyword (2020-12), so it checks nothing; did you mean `required`?",
        "warning: /tools/flowforge_retry_run/arguments/properties/run_id/patern: `patern` is not a JSON Schema keyword",
        "warning: the deny rule \"flowforge_delete_*\" does not apply to \"flowforge_delete_function\": the more specific rule \"flowforge_delete_f*\" allows it",
    ] {
        assert!(stdout.contains(warning), "{warning}\n{stdout}");
    }
    // A session logs the schema's warnings as it loads the policy.
    let mut s = Session::start(
        toolwarden()
            .arg("--policy")
            .arg(&file)
            .arg("--")
            .arg(mock_server()),
    );
    s.close_stdin();
    s.wait();
    assert!(
        s.stderr()
            .contains("`requried` is not a JSON Schema keyword"),
        "{}",
        s.stderr()
    );
}

#[test]
fn toolwarden_check_refuses_a_bad_policy_with_exit_2() {
    let dir = temp_dir("check-bad");
    let file = dir.join("bad.json");
    std::fs::write(
        &file,
        r#"{"version":"1","tools":{"t":{"limits":[{"window":"minutes","max":1}]}}}"#,
    )
    .unwrap();
    let out = toolwarden().arg("check").arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/tools/t/limits/0/window"), "{stderr}");
    assert!(out.stdout.is_empty());
}

#[test]
fn the_schema_file_is_current() {
    let path = root().join("policies/policy.schema.json");
    let fresh = toolwarden::policy::json_schema();
    if std::env::var_os("TOOLWARDEN_BLESS").is_some() {
        std::fs::write(&path, &fresh).unwrap();
    }
    let shipped = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        shipped == fresh,
        "policies/policy.schema.json is stale: regenerate it with `TOOLWARDEN_BLESS=1 cargo test --test it the_schema_file_is_current`"
    );
}

#[test]
fn every_shipped_policy_fits_the_schema() {
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("policies/policy.schema.json")).unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    for file in shipped() {
        let policy: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&policy)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{}: {errors:?}", file.display());
    }
    // And the schema catches what the loader catches.
    let typo = serde_json::json!({"version": "1", "tools": {"t": {"limts": []}}});
    assert!(!validator.is_valid(&typo));
}

#[test]
fn toolwarden_check_with_a_server_compares_the_policy_with_its_tools() {
    let dir = temp_dir("check-server");
    let file = dir.join("policy.json");
    std::fs::write(
        &file,
        r#"{"version":"1","default":"allow","tools":{"flowforge_delete_*":{"action":"deny"},"retry_deploy":{},"flowforge_replay_run":{"action":"approve"}}}"#,
    )
    .unwrap();
    let out = toolwarden()
        .arg("check")
        .arg(&file)
        .arg("--")
        .arg(mock_server())
        .arg("--tools")
        .arg(root().join("examples/tools/flowforge.json"))
        .args(["--page-size", "5"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("server tools (12): 9 allowed, 1 need approval, 2 denied, 2 hidden"),
        "{stdout}"
    );
    assert!(
        stdout.contains("denied: flowforge_delete_run, flowforge_delete_function"),
        "{stdout}"
    );
    assert!(
        stdout.contains("warning: the rule \"retry_deploy\" matches none of the server's tools"),
        "{stdout}"
    );
    assert!(
        stdout.contains("no rule names these tools: flowforge_retry_run,"),
        "{stdout}"
    );
}

#[test]
fn toolwarden_check_says_when_the_server_cannot_list() {
    let out = toolwarden()
        .arg("check")
        .arg(root().join("policies/fractera.json"))
        .args(["--", "/nonexistent/server"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "cannot list the server's tools: cannot start the server `/nonexistent/server`"
        ),
        "{stderr}"
    );
}

#[test]
fn every_shipped_policy_passes_its_test_cases() {
    let mut ran = 0;
    for entry in std::fs::read_dir(root().join("policies/cases")).unwrap() {
        let cases = entry.unwrap().path();
        let policy = root().join("policies").join(cases.file_name().unwrap());
        let out = toolwarden()
            .arg("test")
            .arg(&policy)
            .arg(&cases)
            .output()
            .unwrap();
        let report = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{}: {report}", cases.display());
        assert!(report.ends_with(" passed, 0 failed\n"), "{report}");
        ran += 1;
    }
    assert!(ran >= 5);
}

#[test]
fn a_failing_test_case_is_shown_with_exit_code_1() {
    let dir = temp_dir("cases-failing");
    let cases = dir.join("cases.json");
    std::fs::write(
        &cases,
        r#"{"cases":[
            {"name":"ten pass","tool":"retry_deploy","arguments":{"server_token":"s"},"repeat":10,"expect":"allowed"},
            {"name":"an eleventh, wrongly expected to pass","tool":"retry_deploy","arguments":{"server_token":"s"},"expect":"allowed"},
            {"name":"unknown tools are refused","tool":"check_status","expect":"not_allowed"}]}"#,
    )
    .unwrap();
    let policy = root().join("policies/fractera.json");
    let out = toolwarden()
        .arg("test")
        .arg(&policy)
        .arg(&cases)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert_eq!(
        report,
        "ok    ten pass: allowed\n\
         FAIL  an eleventh, wrongly expected to pass: expected allowed, got rate_limited\n      \
         toolwarden: `retry_deploy` refused: rate limit retry_deploy_rate (10 per minute) reached; retry in 6 s\n\
         ok    unknown tools are refused: not_allowed\n\
         2 passed, 1 failed\n"
    );
    let out = toolwarden()
        .arg("test")
        .arg("--json")
        .arg(&policy)
        .arg(&cases)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (json["passed"].clone(), json["failed"].clone()),
        (2.into(), 1.into())
    );
    assert_eq!(json["cases"][1]["got"], "rate_limited");
    assert_eq!(json["cases"][1]["passed"], false);
    // A cases file with a mistake: exit 2, with its place.
    std::fs::write(
        &cases,
        r#"{"cases":[{"name":"x","tool":"t","expect":"alowed"}]}"#,
    )
    .unwrap();
    let out = toolwarden()
        .arg("test")
        .arg(&policy)
        .arg(&cases)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cases[0].expect: \"alowed\""));
}
