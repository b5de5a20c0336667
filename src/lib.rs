//! smswire: a self-hosted SMS gateway. Clients send SMS through an HTTP API; smswire stores
//! each message durably, submits it to a provider (an SMSC over SMPP, or the built-in
//! simulator), and reports every status change to the webhooks the client registered.
//!
//! The crate is the daemon as a library so that tests drive it over real sockets:
//! [`Daemon::start`] opens the store and binds every listener. The modules follow the
//! design (`docs/` and the README): `api` (HTTP), `store` (redb, single writer),
//! `processor` (the message lifecycle), `provider` (the simulator and SMPP), `webhook`
//! (the due-queue timer and signed calls), `sms` (segments, numbers, prices), `admin`
//! (the Unix socket behind `smswire account ...`), `config`, `cli`.

pub mod admin;
pub mod api;
pub mod cli;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod ids;
pub mod metrics;
pub mod model;
pub mod processor;
pub mod provider;
pub mod sms;
pub mod store;
pub mod webhook;

pub use config::Config;
pub use daemon::Daemon;
