//! The configuration: one TOML file, every key optional, every default documented in
//! `config/smswire.toml`.
//!
//! Unknown keys are refused so that a typo is an error naming the key rather than a setting
//! silently ignored. Durations are written as `"15s"`, `"16m"`, `"72h"`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The whole configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub api: ApiConfig,
    pub store: StoreConfig,
    pub admin: AdminConfig,
    pub log: LogConfig,
    pub billing: BillingConfig,
    pub sms: SmsConfig,
    pub provider: ProviderConfig,
    pub webhooks: WebhooksConfig,
    pub metrics: MetricsConfig,
    pub shutdown: ShutdownConfig,
}

/// The Prometheus listener.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Whether `GET /metrics` is served at all.
    pub enabled: bool,
    /// Address and port of the metrics listener (kept off the API port on purpose).
    pub listen: SocketAddr,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 9464)),
        }
    }
}

/// How the daemon stops on SIGTERM / SIGINT.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShutdownConfig {
    /// How long requests, webhook calls and SMPP submits in flight may take to finish
    /// before they are abandoned (an abandoned webhook call is sent again after the
    /// restart, with the same id).
    #[serde(with = "duration_text")]
    pub grace: Duration,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        Self {
            grace: Duration::from_secs(20),
        }
    }
}

/// The HTTP API listener.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// Address and port the API listens on.
    pub listen: SocketAddr,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// How long a request may take, reading included, before it is answered `503`.
    #[serde(with = "duration_text")]
    pub request_timeout: Duration,
    /// Time a client has to send a request's headers (and finish a TLS handshake).
    #[serde(with = "duration_text")]
    pub header_timeout: Duration,
    /// Connections served at once; more clients wait until one closes.
    pub max_connections: usize,
    /// PEM certificate chain for TLS on the API listener; empty for plain HTTP.
    pub tls_cert: PathBuf,
    /// PEM private key of that certificate.
    pub tls_key: PathBuf,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 64 * 1024,
            request_timeout: Duration::from_secs(30),
            header_timeout: Duration::from_secs(10),
            max_connections: 4096,
            tls_cert: PathBuf::new(),
            tls_key: PathBuf::new(),
        }
    }
}

/// The longest `[store] commit_delay_us` accepted: more would only add latency.
const MAX_COMMIT_DELAY_US: u64 = 20_000;

/// The redb file and its writer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// The redb file; created when missing.
    pub path: PathBuf,
    /// Memory redb may use to cache pages, in bytes.
    pub cache_bytes: usize,
    /// Most write requests grouped into one transaction and one fsync. `1` commits every
    /// request on its own: useful only to measure what group commit gains.
    pub max_batch: usize,
    /// Microseconds a small batch waits for more requests while the daemon is busy (the
    /// previous batch had 16 or more): fewer, fuller commits for the same work. `0` never
    /// waits. Requests on a quiet daemon are never delayed.
    pub commit_delay_us: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from("./smswire.redb"),
            cache_bytes: 64 * 1024 * 1024,
            max_batch: 1024,
            commit_delay_us: 250,
        }
    }
}

/// The admin socket used by `smswire account ...` and `smswire key ...`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Path of the Unix socket. Empty: `/run/smswire/admin.sock` when `/run/smswire` is
    /// writable, else `smswire.admin.sock` next to the data file.
    pub socket: PathBuf,
    /// Permissions of the socket file, in octal: `0600` lets only the daemon's user (and
    /// root) in; the package uses `0660` so members of the `smswire` group can use it.
    pub socket_mode: String,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            socket: PathBuf::new(),
            socket_mode: "0600".into(),
        }
    }
}

impl AdminConfig {
    /// The socket's permission bits (validated at load: owner and group bits only).
    pub fn mode(&self) -> u32 {
        self.parsed_mode().unwrap_or(0o600)
    }

    fn parsed_mode(&self) -> Option<u32> {
        let mode = u32::from_str_radix(self.socket_mode.trim_start_matches("0o"), 8).ok()?;
        (mode <= 0o777 && mode & 0o007 == 0).then_some(mode)
    }
}

/// Where the default socket lives on an installed system.
const RUN_DIR: &str = "/run/smswire";

impl Config {
    /// The admin socket path, resolving the empty default as [`AdminConfig::socket`] says.
    pub fn admin_socket(&self) -> PathBuf {
        if !self.admin.socket.as_os_str().is_empty() {
            return self.admin.socket.clone();
        }
        let run = Path::new(RUN_DIR);
        if is_writable_dir(run) {
            return run.join("admin.sock");
        }
        let dir = self
            .store
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        dir.join("smswire.admin.sock")
    }

    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Config::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Parses and validates configuration text.
    pub fn parse(text: &str) -> Result<Config, String> {
        let config: Config = toml::from_str(text).map_err(|e| e.to_string())?;
        config.validate()?;
        Ok(config)
    }

