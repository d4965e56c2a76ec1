//! One logical database: keys, their values, and their expiry times.
//!
//! Keys live in a `BTreeMap`, so every listing (KEYS, SCAN, RANDOMKEY's candidates, the active
//! expiry sweep) is in one deterministic order: no `HashMap` is ever iterated here. Expiry
//! times are absolute Unix milliseconds, as Redis stores them, and a second index ordered by
//! time lets the active sweep find due keys without scanning the keyspace.
//!
//! Passive expiry: every read goes through [`Db::lookup`] or [`Db::lookup_mut`], which delete
//! a key whose time has come before anyone can see it. Scripts pass their frozen start time,
//! so a key cannot expire in the middle of a script.

use std::collections::{BTreeSet, HashMap, VecDeque};

use indexmap::{IndexMap, IndexSet};

use super::zset::ZSet;

/// A stored value. Redis's internal encodings (int, listpack, quicklist, ...) are not
/// modelled, except where they are visible: small hashes keep insertion order, and small
/// integer sets keep numeric order.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// A string, also the home of counters (`INCR` keeps a decimal string).
    Str(Vec<u8>),
    /// A list, head first.
    List(VecDeque<Vec<u8>>),
    /// A hash in insertion order (`shift_remove` keeps the order of the rest).
    Hash(IndexMap<Vec<u8>, Vec<u8>>),
    /// A set in insertion order.
    Set(IndexSet<Vec<u8>>),
    /// A sorted set.
    ZSet(ZSet),
}

impl Value {
    /// The name `TYPE` answers.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Str(_) => "string",
            Value::List(_) => "list",
            Value::Hash(_) => "hash",
            Value::Set(_) => "set",
            Value::ZSet(_) => "zset",
        }
    }

    /// The list, if this is one.
    pub fn as_list(&self) -> Option<&VecDeque<Vec<u8>>> {
        if let Value::List(list) = self {
            Some(list)
        } else {
            None
        }
    }

    /// The list, mutable, if this is one.
    pub fn as_list_mut(&mut self) -> Option<&mut VecDeque<Vec<u8>>> {
        if let Value::List(list) = self {
            Some(list)
        } else {
            None
        }
    }

    /// The hash, if this is one.
    pub fn as_hash(&self) -> Option<&IndexMap<Vec<u8>, Vec<u8>>> {
        if let Value::Hash(hash) = self {
            Some(hash)
        } else {
            None
        }
    }

    /// The set, if this is one.
    pub fn as_set(&self) -> Option<&IndexSet<Vec<u8>>> {
        if let Value::Set(set) = self {
            Some(set)
        } else {
            None
        }
    }

    /// The sorted set, if this is one.
    pub fn as_zset(&self) -> Option<&ZSet> {
        if let Value::ZSet(zset) = self {
            Some(zset)
        } else {
            None
        }
    }

    /// The sorted set, mutable, if this is one.
    pub fn as_zset_mut(&mut self) -> Option<&mut ZSet> {
        if let Value::ZSet(zset) = self {
            Some(zset)
        } else {
            None
        }
    }

    /// Whether an aggregate has become empty, in which case Redis deletes its key.
    pub fn is_empty_aggregate(&self) -> bool {
        match self {
            Value::Str(_) => false,
            Value::List(list) => list.is_empty(),
            Value::Hash(hash) => hash.is_empty(),
            Value::Set(set) => set.is_empty(),
            Value::ZSet(zset) => zset.is_empty(),
        }
    }
}

/// A key's value and its expiry time (absolute Unix ms), if any.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// The value.
    pub value: Value,
    /// When the key expires, in absolute Unix milliseconds; `None` = persistent.
    pub expire_at_ms: Option<u64>,
}

impl Entry {
    /// Whether the key's time has passed at `now_ms`: strictly after its expiry time (at
    /// exactly `expire_at_ms` it still exists, with PTTL 0, as in Redis). A stale key is
    /// deleted when next looked up.
    pub fn is_stale(&self, now_ms: u64) -> bool {
        self.expire_at_ms.is_some_and(|at| at < now_ms)
    }
}

/// One of the sixteen logical databases.
#[derive(Clone, Debug, Default)]
pub struct Db {
    /// Every live (or expired but not yet swept) key. A hash map, for one probe per lookup;
    /// it is never iterated: every listing walks `order` instead.
    entries: HashMap<Vec<u8>, Entry>,
    /// The same keys in byte order: KEYS, SCAN and the approximate memory figure walk this,
    /// so no hash order can leak into a reply.
    order: BTreeSet<Vec<u8>>,
    /// `(expire_at_ms, key)` for every key with a TTL: the active sweep's work list.
    expires: BTreeSet<(u64, Vec<u8>)>,
    /// Keys deleted on access because their time had come (INFO's `expired_keys` adds these).
    pub passively_expired: u64,
}

impl Db {
    /// Number of keys, expired-but-unswept ones included (as Redis's DBSIZE counts them).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the database holds no key at all.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Number of keys with a TTL (INFO keyspace's `expires=`).
    pub fn expires_len(&self) -> usize {
        self.expires.len()
    }

    /// The live entry under `key`, after passive expiry.
    pub fn lookup(&mut self, now_ms: u64, key: &[u8]) -> Option<&Entry> {
        self.lookup_mut(now_ms, key).map(|entry| &*entry)
    }

