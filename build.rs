//! One check for `cargo dist` (.cargo/config.toml): its packed relocations
//! need glibc 2.36 or later in the static C library it links in. An older
//! one would link without complaint and build a binary that crashes at
//! start-up, so refuse to build instead.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let features = std::env::var("CARGO_CFG_TARGET_FEATURE").unwrap_or_default();
    let flags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    if !features.split(',').any(|f| f == "crt-static") || !flags.contains("pack-relative-relocs") {
        return;
    }
    let version = std::process::Command::new("getconf")
        .arg("GNU_LIBC_VERSION")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .unwrap_or_default();
    // "glibc 2.36"
    let mut parts = version.trim().trim_start_matches("glibc ").split('.');
    let major: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let minor: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    if (major, minor) < (2, 36) {
        panic!(
            "cargo dist needs glibc 2.36 or later (this system has {:?}); \
             build with `cargo build --release` instead",
            version.trim()
        );
    }
}
