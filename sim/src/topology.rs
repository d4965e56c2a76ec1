//! Redis topologies on the gateway side and between nodes: a go-redis-like cluster client
//! (route by slot, follow MOVED), the gateway's Redis handle for every topology, the load
//! counters a cluster run reports, and asynchronous replication with a lag.
//!
//! Replication copies the primary's key states, not its command stream: every simulated ms
//! a replica records the primary's databases when they changed, and applies the newest
//! record that is at least `replication_lag_ms` old. That is what a replica `lag` behind an
//! in-order command stream holds, and it makes the loss at a failover exact: whatever the
//! primary wrote in the last `lag` ms is not on the replica. The copy is out of band (not
//! over simulated TCP), so a partition does not stop it; the script cache is never copied
//! (a promoted replica answers NOSCRIPT).

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ratelab::keys::{SLOT_COUNT, key_slot};
use ratelab::model::db::Db;
use ratelab::model::{ClusterConfig, Reply, SharedModel};
use ratelab::redis::{Cmd, Error, Redis};

use crate::pool::{Pool, PooledRedis, REDIS_PORT};

/// go-redis's `MaxRedirects`: MOVED is followed at most this many times per command.
pub const MAX_REDIRECTS: u32 = 3;

/// Where a host's live model is kept (replaced at each restart).
pub type ModelSlot = Arc<Mutex<Option<SharedModel>>>;

/// The inclusive slot range shard `index` of `shards` owns: equal contiguous ranges.
pub fn shard_slots(index: u32, shards: u32) -> (u16, u16) {
    let count = u32::from(SLOT_COUNT);
    let low = count * index / shards;
    let high = count * (index + 1) / shards - 1;
    (
        u16::try_from(low).expect("below the slot count"),
        u16::try_from(high).expect("below the slot count"),
    )
}

/// Node `index`'s cluster configuration in a cluster of `shards` (`redis-<i>:6379` each).
pub fn cluster_config(index: u32, shards: u32) -> ClusterConfig {
    let endpoints = (0..shards)
        .map(|shard| {
            let (low, high) = shard_slots(shard, shards);
            (low, high, format!("redis-{shard}:{REDIS_PORT}"))
        })
        .collect();
    ClusterConfig {
        owned: vec![shard_slots(index, shards)],
        endpoints,
    }
}

/// Commands sent per node and per slot, over every gateway of a run.
#[derive(Debug, Default)]
pub struct Load {
    /// Commands per node.
    pub nodes: BTreeMap<String, u64>,
    /// Commands per slot.
    pub slots: BTreeMap<u16, u64>,
    /// MOVED redirects followed.
    pub redirects: u64,
}

/// One gateway's cluster client: a pool per node and the slot table it has learned.
pub struct ClusterClient {
    /// One pool per node, by host.
    pools: BTreeMap<String, Arc<Pool>>,
    /// Where to send a command whose slot's owner is unknown, or that has no key.
    first_host: String,
    /// Slot owners learned from MOVED. It starts empty: go-redis loads CLUSTER SLOTS, but
    /// starting unknown makes every run exercise the redirect path (one MOVED per slot per
    /// gateway, at the start).
    owners: Mutex<BTreeMap<u16, String>>,
    load: Arc<Mutex<Load>>,
}

impl ClusterClient {
    /// A client for `hosts` (the first one is asked about unknown slots), each with its own
    /// pool of `config`, counting into `load`.
    pub fn new(
        hosts: &[String],
        config: &crate::scenario::Pool,
        load: Arc<Mutex<Load>>,
    ) -> Arc<ClusterClient> {
        let pools = hosts
            .iter()
            .map(|host| (host.clone(), Pool::new(config.clone(), host)))
            .collect();
        Arc::new(ClusterClient {
            pools,
            first_host: hosts.first().cloned().unwrap_or_default(),
            owners: Mutex::new(BTreeMap::new()),
            load,
        })
    }

    fn owner(&self, slot: Option<u16>) -> String {
        slot.and_then(|slot| {
            self.owners
                .lock()
                .expect("the slot table lock is never held across a panic")
                .get(&slot)
                .cloned()
        })
        .unwrap_or_else(|| self.first_host.clone())
    }

    fn learn(&self, slot: u16, host: &str) {
        self.owners
            .lock()
            .expect("the slot table lock is never held across a panic")
            .insert(slot, host.to_owned());
        self.load
            .lock()
            .expect("the load lock is never held across a panic")
            .redirects += 1;
    }

    fn count(&self, host: &str, slot: Option<u16>, commands: u64) {
        let mut load = self
            .load
            .lock()
            .expect("the load lock is never held across a panic");
        *load.nodes.entry(host.to_owned()).or_default() += commands;
        if let Some(slot) = slot {
            *load.slots.entry(slot).or_default() += commands;
        }
    }

