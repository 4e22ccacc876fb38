//! `out`: the blue-green deploy.

pub mod audit;
pub mod journal;
pub mod manifest;

use anyhow::{Result, bail};

use crate::protocol::{OutRequest, VersionResult};

pub async fn run(_request: OutRequest) -> Result<VersionResult> {
    bail!("out is not implemented yet")
}
