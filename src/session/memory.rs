//! What keeps toolwarden's resident memory near what a session uses: the
//! allocator's handling of large buffers, and the binary's pages that only
//! start-up needed (docs/BENCHMARKS.md, memory).

/// A message of several MiB needs a buffer that size for a moment. glibc
/// would raise its mmap threshold after freeing one, serve the next from
/// the heap, and keep that memory for good; a fixed threshold gives every
/// large buffer back as soon as it is freed.
pub fn return_large_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

/// Start-up runs code and reads data the session never needs again
/// (parsing the arguments, compiling the policy, opening the store). Once
/// the session is set up, the binary's pages that are still as the file
/// has them are unmapped: those the relay uses come back from the page
/// cache at their first use, the rest stays out. `cargo dist` lays out the
/// code a session runs apart from start-up's (dist/code-order.py), so that
/// what comes back is little more than that code.
#[inline(never)] // dist/code-order.py splits its profile where this starts
pub fn release_start_up_pages() {
    #[cfg(target_os = "linux")]
    for (start, end) in clean_pages_of_the_binary().unwrap_or_default() {
        // SAFETY: the range is a private mapping of the binary that no one
        // has written to (no anonymous page): MADV_DONTNEED
        // only drops the page table entries, and a later use reads the same
        // bytes from the file again.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
        }
    }
}

/// The address ranges of the binary's own private mappings that hold no
/// page written since it was mapped: its code and read-only data, not the
/// relocated or writable data (from `/proc/self/smaps`).
#[cfg(target_os = "linux")]
fn clean_pages_of_the_binary() -> Option<Vec<(usize, usize)>> {
    /// One mapping of smaps: its range, and whether it is still clean.
    struct Mapping {
        start: usize,
        end: usize,
        clean: bool,
    }
    let exe = std::fs::read_link("/proc/self/exe").ok()?;
    let exe = exe.to_str()?;
    let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
    let mut mappings: Vec<Mapping> = Vec::new();
    for line in smaps.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // A mapping starts with "start-end perms offset dev inode path".
        let range = fields
            .first()
            .and_then(|f| f.split_once('-'))
            .and_then(|(start, end)| {
                Some((
                    usize::from_str_radix(start, 16).ok()?,
                    usize::from_str_radix(end, 16).ok()?,
                ))
            });
        if let Some((start, end)) = range {
            let private = fields.get(1).is_some_and(|perms| perms.ends_with('p'));
            let clean = private && fields.get(5) == Some(&exe);
            mappings.push(Mapping { start, end, clean });
        } else if let ["Anonymous:", kib, ..] = fields[..] {
            // Then its fields. A page written to is a copy of the file's,
            // and anonymous. (Private_Dirty says nothing here: it counts
            // the file's own pages too while they wait to be written back,
            // right after a build.)
            if kib != "0" {
                if let Some(mapping) = mappings.last_mut() {
                    mapping.clean = false;
                }
            }
        }
    }
    Some(
        mappings
            .into_iter()
            .filter(|m| m.clean)
            .map(|m| (m.start, m.end))
            .collect(),
    )
}
