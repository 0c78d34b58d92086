//! Any text as an Intercept policy: the import either writes a policy that
//! loads or says where it stopped; it never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use toolwarden::policy::Policy;

fuzz_target!(|text: &str| {
    match toolwarden::commands::import::import(text, "fuzz.yaml") {
        Ok(policy) => assert!(Policy::from_json(&policy).is_ok(), "{policy}"),
        Err(e) => assert!(!e.message.is_empty()),
    }
});
