//! What a training program builds, without training it: the harness's describe mode runs the
//! file up to its first batch, so everything it says of its model (the baseline prints its depth,
//! width, heads and rows per step) comes out in a second or two, confined like a real run.

use std::path::Path;
use std::time::Duration;

use harness::DESCRIBED;

use super::run::{self, RunSpec};
use super::TrainerError;
use crate::confine::Confinement;

/// Building a model takes seconds; a file that has not asked for a batch by then is not
/// described (its real run will say why).
const DESCRIBE_TIMEOUT: Duration = Duration::from_secs(120);

/// The lines `binary` prints before its first batch, or None when it stopped another way (a
/// crash, the timeout): then there is nothing to compare, and its run will show what went wrong.
/// `scratch` receives the program's log; `stop` ends it early (Ctrl-C).
pub fn describe(
    binary: &Path,
    data_dir: &Path,
    scratch: &Path,
    confinement: Confinement,
    stop: &dyn Fn() -> bool,
) -> Result<Option<Vec<String>>, TrainerError> {
    let spec = RunSpec {
        binary,
        data_dir,
        run_dir: scratch,
        budget: None,
        seed: 0,
        timeout: DESCRIBE_TIMEOUT,
        confinement,
        cpus: None,
        gpu: None,
        stop,
        describe: true,
    };
    let mut lines = Vec::new();
    let mut described = false;
    run::run(&spec, |line| {
        described |= line == DESCRIBED;
        if !described {
            lines.push(line.to_string());
        }
        std::ops::ControlFlow::Continue(())
    })?;
    // The file's own code could print the marker too; a false description can only cost its
    // own change a run (or spare it), never touch a result.
    Ok(described.then_some(lines))
}
