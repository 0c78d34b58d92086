//! Any text as a policy file: loading either compiles or says where it is
//! wrong; it never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use toolwarden::wire::json::Raw;
use toolwarden::policy::{Policy, ToolCall, Verdict};

fuzz_target!(|text: &str| {
    match Policy::from_json(text) {
        Ok(policy) => {
            // A loaded policy decides any call without panicking.
            // Arguments that conditions, `per` and `cost` can find.
            let args = Raw::parse(r#"{"amount":5e3,"currency":"usd","body":{"gpu":{"count":"2"}},"id":[1]}"#).ok();
            for name in ["", "retry_deploy", "create_charge", "*", "a-b_c"] {
                for arguments in [None, args] {
                    let call = ToolCall { name: name.into(), arguments };
                    if let Verdict::Refuse(refusal) = policy.check(&call) {
                        let _ = refusal.to_result(false);
                    }
                }
                let _ = policy.hides(name);
            }
            let _ = policy.summary();
        }
        Err(e) => assert!(!e.message.is_empty()),
    }
});
