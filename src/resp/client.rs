//! A minimal RESP2 client over any byte stream: one command or a pipeline at a time.
//!
//! Why our own client when the `redis` crate exists: the simulation runs over turmoil's TCP,
//! which the `redis` crate cannot use, and a client that shares our codec and limits is easy
//! to reason about under faults. Error replies from the server are replies (`Reply::Error`),
//! not errors: `Err` means the connection could not answer at all.

use std::fmt;
use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::codec::{ProtocolError, encode_command, parse_reply};
use crate::model::{Limits, Reply};

/// Why a command got no reply.
#[derive(Debug)]
#[non_exhaustive]
pub enum ClientError {
    /// Reading or writing the stream failed.
    Io(io::Error),
    /// The server sent something that is not RESP2 (or exceeds our limits).
    Protocol(ProtocolError),
    /// The server closed the connection before every reply arrived, or an earlier error
    /// left this client unusable.
    Closed,
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Io(error) => write!(f, "connection error: {error}"),
            ClientError::Protocol(error) => write!(f, "bad reply from server: {error}"),
            ClientError::Closed => f.write_str("connection closed"),
        }
    }
}

impl std::error::Error for ClientError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ClientError::Io(error) => Some(error),
            ClientError::Protocol(error) => Some(error),
            ClientError::Closed => None,
        }
    }
}

impl From<io::Error> for ClientError {
    fn from(error: io::Error) -> ClientError {
        ClientError::Io(error)
    }
}

impl From<ProtocolError> for ClientError {
    fn from(error: ProtocolError) -> ClientError {
        ClientError::Protocol(error)
    }
}

/// How much free room the reply buffer gets before each read.
const READ_CHUNK: usize = 16 * 1024;

/// A connection to a Redis server (real or model) over `S`.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use ratelab::model::{Model, NodeConfig, Reply};
/// use ratelab::resp::client::Client;
/// use ratelab::resp::server::{serve_connection, Clock};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let model = Arc::new(Mutex::new(Model::new(NodeConfig::standalone(1))));
/// let clock: Clock = Arc::new(|| 1_000);
/// let (stream, server) = tokio::io::duplex(1024);
/// tokio::spawn(serve_connection(server, model, clock, "test:1".to_owned()));
/// let mut client = Client::new(stream);
/// assert_eq!(client.command(&["ECHO", "hi"]).await.unwrap(), Reply::Bulk(b"hi".to_vec()));
/// # });
/// ```
pub struct Client<S> {
    stream: S,
    limits: Limits,
    /// Bytes read but not yet parsed (the start of the next reply, at most).
    input: Vec<u8>,
    /// Reused for encoding requests.
    output: Vec<u8>,
    /// An earlier call failed mid-exchange: the stream's position in the reply sequence is
    /// unknown, so every later call answers `Closed` instead of a wrong reply.
    broken: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    /// A client over `stream` with the standard limits.
    pub fn new(stream: S) -> Client<S> {
        Client::with_limits(stream, Limits::standard())
    }

    /// A client over `stream` that refuses replies beyond `limits` (bulk length, array
    /// length, line length) as protocol errors.
    pub fn with_limits(stream: S, limits: Limits) -> Client<S> {
        Client {
            stream,
            limits,
            input: Vec::with_capacity(READ_CHUNK),
            output: Vec::new(),
            broken: false,
        }
    }

    /// Sends one command and waits for its reply.
    pub async fn command<A: AsRef<[u8]>>(&mut self, argv: &[A]) -> Result<Reply, ClientError> {
        let mut replies = self.pipeline(std::slice::from_ref(&argv)).await?;
        Ok(replies.pop().expect("one command, one reply"))
    }

    /// Sends every command in one write and waits for all their replies, in order.
    pub async fn pipeline<C, A>(&mut self, commands: &[C]) -> Result<Vec<Reply>, ClientError>
    where
        C: AsRef<[A]>,
        A: AsRef<[u8]>,
    {
        if self.broken {
            return Err(ClientError::Closed);
        }
        self.broken = true;
        self.output.clear();
        for argv in commands {
            encode_command(argv.as_ref(), &mut self.output);
        }
        let mut replies = Vec::with_capacity(commands.len());
        self.send_while_reading(commands.len(), &mut replies)
            .await?;
        self.stream.flush().await?;
        while replies.len() < commands.len() {
            replies.push(self.read_reply().await?);
        }
        self.broken = false;
        Ok(replies)
    }

    /// Writes the encoded pipeline while taking in the replies that already arrive. A long
    /// pipeline written before reading could fill both directions' socket buffers: the server
    /// would wait for us to read its replies while we wait for it to read our commands.
    async fn send_while_reading(
        &mut self,
        expected: usize,
        replies: &mut Vec<Reply>,
    ) -> Result<(), ClientError> {
        let mut written = 0;
        while written < self.output.len() {
            while replies.len() < expected
                && let Some((reply, used)) = parse_reply(&self.input, &self.limits)?
            {
                self.input.drain(..used);
                replies.push(reply);
            }
            if self.input.capacity() - self.input.len() < READ_CHUNK {
                self.input.reserve(READ_CHUNK);
            }
            let (mut reader, mut writer) = tokio::io::split(&mut self.stream);
            // Biased, so the order of events is the same on every run under simulation.
            tokio::select! {
                biased;
                sent = writer.write(&self.output[written..]) => match sent? {
                    0 => return Err(ClientError::Closed),
                    sent => written += sent,
                },
                read = reader.read_buf(&mut self.input) => {
                    if read? == 0 {
                        return Err(ClientError::Closed);
                    }
                }
            }
        }
        Ok(())
    }

