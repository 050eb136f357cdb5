//! The segment file format.
//!
//! ```text
//! segment  = MAGIC frame*
//! frame    = len:u32le crc:u32le body            (crc32 of body, len = body bytes)
//! body     = 1 seq:u64le signal:u8 format:u8 zstd(request body)    data
//!          | 2 seq:u64le                                           cancel (refused after all)
//!          | 3 n:u32le trace_id[16]*n                              done (stored and counted)
//! ```
//!
//! A segment is named by its number, `wal/0000000000000042.seg`. Reading stops at the
//! first frame that is cut short or whose checksum does not match (a write torn by a
//! crash): what follows it is not trusted.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::model::TraceId;

pub const MAGIC: &[u8; 8] = b"FLWAL\x00\x00\x01";
const FRAME_HEADER: usize = 8;
/// kind, seq, signal, format.
const DATA_HEAD: usize = 11;
/// No frame is larger than this (a request is at most `max_request_bytes`, compressed).
pub const MAX_FRAME: usize = 1 << 30;

const KIND_DATA: u8 = 1;
const KIND_CANCEL: u8 = 2;
const KIND_DONE: u8 = 3;

/// Which OTLP signal a data record holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Traces,
    Logs,
}

/// How the request body was encoded on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Protobuf,
    Json,
}

/// One record as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Data {
        seq: u64,
        signal: Signal,
        format: Format,
        /// zstd-compressed request body.
        compressed: Vec<u8>,
    },
    Cancel {
        seq: u64,
    },
    Done {
        traces: Vec<TraceId>,
    },
}

/// The file of segment `id` under `dir`.
pub fn path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:016}.seg"))
}

/// The segment ids under `dir`, ascending; other files are ignored.
pub fn list(dir: &Path) -> std::io::Result<Vec<u64>> {
    let mut ids = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(id) = name
            .strip_suffix(".seg")
            .and_then(|n| n.parse::<u64>().ok())
        {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

/// The bytes a data frame of a `compressed` payload of this length takes.
pub fn data_frame_len(compressed: usize) -> usize {
    FRAME_HEADER + DATA_HEAD + compressed
}

/// Appends a data frame: header and body, with the payload not copied twice.
pub fn encode_data(out: &mut Vec<u8>, seq: u64, signal: Signal, format: Format, compressed: &[u8]) {
    let mut head = [0u8; DATA_HEAD];
    head[0] = KIND_DATA;
    head[1..9].copy_from_slice(&seq.to_le_bytes());
    head[9] = match signal {
        Signal::Traces => 0,
        Signal::Logs => 1,
    };
    head[10] = match format {
        Format::Protobuf => 0,
        Format::Json => 1,
    };
    let mut crc = crc32fast::Hasher::new();
    crc.update(&head);
    crc.update(compressed);
    frame_header(out, head.len() + compressed.len(), crc.finalize());
    out.extend_from_slice(&head);
    out.extend_from_slice(compressed);
}

pub fn encode_cancel(out: &mut Vec<u8>, seq: u64) {
    let mut body = [0u8; 9];
    body[0] = KIND_CANCEL;
    body[1..].copy_from_slice(&seq.to_le_bytes());
    frame_header(out, body.len(), crc32fast::hash(&body));
    out.extend_from_slice(&body);
}

pub fn encode_done(out: &mut Vec<u8>, traces: &[TraceId]) {
    let start = out.len();
    out.extend_from_slice(&[0u8; FRAME_HEADER]);
    out.push(KIND_DONE);
    out.extend_from_slice(&(traces.len() as u32).to_le_bytes());
    for t in traces {
        out.extend_from_slice(t.as_bytes());
    }
    let len = out.len() - start - FRAME_HEADER;
    let crc = crc32fast::hash(&out[start + FRAME_HEADER..]);
    out[start..start + 4].copy_from_slice(&(len as u32).to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

fn frame_header(out: &mut Vec<u8>, len: usize, crc: u32) {
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.extend_from_slice(&crc.to_le_bytes());
}

/// Why reading a segment stopped before its end.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Torn {
    #[error("the segment does not start with the write-ahead log's header")]
    BadMagic,
    #[error("a frame at byte {offset} is cut short")]
    Short { offset: u64 },
    #[error("a frame at byte {offset} fails its checksum")]
    Checksum { offset: u64 },
    #[error("a frame at byte {offset} is not a known record")]
    Unknown { offset: u64 },
}

/// Reads a segment's records; `Err` at the first frame that cannot be trusted.
pub struct Reader<R> {
    input: R,
    offset: u64,
    started: bool,
}

impl<R: Read> Reader<R> {
    pub fn new(input: R) -> Reader<R> {
        Reader {
            input,
            offset: 0,
            started: false,
        }
    }

    /// The next record, `Ok(None)` at a clean end, `Err` for a torn or corrupt frame;
    /// an I/O error of the file is a `Short` frame too (nothing after it is read).
    pub fn next_record(&mut self) -> Result<Option<Record>, Torn> {
        if !self.started {
            let mut magic = [0u8; 8];
            match read_full(&mut self.input, &mut magic) {
                Ok(0) => return Ok(None),
                Ok(8) if &magic == MAGIC => {}
                _ => return Err(Torn::BadMagic),
            }
            self.started = true;
            self.offset = 8;
        }
        let offset = self.offset;
        let mut header = [0u8; FRAME_HEADER];
        match read_full(&mut self.input, &mut header) {
            Ok(0) => return Ok(None),
            Ok(FRAME_HEADER) => {}
            _ => return Err(Torn::Short { offset }),
        }
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        if len == 0 || len > MAX_FRAME {
            return Err(Torn::Unknown { offset });
        }
        let mut body = Vec::new();
        let read = (&mut self.input)
            .take(len as u64)
            .read_to_end(&mut body)
            .map_err(|_| Torn::Short { offset })?;
        if read < len {
            return Err(Torn::Short { offset });
        }
        if crc32fast::hash(&body) != crc {
            return Err(Torn::Checksum { offset });
        }
        self.offset += (FRAME_HEADER + len) as u64;
        parse(&body).map(Some).ok_or(Torn::Unknown { offset })
    }
}

fn parse(body: &[u8]) -> Option<Record> {
    let (&kind, rest) = body.split_first()?;
    let seq = |b: &[u8]| -> Option<u64> { Some(u64::from_le_bytes(b.get(..8)?.try_into().ok()?)) };
    match kind {
        KIND_DATA => {
            if rest.len() < 10 {
                return None;
            }
            let signal = match rest[8] {
                0 => Signal::Traces,
                1 => Signal::Logs,
                _ => return None,
            };
            let format = match rest[9] {
                0 => Format::Protobuf,
                1 => Format::Json,
                _ => return None,
            };
            Some(Record::Data {
                seq: seq(rest)?,
                signal,
                format,
                compressed: rest[10..].to_vec(),
            })
        }
        KIND_CANCEL => Some(Record::Cancel { seq: seq(rest)? }),
        KIND_DONE => {
            let n = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
            let ids = rest.get(4..)?;
            if ids.len() != n.checked_mul(16)? {
                return None;
            }
            let traces = ids
                .chunks_exact(16)
                .filter_map(|c| TraceId::from_bytes(c).ok())
                .collect();
            Some(Record::Done { traces })
        }
        _ => None,
    }
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_full(input: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match input.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}
