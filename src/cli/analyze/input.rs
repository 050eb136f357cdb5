//! Reading the files the OpenTelemetry Collector's `file` exporter writes.
//!
//! - `format: json`: one OTLP/JSON export request per line. Traces and logs may share a
//!   file: each line is told apart by its top-level key, `resourceSpans` or
//!   `resourceLogs`. Blank lines and `{}` are skipped.
//! - `format: proto`: each request is a 4-byte big-endian length followed by that many
//!   bytes of protobuf. The bytes do not say whether a record is a traces or a logs
//!   request, so each record is decoded as one and, if that fails, as the other. The
//!   file name decides which is tried first (a name containing `log` tries logs first);
//!   after that, the kind of the file's previous record is tried first. The two
//!   messages' first fields have different wire types (a span's trace id is bytes, a
//!   log record's time is fixed64), so a record of one kind does not decode as the
//!   other.
//! - Either may be compressed with zstd (`compression: zstd`): recognised by the zstd
//!   magic number, whatever the file is called.
//!
//! JSON and protobuf are told apart by the first byte after any whitespace: `{` is JSON.
//! (A protobuf file's first byte is the high byte of its first record's length, which
//! would be `{` only for a record of 2 GiB or more, far above `max_request_bytes`.)
//!
//! A record or line larger than `max_request_bytes`, a truncated record, or one that
//! does not decode is an error naming the file and where: `line N` for JSON,
//! `byte offset N` (of the decompressed stream, for zstd) for protobuf.

use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use crate::ingest::decode::{
    decode_logs, decode_traces, parse_logs_json, parse_logs_proto, parse_traces_json,
    parse_traces_proto,
};
use crate::model::{Interner, LogEvent, SpanRecord};

/// The first bytes of a zstd frame.
pub const ZSTD_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Proto,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Proto => "proto",
        }
    }
}

/// What a file held.
#[derive(Debug, Clone, PartialEq)]
pub struct FileSummary {
    pub path: PathBuf,
    pub format: Format,
    pub zstd: bool,
    pub trace_requests: u64,
    pub log_requests: u64,
    pub spans: u64,
    pub log_records: u64,
    /// Spans and log records refused by decoding (invalid ids, ...).
    pub rejected: u64,
    /// The first reason something was refused.
    pub first_rejection: Option<String>,
    /// Bytes after decompression.
    pub bytes: u64,
}

/// Decoded records, in file order.
#[derive(Debug)]
pub enum Records {
    Spans(Vec<SpanRecord>),
    Logs(Vec<LogEvent>),
}

/// Where in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum At {
    Line { line: u64, offset: u64 },
    Offset { offset: u64, zstd: bool },
}

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            At::Line { line, offset } => write!(f, "line {line} (byte offset {offset})"),
            At::Offset {
                offset,
                zstd: false,
            } => write!(f, "byte offset {offset}"),
            At::Offset { offset, zstd: true } => {
                write!(f, "byte offset {offset} of the decompressed data")
            }
        }
    }
}

/// Why a file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("{}: cannot open: {source}", path.display())]
    Open { path: PathBuf, source: io::Error },
    #[error("{}: {at}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        at: At,
        source: io::Error,
    },
    #[error("{}: {at}: {message}", path.display())]
    Malformed {
        path: PathBuf,
        at: At,
        message: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Traces,
    Logs,
}

