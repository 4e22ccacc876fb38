//! The `cf-sim` binary: starts a simulated Cloud Foundry, prints one JSON line (its [`SimInfo`]) on stdout when
//! ready, logs to stderr, and stops every app instance on SIGINT or SIGTERM.

use std::io::Write;

use clap::Parser;

use cf_sim::{Sim, SimConfig};

fn main() -> anyhow::Result<()> {
    let config = SimConfig::parse();
    let sim = Sim::start(config)?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", serde_json::to_string(sim.info())?)?;
    stdout.flush()?;
    drop(stdout);
    eprintln!(
        "cf-sim: API {} · UAA {} · Log Cache {} · router {}",
        sim.info().api,
        sim.info().uaa,
        sim.info().log_cache,
        sim.info().router
    );
    let signal = tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        tokio::select! {
            _ = interrupt.recv() => Ok::<_, std::io::Error>("SIGINT"),
            _ = terminate.recv() => Ok("SIGTERM"),
        }
    })?;
    eprintln!("cf-sim: {signal}, stopping every app instance");
    sim.stop();
    eprintln!("cf-sim: stopped");
    Ok(())
}
