//! go-redis, the client new-api uses, against the model served over TCP.
//!
//! Goal: an ordinary Go application's calls work against `ratelab serve` as against Redis.
//! Method: serve a fresh model on a free port (`interop::start_server`) and run
//! `go_redis_app/main.go` against it: each call checks its result by value (pipelines,
//! WATCH/MULTI, `Script.Run` with its NOSCRIPT fallback after SCRIPT FLUSH, INFO, CONFIG GET,
//! SCAN, 100 goroutines on one pool). Debian packages only go-redis v5 (`gopkg.in/redis.v5`,
//! RESP2, no HELLO; package `golang-gopkg-redis.v5-dev`), built in GOPATH mode: v9, which
//! new-api uses and which opens with `HELLO 3`, is not packaged and the Go module proxy is out
//! of reach. A missing Go or go-redis is a visible skip, and a failure under
//! `RATELAB_REQUIRE_REDIS=1` (CI installs both).

use std::error::Error;
use std::path::Path;

use super::interop::{client_app_passed, skip, start_server};

type TestResult = Result<(), Box<dyn Error + Send + Sync>>;

/// Where Debian's Go packages put their sources (GOPATH mode).
const GOPATH: &str = "/usr/share/gocode";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_redis_runs_an_application() -> TestResult {
    let test = "go_redis_runs_an_application";
    let missing = if tokio::process::Command::new("go")
        .arg("version")
        .output()
        .await
        .is_err()
    {
        Some("no go (apt-get install golang-go)")
    } else if !Path::new(GOPATH).join("src/gopkg.in/redis.v5").is_dir() {
        Some("go-redis v5 is not installed (apt-get install golang-gopkg-redis.v5-dev)")
    } else {
        None
    };
    if let Some(why) = missing {
        return skip(test, why);
    }
    let (address, _model) = start_server().await?;
    let app = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/redis/go_redis_app");
    let output = tokio::process::Command::new("go")
        .args(["run", "main.go"])
        .arg(address.ip().to_string())
        .arg(address.port().to_string())
        .current_dir(&app)
        .env("GO111MODULE", "off")
        .env("GOPATH", GOPATH)
        .env("GOFLAGS", "")
        .env(
            "GOCACHE",
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("go-build"),
        )
        .output()
        .await?;
    client_app_passed("go-redis", &output)
}
