//! `ratelab`: the command-line front of the simulator.
//!
//! For now one subcommand, `serve`, which puts the in-process Redis model on a TCP port so
//! that redis-cli, redis-benchmark, the `redis` crate or any other client can talk to it.
//! The simulation's subcommands (`run`, `explore`, `report`, ...) join it later.

mod bench;
mod bench_redis;
mod serve;

use clap::{Parser, Subcommand};

/// Deterministic simulator and verification suite for Redis-backed rate limiters.
#[derive(Parser, Debug)]
#[command(name = "ratelab", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve the in-process Redis 7.0 model over RESP on a TCP port (until Ctrl-C).
    Serve(serve::ServeArgs),
    /// Benchmark the limiters against their peers and print the numbers.
    Bench(bench::BenchArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Serve(args) => serve::run(&args),
        Command::Bench(args) => bench::run(&args),
    };
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("ratelab: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
