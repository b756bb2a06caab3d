//! One canonical form per syntax the gateway compares, modelled on what the applications
//! behind it read (docs/proxy.md, "How the gateway reads names and paths"), used alike by the
//! reserved-header strip, the field protection and the policy matcher. Comparing a name as
//! sent with a reserved or declared name only makes sense once both are read the way the
//! application will read them: PHP, CGI/WSGI, Rack, Servlet, ASP.NET and Express each fold
//! some spellings together. Each submodule owns one syntax; callers compare only canonical
//! forms. Pure functions, no I/O: property tests check them against models of those stacks.

pub mod names;
pub mod path;
