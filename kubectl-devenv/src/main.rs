//! Entry point: parse, set up logging on stderr, run, exit with the code.

#![forbid(unsafe_code)]

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = kubectl_devenv::cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            kubectl_devenv::log_filter(cli.global.verbose),
        ))
        .init();
    // One TLS crypto provider for the process (kube's rustls needs one);
    // an error only means one is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    let code = match runtime.block_on(kubectl_devenv::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    };
    // Exit codes are 0..=255; a remote command's code is passed through as is.
    std::process::ExitCode::from(u8::try_from(code).unwrap_or(1))
}
