//! `kubectl devenv`: persistent, policy-safe developer workspaces on any
//! Kubernetes cluster. This crate is the I/O shell: parsing, talking to the
//! API server, printing. Every object it sends is built by `devenv_shared`.
//!
//! * [`commands`]: one module per command, the API calls.
//! * [`views`]: what the commands show and send, pure: tables, summaries,
//!   reports, patches.
//! * [`pod_status`]: what keeps a pod from being ready, for `list`, `wait`
//!   and `exec` alike.
//! * [`cli`], [`client`], [`error`], [`output`]: flags, connecting, errors
//!   that say what to do, printing objects.
//! * [`wait`], [`exec`], [`activity`]: `create --wait`'s watches, the exec
//!   session, the activity heartbeat.

#![forbid(unsafe_code)]

pub mod activity;
pub mod cli;
pub mod client;
pub mod commands;
pub mod error;
pub mod exec;
pub mod output;
pub mod pod_status;
pub mod registry;
pub mod views;
pub mod wait;

use clap::CommandFactory;

use crate::cli::{Cli, Command, SecretsCommand, SshKeyCommand, TenantCommand};
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
        Command::Ssh(a) => commands::ssh::ssh(g, a).await,
        Command::SshConfig(a) => commands::ssh::ssh_config(g, a).await,
        Command::SshKey(SshKeyCommand::Add(a)) => commands::ssh::key_add(g, a).await,
        Command::SshKey(SshKeyCommand::Remove(a)) => commands::ssh::key_remove(g, a).await,
        Command::SshKey(SshKeyCommand::List(a)) => commands::ssh::key_list(g, a).await,
        Command::PortForward(a) => commands::ssh::port_forward(g, a).await,
        Command::Code(a) => commands::ssh::code(g, a).await,
        Command::Scale(a) => commands::scale::scale(g, a).await,
        Command::Stop(a) => commands::scale::stop(g, a).await,
        Command::Start(a) => commands::scale::start(g, a).await,
        Command::Delete(a) => commands::delete::run(g, a).await,
        Command::Backup(a) => commands::backup::run_backup(g, a).await,
        Command::Backups(a) => commands::backup::run_backups(g, a).await,
        Command::Restore(a) if a.from_snapshot.is_some() => {
            commands::snapshot::run_restore(g, a).await
        }
        Command::Restore(a) => commands::backup::run_restore(g, a).await,
        Command::Snapshot(a) => commands::snapshot::run_snapshot(g, a).await,
        Command::Secrets(SecretsCommand::Set(a)) => commands::secrets::set(g, a).await,
        Command::Tenant(TenantCommand::Add(a)) => commands::tenant::add(g, a).await,
        Command::Tenant(TenantCommand::List(a)) => commands::tenant::list(g, a).await,
        Command::Tenant(TenantCommand::Remove(a)) => commands::tenant::remove(g, a).await,
        Command::Install(a) => commands::install::install(g, a).await,
        Command::Uninstall(a) => commands::install::uninstall(g, a).await,
        Command::Status(a) => commands::status::run(g, a).await,
        Command::Ui(a) => commands::ui::run(g, a).await,
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
