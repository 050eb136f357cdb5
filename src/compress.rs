//! zstd at its fastest standard level, for what the server writes to disk: request
//! bodies in the write-ahead log and trajectory documents in the store.
//!
//! One compression context per thread, reused: creating one costs more than compressing
//! a typical request. What compressing holds is bounded by the output, not the input:
//! - a small input is compressed in one call into a buffer of zstd's bound for it,
//!   shrunk to the output's length before it is returned;
//! - an input over [`STREAM_ABOVE`] (a 54 MB document of prompt text compresses to a
//!   few hundred KB) is streamed through the same context into a buffer that grows with
//!   the output, so no buffer of the input's size is allocated;
//! - [`compress_json`] serializes straight into the stream: no JSON text is built.

use std::cell::RefCell;
use std::io::{self, Write};

use zstd::bulk::Compressor;
use zstd::stream::write::Encoder;

/// The zstd level: 1, the fastest of the standard levels.
pub const LEVEL: i32 = 1;

/// Inputs larger than this are streamed rather than compressed into a buffer of their
/// bound.
pub const STREAM_ABOVE: usize = 1 << 20;

/// Serialized JSON is handed to the compressor in chunks of this size.
const JSON_CHUNK: usize = 64 << 10;

thread_local! {
    static CONTEXT: RefCell<Option<Compressor<'static>>> = const { RefCell::new(None) };
}

/// Runs `f` with this thread's compression context.
fn with_context<R>(f: impl FnOnce(&mut Compressor<'static>) -> io::Result<R>) -> io::Result<R> {
    CONTEXT.with(|cell| {
        let mut cell = cell.borrow_mut();
        let context = match &mut *cell {
            Some(context) => context,
            None => cell.insert(Compressor::new(LEVEL)?),
        };
        f(context)
    })
}

/// Compresses `bytes` into one zstd frame.
pub fn compress(bytes: &[u8]) -> io::Result<Vec<u8>> {
    with_context(|context| {
        if bytes.len() <= STREAM_ABOVE {
            let mut out = context.compress(bytes)?;
            out.shrink_to_fit();
            Ok(out)
        } else {
            stream(context, |w| w.write_all(bytes))
        }
    })
}

/// Serializes `value` as JSON into one zstd frame, without building the JSON text.
pub fn compress_json<T: serde::Serialize + ?Sized>(value: &T) -> io::Result<Vec<u8>> {
    with_context(|context| {
        stream(context, |w| {
            let mut w = io::BufWriter::with_capacity(JSON_CHUNK, w);
            serde_json::to_writer(&mut w, value).map_err(io::Error::other)?;
            w.flush()
        })
    })
}

/// Streams what `write` writes through `context` into a growing buffer.
fn stream(
    context: &mut Compressor<'static>,
    write: impl FnOnce(&mut Encoder<'_, Vec<u8>>) -> io::Result<()>,
) -> io::Result<Vec<u8>> {
    // A frame left open by an earlier failure would be refused.
    context
        .context_mut()
        .reset(zstd::zstd_safe::ResetDirective::SessionOnly)
        .map_err(|code| io::Error::other(zstd::zstd_safe::get_error_name(code)))?;
    let mut encoder = Encoder::with_context(Vec::new(), context.context_mut());
    write(&mut encoder)?;
    let mut out = encoder.finish()?;
    out.shrink_to_fit();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inflate(bytes: &[u8]) -> Vec<u8> {
        zstd::stream::decode_all(bytes).expect("a zstd frame")
    }

    #[test]
    fn small_and_large_inputs_round_trip_and_hold_only_their_output() {
        let small = b"a small body".repeat(10);
        let out = compress(&small).expect("compresses");
        assert_eq!(inflate(&out), small);
        assert_eq!(out.capacity(), out.len(), "shrunk to the output");

        let large: Vec<u8> = (0..3 * STREAM_ABOVE as u32)
            .map(|i| (i % 251) as u8)
            .collect();
        let out = compress(&large).expect("compresses");
        assert_eq!(inflate(&out), large);
        assert!(out.len() < large.len() / 10, "{} bytes", out.len());
        assert_eq!(out.capacity(), out.len());
    }

    #[test]
    fn json_is_serialized_into_the_frame() {
        let value = serde_json::json!({"spans": ["x".repeat(3 << 20), "y"], "n": 3});
        let out = compress_json(&value).expect("compresses");
        assert_eq!(inflate(&out), serde_json::to_vec(&value).expect("json"));
        // The context is reused after a streamed frame, by both kinds of call.
        assert_eq!(inflate(&compress(b"after").expect("compresses")), b"after");
        assert_eq!(
            inflate(&compress_json(&1).expect("compresses")),
            b"1".to_vec()
        );
    }
}
