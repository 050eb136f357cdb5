//! The clusterer shared between the pipeline's shard threads: one
//! `Mutex<ReasonClusterer>` per shard, chosen by the hash of the key. A key always maps
//! to one shard, so its clusters stay together and threads working on different keys
//! rarely contend. Ids are `local id * shards + shard`, unique over all shards.

use std::sync::{Mutex, MutexGuard};

use super::cluster::{Pattern, PatternId, ReasonClusterer, ReasonConfig, ReasonConfigError};
use super::mask::hash_bytes;

pub struct SharedClusterer {
    shards: Vec<Mutex<ReasonClusterer>>,
}

impl SharedClusterer {
    /// `shards` clusterers (at least 1), each with `max_patterns / shards` patterns
    /// (rounded up), so the bound over all shards stays about `max_patterns`.
    pub fn new(cfg: ReasonConfig, shards: usize) -> Result<SharedClusterer, ReasonConfigError> {
        let n = shards.max(1);
        let mut per = cfg.clone();
        per.max_patterns = cfg.max_patterns.div_ceil(n).max(1);
        let shards = (0..n)
            .map(|_| ReasonClusterer::new(per.clone()).map(Mutex::new))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SharedClusterer { shards })
    }

    pub fn shards(&self) -> usize {
        self.shards.len()
    }

    fn lock(&self, shard: usize) -> MutexGuard<'_, ReasonClusterer> {
        // A panic while holding the lock leaves a consistent clusterer (every method
        // finishes its updates before returning), so a poisoned lock is still usable.
        self.shards[shard]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn shard_of_key(&self, key: &str) -> usize {
        (hash_bytes(key.as_bytes()) % self.shards.len() as u64) as usize
    }

    fn global(&self, shard: usize, local: PatternId) -> PatternId {
        PatternId(local.0 * self.shards.len() as u64 + shard as u64)
    }

    fn split(&self, id: PatternId) -> (usize, PatternId) {
        let n = self.shards.len() as u64;
        ((id.0 % n) as usize, PatternId(id.0 / n))
    }

    /// See [`ReasonClusterer::assign`].
    pub fn assign(&self, key: &str, reason: &str) -> PatternId {
        let shard = self.shard_of_key(key);
        let local = self.lock(shard).assign(key, reason);
        self.global(shard, local)
    }

    /// A copy of the pattern `id` resolves to, with its global id.
    pub fn pattern(&self, id: PatternId) -> Option<Pattern> {
        let (shard, local) = self.split(id);
        let guard = self.lock(shard);
        let mut p = guard.pattern(local)?.clone();
        p.id = self.global(shard, p.id);
        Some(p)
    }

    /// The current id of the pattern `id` was assigned to (differs after a merge).
    pub fn resolve(&self, id: PatternId) -> Option<PatternId> {
        let (shard, local) = self.split(id);
        let resolved = self.lock(shard).resolve(local)?;
        Some(self.global(shard, resolved))
    }

    /// Live patterns over all shards.
    pub fn live(&self) -> usize {
        (0..self.shards.len())
            .map(|s| self.lock(s).stats().live)
            .sum()
    }
}
