//! A real Redis for tests and benchmarks: find one (`REDIS_URL`) or start one (`redis-server`
//! from PATH), and talk to it with a small blocking client.
//!
//! Why: the model is only as good as its agreement with the real server, so the differential
//! tests (`tests/redis/differential.rs`, `proptests/tests/props/random_differential.rs`) ask a real Redis
//! the same questions. A machine without Redis still runs those tests against recorded golden
//! replies; the live half then prints a visible `skipped:` line instead of passing quietly,
//! and `RATELAB_REQUIRE_REDIS=1` (set by CI) turns that skip into a failure.
//!
//! The client is deliberately blocking and tiny: one `std::net::TcpStream`, the crate's own
//! RESP codec, and read and write timeouts, so a server that stops answering fails a test
//! instead of hanging it. Nothing here panics on what the server sends.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::model::{Limits, Reply};
use crate::resp::codec::{encode_command, parse_reply};

/// How long a started server may take to answer its first PING.
const STARTUP_WAIT_MAX: Duration = Duration::from_secs(10);

/// How often the startup wait polls the new server.
const STARTUP_POLL_INTERVAL: Duration = Duration::from_millis(20);

/// How many free ports to try if a started server dies at once (another process took the
/// port between our probe and its bind).
const START_ATTEMPTS_MAX: usize = 3;

/// How long one reply may take before the client gives up. Generous: the machine may be busy,
/// but no command in the corpus legitimately takes more than a fraction of a second.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The environment variable that names an existing server (`redis://host:port`).
pub const REDIS_URL_VAR: &str = "REDIS_URL";

/// The environment variable that turns "no Redis here, skipped" into a test failure.
pub const REQUIRE_REDIS_VAR: &str = "RATELAB_REQUIRE_REDIS";

/// A real Redis server: one this process started (killed on drop) or an external one named
/// by `REDIS_URL` (left alone).
#[derive(Debug)]
pub struct RedisServer {
    /// Host name or address to connect to.
    host: String,
    /// TCP port.
    port: u16,
    /// The server process when we started it; `None` for an external server.
    child: Option<Child>,
}

impl RedisServer {
    /// Uses the server named by `REDIS_URL` if that is set, otherwise starts `redis-server`
    /// from PATH on a free port with persistence off and waits (bounded) until it answers
    /// PING. The started server is killed when the returned value is dropped.
    pub fn start() -> io::Result<RedisServer> {
        match std::env::var(REDIS_URL_VAR) {
            Ok(url) if !url.trim().is_empty() => RedisServer::external(&url),
            _ => RedisServer::spawn(),
        }
    }

    /// Connects to an existing server given as `redis://host[:port][/...]` and checks that it
    /// answers PING. Authentication is not supported: test servers do not use it. The
    /// differential tests FLUSHALL and reconfigure the server they get, so point `REDIS_URL`
    /// only at a throwaway one.
    pub fn external(url: &str) -> io::Result<RedisServer> {
        let (host, port) = parse_redis_url(url)?;
        let server = RedisServer {
            host,
            port,
            child: None,
        };
        server.ping_once()?;
        Ok(server)
    }

