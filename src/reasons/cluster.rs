//! The online clusterer: a bounded Drain-style prefix tree for short reasons, a
//! token-set (Jaccard) list for long free text, a periodic merge with stable ids, and
//! LRU eviction under `max_patterns`.
//!
//! Layout: every pattern lives in a slot of an arena; slots are threaded on an
//! intrusive LRU list (O(1) touch, no allocation). Tree nodes live in a second arena
//! and count the patterns below them, so a node whose last pattern is evicted is freed.
//! Ids come from a counter and are never reused; a merged id keeps resolving to the
//! pattern that absorbed it until that pattern is evicted.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use super::mask::{hash_bytes, hash_lower, headline, tokenize, Token, KEPT, WILD};

/// A stable pattern id. Ids are never reused for a different pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PatternId(pub u64);

impl std::fmt::Display for PatternId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "p{}", self.0)
    }
}

/// Which path of the clusterer owns a pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatternKind {
    /// Drain prefix tree: same token count, positional similarity.
    Sequence,
    /// Long free text: token-set (Jaccard) similarity.
    TokenSet,
}

/// A pattern: a template with its variable parts as `<*>`.
#[derive(Debug, Clone)]
pub struct Pattern {
    pub id: PatternId,
    pub key: Arc<str>,
    pub template: String,
    /// Reasons assigned to this pattern (including those of patterns merged into it).
    pub count: u64,
    pub kind: PatternKind,
    /// Sequence: one hash per position ([`WILD`] for `<*>`). Token set: the sorted
    /// lower-case hashes every member shares.
    tokens: Vec<u64>,
    /// The text between tokens and the tokens themselves, for rendering the template.
    pieces: Vec<Piece>,
    /// Positions (< 64) that became `<*>` by a family merge: evidence of a variable.
    general: u64,
}

#[derive(Debug, Clone)]
struct Piece {
    sep: Box<str>,
    text: Box<str>,
    /// Sequence: the token hash; token set: the lower-case hash.
    hash: u64,
}

/// Why a configuration is refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReasonConfigError {
    #[error("`{field}` must be {expected}, got {value}")]
    OutOfRange {
        field: &'static str,
        expected: &'static str,
        value: String,
    },
}

/// Parameters of the clusterer. One configuration serves every key.
#[derive(Debug, Clone, PartialEq)]
pub struct ReasonConfig {
    /// Depth of the Drain tree (layer 1 is the token count, then `depth - 2` prefix
    /// token layers, then the leaf). At least 3.
    pub depth: usize,
    /// Minimum positional similarity to join a sequence pattern.
    pub sim_threshold: f64,
    /// Children of a tree node; past it, new tokens go to the `<*>` child.
    pub max_children: usize,
    /// Patterns kept in memory (over all keys); the least recently used is evicted.
    pub max_patterns: usize,
    /// Tokens kept from a reason (the rest is cut off).
    pub max_tokens: usize,
    /// Reasons with more tokens than this take the token-set path.
    pub long_text_tokens: usize,
    /// Minimum Jaccard similarity to join a token-set pattern.
    pub jaccard_threshold: f64,
    /// Run the merge pass every this many assignments (0: never).
    pub merge_interval: u64,
    /// Minimum Jaccard similarity of two patterns' constant tokens to merge them.
    pub merge_jaccard: f64,
    /// Patterns compared per (key, length) group in one merge pass (bounds its cost).
    pub merge_scan_limit: usize,
    /// Sequence patterns that differ at one position merge once there are this many.
    pub min_family: usize,
}

impl Default for ReasonConfig {
    fn default() -> Self {
        ReasonConfig {
            depth: 4,
            sim_threshold: 0.5,
            max_children: 100,
            max_patterns: 5000,
            max_tokens: 48,
            long_text_tokens: 16,
            jaccard_threshold: 0.5,
            merge_interval: 1_000,
            merge_jaccard: 0.8,
            merge_scan_limit: 256,
            min_family: 4,
        }
    }
}

