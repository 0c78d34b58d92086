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
/// the session is set up, the pages of the binary's read-only segments are
/// unmapped: those the relay uses come back from the page cache at their
/// first use, the rest stays out. `cargo dist` lays out the code a session
/// runs apart from start-up's (dist/code-order.py), so that what comes
/// back is little more than that code.
#[inline(never)] // dist/code-order.py splits its profile where this starts
pub fn release_start_up_pages() {
    #[cfg(all(target_os = "linux", target_pointer_width = "64"))]
    for (start, len) in read_only_segments() {
        // SAFETY: the range is a segment the loader mapped without write
        // permission (its program header has no PF_W): no page of it can
        // have been written and copied, so MADV_DONTNEED only drops page
        // table entries, and a later use reads the same bytes from the
        // file again. The writable segments, RELRO's included, are not
        // touched.
        let failed = unsafe { libc::madvise(start as *mut libc::c_void, len, libc::MADV_DONTNEED) };
        if failed != 0 {
            tracing::debug!("madvise: {}", std::io::Error::last_os_error());
        }
    }
}

/// The program's own loaded segments that were never writable (its code
/// and read-only data), as page-aligned (address, length): from its
/// program headers, the first object `dl_iterate_phdr` reports.
#[cfg(all(target_os = "linux", target_pointer_width = "64"))]
fn read_only_segments() -> Vec<(usize, usize)> {
    unsafe extern "C" fn first_object(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        segments: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: glibc passes a valid info for the call's duration, whose
        // dlpi_phdr points at dlpi_phnum program headers; `segments` is the
        // Vec that read_only_segments passed in.
        let (info, segments) = unsafe { (&*info, &mut *(segments as *mut Vec<(usize, usize)>)) };
        let headers = unsafe { std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum.into()) };
        if has_text_relocations(info.dlpi_addr as usize, headers) {
            return 1; // the loader wrote to "read-only" segments
        }
        // SAFETY: sysconf only reads a constant of the system.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        for header in headers {
            if header.p_type != libc::PT_LOAD || header.p_flags & libc::PF_W != 0 {
                continue;
            }
            // Only the pages wholly inside the segment: a page it shares
            // with a writable neighbour is left alone.
            let first = info.dlpi_addr as usize + header.p_vaddr as usize;
            let start = first.next_multiple_of(page);
            let end = (first + header.p_memsz as usize) & !(page - 1);
            if end <= start {
                continue;
            }
            segments.push((start, end - start));
        }
        1 // the program itself comes first: stop there
    }
    let mut segments: Vec<(usize, usize)> = Vec::new();
    // SAFETY: the callback only reads what glibc hands it and writes to
    // `segments`, which outlives the call.
    unsafe {
        libc::dl_iterate_phdr(
            Some(first_object),
            &mut segments as *mut _ as *mut libc::c_void,
        );
    }
    segments
}

/// Whether the program's dynamic section asks for text relocations
/// (DT_TEXTREL, or DF_TEXTREL in DT_FLAGS): then the loader made its
/// read-only segments writable for a moment and wrote to them, and their
/// pages are no longer the file's. Rust's linkers refuse them by default.
#[cfg(all(target_os = "linux", target_pointer_width = "64"))]
fn has_text_relocations(base: usize, headers: &[libc::Elf64_Phdr]) -> bool {
    const DT_NULL: i64 = 0;
    const DT_TEXTREL: i64 = 22;
    const DT_FLAGS: i64 = 30;
    const DF_TEXTREL: u64 = 4;
    let Some(dynamic) = headers.iter().find(|h| h.p_type == libc::PT_DYNAMIC) else {
        return false;
    };
    // Entries of (tag, value), up to DT_NULL.
    let entries = (base + dynamic.p_vaddr as usize) as *const [u64; 2];
    for i in 0..dynamic.p_memsz as usize / 16 {
        // SAFETY: the loader mapped the dynamic section where its program
        // header says, and it holds p_memsz bytes of 16-byte entries.
        let [tag, value] = unsafe { *entries.add(i) };
        match tag as i64 {
            DT_NULL => break,
            DT_TEXTREL => return true,
            DT_FLAGS if value & DF_TEXTREL != 0 => return true,
            _ => {}
        }
    }
    false
}
