//! Data-subject rights (GDPR Art. 15–21), a side path beside the proxy: the request aggregate
//! and its state machine (`request`), the legal deadline clock (`deadline`) and the rules that
//! tie each right to an activity's legal basis (`rules`). These parts are pure; the service
//! that stores requests, journals their transitions and reaches the applications calls the
//! existing services (policy, crypto vault, consent, audit), never the store directly.

pub mod agent_api;
pub mod api;
pub mod callbacks;
pub mod cli;
pub mod contract;
pub mod deadline;
pub mod dpo_api;
pub mod erasure;
pub mod export;
pub mod ops;
pub mod propagation;
pub mod rectification;
pub mod request;
pub mod restriction;
pub mod rules;
pub mod sectors;
pub mod service;
