//! `ratelab bench --only accept`: how fast a server takes many new connections.
//!
//! The same client load against `ratelab serve` (this binary, started as a child process on a
//! free port, or `--model ADDR`) and a real redis-server in the same run: `--connections`
//! clients connect at once, each sends PING and reads `+PONG`, and every connection stays
//! open until all have been answered (so the server holds them all, as with a pool of
//! clients). The figure is the wall time from the first connect to the last PONG.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A `ratelab serve` child process, killed when dropped.
struct ServeChild {
    child: Child,
    address: SocketAddr,
}

impl ServeChild {
    fn start() -> std::io::Result<ServeChild> {
        let mut child = Command::new(std::env::current_exe()?)
            .args(["serve", "--port", "0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| std::io::Error::other("no stdout"))?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        // "ratelab: serving the Redis model on 127.0.0.1:PORT (seed 0)"
        let address = line
            .split_whitespace()
            .find_map(|word| word.parse::<SocketAddr>().ok())
            .ok_or_else(|| std::io::Error::other(format!("unexpected serve output: {line:?}")))?;
        Ok(ServeChild { child, address })
    }
}

impl Drop for ServeChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Opens `connections` connections at once, PINGs on each, and returns the wall time until
/// every one has its PONG, and how many failed.
async fn open_and_ping(address: SocketAddr, connections: usize) -> (Duration, usize) {
    let started = Instant::now();
    let tasks: Vec<_> = (0..connections)
        .map(|_| {
            tokio::spawn(async move {
                let mut stream = TcpStream::connect(address).await.ok()?;
                stream.write_all(b"PING\r\n").await.ok()?;
                let mut reply = [0u8; 7];
                stream.read_exact(&mut reply).await.ok()?;
                (&reply == b"+PONG\r\n").then_some(stream)
            })
        })
        .collect();
    let mut open = Vec::with_capacity(connections);
    let mut failed = 0;
    for task in tasks {
        match task.await {
            Ok(Some(stream)) => open.push(stream),
            _ => failed += 1,
        }
    }
    let elapsed = started.elapsed();
    drop(open);
    (elapsed, failed)
}

/// Runs the accept benchmark and prints one line per server and the ratio.
pub fn run(connections: usize, model: Option<&str>, to_stderr: bool) -> std::io::Result<()> {
    let say = |line: String| {
        if to_stderr {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    };
    let redis = ratelab::redis_server::RedisServer::start()?;
    let redis_address: SocketAddr = format!("{}:{}", redis.host(), redis.port())
        .parse()
        .map_err(std::io::Error::other)?;
    let child;
    let model_address = match model {
        Some(address) => address.parse().map_err(std::io::Error::other)?,
        None => {
            child = ServeChild::start()?;
            child.address
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    say(format!(
        "accept: {connections} connections at once, PING on each, all held open until the last PONG"
    ));
    say(format!(
        "{:<14} {:>10} {:>8}",
        "server", "wall_ms", "failed"
    ));
    let mut times = Vec::new();
    for (name, address) in [
        ("ratelab serve", model_address),
        ("redis-server", redis_address),
    ] {
        let (elapsed, failed) = runtime.block_on(open_and_ping(address, connections));
        say(format!(
            "{name:<14} {:>10.1} {failed:>8}",
            elapsed.as_secs_f64() * 1_000.0
        ));
        times.push(elapsed.as_secs_f64());
        crate::bench::record(
            "accept",
            "server,connections,wall_ms,failed",
            &[
                name.to_owned(),
                connections.to_string(),
                format!("{:.1}", elapsed.as_secs_f64() * 1_000.0),
                failed.to_string(),
            ],
        );
        // Let both servers close the last round's connections before the next.
        std::thread::sleep(Duration::from_millis(500));
    }
    say(format!(
        "ratelab serve / redis-server wall time: {:.2}x",
        times[0] / times[1]
    ));
    Ok(())
}
