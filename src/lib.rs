//! Guichet: a privacy and consent gateway for the citizen services of French local
//! authorities.
//!
//! Modules are declared in the order a request meets them; see `docs/ARCHITECTURE.md`.

// 0. What the operator asked for, and the process around it.
pub mod cli;
pub mod config;
pub mod telemetry;
pub mod clock;
pub mod app;
pub mod error;
pub mod metrics;
pub mod tls;

// 1. Bytes in.
pub mod server;
pub mod health;

// 2. Which application the request is for, and forwarding to it (as phases).
pub mod routing;
pub mod proxy;

// 10. Persistence (only services call it).
pub mod store;

// 11. The built-in demonstration.
pub mod demo;
