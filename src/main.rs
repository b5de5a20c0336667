//! The `smswire` binary: parses the command line and hands over to the library.

use clap::Parser;

/// mimalloc instead of the system allocator: the daemon allocates and frees many small
/// buffers per message (requests, records, payloads) across threads, where glibc's malloc
/// cost about a sixth of the CPU under load (see BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    let cli = smswire::cli::Cli::parse();
    std::process::exit(smswire::cli::run(cli).await);
}
