//! `devenv-webhook`: see the library crate.

#![forbid(unsafe_code)]

/// Every admission request parses and builds JSON trees: thousands of small
/// allocations each. mimalloc serves them markedly faster than glibc's malloc
/// (BENCHMARKS.md has the figures), at no cost in peak RSS worth counting.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    devenv_webhook::cli::main()
}