impl ReasonConfig {
    pub fn validate(&self) -> Result<(), ReasonConfigError> {
        fn bad(
            field: &'static str,
            expected: &'static str,
            value: impl ToString,
        ) -> ReasonConfigError {
            ReasonConfigError::OutOfRange {
                field,
                expected,
                value: value.to_string(),
            }
        }
        if self.depth < 3 {
            return Err(bad("depth", "at least 3", self.depth));
        }
        for (field, v) in [
            ("sim_threshold", self.sim_threshold),
            ("jaccard_threshold", self.jaccard_threshold),
            ("merge_jaccard", self.merge_jaccard),
        ] {
            if !(v > 0.0 && v <= 1.0) {
                return Err(bad(field, "in (0, 1]", v));
            }
        }
        if self.max_children < 1 {
            return Err(bad("max_children", "at least 1", self.max_children));
        }
        if self.max_patterns < 1 || self.max_patterns >= NONE as usize {
            return Err(bad(
                "max_patterns",
                "between 1 and 2^32 - 2",
                self.max_patterns,
            ));
        }
        if self.max_tokens < 1 {
            return Err(bad("max_tokens", "at least 1", self.max_tokens));
        }
        if self.min_family < 2 {
            return Err(bad("min_family", "at least 2", self.min_family));
        }
        if self.merge_scan_limit < 2 {
            return Err(bad("merge_scan_limit", "at least 2", self.merge_scan_limit));
        }
        Ok(())
    }
}

const NONE: u32 = u32::MAX;

/// Hasher for keys that are already hashes (token hashes, ids): multiplies once.
#[derive(Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0 = hash_bytes(bytes) ^ self.0.rotate_left(5);
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }
}

type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

struct Slot {
    pattern: Pattern,
    key: u32,
    /// Tree leaves (sequence) that list this slot.
    leaves: Vec<u32>,
    /// Ids merged into this pattern.
    aliases: Vec<u64>,
    prev: u32,
    next: u32,
    live: bool,
}

struct Node {
    children: IdMap<u64, u32>,
    wild: u32,
    patterns: Vec<u32>,
    parent: u32,
    /// Edge from the parent (a token hash, [`WILD`]); for a root: its length.
    edge: u64,
    key: u32,
    /// Pattern memberships below this node.
    refs: u32,
}

struct KeyEntry {
    name: Arc<str>,
    /// Token-set patterns of this key, oldest first.
    long: Vec<u32>,
    /// Live patterns of this key.
    refs: u32,
}

/// Counters of what the clusterer did, for self-metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClustererStats {
    pub assigned: u64,
    pub created: u64,
    pub evicted: u64,
    pub merged: u64,
    pub live: usize,
}

/// Assigns reasons to patterns online, within their key. Single-threaded; see
/// [`super::SharedClusterer`] for the pipeline's shared form.
pub struct ReasonClusterer {
    cfg: ReasonConfig,
    slots: Vec<Slot>,
    free_slots: Vec<u32>,
    nodes: Vec<Node>,
    free_nodes: Vec<u32>,
    /// (key, token count) -> root node.
    roots: IdMap<u64, u32>,
    keys: Vec<KeyEntry>,
    free_keys: Vec<u32>,
    key_index: HashMap<Box<str>, u32, BuildHasherDefault<IdHasher>>,
    /// Every id that resolves (live ids and aliases) -> slot.
    ids: IdMap<u64, u32>,
    next_id: u64,
    lru_head: u32,
    lru_tail: u32,
    live: usize,
    stats: ClustererStats,
    since_merge: u64,
    /// The key being assigned to: eviction never frees its entry mid-assignment.
    pinned_key: u32,
    scratch: Vec<Token>,
    set_scratch: Vec<u64>,
}

const STOP_WORDS: [&[u8]; 22] = [
    b"a", b"an", b"the", b"is", b"are", b"was", b"were", b"be", b"of", b"to", b"in", b"and", b"or",
    b"for", b"on", b"with", b"that", b"this", b"it", b"as", b"by", b"at",
];

impl ReasonClusterer {
    pub fn new(cfg: ReasonConfig) -> Result<ReasonClusterer, ReasonConfigError> {
        cfg.validate()?;
        Ok(ReasonClusterer {
            cfg,
            slots: Vec::new(),
            free_slots: Vec::new(),
            nodes: Vec::new(),
            free_nodes: Vec::new(),
            roots: IdMap::default(),
            keys: Vec::new(),
            free_keys: Vec::new(),
            key_index: HashMap::default(),
            ids: IdMap::default(),
            next_id: 1,
            lru_head: NONE,
            lru_tail: NONE,
            live: 0,
            stats: ClustererStats::default(),
            since_merge: 0,
            pinned_key: NONE,
            scratch: Vec::with_capacity(64),
            set_scratch: Vec::with_capacity(64),
        })
    }

