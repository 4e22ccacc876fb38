//! Integration tests: each runs the built `sample-app` binary on a free
//! loopback port with the env a test scenario needs, and checks what it
//! answers over real HTTP.

mod endpoints;
mod faults;
mod harness;
mod lifecycle;
mod sessions;
