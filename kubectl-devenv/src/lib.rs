//! `kubectl devenv`: persistent, policy-safe developer workspaces on any
//! Kubernetes cluster. This crate is the I/O shell: parsing, talking to the
//! API server, printing. Every object it sends is built by `devenv_shared`.

pub mod activity;
pub mod cli;
pub mod client;
pub mod commands;
pub mod error;
pub mod exec;
pub mod output;
pub mod wait;

use clap::CommandFactory;

use crate::cli::{Cli, Command, SecretsCommand};
use crate::error::Error;

/// Runs a parsed command line; the result is the process exit code.
pub async fn run(cli: Cli) -> Result<i32, Error> {
    let g = &cli.global;
    match &cli.command {
        Command::Create(a) => commands::create::run(g, a).await,
        Command::List(a) => commands::list::list(g, a).await,
        Command::Get(a) => commands::list::get(g, a).await,
        Command::Exec(a) => commands::exec::exec(g, a).await,
        Command::Attach(a) => commands::exec::attach(g, a).await,
        Command::Scale(a) => commands::lifecycle::scale(g, a).await,
        Command::Stop(a) => commands::lifecycle::stop(g, a).await,
        Command::Start(a) => commands::lifecycle::start(g, a).await,
        Command::Delete(a) => commands::delete::run(g, a).await,
        Command::Secrets(SecretsCommand::Set(a)) => commands::secrets::set(g, a).await,
        Command::Install(a) => commands::install::install(g, a).await,
        Command::Uninstall(a) => commands::install::uninstall(g, a).await,
        Command::Status(a) => commands::status::run(g, a).await,
        Command::Completion(a) => {
            let mut cmd = Cli::command();
            clap_complete::generate(a.shell, &mut cmd, "kubectl-devenv", &mut std::io::stdout());
            Ok(0)
        }
    }
}

/// Log filter for `-v` counts: warnings by default, then info, debug, trace.
/// The kube client logs every failed request as an error; the plugin reports
/// those itself (with what to do), so they are only shown from -vv on.
pub fn log_filter(verbose: u8) -> &'static str {
    match verbose {
        0 => "warn,kube_client=off",
        1 => "info,kube_client=off",
        2 => "debug",
        _ => "trace",
    }
}
