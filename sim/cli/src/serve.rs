//! `ratelab serve`: the model behind a real TCP listener.
//!
//! This is the one place that reads the wall clock: the model itself only ever sees the
//! `now_ms` it is given, so here we give it the system time. The accept loop is deliberately
//! small; everything a connection does is `ratelab::resp::server::serve_connection`, the same
//! code the simulation runs over turmoil.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use clap::Args;
use ratelab::model::{Model, NodeConfig};
use ratelab::resp::server::{Clock, SharedModel, serve_connection};
use tokio::net::TcpListener;

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
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(serve(args))
}

async fn serve(args: &ServeArgs) -> io::Result<()> {
    let listener = TcpListener::bind((args.bind.as_str(), args.port)).await?;
    let address = listener.local_addr()?;
    let mut config = NodeConfig::standalone(args.seed);
    config.port = address.port();
    let model: SharedModel = Arc::new(Mutex::new(Model::new(config)));
    let clock: Clock = Arc::new(wall_clock_ms);
    println!(
        "ratelab: serving the Redis model on {address} (seed {})",
        args.seed
    );
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            signal = tokio::signal::ctrl_c() => {
                signal?;
                println!("ratelab: interrupted, shutting down");
                return Ok(());
            }
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            // Running out of file descriptors or a connection reset before accept is the
            // client's or the system's trouble, not a reason to stop serving the others.
            Err(error) => {
                eprintln!("ratelab: accept failed: {error}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        // Replies are written once per batch already; Nagle would only add latency.
        let _ = stream.set_nodelay(true);
        let model = Arc::clone(&model);
        let clock = Arc::clone(&clock);
        tokio::spawn(async move {
            // An IO error ends only that connection, and the peer already knows.
            let _ = serve_connection(stream, model, clock, peer.to_string()).await;
        });
    }
}