    /// A handle for one request.
    pub fn handle(self: &Arc<ClusterClient>) -> ClusterRedis {
        ClusterRedis {
            client: Arc::clone(self),
            handles: BTreeMap::new(),
            pool_wait_ms: Arc::new(AtomicU64::new(0)),
        }
    }
}

/// `MOVED <slot> <host>:<port>` as (slot, host).
fn moved(reply: &Reply) -> Option<(u16, String)> {
    let Reply::Error(line) = reply else {
        return None;
    };
    let mut words = line.strip_prefix("MOVED ")?.split(' ');
    let slot = words.next()?.parse().ok()?;
    let (host, _port) = words.next()?.rsplit_once(':')?;
    Some((slot, host.to_owned()))
}

/// One request's view of a [`ClusterClient`].
pub struct ClusterRedis {
    client: Arc<ClusterClient>,
    /// Pool handles by host, made on first use.
    handles: BTreeMap<String, PooledRedis>,
    pool_wait_ms: Arc<AtomicU64>,
}

impl ClusterRedis {
    fn node(&mut self, host: &str) -> Option<&mut PooledRedis> {
        if !self.handles.contains_key(host) {
            let pool = self.client.pools.get(host)?;
            let handle = pool.handle_counting(Arc::clone(&self.pool_wait_ms));
            self.handles.insert(host.to_owned(), handle);
        }
        self.handles.get_mut(host)
    }

    async fn send(
        &mut self,
        host: &str,
        cmds: Vec<Cmd>,
        slot: Option<u16>,
    ) -> Result<Vec<Reply>, Error> {
        self.client
            .count(host, slot, u64::try_from(cmds.len()).expect("fits"));
        match self.node(host) {
            Some(node) => node.pipeline(cmds).await,
            None => Err(Error::Protocol(format!("MOVED to an unknown node {host}"))),
        }
    }

    /// Sends one command where its slot lives, following MOVED up to [`MAX_REDIRECTS`].
    async fn routed(&mut self, cmd: Cmd) -> Result<Reply, Error> {
        if matches!(cmd, Cmd::ScriptLoad { .. } | Cmd::FunctionLoad) {
            // go-redis's ClusterClient.ScriptLoad loads on every master; the reply is the
            // first node's.
            let hosts: Vec<String> = self.client.pools.keys().cloned().collect();
            let mut first = None;
            for host in hosts {
                let reply = self.send(&host, vec![cmd.clone()], None).await;
                first.get_or_insert(reply);
            }
            return one(first.unwrap_or_else(|| Err(Error::Protocol("no node".to_owned()))));
        }
        let slot = cmd.first_key().map(key_slot);
        let mut host = self.client.owner(slot);
        let mut redirects = 0;
        loop {
            let reply = one(self.send(&host, vec![cmd.clone()], slot).await)?;
            match moved(&reply) {
                Some((moved_slot, target)) if redirects < MAX_REDIRECTS => {
                    self.client.learn(moved_slot, &target);
                    host = target;
                    redirects += 1;
                }
                _ => return Ok(reply),
            }
        }
    }

    /// The counter of ms this request waited for connections, over every node.
    pub fn pool_wait_counter(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.pool_wait_ms)
    }
}

fn one(replies: Result<Vec<Reply>, Error>) -> Result<Reply, Error> {
    replies?
        .pop()
        .ok_or_else(|| Error::Protocol("no reply to a command".to_owned()))
}

impl Redis for ClusterRedis {
    async fn exec(&mut self, cmd: Cmd) -> Result<Reply, Error> {
        self.routed(cmd).await
    }

    /// A pipeline whose commands all route to one node goes there in one round trip, and
    /// the commands answered MOVED are sent again one by one where they belong (go-redis
    /// retries only the moved commands). A pipeline that spans nodes is sent one command
    /// at a time (go-redis splits it by node; the round trips differ, the replies do not).
    async fn pipeline(&mut self, cmds: Vec<Cmd>) -> Result<Vec<Reply>, Error> {
        let slots: Vec<Option<u16>> = cmds
            .iter()
            .map(|cmd| cmd.first_key().map(key_slot))
            .collect();
        let hosts: Vec<String> = slots.iter().map(|slot| self.client.owner(*slot)).collect();
        let one_node = !cmds
            .iter()
            .any(|cmd| matches!(cmd, Cmd::ScriptLoad { .. } | Cmd::FunctionLoad))
            && hosts.windows(2).all(|pair| pair[0] == pair[1]);
        if !one_node || cmds.is_empty() {
            let mut replies = Vec::with_capacity(cmds.len());
            for cmd in cmds {
                replies.push(self.routed(cmd).await?);
            }
            return Ok(replies);
        }
        let slot = slots.iter().flatten().next().copied();
        let mut replies = self.send(&hosts[0], cmds.clone(), slot).await?;
        for (index, cmd) in cmds.into_iter().enumerate() {
            if let Some(reply) = replies.get_mut(index)
                && let Some((moved_slot, target)) = moved(reply)
            {
                self.client.learn(moved_slot, &target);
                *reply = self.routed(cmd).await?;
            }
        }
        Ok(replies)
    }
}