/// Reads `path`, handing every decoded request's records to `sink` in file order.
/// `max_record` bounds one record (or line) in bytes; `wrap` sees the raw file (for a
/// progress bar).
pub fn read_file(
    path: &Path,
    max_record: usize,
    interner: &Interner,
    wrap: impl FnOnce(File) -> Box<dyn Read>,
    sink: &mut dyn FnMut(Records),
) -> Result<FileSummary, InputError> {
    let file = File::open(path).map_err(|source| InputError::Open {
        path: path.to_owned(),
        source,
    })?;
    let mut raw = BufReader::with_capacity(256 * 1024, wrap(file));
    let read_err = |at: At| {
        let path = path.to_owned();
        move |source| InputError::Read { path, at, source }
    };
    let zstd = raw
        .fill_buf()
        .map_err(read_err(At::Offset {
            offset: 0,
            zstd: false,
        }))?
        .starts_with(&ZSTD_MAGIC);
    let mut reader: Box<dyn BufRead> = if zstd {
        let decoder = zstd::Decoder::with_buffer(raw).map_err(read_err(At::Offset {
            offset: 0,
            zstd: false,
        }))?;
        Box::new(BufReader::with_capacity(256 * 1024, decoder))
    } else {
        Box::new(raw)
    };
    let format = {
        let head = reader
            .fill_buf()
            .map_err(read_err(At::Offset { offset: 0, zstd }))?;
        match head.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'{') => Format::Json,
            _ => Format::Proto,
        }
    };
    let mut summary = FileSummary {
        path: path.to_owned(),
        format,
        zstd,
        trace_requests: 0,
        log_requests: 0,
        spans: 0,
        log_records: 0,
        rejected: 0,
        first_rejection: None,
        bytes: 0,
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    let first = if name.contains("log") {
        Kind::Logs
    } else {
        Kind::Traces
    };
    let mut ctx = Ctx {
        path,
        interner,
        summary: &mut summary,
        sink,
    };
    match format {
        Format::Json => read_json(&mut reader, max_record, &mut ctx)?,
        Format::Proto => read_proto(&mut reader, max_record, zstd, first, &mut ctx)?,
    }
    Ok(summary)
}

struct Ctx<'a> {
    path: &'a Path,
    interner: &'a Interner,
    summary: &'a mut FileSummary,
    sink: &'a mut dyn FnMut(Records),
}

impl Ctx<'_> {
    fn malformed(&self, at: At, message: impl Into<String>) -> InputError {
        InputError::Malformed {
            path: self.path.to_owned(),
            at,
            message: message.into(),
        }
    }

    fn traces(
        &mut self,
        req: opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest,
    ) {
        let decoded = decode_traces(req, self.interner);
        self.summary.trace_requests += 1;
        self.summary.spans += decoded.items.len() as u64;
        self.note_rejected(decoded.rejected, decoded.first_error);
        if !decoded.items.is_empty() {
            (self.sink)(Records::Spans(decoded.items));
        }
    }

    fn logs(
        &mut self,
        req: opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest,
    ) {
        let decoded = decode_logs(req, self.interner);
        self.summary.log_requests += 1;
        self.summary.log_records += decoded.items.len() as u64;
        self.note_rejected(decoded.rejected, decoded.first_error);
        if !decoded.items.is_empty() {
            (self.sink)(Records::Logs(decoded.items));
        }
    }

    fn note_rejected(&mut self, n: u64, first: Option<String>) {
        if n > 0 {
            self.summary.rejected += n;
            if self.summary.first_rejection.is_none() {
                self.summary.first_rejection = first;
            }
        }
    }
}

/// The first key of a JSON object, if `body` starts like `{"key"`; `Some("")` for `{}`.
pub(crate) fn first_key(body: &[u8]) -> Option<&[u8]> {
    let mut i = 0;
    let skip = |i: &mut usize| {
        while body.get(*i).is_some_and(|b| b.is_ascii_whitespace()) {
            *i += 1;
        }
    };
    skip(&mut i);
    if body.get(i) != Some(&b'{') {
        return None;
    }
    i += 1;
    skip(&mut i);
    match body.get(i) {
        Some(b'}') => Some(&[]),
        Some(b'"') => {
            let start = i + 1;
            let len = body[start..].iter().position(|&b| b == b'"')?;
            Some(&body[start..start + len])
        }
        _ => None,
    }
}