    /// Starts a fresh `redis-server` from PATH on a free local port.
    fn spawn() -> io::Result<RedisServer> {
        let mut last_error = io::Error::other("redis-server was not started");
        for _ in 0..START_ATTEMPTS_MAX {
            let port = free_port()?;
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string()])
                .args(["--bind", "127.0.0.1"])
                .args(["--save", ""])
                .args(["--appendonly", "no"])
                .current_dir(std::env::temp_dir())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?;
            // From here on the server is owned by `server`, so an early return kills it.
            let mut server = RedisServer {
                host: "127.0.0.1".to_owned(),
                port,
                child: Some(child),
            };
            match server.wait_until_ready() {
                Ok(()) => return Ok(server),
                Err(error) => last_error = error,
            }
        }
        Err(last_error)
    }

    /// Polls with PING until the started server answers, it exits, or the wait runs out.
    fn wait_until_ready(&mut self) -> io::Result<()> {
        let deadline = Instant::now() + STARTUP_WAIT_MAX;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                return Err(io::Error::other(format!(
                    "redis-server on port {} exited at start: {status}",
                    self.port
                )));
            }
            match self.ping_once() {
                Ok(()) => return Ok(()),
                Err(error) if Instant::now() >= deadline => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "redis-server on port {} did not answer PING within {:?}: {error}",
                            self.port, STARTUP_WAIT_MAX
                        ),
                    ));
                }
                Err(_) => std::thread::sleep(STARTUP_POLL_INTERVAL),
            }
        }
    }

    /// One PING on a new connection; Ok only for `+PONG`.
    fn ping_once(&self) -> io::Result<()> {
        let mut client = self.connect()?;
        match client.command(&["PING"])? {
            Reply::Status(status) if status == "PONG" => Ok(()),
            other => Err(io::Error::other(format!("PING answered {other:?}"))),
        }
    }

    /// The host clients connect to.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether this server came from `REDIS_URL` (and so is shared, and not ours to kill).
    pub fn is_external(&self) -> bool {
        self.child.is_none()
    }

    /// Opens a new client connection.
    pub fn connect(&self) -> io::Result<RedisClient> {
        RedisClient::connect(&self.host, self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // `Child::kill` signals exactly this pid; the wait reaps it so no zombie is left.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Parses `redis://host[:port][/db]` into host and port (6379 when absent).
fn parse_redis_url(url: &str) -> io::Result<(String, u16)> {
    let invalid = || {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{REDIS_URL_VAR} must look like redis://host:port, got {url:?}"),
        )
    };
    let rest = url.trim().strip_prefix("redis://").ok_or_else(invalid)?;
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() || authority.contains('@') {
        return Err(invalid());
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() => {
            let port = port.parse::<u16>().map_err(|_| invalid())?;
            Ok((host.to_owned(), port))
        }
        Some(_) => Err(invalid()),
        None => Ok((authority.to_owned(), 6379)),
    }
}

/// Asks the OS for a free port by binding port 0, then releases it for the server.
fn free_port() -> io::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// A real Redis for a test, or `None` (with a visible `skipped:` line on stderr) when there is
/// none: no `REDIS_URL` and no `redis-server` that starts. With `RATELAB_REQUIRE_REDIS=1` the
/// absence is a failure instead: this panics with the reason.
pub fn real_redis_or_skip(test_name: &str) -> Option<RedisServer> {
    match RedisServer::start() {
        Ok(server) => Some(server),
        Err(error) => {
            if std::env::var(REQUIRE_REDIS_VAR).is_ok_and(|value| value == "1") {
                panic!(
                    "{test_name}: {REQUIRE_REDIS_VAR}=1 but no real Redis is available \
                     (set {REDIS_URL_VAR} or put redis-server on PATH): {error}"
                );
            }
            // Written to the stderr handle, not with `eprintln!`: the test harness captures
            // the print macros of passing tests, and a skip must be seen.
            let _ = writeln!(
                io::stderr(),
                "skipped: no redis-server ({test_name}): {error}"
            );
            None
        }
    }
}

/// A blocking RESP2 client over one TCP connection, with read and write timeouts.
#[derive(Debug)]
pub struct RedisClient {
    /// The connection.
    stream: TcpStream,
    /// Bytes read but not yet parsed into a reply.
    buffer: Vec<u8>,
    /// Reply size limits: the codec's defaults.
    limits: Limits,
}

impl RedisClient {
    /// Connects to `host:port`.
    pub fn connect(host: &str, port: u16) -> io::Result<RedisClient> {
        let stream = TcpStream::connect((host, port))?;
        stream.set_read_timeout(Some(READ_TIMEOUT))?;
        stream.set_write_timeout(Some(READ_TIMEOUT))?;
        stream.set_nodelay(true)?;
        Ok(RedisClient {
            stream,
            buffer: Vec::new(),
            limits: Limits::standard(),
        })
    }

    /// Sends one command and waits for its reply. An error reply is `Ok(Reply::Error(..))`;
    /// `Err` means the connection failed, timed out, or the server sent something unparsable.
    pub fn command<A: AsRef<[u8]>>(&mut self, argv: &[A]) -> io::Result<Reply> {
        let mut out = Vec::new();
        encode_command(argv, &mut out);
        self.stream.write_all(&out)?;
        self.read_reply()
    }

    /// Reads the next reply from the connection.
    fn read_reply(&mut self) -> io::Result<Reply> {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match parse_reply(&self.buffer, &self.limits) {
                Ok(Some((reply, used))) => {
                    self.buffer.drain(..used);
                    return Ok(reply);
                }
                Ok(None) => {}
                Err(error) => return Err(io::Error::new(io::ErrorKind::InvalidData, error)),
            }
            let read = self.stream.read(&mut chunk)?;
            if read == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the server closed the connection",
                ));
            }
            self.buffer.extend_from_slice(&chunk[..read]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_redis_url;

    /// Parses `url` and compares with the expected host and port (`None` = rejected).
    fn check(url: &str, expected: Option<(&str, u16)>) {
        let got = parse_redis_url(url).ok();
        let expected = expected.map(|(host, port)| (host.to_owned(), port));
        assert_eq!(got, expected, "{url}");
    }

    #[test]
    fn redis_urls_parse_to_host_and_port() {
        check("redis://127.0.0.1:7000", Some(("127.0.0.1", 7000)));
        check("redis://localhost", Some(("localhost", 6379)));
        check("redis://localhost:6380/9", Some(("localhost", 6380)));
        check(" redis://h:1 ", Some(("h", 1)));
        check("redis://:7000", None);
        check("redis://h:notaport", None);
        check("redis://h:70000", None);
        check("redis://user:pw@h:1", None);
        check("http://h:1", None);
        check("redis://", None);
    }
}
