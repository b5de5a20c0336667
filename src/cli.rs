//! The command line: `serve`, `check-config`, and the admin commands that talk to a running
//! daemon over its socket.

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};
use serde_json::Value;

use crate::admin::{self, AdminRequest};
use crate::config::{Config, LogFormat};
use crate::daemon::Daemon;

/// Where the installed package keeps its configuration; admin commands read it by default.
pub const INSTALLED_CONFIG: &str = "/etc/smswire/smswire.toml";

/// smswire: a self-hosted SMS gateway with an HTTP API, SMPP and signed webhooks.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the daemon (on built-in defaults when no file is given).
    Serve {
        /// The configuration file.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Validates a configuration file and prints the effective configuration.
    CheckConfig {
        /// The configuration file.
        file: PathBuf,
    },
    /// Manages accounts on the running daemon.
    Account {
        #[command(flatten)]
        target: Target,
        #[command(subcommand)]
        command: AccountCommand,
    },
    /// Manages API keys on the running daemon.
    Key {
        #[command(flatten)]
        target: Target,
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Writes a consistent copy of the running daemon's store to FILE (which must not exist
    /// and which the daemon's user must be able to write).
    Backup {
        #[command(flatten)]
        target: Target,
        file: PathBuf,
    },
}

/// How an admin command finds the daemon.
#[derive(Debug, clap::Args)]
struct Target {
    /// The daemon's configuration file (default: /etc/smswire/smswire.toml when present).
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
    /// The admin socket, overriding the one the configuration names.
    #[arg(long, global = true)]
    socket: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum AccountCommand {
    /// Creates an account and prints its id and first API key (the secret is shown once).
    Create {
        name: String,
        /// Starting balance, a decimal in the configured currency.
        #[arg(long)]
        balance: Option<String>,
    },
    /// Lists accounts with their balances.
    List,
    /// Adds AMOUNT (negative to take away) to an account's balance.
    Credit {
        id: String,
        #[arg(allow_hyphen_values = true)]
        amount: String,
    },
}

#[derive(Debug, Subcommand)]
enum KeyCommand {
    /// Creates another API key for an account (the secret is shown once).
    Create { account: String },
    /// Revokes a key; requests using it get 401 at once.
    Revoke { key_id: String },
}

/// Runs the command line; returns the process exit code.
pub async fn run(cli: Cli) -> i32 {
    match cli.command {
        Command::Serve { config } => serve(config.as_deref()).await,
        Command::CheckConfig { file } => match Config::load(&file) {
            Ok(config) => {
                print!("{}", config.to_toml());
                0
            }
            Err(e) => {
                eprintln!("error: {e}");
                2
            }
        },
        Command::Account { target, command } => {
            let request = match command {
                AccountCommand::Create { name, balance } => {
                    AdminRequest::AccountCreate { name, balance }
                }
                AccountCommand::List => AdminRequest::AccountList,
                AccountCommand::Credit { id, amount } => AdminRequest::AccountCredit { id, amount },
            };
            admin_command(&target, &request).await
        }
        Command::Backup { target, file } => {
            let path = match std::path::absolute(&file) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("error: {}: {e}", file.display());
                    return 2;
                }
            };
            admin_command(&target, &AdminRequest::Backup { path }).await
        }
        Command::Key { target, command } => {
            let request = match command {
                KeyCommand::Create { account } => AdminRequest::KeyCreate { account },
                KeyCommand::Revoke { key_id } => AdminRequest::KeyRevoke { key_id },
            };
            admin_command(&target, &request).await
        }
    }
}

async fn serve(config_path: Option<&Path>) -> i32 {
    let config = match config_path.map(Config::load).transpose() {
        Ok(c) => c.unwrap_or_default(),
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    init_logging(&config);

    let daemon = match Daemon::start(config).await {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            return 1;
        }
    };
    wait_for_signal().await;
    daemon.shutdown().await;
    0
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!(signal = "SIGTERM", "stop requested"),
        _ = int.recv() => tracing::info!(signal = "SIGINT", "stop requested"),
    }
}

fn init_logging(config: &Config) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match config.log.format {
        LogFormat::Plain => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn admin_command(target: &Target, request: &AdminRequest) -> i32 {
    let socket = match admin_socket(target) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    match admin::request(&socket, request).await {
        Ok(data) => {
            print_answer(request, &data);
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

fn admin_socket(target: &Target) -> Result<PathBuf, String> {
    if let Some(socket) = &target.socket {
        return Ok(socket.clone());
    }
    let config = match &target.config {
        Some(path) => Config::load(path)?,
        None if Path::new(INSTALLED_CONFIG).exists() => Config::load(Path::new(INSTALLED_CONFIG))?,
        None => Config::default(),
    };
    Ok(config.admin_socket())
}

fn print_answer(request: &AdminRequest, data: &Value) {
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    match request {
        AdminRequest::AccountCreate { .. } => {
            println!("account_id: {}", s(&data["account"]["id"]));
            println!("key_id:     {}", s(&data["key_id"]));
            println!("secret:     {}", s(&data["secret"]));
            println!("(the secret is shown only now; store it safely)");
        }
        AdminRequest::KeyCreate { .. } => {
            println!("key_id: {}", s(&data["key_id"]));
            println!("secret: {}", s(&data["secret"]));
            println!("(the secret is shown only now; store it safely)");
        }
        AdminRequest::AccountList => {
            for a in data.as_array().into_iter().flatten() {
                println!(
                    "{}  {} {}  {}",
                    s(&a["id"]),
                    s(&a["balance"]),
                    s(&a["currency"]),
                    s(&a["name"])
                );
            }
        }
        AdminRequest::AccountCredit { .. } => {
            println!(
                "{}  balance {} {}",
                s(&data["id"]),
                s(&data["balance"]),
                s(&data["currency"])
            );
        }
        AdminRequest::KeyRevoke { key_id } => println!("revoked {key_id}"),
        AdminRequest::Backup { .. } => {
            println!(
                "backup written to {} ({} records)",
                s(&data["path"]),
                data["records"]
            );
        }
    }
}
