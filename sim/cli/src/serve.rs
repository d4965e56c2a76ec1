//! `ratelab serve`: the model behind a real TCP listener.
//!
//! This is the one place that reads the wall clock: the model itself only ever sees the
//! `now_ms` it is given, so here we give it the system time. The accept loop is deliberately
//! small; everything a connection does is `ratelab::resp::server::serve_watched`, the same
//! code the simulation runs over turmoil (as `serve_connection`).

use std::io;
use std::net::ToSocketAddrs;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use clap::Args;
use ratelab::model::busy::ScriptWatch;
use ratelab::model::{Model, NodeConfig};
use ratelab::resp::server::{Clock, SharedModel, serve_watched};
use tokio::net::{TcpSocket, TcpStream};

/// Flags of `ratelab serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// TCP port to listen on (0 picks a free one; the chosen address is printed).
    #[arg(long)]
    pub port: u16,
    /// Address to bind. Keep the default unless other machines must reach the model: it has
    /// no authentication.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: String,
    /// Seed for everything random the model does (RANDOMKEY, HRANDFIELD, Lua's math.random).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// The wall clock in Unix milliseconds. A clock before 1970 reads as 0 rather than failing:
/// the model only needs time to move forward from somewhere.
fn wall_clock_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Runs the server until Ctrl-C.
pub fn run(args: &ServeArgs) -> io::Result<()> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    // A script runs on the worker that read its command and holds that worker until it ends.
    // At least two workers keep the others served (BUSY, SCRIPT KILL) meanwhile, and without
    // the LIFO slot no woken task sits where other workers cannot steal it.
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    builder.worker_threads(cores.max(2)).enable_all();
    #[cfg(tokio_unstable)]
    builder.disable_lifo_slot();
    let runtime = builder.build()?;
    runtime.block_on(serve(args))
}

/// The listen backlog asked of the kernel (which caps it at `net.core.somaxconn`). Redis asks
/// for 511; a burst of thousands of connects overflows that, and every SYN the kernel drops
/// costs its client a one-second retransmit. The accept thread keeps the queue short anyway.
const ACCEPT_BACKLOG: u32 = 4096;

async fn serve(args: &ServeArgs) -> io::Result<()> {
    let address = (args.bind.as_str(), args.port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::other(format!("{} does not resolve", args.bind)))?;
    let socket = if address.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    let listener = socket.listen(ACCEPT_BACKLOG)?.into_std()?;
    // tokio leaves it non-blocking; the accept thread waits in `accept` instead.
    listener.set_nonblocking(false)?;
    let address = listener.local_addr()?;
    let mut config = NodeConfig::standalone(args.seed);
    config.port = address.port();
    // As in Redis, a runaway script runs until SCRIPT KILL (others are answered BUSY past
    // busy-reply-threshold); the step limit is for simulations, where nobody can kill.
    config.limits.script_steps_max = u64::MAX;
    let model: SharedModel = Arc::new(Mutex::new(Model::new(config)));
    let watch = model
        .lock()
        .map_err(|_| io::Error::other("the model's mutex is poisoned"))?
        .scripts
        .watch();
    let clock: Clock = Arc::new(wall_clock_ms);
    println!(
        "ratelab: serving the Redis model on {address} (seed {})",
        args.seed
    );
    let runtime = tokio::runtime::Handle::current();
    std::thread::Builder::new()
        .name("accept".to_owned())
        .spawn(move || accept_loop(&listener, &runtime, &model, &watch, &clock))?;
    tokio::signal::ctrl_c().await?;
    println!("ratelab: interrupted, shutting down");
    Ok(())
}

/// Accepts connections on a thread of its own and hands each to the runtime. On a runtime
/// worker the accept loop was one task among thousands of connection tasks: under a burst of
/// connects it ran once per scheduler round, the backlog overflowed, and dropped SYNs cost
/// clients a second each. Here it only ever waits for the kernel.
fn accept_loop(
    listener: &std::net::TcpListener,
    runtime: &tokio::runtime::Handle,
    model: &SharedModel,
    watch: &Arc<ScriptWatch>,
    clock: &Clock,
) {
    loop {
        let (stream, peer) = match listener.accept() {
            Ok(accepted) => accepted,
            // Running out of file descriptors or a connection reset before accept is the
            // client's or the system's trouble, not a reason to stop serving the others.
            Err(error) => {
                eprintln!("ratelab: accept failed: {error}");
                std::thread::sleep(std::time::Duration::from_millis(10));
                continue;
            }
        };
        // Replies are written once per batch already; Nagle would only add latency.
        let _ = stream.set_nodelay(true);
        if stream.set_nonblocking(true).is_err() {
            continue;
        }
        let (model, watch, clock) = (Arc::clone(model), Arc::clone(watch), Arc::clone(clock));
        runtime.spawn(async move {
            let Ok(stream) = TcpStream::from_std(stream) else {
                return;
            };
            // An IO error ends only that connection, and the peer already knows.
            let _ = serve_watched(stream, model, watch, clock, peer.to_string()).await;
        });
    }
}
