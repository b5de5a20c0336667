//! The `smswire` binary: parses the command line and hands over to the library.

use clap::Parser;

/// jemalloc instead of glibc's malloc. Every message allocates and frees many buffers on
/// several threads (requests, records, redb's 4 KiB pages, payloads, tasks), and glibc spent
/// about a sixth of the daemon's CPU on it, much of it consolidating and unlinking free
/// chunks. Measured with both builds at once (BENCHMARKS.md, "comparing two builds"):
/// 13 to 18 % less CPU per message in the SMPP flood, for 1.8 MB more idle RSS and about a
/// fifth more RSS right after a burst. mimalloc, tried before, saved less and kept four
/// times the memory after a burst.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() {
    let cli = smswire::cli::Cli::parse();
    std::process::exit(smswire::cli::run(cli).await);
}
