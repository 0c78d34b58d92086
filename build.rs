//! Two things for `cargo dist` (.cargo/config.toml). Its packed relocations
//! need glibc 2.36 or later in the static C library it links in: an older
//! one would link without complaint and build a binary that crashes at
//! start-up, so refuse to build instead. And its code is laid out in the
//! order of dist/code-order.txt.

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
    // The functions a session runs, laid out together (dist/code-order.py
    // says why). A function the list names and the binary lacks is
    // skipped: a stale list costs memory, never a build. The option is
    // lld's, which Rust links with on this target from 1.90 on; with an
    // older Rust or a linker of the user's choosing, the build goes
    // without the layout.
    if rustc_minor() < 90 || flags.contains("fuse-ld") || flags.contains("linker") {
        println!("cargo:warning=cargo dist: linked without the code's layout (it needs Rust 1.90's lld), so it keeps more memory resident");
        return;
    }
    let order = format!(
        "{}/dist/code-order.txt",
        std::env::var("CARGO_MANIFEST_DIR").unwrap()
    );
    println!("cargo:rerun-if-changed={order}");
    println!("cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={order}");
    println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
}

/// The minor version of the Rust compiler building this ("rustc 1.95.0 (...)").
fn rustc_minor() -> u32 {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    std::process::Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|v| {
            v.split(['.', ' '])
                .nth(2)
                .and_then(|minor| minor.parse().ok())
        })
        .unwrap_or(0)
}
