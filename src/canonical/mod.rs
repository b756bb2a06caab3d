//! One canonical form of the names and paths in a request, as the applications behind the
//! gateway read them, used alike by the reserved-header strip, the field protection, the
//! route table and the policy matcher. Comparing a name or path as sent with a reserved or
//! declared one only makes sense once both are read the way the application will read them:
//! PHP, CGI/WSGI, Rack, Servlet, ASP.NET, Express and the servers in front of them each fold
//! some spellings together (docs/proxy.md, "How the gateway reads names and paths").
//!
//! Pure functions, no I/O: property tests check them against models of those stacks.

pub mod names;
pub mod path;
