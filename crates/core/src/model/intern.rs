//! String interning for attribute keys and short repeated values.
//!
//! Buffered spans repeat the same keys (`gen_ai.request.model`, ...) and many of the
//! same values (model names, span kinds, service names). Interning them keeps the
//! memory per buffered span below its size on the wire. The table is bounded: once it
//! holds `capacity` strings, new strings are allocated on their own and not remembered,
//! so a flood of distinct values costs what the values cost and no more. A string is
//! admitted on its second sighting by a thread (see `LocalCache`), so one-off values do
//! not fill the table at all.
//!
//! What the table remembers is never freed, not even with the table (at most `capacity`
//! strings of at most `max_len` bytes; a process keeps one table), and is therefore made
//! static: cloning and dropping it costs no atomic operation, so threads sharing hot
//! keys do not contend on one reference count.

use std::cell::RefCell;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::DashSet;

/// A shared immutable string: one pointer wide (the length sits in the heap header), so
/// that an attribute key or string value costs 8 bytes in a buffered span. Cloning is a
/// reference-count increment, or nothing for a string the [`Interner`] remembers.
pub type Str = arcstr::ArcStr;

/// A concurrent, bounded string interner.
pub struct Interner {
    /// aHash: fast, and keyed at random per process, so hostile strings cannot be
    /// chosen to collide.
    set: DashSet<Str, ahash::RandomState>,
    capacity: usize,
    max_len: usize,
    /// Tells the thread-local caches which table they mirror.
    id: u64,
}

/// Each thread's cache in front of the shared table: a hit costs a hash and a compare,
/// without the shard lock's atomic operations.
///
/// It also decides what the shared table admits. A string first seen on a thread is
/// copied on its own and kept here as a candidate; seen again while still here, it is
/// remembered in the shared table (and the candidate replaced by the shared copy).
/// Ids, URLs and other one-off values then never fill the table or take its lock, while
/// a value repeated within a thread's recent strings is still shared from its second
/// sighting on.
struct LocalCache {
    /// The [`Interner::id`] the entries came from.
    owner: u64,
    /// Remembered (static) strings and candidates (seen once, not static).
    strings: HashSet<Str, ahash::RandomState>,
}

/// Entries per thread; the cache starts over when full.
const LOCAL_CAPACITY: usize = 8192;

thread_local! {
    static LOCAL: RefCell<LocalCache> = RefCell::new(LocalCache {
        owner: 0,
        strings: HashSet::with_hasher(ahash::RandomState::new()),
    });
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl Interner {
    /// `capacity`: how many distinct strings to remember; `max_len`: longer strings are
    /// never interned (they are unlikely to repeat and would pin memory).
    pub fn new(capacity: usize, max_len: usize) -> Interner {
        Interner {
            set: DashSet::with_hasher(ahash::RandomState::new()),
            capacity,
            max_len,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        }
    }

    pub fn intern(&self, s: &str) -> Str {
        if s.len() > self.max_len {
            return Str::from(s);
        }
        LOCAL.with(|local| {
            let mut local = local.borrow_mut();
            if local.owner != self.id {
                local.owner = self.id;
                local.strings.clear();
            }
            let candidate = match local.strings.get(s) {
                Some(hit) if Str::is_static(hit) => return hit.clone(),
                Some(hit) => Some(hit.clone()),
                None => None,
            };
            match candidate {
                // The second sighting: remember it, unless the table is full (then the
                // candidate goes on being shared within this thread).
                Some(candidate) => {
                    let shared = self.intern_shared(s);
                    if !Str::is_static(&shared) {
                        return candidate;
                    }
                    local.strings.replace(shared.clone());
                    shared
                }
                None => {
                    if local.strings.len() >= LOCAL_CAPACITY {
                        local.strings.clear();
                    }
                    let new = Str::from(s);
                    local.strings.insert(new.clone());
                    new
                }
            }
        })
    }

    fn intern_shared(&self, s: &str) -> Str {
        if let Some(existing) = self.set.get(s) {
            return existing.key().clone();
        }
        let new = Str::from(s);
        if self.set.len() < self.capacity {
            // Remembered for good: made static (see the module docs).
            new.leak();
            if !self.set.insert(new.clone()) {
                // Another thread remembered it first: share its copy.
                if let Some(existing) = self.set.get(s) {
                    return existing.key().clone();
                }
            }
        }
        new
    }

    /// Interns an owned string (a long one is copied once into its shared form).
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
    fn strings_seen_twice_are_shared_and_the_table_is_bounded() {
        let i = Interner::new(2, 8);
        let first = i.intern("model");
        assert_eq!(i.len(), 0, "a first sighting is not remembered");
        let a = i.intern("model");
        let b = i.intern("model");
        assert_eq!(first, a);
        assert!(Str::ptr_eq(&a, &b));
        assert!(Str::is_static(&a));
        assert_eq!(i.len(), 1);
        for s in ["x", "x", "y", "y"] {
            i.intern(s);
        }
        assert_eq!(i.len(), 2, "capacity holds");
        let y = i.intern("y");
        assert!(
            !Str::is_static(&y),
            "past capacity, strings are not remembered"
        );
        let long = i.intern("a string longer than eight");
        assert_eq!(&*long, "a string longer than eight");
        assert_eq!(i.len(), 2);
    }

    #[test]
    fn one_off_values_do_not_fill_the_table() {
        let i = Interner::new(1000, 96);
        for n in 0..5000 {
            i.intern(&format!("chatcmpl-{n:08x}"));
        }
        assert_eq!(i.len(), 0);
    }

    #[test]
    fn each_table_has_its_own_thread_cache() {
        let a = Interner::default();
        let b = Interner::default();
        a.intern("k");
        let ka = a.intern("k");
        b.intern("k");
        let kb = b.intern("k");
        assert!(!Str::ptr_eq(&ka, &kb));
        // Switching tables starts the thread's cache over; the shared copy is found
        // again from the second sighting.
        a.intern("k");
        assert!(Str::ptr_eq(&ka, &a.intern("k")));
    }
}
