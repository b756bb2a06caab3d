//! The one integration-test binary. Each module covers one area through `helpers::spawn_app`.

mod helpers;

mod config;
mod health;
mod metrics;
mod proxy;
mod store;
mod streaming;
mod tls;
mod upgrade;
