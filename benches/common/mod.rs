//! What the benchmarks share.

/// Prints whether every target was met and exits with code 1 when one was missed, so
/// that a benchmark gates (scripts/bench-gates) rather than only prints.
pub fn finish(ok: bool) {
    println!(
        "{}",
        if ok {
            "all targets met"
        } else {
            "TARGETS MISSED"
        }
    );
    if !ok {
        std::process::exit(1);
    }
}