    /// The effective configuration as TOML, for `check-config`.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }

    fn validate(&self) -> Result<(), String> {
        if self.admin.parsed_mode().is_none() {
            return Err(format!(
                "admin.socket_mode {:?} must be octal permissions without access for others, \
                 like \"0600\" or \"0660\"",
                self.admin.socket_mode
            ));
        }
        if self.api.tls_cert.as_os_str().is_empty() != self.api.tls_key.as_os_str().is_empty() {
            return Err("api.tls_cert and api.tls_key go together: set both or neither".into());
        }
        if self.api.max_connections == 0 {
            return Err("api.max_connections must be at least 1".into());
        }
        if self.store.max_batch == 0 {
            return Err("store.max_batch must be at least 1".into());
        }
        if self.store.commit_delay_us > MAX_COMMIT_DELAY_US {
            return Err(format!(
                "store.commit_delay_us must be at most {MAX_COMMIT_DELAY_US} (it adds to the \
                 latency of every write under load)"
            ));
        }
        if !(1..=255).contains(&self.sms.max_parts) {
            return Err("sms.max_parts must be between 1 and 255".into());
        }
        if self.billing.default_price < 0.0 || self.billing.prices.values().any(|p| *p < 0.0) {
            return Err("billing prices must not be negative".into());
        }
        if let Some(bad) = self.billing.prices.keys().find(|k| !is_prefix(k)) {
            return Err(format!("billing.prices: key {bad:?} is not a digit prefix"));
        }
        let s = &self.provider.smpp;
        if self.provider.kind == ProviderKind::Smpp {
            if s.system_id.is_empty() || s.system_id.len() > 15 || s.password.len() > 8 {
                return Err(
                    "provider.smpp: system_id (1 to 15 characters) is required and the password \
                     has at most 8 characters"
                        .into(),
                );
            }
            if s.window == 0 || s.max_pdu_bytes < 64 {
                return Err("provider.smpp: window must be at least 1, max_pdu_bytes 64".into());
            }
        }
        if !(-1..=255).contains(&s.source_ton) || !(-1..=255).contains(&s.source_npi) {
            return Err("provider.smpp.source_ton / source_npi: -1 (automatic) or 0 to 255".into());
        }
        let w = &self.webhooks;
        if w.concurrency == 0 || w.per_webhook_concurrency == 0 {
            return Err("webhooks: concurrency limits must be at least 1".into());
        }
        if !(0.0..=1.0).contains(&w.jitter) {
            return Err("webhooks.jitter must be between 0 and 1".into());
        }
        for outcome in &self.provider.simulator.outcomes {
            regex::Regex::new(&outcome.pattern).map_err(|e| {
                format!(
                    "provider.simulator.outcomes: bad pattern {:?}: {e}",
                    outcome.pattern
                )
            })?;
        }
        Ok(())
    }
}

fn is_prefix(key: &str) -> bool {
    !key.is_empty() && key.bytes().all(|b| b.is_ascii_digit())
}

fn is_writable_dir(dir: &Path) -> bool {
    let probe = dir.join(".smswire-write-probe");
    let ok = std::fs::write(&probe, b"").is_ok();
    let _ = std::fs::remove_file(&probe);
    ok
}

/// Logging.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A tracing filter such as `info` or `smswire=debug,info`; `RUST_LOG` overrides it.
    pub level: String,
    /// `plain` or `json`.
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Plain,
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Plain,
    /// One JSON object per line.
    Json,
}

/// Prices and balances.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BillingConfig {
    /// When false, nothing is charged and balances are never checked (single-tenant use).
    pub enabled: bool,
    /// The currency of every balance and price; shown by `account list`.
    pub currency: String,
    /// Price per part for destinations without a matching prefix.
    pub default_price: f64,
    /// Price per part by destination prefix (country code or longer); longest match wins.
    pub prices: BTreeMap<String, f64>,
}

impl Default for BillingConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            currency: "EUR".into(),
            default_price: 0.08,
            prices: BTreeMap::new(),
        }
    }
}

