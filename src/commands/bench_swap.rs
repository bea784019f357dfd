//! `bench swap`: what one swap cycle of the scheduler costs on this machine, and whether the
//! memory really comes back. The agent is loaded and used once (so its weights are resident),
//! then evicted and loaded again `--cycles` times, with the device read at each step.

use anyhow::Result;

use crate::cli::BenchSwapArgs;
use crate::scheduler::memory::Device;
use crate::scheduler::resident::ResidentAgent;
use crate::units::Bytes;

pub fn run(args: &BenchSwapArgs) -> Result<()> {
    let model = args.model.resolve()?;
    let mut device = Device::detect();
    let mib = Bytes::as_mib;

    let before_load = device.read()?;
    let mut agent = ResidentAgent::load(&model, args.model.gpu_layers(), args.ctx)?;
    touch(&mut agent)?;
    let loaded = device.read()?;
    println!(
        "{} on {}: load {:.2}s; used {:.0} MiB before loading, {:.0} MiB loaded and used once (weights {:.0} MiB, KV cache {:.0} MiB at {} tokens)",
        model.display(),
        device.name,
        agent.last_load_seconds,
        mib(device.used(&before_load)),
        mib(device.used(&loaded)),
        mib(agent.weights_bytes()),
        mib(agent.context_bytes()),
        agent.context()
    );
    for cycle in 1..=args.cycles {
        let evict = agent.evict();
        let evicted = device.read()?;
        let reload = agent.reload_full()?;
        touch(&mut agent)?;
        let back = device.read()?;
        let over = device.used(&evicted) - device.used(&before_load);
        println!(
            "cycle {cycle}: evict {evict:.3}s -> {:.0} MiB used ({:.0} MiB above before loading); reload {reload:.2}s -> {:.0} MiB; swap cycle {:.2}s",
            mib(device.used(&evicted)),
            mib(over),
            mib(device.used(&back)),
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
