//! `devenv-webhook`: see the library crate.

fn main() -> std::process::ExitCode {
    devenv_webhook::cli::main()
}