/// The Redis a gateway's limiter talks to, whatever the topology.
pub enum GatewayRedis {
    /// One node (standalone, or the current primary of a replicated set).
    Single(PooledRedis),
    /// A cluster, through the slot router.
    Cluster(ClusterRedis),
}

impl GatewayRedis {
    /// The counter of ms this request waited for connections.
    pub fn pool_wait_counter(&self) -> Arc<AtomicU64> {
        match self {
            GatewayRedis::Single(redis) => redis.pool_wait_counter(),
            GatewayRedis::Cluster(redis) => redis.pool_wait_counter(),
        }
    }
}

impl Redis for GatewayRedis {
    async fn exec(&mut self, cmd: Cmd) -> Result<Reply, Error> {
        match self {
            GatewayRedis::Single(redis) => redis.exec(cmd).await,
            GatewayRedis::Cluster(redis) => redis.exec(cmd).await,
        }
    }

    async fn pipeline(&mut self, cmds: Vec<Cmd>) -> Result<Vec<Reply>, Error> {
        match self {
            GatewayRedis::Single(redis) => redis.pipeline(cmds).await,
            GatewayRedis::Cluster(redis) => redis.pipeline(cmds).await,
        }
    }
}

/// How a replica follows its primary.
#[derive(Clone)]
pub struct ReplicaLink {
    /// The primary's model slot.
    pub primary: ModelSlot,
    /// How long a write takes to arrive, ms.
    pub lag_ms: u64,
    /// Set when a failover happens: replication stops (the promoted replica is a primary
    /// now; the others keep what they have).
    pub stopped: Arc<AtomicBool>,
}

/// The replication loop of one replica (runs inside the replica's host until a failover):
/// every ms, record the primary's databases if they changed, and apply the newest record
/// that is `lag_ms` old.
pub async fn replicate(link: ReplicaLink, replica: SharedModel, now_ms: fn() -> u64) {
    // (when, the keyspace, the functions library): a replica receives both (Redis replicates
    // FUNCTION LOAD like a write), never the script cache.
    let mut records: VecDeque<(u64, Vec<Db>, ratelab::model::functions::Library)> = VecDeque::new();
    // (which primary model, its dirty counter) at the last record.
    let mut seen: Option<(usize, u64)> = None;
    loop {
        tokio::time::sleep(Duration::from_millis(1)).await;
        if link.stopped.load(Ordering::Relaxed) {
            return;
        }
        let now = now_ms();
        let primary = link
            .primary
            .lock()
            .expect("the model slot lock is never held across a panic")
            .clone();
        if let Some(primary) = primary {
            let identity = Arc::as_ptr(&primary) as usize;
            let primary = primary
                .lock()
                .expect("the model lock is never held across a panic");
            let state = (identity, primary.core.dirty);
            if seen != Some(state) {
                seen = Some(state);
                records.push_back((now, primary.core.dbs.clone(), primary.functions.clone()));
            }
        }
        let mut newest = None;
        while records
            .front()
            .is_some_and(|(at_ms, _, _)| at_ms + link.lag_ms <= now)
        {
            newest = records.pop_front();
        }
        if let Some((_, dbs, functions)) = newest {
            let mut replica = replica
                .lock()
                .expect("the model lock is never held across a panic");
            replica.core.dbs = dbs;
            replica.functions = functions;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_cover_every_slot_once() {
        for shards in 1..=16u32 {
            let mut next = 0u32;
            for index in 0..shards {
                let (low, high) = shard_slots(index, shards);
                assert_eq!(u32::from(low), next, "{shards} shards, shard {index}");
                assert!(high >= low);
                next = u32::from(high) + 1;
            }
            assert_eq!(next, u32::from(SLOT_COUNT));
        }
    }

    #[test]
    fn moved_replies_parse() {
        let cases: &[(&str, Option<(u16, &str)>)] = &[
            ("MOVED 3999 redis-1:6379", Some((3999, "redis-1"))),
            ("MOVED x redis-1:6379", None),
            ("MOVED 12", None),
            ("ERR MOVED 1 a:1", None),
            (
                "CROSSSLOT Keys in request don't hash to the same slot",
                None,
            ),
        ];
        for (line, expected) in cases {
            let got = moved(&Reply::Error((*line).to_owned()));
            assert_eq!(
                got,
                expected.map(|(slot, host)| (slot, host.to_owned())),
                "{line}"
            );
        }
        assert_eq!(moved(&Reply::Integer(1)), None);
    }
}