fn read_json(
    reader: &mut Box<dyn BufRead>,
    max_record: usize,
    ctx: &mut Ctx<'_>,
) -> Result<(), InputError> {
    let mut line = Vec::new();
    let mut offset = 0u64;
    let mut line_no = 0u64;
    loop {
        line.clear();
        let at = At::Line {
            line: line_no + 1,
            offset,
        };
        let n = reader
            .by_ref()
            .take(max_record as u64 + 1)
            .read_until(b'\n', &mut line)
            .map_err(|source| InputError::Read {
                path: ctx.path.to_owned(),
                at: at.clone(),
                source,
            })?;
        if n == 0 {
            break;
        }
        line_no += 1;
        if line.len() > max_record && line.last() != Some(&b'\n') {
            return Err(ctx.malformed(
                at,
                format!("line longer than max_request_bytes ({max_record} bytes)"),
            ));
        }
        offset += n as u64;
        ctx.summary.bytes += n as u64;
        let body = line.trim_ascii();
        if body.is_empty() {
            continue;
        }
        match first_key(body) {
            Some(b"resourceSpans") => {
                let req = parse_traces_json(body).map_err(|e| ctx.malformed(at, e.to_string()))?;
                ctx.traces(req);
            }
            Some(b"resourceLogs") => {
                let req = parse_logs_json(body).map_err(|e| ctx.malformed(at, e.to_string()))?;
                ctx.logs(req);
            }
            Some(b"") => {}
            Some(other) => {
                return Err(ctx.malformed(
                    at,
                    format!(
                        "not an OTLP/JSON traces or logs request: top-level key `{}` (expected resourceSpans or resourceLogs)",
                        String::from_utf8_lossy(&other[..other.len().min(64)])
                    ),
                ))
            }
            None => {
                return Err(ctx.malformed(
                    at,
                    "not an OTLP/JSON request: a line must be one JSON object",
                ))
            }
        }
    }
    Ok(())
}

/// Fills `buf` from `reader`; returns how many bytes were read (less than `buf.len()`
/// only at the end of the stream).
fn read_full(reader: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match reader.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

fn read_proto(
    reader: &mut Box<dyn BufRead>,
    max_record: usize,
    zstd: bool,
    mut first: Kind,
    ctx: &mut Ctx<'_>,
) -> Result<(), InputError> {
    let mut offset = 0u64;
    let mut body = Vec::new();
    loop {
        let at = At::Offset { offset, zstd };
        let read_err = |source| InputError::Read {
            path: ctx.path.to_owned(),
            at: at.clone(),
            source,
        };
        let mut len = [0u8; 4];
        let got = read_full(reader.as_mut(), &mut len).map_err(read_err)?;
        if got == 0 {
            break;
        }
        if got < 4 {
            return Err(ctx.malformed(at, format!("truncated record: {got} of the 4 length bytes")));
        }
        let n = u32::from_be_bytes(len) as usize;
        if n > max_record {
            return Err(ctx.malformed(
                at,
                format!(
                    "record length {n} is larger than max_request_bytes ({max_record}): not a length-prefixed OTLP protobuf file, or a record too large"
                ),
            ));
        }
        body.resize(n, 0);
        let got = read_full(reader.as_mut(), &mut body).map_err(read_err)?;
        if got < n {
            return Err(ctx.malformed(at, format!("truncated record: {got} of its {n} bytes")));
        }
        let second = match first {
            Kind::Traces => Kind::Logs,
            Kind::Logs => Kind::Traces,
        };
        let mut first_error = None;
        let mut decoded = false;
        for kind in [first, second] {
            let result = match kind {
                Kind::Traces => parse_traces_proto(&body).map(|req| ctx.traces(req)),
                Kind::Logs => parse_logs_proto(&body).map(|req| ctx.logs(req)),
            };
            match result {
                Ok(()) => {
                    first = kind;
                    decoded = true;
                    break;
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if !decoded {
            let reason = first_error
                .map(|e| e.to_string())
                .unwrap_or_else(|| "does not decode".into());
            return Err(ctx.malformed(
                at,
                format!("record is neither an OTLP traces nor logs request ({reason})"),
            ));
        }
        offset += 4 + n as u64;
        ctx.summary.bytes += 4 + n as u64;
    }
    Ok(())
}