    /// Gives the stream back, for example to close it.
    pub fn into_inner(self) -> S {
        self.stream
    }

    async fn read_reply(&mut self) -> Result<Reply, ClientError> {
        loop {
            if let Some((reply, used)) = parse_reply(&self.input, &self.limits)? {
                self.input.drain(..used);
                return Ok(reply);
            }
            if self.input.capacity() - self.input.len() < READ_CHUNK {
                self.input.reserve(READ_CHUNK);
            }
            if self.stream.read_buf(&mut self.input).await? == 0 {
                return Err(ClientError::Closed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::DuplexStream;

    /// Starts a client whose "server" is a script: it reads the request, checks it equals
    /// `request`, writes `response` and then closes.
    fn scripted(request: &'static [u8], response: &'static [u8]) -> Client<DuplexStream> {
        let (client_side, mut server_side) = tokio::io::duplex(64 * 1024);
        tokio::spawn(async move {
            let mut got = vec![0u8; request.len()];
            server_side.read_exact(&mut got).await.expect("request");
            assert_eq!(got, request);
            server_side.write_all(response).await.expect("response");
        });
        Client::with_limits(
            client_side,
            Limits {
                bulk_len_max: 16,
                ..Limits::standard()
            },
        )
    }

    /// A pipeline, the exact bytes the server expects, what it answers, and the outcome.
    type Case = (
        &'static [&'static [&'static str]],
        &'static [u8],
        &'static [u8],
        Result<Vec<Reply>, &'static str>,
    );

    /// Sends `commands` as a pipeline to a scripted server and compares the outcome, shown as
    /// the replies or the error's Display text.
    fn check(cases: &[Case]) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        for (commands, request, response, expected) in cases {
            runtime.block_on(async {
                let mut client = scripted(request, response);
                let got = client.pipeline(commands).await.map_err(|e| e.to_string());
                assert_eq!(got, expected.clone().map_err(str::to_owned), "{commands:?}");
                if got.is_err() {
                    let again = client.command(&["PING"]).await.map_err(|e| e.to_string());
                    assert_eq!(again, Err("connection closed".to_owned()));
                }
            });
        }
    }

    #[test]
    fn pipelines_send_one_frame_each_and_read_replies_in_order() {
        check(&[
            (
                &[&["PING"], &["GET", "k"]],
                b"*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n",
                b"+PONG\r\n$-1\r\n",
                Ok(vec![Reply::Status("PONG".into()), Reply::Nil]),
            ),
            (
                &[&["INCR", "k"]],
                b"*2\r\n$4\r\nINCR\r\n$1\r\nk\r\n",
                b"-ERR value is not an integer or out of range\r\n",
                Ok(vec![Reply::Error(
                    "ERR value is not an integer or out of range".into(),
                )]),
            ),
            (&[], b"", b"", Ok(vec![])),
        ]);
    }

    #[test]
    fn a_pipeline_larger_than_the_pipe_does_not_deadlock() {
        use crate::model::{Model, NodeConfig};
        use crate::resp::server::{Clock, serve_connection};
        use std::sync::{Arc, Mutex};
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(async {
            let model = Arc::new(Mutex::new(Model::new(NodeConfig::standalone(3))));
            let clock: Clock = Arc::new(|| 5_000);
            // 4 KB each way, against ~400 KB of commands and as much of replies.
            let (stream, server) = tokio::io::duplex(4096);
            let task = tokio::spawn(serve_connection(server, model, clock, "t:1".to_owned()));
            let payload = "p".repeat(200);
            let commands: Vec<[&str; 2]> = (0..2000).map(|_| ["ECHO", payload.as_str()]).collect();
            let mut client = Client::new(stream);
            // A regression would hang, so it is bounded to fail instead.
            let replies = tokio::time::timeout(
                std::time::Duration::from_secs(20),
                client.pipeline(&commands),
            )
            .await
            .expect("no deadlock")
            .expect("replies");
            assert_eq!(replies.len(), 2000);
            assert!(
                replies
                    .iter()
                    .all(|reply| *reply == Reply::Bulk(payload.clone().into_bytes()))
            );
            assert_eq!(
                client.command(&["QUIT"]).await.expect("quit"),
                Reply::Status("OK".into())
            );
            task.await.expect("no panic").expect("no io error");
        });
    }

    #[test]
    fn bad_or_missing_replies_are_errors_and_break_the_client() {
        check(&[
            (
                &[&["PING"], &["PING"]],
                b"*1\r\n$4\r\nPING\r\n*1\r\n$4\r\nPING\r\n",
                b"+PONG\r\n",
                Err("connection closed"),
            ),
            (
                &[&["PING"]],
                b"*1\r\n$4\r\nPING\r\n",
                b"?what\r\n",
                Err("bad reply from server: Protocol error: unexpected reply type byte '?'"),
            ),
            (
                &[&["GET", "k"]],
                b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n",
                b"$17\r\n",
                Err("bad reply from server: Protocol error: invalid bulk length"),
            ),
        ]);
    }
}
