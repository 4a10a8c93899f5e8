//! `devenv-loadgen`: sends AdmissionReviews to devenv-webhook over keep-alive
//! HTTPS connections, as the API server does, and reports throughput, latency
//! percentiles, errors and the webhook's peak RSS.
//!
//! ```text
//! devenv-loadgen --url https://127.0.0.1:8443 --ca certs/ca.crt \
//!     --endpoint mutate --fixture workspace-pod --connections 16 --duration 10s \
//!     [--rate 2000] [--pid $(pidof devenv-webhook)] [--json]
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use clap::{Parser, ValueEnum};
use devenv_bench::{load, tls, Expect, Fixture, LoadConfig, Target};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Endpoint {
    Mutate,
    Validate,
}

#[derive(Debug, Parser)]
#[command(name = "devenv-loadgen", version, about)]
struct Args {
    /// Base URL of the webhook.
    #[arg(long, default_value = "https://127.0.0.1:8443")]
    url: String,
    /// CA certificate(s) to trust (PEM); repeat for several (CA rotation).
    #[arg(long, required = true)]
    ca: Vec<PathBuf>,
    /// Which webhook endpoint.
    #[arg(long, value_enum, default_value = "mutate")]
    endpoint: Endpoint,
    /// Built-in fixture (workspace-pod, bare-pod-violations, non-workspace-pod) or an AdmissionReview JSON file.
    #[arg(long, default_value = "workspace-pod")]
    fixture: String,
    /// Concurrent keep-alive connections.
    #[arg(long, short = 'c', default_value_t = 8)]
    connections: usize,
    /// Measured duration (e.g. 10s, 500ms, 2m).
    #[arg(long, short = 'd', default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Unmeasured warm-up before the measured duration (errors still count).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    warmup: Duration,
    /// Open loop at this many requests/s in total (latency); closed loop (saturation) when absent.
    #[arg(long, short = 'r')]
    rate: Option<f64>,
    /// Reconnect after this many requests per connection (TLS handshakes under load).
    #[arg(long)]
    requests_per_connection: Option<u64>,
    /// A request without a complete response within this is an error.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    timeout: Duration,
    /// Required verdict of every response.
    #[arg(long, value_enum, default_value = "any")]
    expect: Expect,
    /// PID of the webhook: report its peak RSS (VmHWM / VmRSS from /proc/PID/status).
    #[arg(long)]
    pid: Option<u32>,
    /// Tokio worker threads of the load generator (the webhook needs the other cores).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?}: expected a number with a unit (ms, s, m)"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" => n * 60.0,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (ms, s, m)")),
    };
    Duration::try_from_secs_f64(secs).map_err(|e| format!("{s:?}: {e}"))
}

fn main() -> ExitCode {
    let args = Args::parse();
    match real_main(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("devenv-loadgen: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn real_main(args: Args) -> Result<ExitCode> {
    let target = Target::parse(&args.url)?;
    let tls = tls::client_config(&args.ca)?;
    let fixture = Fixture::load(&args.fixture)?;
    let endpoint = match args.endpoint {
        Endpoint::Mutate => "mutate",
        Endpoint::Validate => "validate",
    };
    let mut cfg = LoadConfig::new(target, tls, endpoint, fixture);
    cfg.connections = args.connections;
    cfg.duration = args.duration;
    cfg.warmup = args.warmup;
    cfg.rate = args.rate;
    cfg.requests_per_connection = args.requests_per_connection;
    cfg.request_timeout = args.timeout;
    cfg.expect = args.expect;
    cfg.pid = args.pid;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()
        .context("starting the Tokio runtime")?;
    let report = runtime.block_on(load::run(cfg))?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).map_err(|e| anyhow!(e))?
        );
    } else {
        println!("{}", report.summary());
    }
    Ok(if report.total_failures() == 0 && report.ok > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("x").is_err());
        assert!(parse_duration("3h").is_err());
    }
}
