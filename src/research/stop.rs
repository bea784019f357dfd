//! Ctrl-C and SIGTERM: the first asks the loop to stop once the running experiment is recorded as
//! interrupted; the second stops at once (the training program dies with the appliance, and the
//! next start records what was in flight).

use std::sync::atomic::{AtomicUsize, Ordering};

static REQUESTS: AtomicUsize = AtomicUsize::new(0);

pub fn install() -> anyhow::Result<()> {
    ctrlc::set_handler(|| {
        if REQUESTS.fetch_add(1, Ordering::SeqCst) == 0 {
            eprintln!(
                "\nstopping: the running experiment is recorded as interrupted (Ctrl-C again to stop at once)"
            );
        } else {
            eprintln!("\nstopped at once; the next start with the same --tag records the experiment in flight");
            std::process::exit(130);
        }
    })?;
    Ok(())
}

pub fn requested() -> bool {
    REQUESTS.load(Ordering::SeqCst) > 0
}
