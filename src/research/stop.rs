//! Ctrl-C and SIGTERM: the first asks the loop to stop once the running experiment is recorded as
//! interrupted; the second stops at once (the training program dies with the appliance, and the
//! next start records what was in flight). The loop holds a `Stop` it polls, so tests can make
//! their own and ask for a stop at a chosen moment.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

#[derive(Clone, Default)]
pub struct Stop {
    requests: Arc<AtomicUsize>,
}

impl Stop {
    /// A stop nobody but its holders can request.
    pub fn new() -> Self {
        Stop::default()
    }

    /// A stop that Ctrl-C and SIGTERM request.
    pub fn on_signals() -> anyhow::Result<Self> {
        let stop = Stop::new();
        let requests = stop.requests.clone();
        ctrlc::set_handler(move || {
            if requests.fetch_add(1, Ordering::SeqCst) == 0 {
                eprintln!(
                    "\nstopping: the running experiment is recorded as interrupted (Ctrl-C again to stop at once)"
                );
            } else {
                eprintln!("\nstopped at once; the next start with the same --tag records the experiment in flight");
                std::process::exit(130);
            }
        })?;
        Ok(stop)
    }

    pub fn request(&self) {
        self.requests.fetch_add(1, Ordering::SeqCst);
    }

    pub fn requested(&self) -> bool {
        self.requests.load(Ordering::SeqCst) > 0
    }
}
