//! `check`: reports the version running in production.

use anyhow::{Result, bail};

use crate::protocol::{CheckRequest, Version};

pub async fn run(_request: CheckRequest) -> Result<Vec<Version>> {
    bail!("check is not implemented yet")
}
