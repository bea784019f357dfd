//! `bench swap`: what one swap cycle of the scheduler costs on this machine, and whether the
//! memory really comes back. The agent is loaded and used once (so its weights are resident),
//! then evicted and loaded again `--cycles` times, with the device read at each step.

use anyhow::Result;

use crate::cli::BenchSwapArgs;
use crate::scheduler::memory::{Device, Kind, Reading};
use crate::scheduler::resident::ResidentAgent;
use crate::scheduler::{SchedulerError, MIB};

pub fn run(args: &BenchSwapArgs) -> Result<()> {
    let model = args.model.resolve()?;
    let device = Device::detect();
    let read = || device.read().map_err(SchedulerError::Memory);
    // What the swap should give back: the device's used memory on a GPU, this process's
    // resident memory on the host.
    let used = |r: &Reading| match device.kind {
        Kind::Gpu => r.total - r.free,
        Kind::HostRam => r.own_rss,
    };
    let mib = |b: u64| b as f64 / MIB as f64;

    let before_load = read()?;
    let mut agent = ResidentAgent::load(&model, args.model.gpu_layers(), args.ctx)?;
    touch(&mut agent)?;
    let loaded = read()?;
    println!(
        "{} on {}: load {:.2}s; used {:.0} MiB before loading, {:.0} MiB loaded and used once (weights {:.0} MiB, KV cache {:.0} MiB at {} tokens)",
        model.display(),
        device.name,
        agent.last_load_seconds,
        mib(used(&before_load)),
        mib(used(&loaded)),
        mib(agent.weights_bytes()),
        mib(agent.context_bytes()),
        agent.context()
    );
    for cycle in 1..=args.cycles {
        let evict = agent.evict();
        let evicted = read()?;
        let reload = agent.reload_full()?;
        touch(&mut agent)?;
        let back = read()?;
        let over = used(&evicted).saturating_sub(used(&before_load));
        println!(
            "cycle {cycle}: evict {evict:.3}s -> {:.0} MiB used ({:.0} MiB above before loading); reload {reload:.2}s -> {:.0} MiB; swap cycle {:.2}s",
            mib(used(&evicted)),
            mib(over),
            mib(used(&back)),
            evict + reload
        );
    }
    Ok(())
}

/// One short generation, so the weights are really in memory (mapped files load lazily).
fn touch(agent: &mut ResidentAgent) -> Result<()> {
    let engine = agent.engine()?;
    let text = engine.render("You are terse.", "Say one word.")?;
    let mut session = engine.session_tokens(engine.tokenize(&text), 256)?;
    session.generate(None, 4, 0.0, 1)?;
    Ok(())
}