    pub fn config(&self) -> &ReasonConfig {
        &self.cfg
    }

    pub fn stats(&self) -> ClustererStats {
        ClustererStats {
            live: self.live,
            ..self.stats
        }
    }

    /// Live slots, tree nodes, keys and resolvable ids: what memory is spent on.
    #[cfg(test)]
    pub(crate) fn footprint(&self) -> (usize, usize, usize, usize) {
        (
            self.slots.len() - self.free_slots.len(),
            self.nodes.len() - self.free_nodes.len(),
            self.key_index.len(),
            self.ids.len(),
        )
    }

    /// The pattern an id resolves to (itself, or the pattern it was merged into), or
    /// `None` once evicted.
    pub fn pattern(&self, id: PatternId) -> Option<&Pattern> {
        let slot = *self.ids.get(&id.0)?;
        Some(&self.slots[slot as usize].pattern)
    }

    /// The current id of the pattern `id` was assigned to (differs after a merge).
    pub fn resolve(&self, id: PatternId) -> Option<PatternId> {
        self.pattern(id).map(|p| p.id)
    }

    /// Live patterns, most recently used first.
    pub fn patterns(&self) -> impl Iterator<Item = &Pattern> + '_ {
        let mut cur = self.lru_head;
        std::iter::from_fn(move || {
            if cur == NONE {
                return None;
            }
            let s = &self.slots[cur as usize];
            cur = s.next;
            Some(&s.pattern)
        })
    }

    /// Assigns `reason` to a pattern of `key`, creating or generalising one if needed.
    /// Allocates nothing when the reason matches an existing template of a known key.
    pub fn assign(&mut self, key: &str, reason: &str) -> PatternId {
        let text = headline(reason);
        let mut toks = std::mem::take(&mut self.scratch);
        tokenize(text, self.cfg.max_tokens, &mut toks);
        let key_idx = self.key(key);
        self.pinned_key = key_idx;
        let id = if toks.len() > self.cfg.long_text_tokens {
            self.assign_set(key_idx, text, &toks)
        } else {
            self.assign_seq(key_idx, text, &toks)
        };
        self.scratch = toks;
        self.pinned_key = NONE;
        self.stats.assigned += 1;
        self.since_merge += 1;
        if self.cfg.merge_interval > 0 && self.since_merge >= self.cfg.merge_interval {
            self.since_merge = 0;
            self.merge_pass();
        }
        id
    }

    /// Runs the merge pass now.
    pub fn merge_now(&mut self) {
        self.since_merge = 0;
        self.merge_pass();
    }

    fn key(&mut self, key: &str) -> u32 {
        if let Some(&k) = self.key_index.get(key) {
            return k;
        }
        let entry = KeyEntry {
            name: Arc::from(key),
            long: Vec::new(),
            refs: 0,
        };
        let k = match self.free_keys.pop() {
            Some(k) => {
                self.keys[k as usize] = entry;
                k
            }
            None => {
                self.keys.push(entry);
                (self.keys.len() - 1) as u32
            }
        };
        self.key_index.insert(Box::from(key), k);
        k
    }

    // ---- sequence path (Drain) ------------------------------------------------------

    fn root_key(key: u32, len: usize) -> u64 {
        (u64::from(key) << 32) | len as u64
    }

    /// Descends the tree without changing it; returns the leaf.
    fn find_leaf(&self, key: u32, toks: &[Token]) -> Option<u32> {
        let mut node = *self.roots.get(&Self::root_key(key, toks.len()))?;
        let layers = (self.cfg.depth - 2).min(toks.len());
        for t in &toks[..layers] {
            let n = &self.nodes[node as usize];
            let next = if t.is_wild() {
                n.wild
            } else {
                n.children.get(&t.hash).copied().unwrap_or(n.wild)
            };
            if next == NONE {
                return None;
            }
            node = next;
        }
        Some(node)
    }

    /// Drain's simSeq (equal positions / length; two variables are equal) and the
    /// number of `<*>` positions, or `None` when the message does not fit the
    /// template: every constant of the template must be in the message. A constant
    /// becomes `<*>` only through the merge pass, once several patterns differ there,
    /// so that `VM Paused` and `VM Resumed` stay apart while user names do not.
    fn similarity(tpl: &[u64], toks: &[Token]) -> Option<(f64, usize)> {
        let mut eq = 0usize;
        let mut params = 0usize;
        for (t, m) in tpl.iter().zip(toks) {
            if *t == m.hash {
                eq += 1;
            } else if *t == WILD {
                params += 1;
            } else {
                return None;
            }
        }
        let len = tpl.len().max(1);
        Some((eq as f64 / len as f64, params))
    }

    fn assign_seq(&mut self, key: u32, text: &str, toks: &[Token]) -> PatternId {
        if let Some(leaf) = self.find_leaf(key, toks) {
            let mut best = NONE;
            let mut best_sim = -1.0;
            let mut best_params = 0;
            for &s in &self.nodes[leaf as usize].patterns {
                let Some((sim, params)) =
                    Self::similarity(&self.slots[s as usize].pattern.tokens, toks)
                else {
                    continue;
                };
                if sim > best_sim || (sim == best_sim && params > best_params) {
                    best = s;
                    best_sim = sim;
                    best_params = params;
                }
            }
            if best != NONE && best_sim >= self.cfg.sim_threshold {
                self.join_seq(best);
                return self.slots[best as usize].pattern.id;
            }
        }
        self.create_seq(key, text, toks)
    }

    fn join_seq(&mut self, slot: u32) {
        self.touch(slot);
        self.slots[slot as usize].pattern.count += 1;
    }

    fn create_seq(&mut self, key: u32, text: &str, toks: &[Token]) -> PatternId {
        self.make_room();
        let tokens: Vec<u64> = toks.iter().map(|t| t.hash).collect();
        let pieces = pieces_of(text, toks, |t| t.hash);
        let slot = self.new_slot(key, PatternKind::Sequence, tokens, pieces);
        let leaf = self.add_path(key, toks);
        self.nodes[leaf as usize].patterns.push(slot);
        self.slots[slot as usize].leaves.push(leaf);
        self.add_refs(leaf, 1);
        self.slots[slot as usize].pattern.id
    }

    fn new_node(&mut self, parent: u32, edge: u64, key: u32) -> u32 {
        let node = Node {
            children: IdMap::default(),
            wild: NONE,
            patterns: Vec::new(),
            parent,
            edge,
            key,
            refs: 0,
        };
        match self.free_nodes.pop() {
            Some(i) => {
                self.nodes[i as usize] = node;
                i
            }
            None => {
                self.nodes.push(node);
                (self.nodes.len() - 1) as u32
            }
        }
    }

    /// Finds or creates the leaf for `toks` (Drain's `addSeqToPrefixTree`).
    fn add_path(&mut self, key: u32, toks: &[Token]) -> u32 {
        let rk = Self::root_key(key, toks.len());
        let mut node = match self.roots.get(&rk) {
            Some(&n) => n,
            None => {
                let n = self.new_node(NONE, toks.len() as u64, key);
                self.roots.insert(rk, n);
                n
            }
        };
        let layers = (self.cfg.depth - 2).min(toks.len());
        for t in &toks[..layers] {
            let (existing, wild, full) = {
                let n = &self.nodes[node as usize];
                let existing = if t.is_wild() {
                    None
                } else {
                    n.children.get(&t.hash).copied()
                };
                let count = n.children.len() + usize::from(n.wild != NONE);
                (existing, n.wild, count >= self.cfg.max_children)
            };
            node = match existing {
                Some(c) => c,
                None if t.is_wild() || full => {
                    if wild != NONE {
                        wild
                    } else {
                        let c = self.new_node(node, WILD, key);
                        self.nodes[node as usize].wild = c;
                        c
                    }
                }
                None => {
                    let c = self.new_node(node, t.hash, key);
                    self.nodes[node as usize].children.insert(t.hash, c);
                    c
                }
            };
        }
        node
    }

    /// Adds `delta` pattern memberships to `node` and its ancestors; frees nodes that
    /// reach zero.
    fn add_refs(&mut self, node: u32, delta: i32) {
        let mut cur = node;
        while cur != NONE {
            let n = &mut self.nodes[cur as usize];
            n.refs = (i64::from(n.refs) + i64::from(delta)).max(0) as u32;
            let parent = n.parent;
            if n.refs == 0 {
                let (edge, key) = (n.edge, n.key);
                n.children = IdMap::default();
                n.patterns = Vec::new();
                n.wild = NONE;
                if parent == NONE {
                    self.roots.remove(&Self::root_key(key, edge as usize));
                } else {
                    let p = &mut self.nodes[parent as usize];
                    if edge == WILD && p.wild == cur {
                        p.wild = NONE;
                    } else if p.children.get(&edge) == Some(&cur) {
                        p.children.remove(&edge);
                    }
                }
                self.free_nodes.push(cur);
            }
            cur = parent;
        }
    }

    // ---- token-set path (Jaccard) ---------------------------------------------------

    fn fill_set(text: &str, toks: &[Token], out: &mut Vec<u64>) {
        out.clear();
        let b = text.as_bytes();
        for t in toks {
            if t.is_wild() {
                continue;
            }
            let w = &b[t.start as usize..t.end as usize];
            if w.len() <= 1 || STOP_WORDS.iter().any(|s| s.eq_ignore_ascii_case(w)) {
                continue;
            }
            out.push(hash_lower(w));
        }
        out.sort_unstable();
        out.dedup();
    }

    fn assign_set(&mut self, key: u32, text: &str, toks: &[Token]) -> PatternId {
        let mut set = std::mem::take(&mut self.set_scratch);
        Self::fill_set(text, toks, &mut set);
        let mut best = NONE;
        let mut best_sim = -1.0;
        for &s in &self.keys[key as usize].long {
            let sim = jaccard(&self.slots[s as usize].pattern.tokens, &set);
            if sim > best_sim {
                best = s;
                best_sim = sim;
            }
        }
        let id = if best != NONE && best_sim >= self.cfg.jaccard_threshold {
            self.touch(best);
            let p = &mut self.slots[best as usize].pattern;
            p.count += 1;
            let before = p.tokens.len();
            intersect_in_place(&mut p.tokens, &set);
            if p.tokens.len() != before {
                render_set(p);
            }
            p.id
        } else {
            self.make_room();
            let pieces = pieces_of(text, toks, |t| {
                if t.is_wild() {
                    WILD
                } else {
                    hash_lower(&text.as_bytes()[t.start as usize..t.end as usize])
                }
            });
            let slot = self.new_slot(key, PatternKind::TokenSet, set.clone(), pieces);
            render_set(&mut self.slots[slot as usize].pattern);
            self.keys[key as usize].long.push(slot);
            self.slots[slot as usize].pattern.id
        };
        self.set_scratch = set;
        id
    }

    // ---- slots, LRU, eviction -------------------------------------------------------

    fn new_slot(
        &mut self,
        key: u32,
        kind: PatternKind,
        tokens: Vec<u64>,
        pieces: Vec<Piece>,
    ) -> u32 {
        let id = PatternId(self.next_id);
        self.next_id += 1;
        let mut pattern = Pattern {
            id,
            key: self.keys[key as usize].name.clone(),
            template: String::new(),
            count: 1,
            kind,
            tokens,
            pieces,
            general: 0,
        };
        if kind == PatternKind::Sequence {
            render_seq(&mut pattern);
        }
        let slot = Slot {
            pattern,
            key,
            leaves: Vec::new(),
            aliases: Vec::new(),
            prev: NONE,
            next: NONE,
            live: true,
        };
        let s = match self.free_slots.pop() {
            Some(s) => {
                self.slots[s as usize] = slot;
                s
            }
            None => {
                self.slots.push(slot);
                (self.slots.len() - 1) as u32
            }
        };
        self.ids.insert(id.0, s);
        self.keys[key as usize].refs += 1;
        self.live += 1;
        self.stats.created += 1;
        self.link_front(s);
        s
    }

    fn link_front(&mut self, s: u32) {
        let old = self.lru_head;
        {
            let slot = &mut self.slots[s as usize];
            slot.prev = NONE;
            slot.next = old;
        }
        if old != NONE {
            self.slots[old as usize].prev = s;
        } else {
            self.lru_tail = s;
        }
        self.lru_head = s;
    }

    fn unlink(&mut self, s: u32) {
        let (prev, next) = {
            let slot = &self.slots[s as usize];
            (slot.prev, slot.next)
        };
        if prev != NONE {
            self.slots[prev as usize].next = next;
        } else {
            self.lru_head = next;
        }
        if next != NONE {
            self.slots[next as usize].prev = prev;
        } else {
            self.lru_tail = prev;
        }
    }

    fn touch(&mut self, s: u32) {
        if self.lru_head != s {
            self.unlink(s);
            self.link_front(s);
        }
    }

    fn make_room(&mut self) {
        while self.live >= self.cfg.max_patterns && self.lru_tail != NONE {
            let victim = self.lru_tail;
            self.remove_slot(victim);
            self.stats.evicted += 1;
        }
    }

    /// Removes a slot from every index (tree, key list, ids, LRU) and frees it.
    fn remove_slot(&mut self, s: u32) {
        self.unlink(s);
        let (key, leaves, id, aliases) = {
            let slot = &mut self.slots[s as usize];
            slot.live = false;
            (
                slot.key,
                std::mem::take(&mut slot.leaves),
                slot.pattern.id,
                std::mem::take(&mut slot.aliases),
            )
        };
        for leaf in leaves {
            self.nodes[leaf as usize].patterns.retain(|&x| x != s);
            self.add_refs(leaf, -1);
        }
        let k = &mut self.keys[key as usize];
        k.long.retain(|&x| x != s);
        k.refs = k.refs.saturating_sub(1);
        if k.refs == 0 && key != self.pinned_key {
            let name = k.name.clone();
            k.long = Vec::new();
            self.key_index.remove(&*name);
            self.free_keys.push(key);
        }
        self.ids.remove(&id.0);
        for a in aliases {
            self.ids.remove(&a);
        }
        let slot = &mut self.slots[s as usize];
        slot.pattern.tokens = Vec::new();
        slot.pattern.pieces = Vec::new();
        slot.pattern.template = String::new();
        self.live -= 1;
        self.free_slots.push(s);
    }

    // ---- merge pass -----------------------------------------------------------------

    fn merge_pass(&mut self) {
        // Groups: (key, kind, length for sequences) -> slots, most recently used first.
        let mut groups: IdMap<u64, Vec<u32>> = IdMap::default();
        let mut order: Vec<u64> = Vec::new();
        let mut cur = self.lru_head;
        while cur != NONE {
            let s = &self.slots[cur as usize];
            let g = match s.pattern.kind {
                PatternKind::Sequence => Self::root_key(s.key, s.pattern.tokens.len()),
                PatternKind::TokenSet => Self::root_key(s.key, 0x7fff_ffff),
            };
            let v = groups.entry(g).or_insert_with(|| {
                order.push(g);
                Vec::new()
            });
            if v.len() < self.cfg.merge_scan_limit {
                v.push(cur);
            }
            cur = s.next;
        }
        for g in order {
            let Some(mut members) = groups.remove(&g) else {
                continue;
            };
            if members.len() < 2 {
                continue;
            }
            // The oldest id survives: work in id order.
            members.sort_by_key(|&s| self.slots[s as usize].pattern.id);
            match self.slots[members[0] as usize].pattern.kind {
                PatternKind::Sequence => self.merge_families(&mut members),
                PatternKind::TokenSet => self.merge_sets(&members),
            }
        }
    }

    /// Sequence patterns of one (key, length) that differ at exactly one position form
    /// a family; the family becomes one pattern with `<*>` there when it has at least
    /// `min_family` members, or when one member already has `<*>` there.
    fn merge_families(&mut self, members: &mut Vec<u32>) {
        let len = self.slots[members[0] as usize].pattern.tokens.len();
        let mut buckets: IdMap<u64, Vec<u32>> = IdMap::default();
        let mut order: Vec<u64> = Vec::new();
        for pos in 0..len {
            buckets.clear();
            order.clear();
            for &m in members.iter() {
                let toks = &self.slots[m as usize].pattern.tokens;
                let mut h = IdHasher::default();
                for (i, t) in toks.iter().enumerate() {
                    if i != pos {
                        h.write_u64(*t);
                    }
                }
                let v = buckets.entry(h.finish()).or_insert_with(|| {
                    order.push(h.finish());
                    Vec::new()
                });
                v.push(m);
            }
            let mut merged_any = false;
            for k in &order {
                let Some(fam) = buckets.get(k) else { continue };
                if fam.len() < 2 {
                    continue;
                }
                // Guard against hash collisions: members agree everywhere but `pos`.
                let first = &self.slots[fam[0] as usize].pattern.tokens;
                if !fam.iter().all(|&m| {
                    let t = &self.slots[m as usize].pattern.tokens;
                    t.iter()
                        .zip(first)
                        .enumerate()
                        .all(|(i, (a, b))| i == pos || a == b)
                }) {
                    continue;
                }
                // A constant kept on purpose (an error status) tells members apart.
                if fam
                    .iter()
                    .any(|&m| self.slots[m as usize].pattern.tokens[pos] & KEPT != 0)
                {
                    continue;
                }
                let bit = if pos < 64 { 1u64 << pos } else { 0 };
                let general = fam
                    .iter()
                    .any(|&m| self.slots[m as usize].pattern.general & bit != 0);
                // A frequent member whose token there is a masked value absorbs rare
                // constant siblings (`Invalid user <*>` takes `Invalid user admin`).
                let masked = fam.iter().copied().find(|&m| {
                    let p = &self.slots[m as usize].pattern;
                    p.tokens[pos] == WILD && p.general & bit == 0
                });
                let absorbs = masked.is_some_and(|m| {
                    let big = self.slots[m as usize].pattern.count;
                    fam.iter().all(|&o| {
                        o == m || self.slots[o as usize].pattern.count.saturating_mul(2) <= big
                    })
                });
                if fam.len() < self.cfg.min_family && !general && !absorbs {
                    continue;
                }
                // What stays constant must still be a template: two constants at least
                // and `sim_threshold` of the positions.
                let constants = self.slots[fam[0] as usize]
                    .pattern
                    .tokens
                    .iter()
                    .enumerate()
                    .filter(|&(i, &t)| i != pos && t != WILD)
                    .count();
                if constants < 2 || (constants as f64) < self.cfg.sim_threshold * len as f64 {
                    continue;
                }
                let into = fam[0];
                for &from in &fam[1..] {
                    self.merge_into(from, into);
                }
                self.slots[into as usize].pattern.general |= bit;
                merged_any = true;
            }
            if merged_any {
                members.retain(|&m| self.slots[m as usize].live);
            }
        }
    }

    fn merge_sets(&mut self, members: &[u32]) {
        let mut alive = vec![true; members.len()];
        for i in 0..members.len() {
            if !alive[i] {
                continue;
            }
            for j in (i + 1)..members.len() {
                if !alive[j] {
                    continue;
                }
                let (a, b) = (members[i], members[j]);
                let sim = jaccard(
                    &self.slots[a as usize].pattern.tokens,
                    &self.slots[b as usize].pattern.tokens,
                );
                if sim >= self.cfg.merge_jaccard {
                    self.merge_into(b, a);
                    alive[j] = false;
                }
            }
        }
    }

    /// Merges slot `from` into slot `into`; `from`'s ids resolve to `into` from now on.
    fn merge_into(&mut self, from: u32, into: u32) {
        let general = self.slots[from as usize].pattern.general;
        self.slots[into as usize].pattern.general |= general;
        let (count, tokens, leaves, aliases, id, kind, key) = {
            let f = &mut self.slots[from as usize];
            (
                f.pattern.count,
                std::mem::take(&mut f.pattern.tokens),
                std::mem::take(&mut f.leaves),
                std::mem::take(&mut f.aliases),
                f.pattern.id,
                f.pattern.kind,
                f.key,
            )
        };
        // Tree: `into` takes `from`'s place in its leaves.
        for leaf in leaves {
            let n = &mut self.nodes[leaf as usize];
            n.patterns.retain(|&x| x != from);
            if n.patterns.contains(&into) {
                self.add_refs(leaf, -1);
            } else {
                n.patterns.push(into);
                self.slots[into as usize].leaves.push(leaf);
            }
        }
        self.keys[key as usize].long.retain(|&x| x != from);
        {
            let t = &mut self.slots[into as usize];
            t.pattern.count += count;
            match kind {
                PatternKind::Sequence => {
                    for (x, y) in t.pattern.tokens.iter_mut().zip(&tokens) {
                        if *x != *y {
                            *x = WILD;
                        }
                    }
                    render_seq(&mut t.pattern);
                }
                PatternKind::TokenSet => {
                    intersect_in_place(&mut t.pattern.tokens, &tokens);
                    render_set(&mut t.pattern);
                }
            }
            t.aliases.push(id.0);
            t.aliases.extend_from_slice(&aliases);
        }
        self.ids.insert(id.0, into);
        for a in aliases {
            self.ids.insert(a, into);
        }
        // Free `from` without touching the ids now owned by `into`.
        self.unlink(from);
        let k = &mut self.keys[key as usize];
        k.refs = k.refs.saturating_sub(1);
        let f = &mut self.slots[from as usize];
        f.live = false;
        f.pattern.pieces = Vec::new();
        f.pattern.template = String::new();
        self.live -= 1;
        self.free_slots.push(from);
        self.stats.merged += 1;
    }
}

