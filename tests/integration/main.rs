//! The integration tests: the resource's real binaries, its client and its packer against cf-sim, one module per
//! area, sharing the toolkit in [`util`]. One binary, so the library and cf-sim are linked once for all of them.
//! The slow proof suite is the other test binary (`tests/proof`).

mod auth;
mod bits;
mod canary;
mod carry;
mod cf_client;
mod cf_fixtures;
mod check;
mod deploy;
mod foundation;
mod get;
mod hold;
mod lifecycle;
mod pipeline_examples;
mod protocol;
mod readme_layout;
mod safety;
mod skip_unchanged;
mod traffic;
mod util;
mod versions;
