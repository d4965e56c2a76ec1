//! [`RespRedis`]: the [`Redis`] trait over our own RESP client, for any byte stream.
//!
//! Why a second network backend beside [`crate::real`]: the simulation hands the limiters
//! turmoil's TCP streams, which the `redis` crate cannot use. This backend is the one that
//! runs under simulated faults, so it is deliberately small: one connection, one request in
//! flight at a time, and an optional read timeout that is tokio's timer (virtual time under
//! turmoil, so a partition times out deterministically).

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};

use super::client::{Client, ClientError};
use crate::model::Reply;
use crate::redis::{Cmd, Error, Redis};

/// One RESP connection as a [`Redis`] backend.
///
/// A call that fails or times out leaves the connection unusable: the position of the stream
/// in the reply sequence is unknown, so every later call answers [`Error::Closed`] (as
/// go-redis throws a connection away after a bad read). The caller reconnects by building a
/// new `RespRedis` over a new stream.
pub struct RespRedis<S> {
    /// The connection; it owns the stream.
    client: Client<S>,
    /// How long one call may wait for all its replies; `None` waits forever.
    read_timeout: Option<Duration>,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> RespRedis<S> {
    /// A backend over `stream` that waits for replies as long as it takes.
    pub fn new(stream: S) -> RespRedis<S> {
        RespRedis {
            client: Client::new(stream),
            read_timeout: None,
        }
    }

    /// A backend over `stream` whose calls fail with [`Error::Timeout`] when their replies
    /// have not all arrived within `read_timeout` (measured from the start of the call, so
    /// it covers the write too, like a request deadline).
    pub fn with_read_timeout(stream: S, read_timeout: Duration) -> RespRedis<S> {
        RespRedis {
            client: Client::new(stream),
            read_timeout: Some(read_timeout),
        }
    }

    /// The read timeout, if any.
    pub fn read_timeout(&self) -> Option<Duration> {
        self.read_timeout
    }

    /// Gives the stream back, for example to close it.
    pub fn into_inner(self) -> S {
        self.client.into_inner()
    }

    /// Sends the commands in one write and reads their replies, bounded by the read timeout.
    async fn round_trip(&mut self, cmds: &[Cmd]) -> Result<Vec<Reply>, Error> {
        let argvs: Vec<Vec<Vec<u8>>> = cmds.iter().map(Cmd::argv).collect();
        let exchange = self.client.pipeline(&argvs);
        let result = match self.read_timeout {
            // A timed-out exchange is dropped midway; the client then stays marked broken,
            // which is what makes later calls answer `Closed`.
            Some(limit) => match tokio::time::timeout(limit, exchange).await {
                Ok(result) => result,
                Err(_elapsed) => return Err(Error::Timeout),
            },
            None => exchange.await,
        };
        result.map_err(client_error)
    }
}

/// Maps our client's failure onto the backend-neutral [`Error`].
fn client_error(error: ClientError) -> Error {
    match error {
        ClientError::Io(error) => Error::Io(error),
        ClientError::Protocol(error) => Error::Protocol(error.to_string()),
        ClientError::Closed => Error::Closed,
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Redis for RespRedis<S> {
    async fn exec(&mut self, cmd: Cmd) -> Result<Reply, Error> {
        let mut replies = self.round_trip(std::slice::from_ref(&cmd)).await?;
        Ok(replies
            .pop()
            .expect("the client returns one reply per command"))
    }

    async fn pipeline(&mut self, cmds: Vec<Cmd>) -> Result<Vec<Reply>, Error> {
        if cmds.is_empty() {
            // Nothing to send: no round trip, and no wait on a peer that owes us nothing.
            return Ok(Vec::new());
        }
        self.round_trip(&cmds).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Model, NodeConfig};
    use crate::resp::server::{Clock, serve_connection};
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    /// What one step expects: replies, or the name of the error.
    type Expected = Result<Vec<Reply>, &'static str>;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
    }

    /// The error's variant name, so tables can state it briefly.
    fn error_name(error: &Error) -> &'static str {
        match error {
            Error::Io(_) => "Io",
            Error::Protocol(_) => "Protocol",
            Error::Timeout => "Timeout",
            Error::Closed => "Closed",
        }
    }

    /// Runs each pipeline in turn through a `RespRedis` served by a fresh model (clock fixed
    /// at 5 s) and compares each outcome with the table.
    fn check(steps: &[(Vec<Cmd>, Expected)]) {
        runtime().block_on(async {
            let model = Arc::new(Mutex::new(Model::new(NodeConfig::standalone(7))));
            let clock: Clock = Arc::new(|| 5_000);
            let (stream, server) = tokio::io::duplex(4096);
            tokio::spawn(serve_connection(server, model, clock, "t:1".to_owned()));
            let mut redis = RespRedis::with_read_timeout(stream, Duration::from_secs(10));
            for (cmds, expected) in steps {
                let got = if cmds.len() == 1 {
                    redis.exec(cmds[0].clone()).await.map(|reply| vec![reply])
                } else {
                    redis.pipeline(cmds.clone()).await
                };
                let got = got.map_err(|error| error_name(&error));
                assert_eq!(&got, expected, "{cmds:?}");
            }
        });
    }

    fn key(name: &str) -> Vec<u8> {
        name.as_bytes().to_vec()
    }

    #[test]
    fn commands_and_pipelines_reach_the_model() {
        check(&[
            (vec![Cmd::Ping], Ok(vec![Reply::Status("PONG".into())])),
            (vec![Cmd::Get { key: key("k") }], Ok(vec![Reply::Nil])),
            (
                vec![
                    Cmd::Incr { key: key("k") },
                    Cmd::IncrBy {
                        key: key("k"),
                        by: -3,
                    },
                    Cmd::Get { key: key("k") },
                    Cmd::LPush {
                        key: key("k"),
                        value: key("v"),
                    },
                ],
                Ok(vec![
                    Reply::Integer(1),
                    Reply::Integer(-2),
                    Reply::Bulk(b"-2".to_vec()),
                    Reply::Error(
                        "WRONGTYPE Operation against a key holding the wrong kind of value".into(),
                    ),
                ]),
            ),
            (
                vec![Cmd::Time],
                Ok(vec![Reply::Array(vec![
                    Reply::Bulk(b"5".to_vec()),
                    Reply::Bulk(b"0".to_vec()),
                ])]),
            ),
            (vec![], Ok(vec![])),
            (
                vec![
                    Cmd::LPush {
                        key: key("l"),
                        value: key("a"),
                    },
                    Cmd::LPush {
                        key: key("l"),
                        value: key("b"),
                    },
                    Cmd::LTrim {
                        key: key("l"),
                        start: 0,
                        stop: 0,
                    },
                    Cmd::LIndex {
                        key: key("l"),
                        index: -1,
                    },
                    Cmd::LLen { key: key("l") },
                ],
                Ok(vec![
                    Reply::Integer(1),
                    Reply::Integer(2),
                    Reply::Status("OK".into()),
                    Reply::Bulk(b"b".to_vec()),
                    Reply::Integer(1),
                ]),
            ),
        ]);
    }

    #[test]
    fn a_silent_server_times_out_and_the_connection_is_then_closed() {
        runtime().block_on(async {
            // The far end is kept open but never answers.
            let (stream, _silent) = tokio::io::duplex(4096);
            let mut redis = RespRedis::with_read_timeout(stream, Duration::from_millis(30));
            assert_eq!(redis.read_timeout(), Some(Duration::from_millis(30)));
            let first = redis.exec(Cmd::Ping).await;
            assert!(matches!(first, Err(Error::Timeout)), "{first:?}");
            let second = redis.exec(Cmd::Ping).await;
            assert!(matches!(second, Err(Error::Closed)), "{second:?}");
        });
    }

    /// Sends PING to a scripted peer that answers `answer` and then closes (or stays open
    /// when `hang` is set), and returns the error's name.
    fn failure_against(answer: &'static [u8], hang: bool) -> &'static str {
        runtime().block_on(async {
            let (stream, mut peer) = tokio::io::duplex(4096);
            let peer_task = tokio::spawn(async move {
                let mut request = [0u8; 64];
                let _ = peer.read(&mut request).await;
                let _ = peer.write_all(answer).await;
                if hang {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
                drop::<DuplexStream>(peer);
            });
            let mut redis = RespRedis::with_read_timeout(stream, Duration::from_secs(2));
            let outcome = redis.exec(Cmd::Ping).await;
            peer_task.abort();
            match outcome {
                Ok(reply) => panic!("expected an error, got {reply:?}"),
                Err(error) => error_name(&error),
            }
        })
    }

    #[test]
    fn transport_failures_map_to_their_errors() {
        assert_eq!(failure_against(b"", false), "Closed");
        assert_eq!(failure_against(b"+PON", false), "Closed");
        assert_eq!(failure_against(b"?what\r\n", true), "Protocol");
        assert_eq!(failure_against(b"$-7\r\n", true), "Protocol");
    }

    #[test]
    fn without_a_timeout_a_reply_is_awaited() {
        runtime().block_on(async {
            let model = Arc::new(Mutex::new(Model::new(NodeConfig::standalone(7))));
            let clock: Clock = Arc::new(|| 5_000);
            let (stream, server) = tokio::io::duplex(64);
            tokio::spawn(serve_connection(server, model, clock, "t:1".to_owned()));
            let mut redis = RespRedis::new(stream);
            assert_eq!(redis.read_timeout(), None);
            let reply = redis
                .exec(Cmd::Expire {
                    key: key("missing"),
                    ttl_s: 10,
                })
                .await
                .expect("a reply");
            assert_eq!(reply, Reply::Integer(0));
            let _stream: DuplexStream = redis.into_inner();
        });
    }
}
