//! The `smswire` binary: parses the command line and hands over to the library.

use clap::Parser;

#[tokio::main]
async fn main() {
    let cli = smswire::cli::Cli::parse();
    std::process::exit(smswire::cli::run(cli).await);
}
