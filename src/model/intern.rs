//! String interning for attribute keys and short repeated values.
//!
//! Buffered spans repeat the same keys (`gen_ai.request.model`, ...) and many of the
//! same values (model names, span kinds, service names). Interning them keeps the
//! memory per buffered span below its size on the wire. The table is bounded: once it
//! holds `capacity` strings, new strings are allocated on their own and not remembered,
//! so a flood of distinct values costs what the values cost and no more.

use dashmap::DashSet;

/// A shared immutable string: one pointer wide (the length sits in the heap header), so
/// that an attribute key or string value costs 8 bytes in a buffered span. Cloning is a
/// reference-count increment.
pub type Str = arcstr::ArcStr;

/// A concurrent, bounded string interner.
pub struct Interner {
    /// aHash: fast, and keyed at random per process, so hostile strings cannot be
    /// chosen to collide.
    set: DashSet<Str, ahash::RandomState>,
    capacity: usize,
    max_len: usize,
}

impl Interner {
    /// `capacity`: how many distinct strings to remember; `max_len`: longer strings are
    /// never interned (they are unlikely to repeat and would pin memory).
    pub fn new(capacity: usize, max_len: usize) -> Interner {
        Interner {
            set: DashSet::with_hasher(ahash::RandomState::new()),
            capacity,
            max_len,
        }
    }

    pub fn intern(&self, s: &str) -> Str {
        if s.len() > self.max_len {
            return Str::from(s);
        }
        if let Some(existing) = self.set.get(s) {
            return existing.key().clone();
        }
        let new = Str::from(s);
        if self.set.len() < self.capacity {
            self.set.insert(new.clone());
        }
        new
    }

    /// Interns an owned string without copying it when it is not already known.
    pub fn intern_owned(&self, s: String) -> Str {
        if s.len() > self.max_len {
            return Str::from(s);
        }
        self.intern(&s)
    }

    pub fn len(&self) -> usize {
        self.set.len()
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }
}

impl Default for Interner {
    fn default() -> Interner {
        Interner::new(200_000, 96)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interned_strings_are_shared_and_bounded() {
        let i = Interner::new(2, 8);
        let a = i.intern("model");
        let b = i.intern("model");
        assert!(Str::ptr_eq(&a, &b));
        i.intern("x");
        i.intern("y");
        assert_eq!(i.len(), 2);
        let long = i.intern("a string longer than eight");
        assert_eq!(&*long, "a string longer than eight");
        assert_eq!(i.len(), 2);
    }
}
