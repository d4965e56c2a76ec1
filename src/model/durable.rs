//! What a node keeps on disk: the state a restart with persistence (AOF or RDB) finds again.
//!
//! Why one place: a restart, an AOF fsync and an RDB snapshot all need the same answer to
//! "what is durable", and the simulation (which decides *when* state was made durable) must
//! not know the model's insides. Redis writes the keyspace (with each TTL as an absolute
//! time, so a key that expired while the node was down is gone after it) and the functions
//! library to both the AOF and the RDB file; it never writes the script cache (EVAL's
//! scripts are not persisted: a restarted node answers NOSCRIPT to every EVALSHA), nor
//! clients, statistics or CONFIG SET changes.

use super::Model;
use super::db::Db;
use super::functions::Library;

/// A node's durable state, as of the instant [`Model::durable`] was called.
#[derive(Clone, Debug, Default)]
pub struct Durable {
    /// The sixteen databases. Expiry times are absolute (node time), so they mean the same
    /// after a restart: a key whose time passed while the node was down is stale and deleted
    /// when next looked up or swept.
    pub dbs: Vec<Db>,
    /// The functions library (FUNCTION LOAD): durable in Redis 7 (it is in the AOF and the
    /// RDB file). The script cache never joins.
    pub functions: Library,
}

impl Model {
    /// The state a restart with persistence keeps, as of now: the keyspace with absolute
    /// TTLs and the functions library. Not the script cache, clients, statistics or configuration.
    pub fn durable(&self) -> Durable {
        let mut dbs = self.core.dbs.clone();
        // INFO's expired-key count is a statistic, which a restart resets.
        for db in &mut dbs {
            db.passively_expired = 0;
        }
        Durable {
            dbs,
            functions: self.functions.clone(),
        }
    }

    /// Loads `durable` into this node (a fresh one, at its start, as Redis loads its AOF or
    /// RDB file before it accepts clients). The script cache is left as it is: empty on a
    /// fresh node.
    pub fn restore_durable(&mut self, durable: Durable) {
        self.core.dbs = durable.dbs;
        self.functions = durable.functions;
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Model, NodeConfig, Reply};

    fn exec(model: &mut Model, now_ms: u64, line: &[&str]) -> Reply {
        let mut session = model.connect("test:1");
        let argv: Vec<Vec<u8>> = line.iter().map(|arg| arg.as_bytes().to_vec()).collect();
        let reply = model.exec(now_ms, &mut session, &argv);
        model.disconnect(&mut session);
        reply
    }

    #[test]
    fn durable_state_keeps_keys_and_absolute_ttls_but_not_scripts() {
        let mut before = Model::new(NodeConfig::standalone(1));
        exec(&mut before, 1_000, &["SET", "plain", "1"]);
        exec(&mut before, 1_000, &["SET", "short", "2", "PX", "500"]);
        exec(&mut before, 1_000, &["SET", "long", "3", "PX", "10000"]);
        let sha = match exec(&mut before, 1_000, &["SCRIPT", "LOAD", "return 1"]) {
            Reply::Bulk(sha) => String::from_utf8(sha).expect("hex"),
            other => panic!("SCRIPT LOAD answered {other:?}"),
        };
        let durable = before.durable();

        // A new node (another seed, as a restarted process) loads it 2 s later.
        let mut after = Model::new(NodeConfig::standalone(2));
        after.restore_durable(durable);
        let cases: &[(&[&str], Reply)] = &[
            (&["GET", "plain"], Reply::Bulk(b"1".to_vec())),
            // Its time passed while the node was down.
            (&["GET", "short"], Reply::Nil),
            // The same absolute expiry: 10 000 - 2 000 ms left.
            (&["PTTL", "long"], Reply::Integer(8_000)),
            (
                &["SCRIPT", "EXISTS", &sha],
                Reply::Array(vec![Reply::Integer(0)]),
            ),
        ];
        for (line, expected) in cases {
            assert_eq!(&exec(&mut after, 3_000, line), expected, "{line:?}");
        }
        // The original still has the script: only the copy lacks it.
        assert_eq!(
            exec(&mut before, 3_000, &["SCRIPT", "EXISTS", &sha]),
            Reply::Array(vec![Reply::Integer(1)])
        );
    }

    #[test]
    fn the_functions_library_is_durable_and_callable_after_a_restart() {
        let mut before = Model::new(NodeConfig::standalone(1));
        let library = "#!lua name=lib\nredis.register_function('seven', function() return 7 end)";
        assert_eq!(
            exec(&mut before, 0, &["FUNCTION", "LOAD", library]),
            Reply::Bulk(b"lib".to_vec())
        );
        let mut after = Model::new(NodeConfig::standalone(2));
        after.restore_durable(before.durable());
        assert_eq!(
            exec(&mut after, 0, &["FCALL", "seven", "0"]),
            Reply::Integer(7)
        );
        // A node that never loaded it, for contrast.
        let mut fresh = Model::new(NodeConfig::standalone(3));
        assert!(matches!(
            exec(&mut fresh, 0, &["FCALL", "seven", "0"]),
            Reply::Error(_)
        ));
    }

    #[test]
    fn durable_state_is_a_copy_taken_when_called() {
        let mut model = Model::new(NodeConfig::standalone(1));
        exec(&mut model, 0, &["INCR", "n"]);
        let durable = model.durable();
        exec(&mut model, 0, &["INCR", "n"]);
        let mut restarted = Model::new(NodeConfig::standalone(2));
        restarted.restore_durable(durable);
        assert_eq!(
            exec(&mut restarted, 0, &["GET", "n"]),
            Reply::Bulk(b"1".to_vec())
        );
    }
}