/// Pieces of a new pattern: separators and token texts from the first message.
fn pieces_of(text: &str, toks: &[Token], hash: impl Fn(&Token) -> u64) -> Vec<Piece> {
    let mut out = Vec::with_capacity(toks.len());
    let mut prev = 0usize;
    for t in toks {
        let (s, e) = (t.start as usize, t.end as usize);
        // The text between tokens; content dropped by masking (a bracketed group of
        // values) is not shown.
        let sep = text
            .get(prev..s)
            .filter(|g| !g.bytes().any(|c| c.is_ascii_alphanumeric()))
            .unwrap_or(" ");
        let tok = if t.is_wild() {
            "<*>"
        } else {
            text.get(s..e).unwrap_or("<*>")
        };
        out.push(Piece {
            sep: sep.into(),
            text: tok.into(),
            hash: hash(t),
        });
        prev = e;
    }
    if let (Some(last), Some(rest)) = (out.last_mut(), text.get(prev..)) {
        // Trailing punctuation after the last token belongs to the template.
        if !rest.is_empty() && rest.len() <= 8 {
            let mut t = String::from(&*last.text);
            t.push_str(rest);
            last.text = t.into();
        }
    }
    out
}

fn render_seq(p: &mut Pattern) {
    let mut s = String::with_capacity(p.template.len().max(16));
    let mut prev_wild = false;
    for (i, piece) in p.pieces.iter().enumerate() {
        let wild = p.tokens.get(i).is_none_or(|&t| t == WILD);
        if wild && prev_wild {
            continue;
        }
        if i > 0 {
            s.push_str(&piece.sep);
        }
        if wild {
            s.push_str("<*>");
        } else {
            s.push_str(&piece.text);
        }
        prev_wild = wild;
    }
    p.template = s;
}