/// Limits on messages.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmsConfig {
    /// Most parts a body may need; a longer body is refused with `400`.
    pub max_parts: usize,
    /// How long a sent message waits for its final receipt before it becomes `errored` /
    /// `UNKNOWN`.
    #[serde(with = "duration_text")]
    pub receipt_timeout: Duration,
}

impl Default for SmsConfig {
    fn default() -> Self {
        Self {
            max_parts: 10,
            receipt_timeout: Duration::from_secs(72 * 3600),
        }
    }
}

/// Which provider sends the messages, and its settings.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProviderConfig {
    /// `simulator` or `smpp`.
    pub kind: ProviderKind,
    pub simulator: SimulatorConfig,
    pub smpp: SmppConfig,
}

/// The provider implementations.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// The built-in simulator: no SMSC needed.
    #[default]
    Simulator,
    /// An SMSC over SMPP 3.4.
    Smpp,
}

/// The SMPP client (ESME) that connects to the provider's SMSC.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmppConfig {
    /// The SMSC's host name or address.
    pub host: String,
    /// The SMSC's port.
    pub port: u16,
    /// The account the provider gave you.
    pub system_id: String,
    pub password: String,
    /// Sent in the bind; most SMSCs want it empty.
    pub system_type: String,
    /// `transceiver` (one connection), or `transmitter_receiver` (two: one sends, one
    /// receives receipts).
    pub bind: BindMode,
    /// Most `submit_sm` waiting for their response on a connection.
    pub window: usize,
    /// Most segments submitted per second; 0 for no limit.
    pub throughput: u32,
    /// How often an idle link is checked with `enquire_link`.
    #[serde(with = "duration_text")]
    pub enquire_link_interval: Duration,
    /// How long to wait for any response (bind, submit, enquire_link, unbind) before the
    /// link counts as dead.
    #[serde(with = "duration_text")]
    pub response_timeout: Duration,
    /// First wait before reconnecting after a lost connection; doubles up to the maximum.
    #[serde(with = "duration_text")]
    pub reconnect_min: Duration,
    #[serde(with = "duration_text")]
    pub reconnect_max: Duration,
    /// How long a throttled segment (or one whose connection was lost) waits before it is
    /// submitted again.
    #[serde(with = "duration_text")]
    pub retry_delay: Duration,
    /// Validity period asked for each message; `"0s"` leaves the SMSC's default.
    #[serde(with = "duration_text")]
    pub validity_period: Duration,
    /// Source address type and numbering plan; unset (-1) chooses from the `from`:
    /// alphanumeric 5/0, short code 0/1, international number 1/1.
    pub source_ton: i16,
    pub source_npi: i16,
    /// Destination address type and numbering plan (international / ISDN by default).
    pub dest_ton: u8,
    pub dest_npi: u8,
    /// How the SMSC writes the message ids of `submit_sm_resp` (and of the
    /// `receipted_message_id` TLV): `text` (compared as is), `hex` or `decimal`.
    pub submit_id_format: IdFormat,
    /// How the SMSC writes the `id:` of receipt texts; some answer in hex and report in
    /// decimal.
    pub receipt_id_format: IdFormat,
    /// Largest PDU accepted from the SMSC, in bytes; a larger one closes the connection.
    pub max_pdu_bytes: usize,
}

impl Default for SmppConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 2775,
            system_id: String::new(),
            password: String::new(),
            system_type: String::new(),
            bind: BindMode::Transceiver,
            window: 10,
            throughput: 0,
            enquire_link_interval: Duration::from_secs(30),
            response_timeout: Duration::from_secs(10),
            reconnect_min: Duration::from_secs(1),
            reconnect_max: Duration::from_secs(60),
            retry_delay: Duration::from_secs(5),
            validity_period: Duration::from_secs(48 * 3600),
            source_ton: -1,
            source_npi: -1,
            dest_ton: 1,
            dest_npi: 1,
            submit_id_format: IdFormat::Text,
            receipt_id_format: IdFormat::Text,
            max_pdu_bytes: 4096,
        }
    }
}

/// How an SMSC bind is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BindMode {
    Transceiver,
    TransmitterReceiver,
}

/// How an SMSC writes message ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IdFormat {
    Text,
    Hex,
    Decimal,
}

/// The built-in simulator.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimulatorConfig {
    /// Time from a submit to its acceptance (the `sent` status).
    #[serde(with = "duration_text")]
    pub submit_delay: Duration,
    /// Time from acceptance to the final receipt.
    #[serde(with = "duration_text")]
    pub receipt_delay: Duration,
    /// Destinations that do not end `DELIVRD`: the first matching pattern wins.
    pub outcomes: Vec<SimulatedOutcome>,
}

