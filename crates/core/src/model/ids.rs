//! Trace and span ids as fixed-size arrays.

use std::fmt;
use std::num::NonZeroU64;

/// A 16-byte trace id. Never all zero: construction refuses the invalid id.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TraceId([u8; 16]);

/// An 8-byte span id. Never all zero, which lets `Option<SpanId>` stay 8 bytes. Held
/// as the big-endian integer of its bytes, so that ids order as their bytes do.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpanId(NonZeroU64);

/// Why bytes are not a valid id; the message is what a client sees in `partial_success`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{what} has {len} bytes, expected {expected}")]
    WrongLength {
        what: &'static str,
        len: usize,
        expected: usize,
    },
    #[error("{what} is all zero")]
    AllZero { what: &'static str },
    #[error("{what} is not valid hex")]
    NotHex { what: &'static str },
}

impl TraceId {
    pub fn from_bytes(bytes: &[u8]) -> Result<TraceId, IdError> {
        let arr: [u8; 16] = bytes.try_into().map_err(|_| IdError::WrongLength {
            what: "trace_id",
            len: bytes.len(),
            expected: 16,
        })?;
        if arr == [0; 16] {
            return Err(IdError::AllZero { what: "trace_id" });
        }
        Ok(TraceId(arr))
    }

    pub fn from_hex(s: &str) -> Result<TraceId, IdError> {
        let mut arr = [0u8; 16];
        if s.len() != 32 {
            return Err(IdError::WrongLength {
                what: "trace_id",
                len: s.len() / 2,
                expected: 16,
            });
        }
        hex::decode_to_slice(s, &mut arr).map_err(|_| IdError::NotHex { what: "trace_id" })?;
        TraceId::from_bytes(&arr)
    }

    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The shard that owns this trace among `n` shards. Stable for a given id.
    pub fn shard(&self, n: usize) -> usize {
        debug_assert!(n > 0);
        // Trace ids are random in their low bytes (W3C trace context), so a slice of
        // them is already a good hash.
        let lo = u64::from_le_bytes([
            self.0[8], self.0[9], self.0[10], self.0[11], self.0[12], self.0[13], self.0[14],
            self.0[15],
        ]);
        (lo % n as u64) as usize
    }
}

impl SpanId {
    pub fn from_bytes(bytes: &[u8]) -> Result<SpanId, IdError> {
        let arr: [u8; 8] = bytes.try_into().map_err(|_| IdError::WrongLength {
            what: "span_id",
            len: bytes.len(),
            expected: 8,
        })?;
        NonZeroU64::new(u64::from_be_bytes(arr))
            .map(SpanId)
            .ok_or(IdError::AllZero { what: "span_id" })
    }

    pub fn from_hex(s: &str) -> Result<SpanId, IdError> {
        let mut arr = [0u8; 8];
        if s.len() != 16 {
            return Err(IdError::WrongLength {
                what: "span_id",
                len: s.len() / 2,
                expected: 8,
            });
        }
        hex::decode_to_slice(s, &mut arr).map_err(|_| IdError::NotHex { what: "span_id" })?;
        SpanId::from_bytes(&arr)
    }

    pub fn to_bytes(self) -> [u8; 8] {
        self.0.get().to_be_bytes()
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.to_bytes())
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceId({self})")
    }
}

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.to_bytes() {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpanId({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_refuse_zero_and_wrong_length() {
        assert_eq!(
            TraceId::from_bytes(&[0; 16]),
            Err(IdError::AllZero { what: "trace_id" })
        );
        assert!(matches!(
            SpanId::from_bytes(&[1; 7]),
            Err(IdError::WrongLength { len: 7, .. })
        ));
        let t = TraceId::from_hex("0102030405060708090A0B0C0D0E0F10").unwrap();
        assert_eq!(t.to_hex(), "0102030405060708090a0b0c0d0e0f10");
        assert!(TraceId::from_hex("zz02030405060708090a0b0c0d0e0f10").is_err());
        let a = SpanId::from_hex("00000000000000ff").unwrap();
        let b = SpanId::from_hex("0100000000000000").unwrap();
        assert!(a < b, "span ids order as their bytes");
        assert_eq!(b.to_hex(), "0100000000000000");
        assert_eq!(std::mem::size_of::<Option<SpanId>>(), 8);
    }
}
