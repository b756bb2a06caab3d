//! One canonical form per syntax the gateway compares, modelled on what the applications
//! behind it read (docs/proxy.md, "How the gateway reads names and paths"). Each submodule
//! owns one syntax; callers compare only canonical forms.

pub mod path;
