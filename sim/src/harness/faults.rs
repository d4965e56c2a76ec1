//! The scheduled faults as the harness applies them: Redis restarts (with what persistence
//! kept), failovers, flushes and clock steps, and the events that mark each in the log.

use super::*;

/// The model a Redis host serves now, if it has started.
pub(super) fn current_model(slot: &ModelSlot) -> Option<SharedModel> {
    slot.lock()
        .expect("the model slot lock is never held across a panic")
        .clone()
}

/// Sets `took_effect` on each Redis restart's event: the node really restarted when the
/// model serving at the end is not the one that served before the restart.
pub(super) fn mark_restarts(
    log: &Log,
    restarted: &[(usize, Option<SharedModel>)],
    slot: &ModelSlot,
) {
    let now = current_model(slot);
    let mut events = log
        .lock()
        .expect("the event log lock is never held across a panic");
    for (fault, before) in restarted {
        let effect = match (before, &now) {
            (Some(before), Some(now)) => !Arc::ptr_eq(before, now),
            (None, Some(_)) => true,
            (_, None) => false,
        };
        for event in events.iter_mut() {
            if let Event::Fault {
                index, took_effect, ..
            } = event
                && index == fault
                && took_effect.is_none()
            {
                *took_effect = Some(effect);
                break;
            }
        }
    }
}

/// What a failover moves.
pub(super) struct Failover<'a> {
    pub(super) primary: &'a Target,
    pub(super) replication_stopped: &'a AtomicBool,
}

/// Applies (or ends) one fault and says what happened.
pub(super) fn apply_fault(
    sim: &mut turmoil::Sim<'_>,
    kind: &FaultKind,
    is_end: bool,
    offsets: &BTreeMap<String, Arc<AtomicI64>>,
    failover: &Failover<'_>,
) -> String {
    match kind {
        FaultKind::Partition { a, b, oneway, .. } => match (is_end, oneway) {
            (false, false) => {
                sim.partition(a.as_str(), b.as_str());
                format!("partition {a} <-> {b}")
            }
            (false, true) => {
                sim.partition_oneway(a.as_str(), b.as_str());
                format!("partition {a} -> {b}")
            }
            (true, false) => {
                sim.repair(a.as_str(), b.as_str());
                format!("repair {a} <-> {b}")
            }
            (true, true) => {
                sim.repair_oneway(a.as_str(), b.as_str());
                format!("repair {a} -> {b}")
            }
        },
        FaultKind::Hold { a, b, .. } if is_end => {
            sim.release(a.as_str(), b.as_str());
            format!("release {a} <-> {b}")
        }
        FaultKind::Hold { a, b, .. } => {
            sim.hold(a.as_str(), b.as_str());
            format!("hold {a} <-> {b}")
        }
        FaultKind::RedisRestart { persistence, .. } => {
            sim.bounce(REDIS_HOST);
            let kept = match persistence {
                Persistence::None => "data and script cache lost",
                Persistence::AofAlways => "aof_always: every write kept, script cache lost",
                Persistence::AofEverysec => {
                    "aof_everysec: data as of the last fsync kept, script cache lost"
                }
                Persistence::Rdb => "rdb: the last snapshot kept, script cache lost",
            };
            format!("restart {REDIS_HOST} ({kept})")
        }
        FaultKind::Failover {} => {
            // Replication stops first, so the promoted replica keeps exactly what it had
            // received; then the old primary dies (its connections break) and every
            // gateway's pool dials the new one.
            failover.replication_stopped.store(true, Ordering::Relaxed);
            sim.crash(REDIS_HOST);
            *failover
                .primary
                .lock()
                .expect("the target lock is never held across a panic") = PROMOTED_HOST.to_owned();
            format!(
                "failover: {REDIS_HOST} dies, {PROMOTED_HOST} promoted (unreplicated writes lost, script cache empty)"
            )
        }
        FaultKind::ClockStep { host, step_ms } => {
            if let Some(offset) = offsets.get(host) {
                offset.fetch_add(*step_ms, Ordering::Relaxed);
            }
            format!("clock step {host} by {step_ms} ms")
        }
        FaultKind::Flush {} => "flush (applied by the caller)".to_owned(),
        FaultKind::LinkLatency { a, b, latency_ms } => {
            sim.set_link_latency(a.as_str(), b.as_str(), Duration::from_millis(*latency_ms));
            format!("latency {a} <-> {b} = {latency_ms} ms")
        }
        // The gateway restarts itself at this time (it knows its schedule): see
        // `Gateway::run`.
        FaultKind::GatewayRestart { host, down_ms } => format!(
            "restart {host} (in-flight requests aborted, in-memory state and script loader lost; down {down_ms} ms)"
        ),
    }
}

/// FLUSHALL on the live model at the node's time (the node stays up; scripts are kept).
pub(super) fn flush(
    current_model: &Arc<Mutex<Option<SharedModel>>>,
    true_ms: u64,
    offset: &AtomicI64,
) -> (String, Option<bool>) {
    let model = current_model
        .lock()
        .expect("the model slot lock is never held across a panic")
        .clone();
    let Some(model) = model else {
        return (
            format!("flush {REDIS_HOST}: not started yet, nothing to flush"),
            Some(false),
        );
    };
    let mut model = model
        .lock()
        .expect("the model lock is never held across a panic");
    let mut session = model.connect("fault:0");
    let node_ms = skewed_ms(true_ms, offset);
    let keys = match model.exec(node_ms, &mut session, &[b"DBSIZE".to_vec()]) {
        Reply::Integer(keys) => keys,
        _ => 0,
    };
    let reply = model.exec(node_ms, &mut session, &[b"FLUSHALL".to_vec()]);
    model.disconnect(&mut session);
    (
        format!("flush {REDIS_HOST} (FLUSHALL: {reply:?}, {keys} keys removed)"),
        Some(keys > 0),
    )
}
