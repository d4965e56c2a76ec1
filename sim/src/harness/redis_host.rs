//! A Redis host: the model served over simulated TCP, its disk (what a restart with
//! persistence brings back), and the snapshots and bucket levels the checker reads.

use super::*;

/// The `tokens` and `credit` fields of every hash among `keys` (token bucket levels).
pub(super) fn bucket_levels(
    model: &SharedModel,
    node_ms: u64,
    keys: &[(String, i64)],
) -> Vec<(String, String, String)> {
    let mut model = model
        .lock()
        .expect("the model lock is never held across a panic");
    let mut session = model.connect("checker:1");
    let mut out = Vec::new();
    for (key, _) in keys {
        for field in ["tokens", "credit"] {
            let line = [
                b"HGET".to_vec(),
                key.as_bytes().to_vec(),
                field.as_bytes().to_vec(),
            ];
            // Non-hash keys answer WRONGTYPE, hashes without the field nil: both skipped.
            if let Reply::Bulk(value) = model.exec(node_ms, &mut session, &line) {
                out.push((
                    key.clone(),
                    field.to_owned(),
                    String::from_utf8_lossy(&value).into_owned(),
                ));
            }
        }
    }
    model.disconnect(&mut session);
    out
}

/// What a restarting node loads before it serves (`None`: it starts empty).
pub(super) type Restore = Arc<Mutex<Option<Durable>>>;

/// `redis-0`'s disk: the durable copies its periodic persistence (`aof_everysec`'s fsync,
/// `rdb`'s snapshots) has made, held outside the turmoil host so that they outlive it. A
/// copy is taken at every multiple of each interval some later restart needs (simulated
/// time from 0), and only while such a restart is still ahead.
pub(super) struct Disk {
    /// Per interval (ms): the next sync instant, the last restart that needs it, and the copy
    /// made at the last sync (`None` before the node first served).
    periodic: BTreeMap<u64, (u64, u64, Option<Durable>)>,
}

impl Disk {
    pub(super) fn new(scenario: &Scenario) -> Disk {
        let mut periodic: BTreeMap<u64, (u64, u64, Option<Durable>)> = BTreeMap::new();
        for fault in &scenario.faults {
            if let Some(every) = fault.kind.sync_every_ms() {
                let entry = periodic.entry(every.max(1)).or_insert((0, 0, None));
                entry.1 = entry.1.max(fault.at_ms);
            }
        }
        Disk { periodic }
    }

    /// Takes the copies due at `now_ms`.
    pub(super) fn sync(&mut self, now_ms: u64, slot: &ModelSlot) {
        for (every, (next_ms, last_needed_ms, copy)) in &mut self.periodic {
            if *next_ms > now_ms || now_ms > *last_needed_ms {
                continue;
            }
            // The checker assumes the sync happened exactly at the multiple
            // (`FaultKind::durability`): with 1 ms ticks every instant is visited.
            assert_eq!(
                now_ms, *next_ms,
                "a sync instant was skipped: the harness steps 1 ms at a time"
            );
            *copy = current_model(slot).map(|model| {
                model
                    .lock()
                    .expect("the model lock is never held across a panic")
                    .durable()
            });
            *next_ms = now_ms + *every;
        }
    }

    /// What a restart (`kind`, at `now_ms`) of the node now serving as `before` loads.
    pub(super) fn durable_at_restart(
        &self,
        kind: &FaultKind,
        now_ms: u64,
        before: Option<&SharedModel>,
    ) -> Option<Durable> {
        match kind.durability(now_ms)? {
            Durability::Nothing => None,
            Durability::Everything => before.map(|model| {
                model
                    .lock()
                    .expect("the model lock is never held across a panic")
                    .durable()
            }),
            Durability::AsOf { .. } => {
                let every = kind.sync_every_ms()?.max(1);
                self.periodic.get(&every)?.2.clone()
            }
        }
    }
}

/// One Redis host: its node configuration and, for a replica, what it follows.
pub(super) struct RedisHost {
    pub(super) host: String,
    pub(super) seed: u64,
    pub(super) cluster: Option<ratelab::model::ClusterConfig>,
    pub(super) replica_of: Option<ReplicaLink>,
    pub(super) model: ModelSlot,
    pub(super) offset: Arc<AtomicI64>,
    /// What the next (re)start loads.
    pub(super) restore: Restore,
}

impl RedisHost {
    pub(super) fn add_to(self, sim: &mut turmoil::Sim<'_>) {
        let starts = Arc::new(AtomicI64::new(0));
        let host = self.host.clone();
        sim.host(host, move || {
            let slot = Arc::clone(&self.model);
            let offset = Arc::clone(&self.offset);
            let cluster = self.cluster.clone();
            let replica_of = self.replica_of.clone();
            let durable = self
                .restore
                .lock()
                .expect("the restore lock is never held across a panic")
                .take();
            // A restarted node gets a new seed, derived, so the run stays reproducible.
            let start = starts.fetch_add(1, Ordering::Relaxed);
            let node_seed = self.seed.wrapping_add(start.unsigned_abs());
            async move {
                let config = NodeConfig {
                    port: REDIS_PORT,
                    cluster,
                    ..NodeConfig::standalone(node_seed)
                };
                let mut fresh = Model::new(config);
                if let Some(durable) = durable {
                    // Loaded before the listener binds, as Redis loads its AOF or RDB file.
                    fresh.restore_durable(durable);
                }
                let model: SharedModel = Arc::new(Mutex::new(fresh));
                *slot
                    .lock()
                    .expect("the model slot lock is never held across a panic") =
                    Some(Arc::clone(&model));
                if let Some(link) = replica_of {
                    tokio::spawn(replicate(link, Arc::clone(&model), sim_now_ms));
                }
                let clock: Clock = Arc::new(move || skewed_ms(sim_now_ms(), &offset));
                let listener = turmoil::net::TcpListener::bind(("0.0.0.0", REDIS_PORT)).await?;
                loop {
                    let (stream, peer) = listener.accept().await?;
                    let model = Arc::clone(&model);
                    let clock = Arc::clone(&clock);
                    tokio::spawn(async move {
                        // A dropped connection is the client's problem, not the server's.
                        let _ = serve_connection(stream, model, clock, peer.to_string()).await;
                    });
                }
            }
        });
    }
}

/// Every key of database 0 with its PTTL, in key order.
pub(super) fn snapshot(model: &SharedModel, node_ms: u64) -> Vec<(String, i64)> {
    let mut model = model
        .lock()
        .expect("the model lock is never held across a panic");
    let mut session = model.connect("checker:0");
    let keys = match model.exec(node_ms, &mut session, &[b"KEYS".to_vec(), b"*".to_vec()]) {
        Reply::Array(items) => items,
        _ => Vec::new(),
    };
    let mut out = Vec::new();
    for item in keys {
        let Reply::Bulk(key) = item else { continue };
        let ttl = match model.exec(node_ms, &mut session, &[b"PTTL".to_vec(), key.clone()]) {
            Reply::Integer(ttl) => ttl,
            _ => -2,
        };
        out.push((String::from_utf8_lossy(&key).into_owned(), ttl));
    }
    model.disconnect(&mut session);
    out.sort();
    out
}
