//! Forwarding to the applications behind the gateway, as named phases (see `pipeline`).

pub mod bar;
pub mod body;
pub mod context;
pub mod error;
pub mod escape;
pub mod fields;
pub mod headers;
pub mod json_fields;
pub mod pipeline;
pub mod reveal;
pub mod strict;
pub mod upstream;

pub use context::RequestContext;
pub use error::ProxyError;
pub use pipeline::Proxy;
pub use upstream::Upstreams;
