//! `in`: fetches what a version deployed.

use anyhow::{Result, bail};

use crate::protocol::{InRequest, VersionResult};

pub async fn run(_request: InRequest) -> Result<VersionResult> {
    bail!("in is not implemented yet")
}
