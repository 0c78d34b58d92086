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
    // skipped: a stale list costs memory, not the build. The option is
    // lld's, which Rust links with on this target from 1.90 on when its
    // toolchain ships it; with another linker, the build goes without the
    // layout.
    if !links_with_rust_lld(&flags) {
        println!("cargo:warning=cargo dist: linked without the code's layout (it needs the lld of Rust 1.90 or later), so it keeps more memory resident");
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

/// Whether rustc links with its own lld: Rust 1.90 or later, a toolchain
/// that ships it (gcc-ld/ld.lld in its sysroot), and no linker of the
/// user's (`RUSTC_LINKER`, a `-fuse-ld=`, `-C linker=` or a linker flavor
/// in the flags).
fn links_with_rust_lld(flags: &str) -> bool {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let ask = |arg: &str| {
        std::process::Command::new(&rustc)
            .args(arg.split(' '))
            .output()
            .ok()
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .unwrap_or_default()
    };
    // "rustc 1.95.0 (...)"
    let mut version = ask("--version")
        .split([' ', '.', '-'])
        .skip(1)
        .map(|n| n.parse::<u32>().unwrap_or(0))
        .collect::<Vec<_>>()
        .into_iter();
    let (major, minor) = (version.next().unwrap_or(0), version.next().unwrap_or(0));
    let sysroot = ask("--print sysroot");
    let target = std::env::var("TARGET").unwrap_or_default();
    let lld = std::path::Path::new(sysroot.trim())
        .join("lib/rustlib")
        .join(&target)
        .join("bin/gcc-ld/ld.lld");
    let own_linker = std::env::var_os("RUSTC_LINKER").is_some()
        || flags.split('\x1f').any(|flag| {
            flag.contains("-fuse-ld=")
                || flag.starts_with("linker=")
                || flag.starts_with("-Clinker=")
                || flag.contains("linker-flavor")
        });
    (major, minor) >= (1, 90) && lld.exists() && !own_linker
}