    /// The live entry under `key`, mutable, after passive expiry: a stale key
    /// ([`Entry::is_stale`]) is deleted here. A caller that changes the expiry time must use
    /// [`Db::set_expire`] instead of writing the field.
    pub fn lookup_mut(&mut self, now_ms: u64, key: &[u8]) -> Option<&mut Entry> {
        // The common case, a key without a passed expiry, costs one probe.
        match self.entries.get(key) {
            None => return None,
            Some(entry) if entry.is_stale(now_ms) => {
                self.remove(key);
                self.passively_expired += 1;
                return None;
            }
            Some(_) => {}
        }
        self.entries.get_mut(key)
    }

    /// Whether a live key exists.
    pub fn contains(&mut self, now_ms: u64, key: &[u8]) -> bool {
        self.lookup(now_ms, key).is_some()
    }

    /// Stores `value` under `key` with the given expiry, replacing whatever was there.
    pub fn insert(&mut self, key: Vec<u8>, value: Value, expire_at_ms: Option<u64>) {
        if self.remove_keep_order(&key).is_none() {
            self.order.insert(key.clone());
        }
        if let Some(at) = expire_at_ms {
            self.expires.insert((at, key.clone()));
        }
        self.entries.insert(
            key,
            Entry {
                value,
                expire_at_ms,
            },
        );
    }

    /// Replaces the value under an existing key and keeps its TTL, or inserts a persistent key.
    pub fn set_keep_ttl(&mut self, now_ms: u64, key: Vec<u8>, value: Value) {
        let ttl = self
            .lookup(now_ms, &key)
            .and_then(|entry| entry.expire_at_ms);
        self.insert(key, value, ttl);
    }

    /// Removes `key`, returning its entry (expired or not).
    pub fn remove(&mut self, key: &[u8]) -> Option<Entry> {
        let entry = self.remove_keep_order(key)?;
        self.order.remove(key);
        Some(entry)
    }

    /// Removes the entry but leaves the key in `order` (for `insert`, which puts it back).
    fn remove_keep_order(&mut self, key: &[u8]) -> Option<Entry> {
        let entry = self.entries.remove(key)?;
        if let Some(at) = entry.expire_at_ms {
            self.expires.remove(&(at, key.to_vec()));
        }
        Some(entry)
    }

    /// Sets or clears the expiry time of an existing key. Returns false if the key is absent.
    pub fn set_expire(&mut self, key: &[u8], expire_at_ms: Option<u64>) -> bool {
        let Some(entry) = self.entries.get_mut(key) else {
            return false;
        };
        if let Some(old) = entry.expire_at_ms {
            self.expires.remove(&(old, key.to_vec()));
        }
        entry.expire_at_ms = expire_at_ms;
        if let Some(at) = expire_at_ms {
            self.expires.insert((at, key.to_vec()));
        }
        true
    }

    /// Deletes an aggregate key that a command emptied (Redis never keeps empty aggregates).
    pub fn remove_if_empty(&mut self, key: &[u8]) {
        if self
            .entries
            .get(key)
            .is_some_and(|entry| entry.value.is_empty_aggregate())
        {
            self.remove(key);
        }
    }

    /// Active expiry: deletes up to `limit` keys whose time has come, earliest first, and
    /// returns the deleted keys (so watchers can be told).
    pub fn sweep(&mut self, now_ms: u64, limit: usize) -> Vec<Vec<u8>> {
        let mut due = Vec::new();
        for (at, key) in self.expires.iter() {
            if *at >= now_ms || due.len() >= limit {
                break;
            }
            due.push(key.clone());
        }
        for key in &due {
            self.remove(key);
        }
        due
    }

    /// All keys in byte order, expired ones included (callers filter with `now_ms`).
    pub fn keys(&self) -> impl Iterator<Item = &Vec<u8>> {
        self.order.iter()
    }

    /// Keys at or after `start`, in byte order: SCAN's cursor walk.
    pub fn keys_from<'a>(&'a self, start: &[u8]) -> impl Iterator<Item = (&'a Vec<u8>, &'a Entry)> {
        self.order
            .range::<[u8], _>((std::ops::Bound::Included(start), std::ops::Bound::Unbounded))
            .map(|key| (key, &self.entries[key]))
    }

    /// The entry without expiry (for COPY/MOVE, which look the key up first anyway).
    pub fn peek(&self, key: &[u8]) -> Option<&Entry> {
        self.entries.get(key)
    }

    /// Removes every key.
    pub fn clear(&mut self) {
        self.entries.clear();
        self.order.clear();
        self.expires.clear();
    }

    /// Rough bytes of memory used by this database: keys and values plus a fixed overhead
    /// per key, for INFO memory. Deterministic; not Redis's allocator figure.
    pub fn approx_bytes(&self) -> usize {
        const PER_KEY_OVERHEAD: usize = 64;
        self.keys_from(b"")
            .map(|(key, entry)| key.len() + PER_KEY_OVERHEAD + value_bytes(&entry.value))
            .sum()
    }
}

/// Rough bytes a value occupies (MEMORY USAGE adds the key and a fixed overhead).
pub fn value_bytes(value: &Value) -> usize {
    match value {
        Value::Str(bytes) => bytes.len(),
        Value::List(list) => list.iter().map(|item| item.len() + 16).sum(),
        Value::Hash(hash) => hash.iter().map(|(f, v)| f.len() + v.len() + 32).sum(),
        Value::Set(set) => set.iter().map(|m| m.len() + 16).sum(),
        Value::ZSet(zset) => zset.len() * 48,
    }
}
