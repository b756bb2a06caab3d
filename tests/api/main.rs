//! The one integration-test binary. Each module covers one area through `helpers::spawn_app`.

// Test helpers are ordinary functions, which clippy's allow-*-in-tests settings do not cover.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod helpers;
mod oidc_mock;

mod anonymous;
mod assisted;
mod at_rest;
mod audit;
mod auth;
mod bar;
mod browser;
mod cli;
mod config;
mod consent;
mod dpo;
mod erasure;
mod export;
mod fields;
mod health;
mod housekeeping;
mod incidents;
mod instances;
mod interop;
mod jobs;
mod keepalive;
mod keys;
mod letters;
mod limits;
mod logging;
mod metrics;
mod minimise;
mod notice;
mod notify;
mod openapi;
mod paths;
mod pgo;
mod policy;
mod privacy_centre;
mod propagation;
mod proxy;
mod register;
mod retention;
mod retention_keys;
mod rights;
mod rights_agent;
mod rights_ops;
mod sectors;
mod spellings;
mod stacks;
mod store;
mod streaming;
mod tls;
mod upgrade;