impl Default for SimulatorConfig {
    fn default() -> Self {
        let outcome = |pattern: &str, state: SimulatedState| SimulatedOutcome {
            pattern: pattern.into(),
            state,
        };
        Self {
            submit_delay: Duration::from_millis(200),
            receipt_delay: Duration::from_secs(2),
            outcomes: vec![
                outcome("0001$", SimulatedState::Expired),
                outcome("0002$", SimulatedState::Undeliv),
                outcome("0003$", SimulatedState::Rejectd),
            ],
        }
    }
}

/// A destination pattern and the final state the simulator reports for it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimulatedOutcome {
    /// A regular expression matched against the recipient's digits (no `+`).
    pub pattern: String,
    /// The final state reported.
    pub state: SimulatedState,
}

/// The final states the simulator can report besides `DELIVRD`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum SimulatedState {
    Expired,
    Undeliv,
    Rejectd,
}

impl SimulatedState {
    /// The SMPP spelling, which is also the `statusReason`.
    pub fn as_str(self) -> &'static str {
        match self {
            SimulatedState::Expired => "EXPIRED",
            SimulatedState::Undeliv => "UNDELIV",
            SimulatedState::Rejectd => "REJECTD",
        }
    }
}

/// Webhook calls: timeouts, concurrency, the replay schedule and SSRF exceptions.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhooksConfig {
    /// Longest wait for the TCP (and TLS) connection to a receiver.
    #[serde(with = "duration_text")]
    pub connect_timeout: Duration,
    /// Longest wait for a whole call, connection included, before it counts as failed.
    #[serde(with = "duration_text")]
    pub timeout: Duration,
    /// Calls in flight at once, all webhooks together.
    pub concurrency: usize,
    /// Calls in flight at once to one webhook, so one slow receiver cannot take every slot.
    pub per_webhook_concurrency: usize,
    /// Wait after each failed attempt: entry n is the wait after failed attempt n. When
    /// every wait is used up, the next failure discards the delivery.
    #[serde(with = "duration_list")]
    pub schedule: Vec<Duration>,
    /// Largest random extra added to each wait, as a fraction of it (0.1 = up to +10 %).
    pub jitter: f64,
    /// Networks that webhooks may reach although they are loopback, private, link-local or
    /// otherwise internal, e.g. `["127.0.0.0/8"]` for a receiver on the same host.
    pub allowed_networks: Vec<ipnet::IpNet>,
    /// Bytes of each response body read and kept in the attempt log.
    pub response_bytes: usize,
}

/// n^4 minutes after the n-th failure, n = 1 to 10 (DESIGN section 1).
pub fn default_schedule() -> Vec<Duration> {
    (1..=10u64)
        .map(|n| Duration::from_secs(n.pow(4) * 60))
        .collect()
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(15),
            concurrency: 1024,
            per_webhook_concurrency: 64,
            schedule: default_schedule(),
            jitter: 0.1,
            allowed_networks: Vec::new(),
            response_bytes: 1024,
        }
    }
}

/// Serde for lists of durations written as `["1m", "16m"]`.
pub mod duration_list {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes each duration the way the configuration file does.
    pub fn serialize<S: Serializer>(list: &[Duration], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(
            list.iter()
                .map(|d| humantime::format_duration(*d).to_string()),
        )
    }

    /// Reads `["1m", "16m", ...]`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
        let texts = Vec::<String>::deserialize(d)?;
        texts
            .iter()
            .map(|t| {
                humantime::parse_duration(t)
                    .map_err(|e| serde::de::Error::custom(format!("bad duration {t:?}: {e}")))
            })
            .collect()
    }
}

/// Serde for durations written as `"15s"`, `"16m"`, `"250ms"`.
pub mod duration_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes `d` the way the configuration file does.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    /// Reads `"15s"` and the like.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text)
            .map_err(|e| serde::de::Error::custom(format!("bad duration {text:?}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_named() {
        let err = Config::parse("[api]\nlisten = \"127.0.0.1:1\"\nlsiten = 1\n").unwrap_err();
        assert!(err.contains("lsiten"), "{err}");
    }

    #[test]
    fn durations_parse_and_render() {
        let c = Config::parse("[sms]\nreceipt_timeout = \"2h\"\n").unwrap();
        assert_eq!(c.sms.receipt_timeout, Duration::from_secs(7200));
        assert!(c.to_toml().contains("receipt_timeout = \"2h\""));
        assert!(Config::parse("[sms]\nreceipt_timeout = \"soon\"\n").is_err());
    }
}
