//! The allocator's settings: the binary's global allocator is mimalloc (`src/main.rs`),
//! and [`tune`] sets how it hands freed memory back to the OS. Benchmarks that run the
//! server in process call it too, so that they measure what the binary does.

/// mimalloc's `mi_option_purge_delay` (`mimalloc.h`, the same index in v2 and v3; the
/// Rust bindings do not name it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
/// Milliseconds between freeing memory and handing it back to the OS (mimalloc v3's
/// default is 1 000).
const PURGE_DELAY_MS: std::ffi::c_long = 100;
/// How often the purges that are due are asked for.
const ALLOCATOR_COLLECT_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// mimalloc hands freed memory back to the OS after a delay, and only when some thread
/// allocates or collects. With its default delay, what a burst of large requests
/// freed stayed resident: 30 requests of 54 MB each (`tests/it/memory.rs`) peaked at
/// 480–510 MiB and kept ~225 MiB once idle; with 100 ms, 380–430 and ~120 MiB. A
/// shorter delay cuts the peak further but makes a buffered span cost ~20 % more (less
/// freed memory is reused before it is purged: `FAULTLINE_BENCH_MEMORY_ONLY=1 cargo
/// bench --bench ingest`, 1 ms: ~1 035 bytes, 100 ms: ~865, 1 000 ms: ~875). A
/// thread of our own asks every [`ALLOCATOR_COLLECT_EVERY`] for the purges that are
/// due (process wide; its own heap is empty), so a server that goes quiet after a
/// burst does not keep it resident.
pub fn tune() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(tune_once);
}

fn tune_once() {
    // SAFETY: `mi_option_set` takes plain integers and may be called at any time; an
    // option changed while running applies to the purges scheduled after it.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) };
    let spawned = std::thread::Builder::new()
        .name("faultline-alloc".into())
        .spawn(|| loop {
            std::thread::sleep(ALLOCATOR_COLLECT_EVERY);
            // SAFETY: `mi_collect` takes no pointer and may be called from any thread at
            // any time; `false` asks for the purges that are due, not a forced one.
            unsafe { libmimalloc_sys::mi_collect(false) };
        });
    if let Err(error) = spawned {
        tracing::warn!(%error, "Cannot start the allocator's housekeeping thread; freed memory is returned to the OS only as the server allocates.");
    }
}