fn render_set(p: &mut Pattern) {
    let mut s = String::new();
    let mut prev_wild = false;
    for (i, piece) in p.pieces.iter().enumerate() {
        let keep = piece.hash != WILD
            && (p.tokens.binary_search(&piece.hash).is_ok()
                || STOP_WORDS
                    .iter()
                    .any(|w| w.eq_ignore_ascii_case(piece.text.as_bytes())));
        if !keep && prev_wild {
            continue;
        }
        if i > 0 {
            s.push_str(&piece.sep);
        }
        if keep {
            s.push_str(&piece.text);
        } else {
            s.push_str("<*>");
        }
        prev_wild = !keep;
    }
    p.template = s;
}

/// Jaccard similarity of two sorted, deduplicated slices.
pub(crate) fn jaccard(a: &[u64], b: &[u64]) -> f64 {
    if a.is_empty() && b.is_empty() {
        return 1.0;
    }
    let (mut i, mut j, mut inter) = (0, 0, 0usize);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                inter += 1;
                i += 1;
                j += 1;
            }
        }
    }
    inter as f64 / (a.len() + b.len() - inter) as f64
}

/// `a := a ∩ b` for sorted, deduplicated slices.
fn intersect_in_place(a: &mut Vec<u64>, b: &[u64]) {
    a.retain(|x| b.binary_search(x).is_ok());
}
