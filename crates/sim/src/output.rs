//! File formats of the collector's file exporter: `format: proto` (each request
//! prefixed by its 4-byte big-endian length) and `format: json` (one OTLP/JSON request
//! per line).

use std::io::{self, Write};

use prost::Message;
use serde::Serialize;

/// Writes `msg` as a 4-byte big-endian length followed by its protobuf encoding;
/// returns the number of bytes written.
pub(crate) fn write_length_prefixed(w: &mut impl Write, msg: &impl Message) -> io::Result<usize> {
    let bytes = msg.encode_to_vec();
    let len = u32::try_from(bytes.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "message larger than 4 GiB"))?;
    w.write_all(&len.to_be_bytes())?;
    w.write_all(&bytes)?;
    Ok(bytes.len() + 4)
}

/// Why a length-prefixed file did not decode.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("truncated record at byte {offset}: need {need} bytes, {left} left")]
    Truncated {
        offset: usize,
        need: usize,
        left: usize,
    },
    #[error("record at byte {offset} does not decode: {source}")]
    Decode {
        offset: usize,
        source: prost::DecodeError,
    },
}

/// Decodes every record of a length-prefixed file.
pub fn read_length_prefixed<M: Message + Default>(bytes: &[u8]) -> Result<Vec<M>, ReadError> {
    let mut out = Vec::new();
    let mut offset = 0;
    while offset < bytes.len() {
        let left = bytes.len() - offset;
        if left < 4 {
            return Err(ReadError::Truncated {
                offset,
                need: 4,
                left,
            });
        }
        let mut len_bytes = [0u8; 4];
        len_bytes.copy_from_slice(&bytes[offset..offset + 4]);
        let len = u32::from_be_bytes(len_bytes) as usize;
        let body_start = offset + 4;
        if bytes.len() - body_start < len {
            return Err(ReadError::Truncated {
                offset,
                need: len,
                left: bytes.len() - body_start,
            });
        }
        let msg = M::decode(&bytes[body_start..body_start + len])
            .map_err(|source| ReadError::Decode { offset, source })?;
        out.push(msg);
        offset = body_start + len;
    }
    Ok(out)
}

/// One OTLP/JSON line: the opentelemetry-proto serde mapping (lowerCamelCase fields, hex
/// trace and span ids, 64-bit integers as strings, enums as numbers), with `null`
/// fields dropped, since OTLP/JSON omits unset fields.
pub fn to_otlp_json<T: Serialize>(msg: &T) -> Result<String, serde_json::Error> {
    let mut value = serde_json::to_value(msg)?;
    drop_nulls(&mut value);
    serde_json::to_string(&value)
}

fn drop_nulls(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            for v in map.values_mut() {
                drop_nulls(v);
            }
        }
        serde_json::Value::Array(items) => {
            for v in items {
                drop_nulls(v);
            }
        }
        _ => {}
    }
}
