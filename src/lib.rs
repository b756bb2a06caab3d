//! Guichet: a privacy and consent gateway for the citizen services of French local
//! authorities.
//!
//! Modules are declared in the order a request meets them; see `docs/ARCHITECTURE.md`.

// 0. What the operator asked for, and the process around it.
pub mod app;
pub mod cli;
pub mod clock;
pub mod config;
pub mod error;
pub mod line_file;
pub mod metrics;
pub mod pages;
pub mod telemetry;
pub mod tls;

// How applications read names and paths: one canonical form, used by every phase below.
pub mod canonical;

// 1. Bytes in.
pub mod health;
pub mod server;

// 2. Which application the request is for, who is asking, and forwarding (as phases).
pub mod auth;
pub mod proxy;
pub mod routing;

// 3. What citizens agreed to: the consent ledger (checked right after the policy decision).
pub mod consent;

// 4. What may pass: processing activities, their register and notices.
pub mod policy;
// 5. How protected data is sealed (field encryption, pseudonyms, crypto-shredding).
pub mod crypto;
// 7. What happened: the tamper-evident journal.
pub mod audit;

// 8. Data-subject requests, beside the request path.
pub mod rights;

// The citizen's hub "Mes données", composed of the services above (pages only).
pub mod privacy_centre;

// 9. Durable background work (rights propagation, notices, retention runs, alerts).
pub mod jobs;

// Notices to citizens by e-mail and letter, sent through the job runner.
pub mod notify;

// 10. Persistence (only services call it).
pub mod store;

// Retention: side path like rights, through the services.
pub mod retention;

// 11. The built-in demonstration.
pub mod demo;
pub mod housekeeping;

// The DPO's console and the supervision view, composed of the services above (pages only).
pub mod dpo;

// Entry points for the fuzz targets (`fuzz/`) and property tests; not an API.
#[doc(hidden)]
pub mod fuzzing;

// The breach register (Art. 33(5)) and the DPO's alerts; beside the request path.
pub mod alerts;
pub mod incidents;
