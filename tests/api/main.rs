//! The one integration-test binary. Each module covers one area through `helpers::spawn_app`.

// Test helpers are ordinary functions, which clippy's allow-*-in-tests settings do not cover.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod helpers;
mod oidc_mock;

mod audit;
mod auth;
mod browser;
mod config;
mod consent;
mod fields;
mod health;
mod interop;
mod keys;
mod limits;
mod logging;
mod metrics;
mod notice;
mod policy;
mod proxy;
mod register;
mod store;
mod streaming;
mod tls;
mod upgrade;
