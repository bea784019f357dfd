//! With several workers (`--workers N`): a round of up to N distinct candidates made on the best
//! file (runs cut short first, then changes queued again, then the agent's), trained side by side
//! (each on its own lane: CPUs, GPU or SLURM job), each judged by the noise rule against the best
//! file they were all made on, and settled together by the parallel keep rule (`parallel`).
//! Each candidate runs once; the agent writes the next round's first proposal meanwhile.

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Instant;

use anyhow::Result;

use super::{Origin, Prepared, Research};
use crate::research::early_stop::Watch;
use crate::research::history::Best;
use crate::research::noise::{Judgement, NoiseFloor};
use crate::research::parallel::{self, Fate, Judged};
use crate::research::pending;
use crate::research::record::{Outcome, Placed, Record};
use crate::research::runner::{Lane, Progress, RunEvents, Trainer};
use crate::research::sourcing::Proposer;
use crate::trainer::run::RunReport;
use crate::trainer::TrainerError;

/// A candidate of the round, ready to train.
struct Entry {
    record: Record,
    binary: PathBuf,
    started: Instant,
}

/// What one lane's run brought back.
type Ran = (Result<RunReport, TrainerError>, Progress);

/// What a lane tells the loop while its run goes on.
enum Heard {
    Line(usize, String),
    Placed(usize, Placed),
}

/// A lane's run as the loop hears it: its own progress (and early stopping), and every line and
/// its placement passed on to the loop's thread.
struct LaneEvents {
    k: usize,
    progress: Progress,
    tx: mpsc::Sender<Heard>,
}

impl RunEvents for LaneEvents {
    fn line(&mut self, line: &str) -> ControlFlow<()> {
        let _ = self.tx.send(Heard::Line(self.k, line.to_string()));
        self.progress.see(line)
    }

    fn placed(&mut self, placed: &Placed) {
        let _ = self.tx.send(Heard::Placed(self.k, placed.clone()));
    }
}

impl<P: Proposer, T: Trainer> Research<P, T> {
    pub(super) fn round(&mut self, best: Best, floor: &NoiseFloor) -> Result<()> {
        let workers = self.settings.workers;
        let room = match self.settings.max_experiments {
            Some(max) => max
                .saturating_sub(self.history().experiments_done())
                .min(workers),
            None => workers,
        };
        let history = self.history();
        let mut origins = history
            .to_retry_on(best.commit)
            .into_iter()
            .cloned()
            .map(Origin::Retry)
            .chain(
                history
                    .to_requeue()
                    .into_iter()
                    .cloned()
                    .map(Origin::Requeue),
            )
            .collect::<Vec<Origin>>()
            .into_iter();

        let mut ready: Vec<Entry> = Vec::new();
        let mut done: Vec<(Record, Instant)> = Vec::new();
        while ready.len() + done.len() < room {
            let deadline = self.settings.deadline.is_some_and(|d| Instant::now() >= d);
            if self.stop.requested() || deadline {
                break;
            }
            let n = self.history().next_n() + ready.len() + done.len();
            let in_flight: Vec<Record> = ready
                .iter()
                .map(|e| e.record.clone())
                .chain(done.iter().map(|(r, _)| r.clone()))
                .collect();
            let origin = origins.next().unwrap_or(Origin::Agent);
            let started = Instant::now();
            match self.prepare(n, best, origin, &in_flight)? {
                Prepared::Ready { record, binary } => ready.push(Entry {
                    record,
                    binary,
                    started,
                }),
                Prepared::Done(record) => done.push((record, started)),
            }
        }
        let bar = match ready.is_empty() {
            true => best.val_bpb,
            false => self.train_round(&mut ready, best, floor)?,
        };
        let mut records: Vec<(Record, Instant)> = ready
            .into_iter()
            .map(|e| (e.record, e.started))
            .chain(done)
            .collect();
        records.sort_by_key(|(r, _)| r.n);
        for (record, started) in records {
            self.finish(record, started, Some(bar))?;
        }
        Ok(())
    }

    /// Trains the round's candidates side by side and judges and settles them; returns the
    /// best's value they were judged against.
    fn train_round(&mut self, ready: &mut [Entry], best: Best, floor: &NoiseFloor) -> Result<f64> {
        // The device is arranged once per round, and the agent drafts the next round's
        // proposals beside the runs.
        self.schedule = self.proposer.make_room()?;
        let lanes = self.settings.workers;
        let last = ready
            .last()
            .expect("a round with candidates")
            .record
            .clone();
        self.start_drafts(&last, lanes)?;
        let watches: Vec<Option<Watch>> = ready
            .iter()
            .map(|_| {
                self.settings
                    .early_stop
                    .then(|| Watch::against_best(&self.history()))
                    .flatten()
            })
            .collect();
        let run_dirs: Vec<PathBuf> = ready
            .iter()
            .map(|e| {
                self.settings
                    .dir
                    .join(format!("e{:04}", e.record.n))
                    .join("run1")
            })
            .collect();
        for e in ready.iter() {
            self.ui.training_begin(e.record.n, 1, self.settings.budget);
        }
        let ns: Vec<usize> = ready.iter().map(|e| e.record.n).collect();
        let (trainer, ui, dir) = (&self.trainer, &mut self.ui, &self.settings.dir);
        let entries: &[Entry] = ready;
        let ran: Vec<Ran> = std::thread::scope(|scope| {
            let (tx, rx) = mpsc::channel::<Heard>();
            let handles: Vec<_> = entries
                .iter()
                .zip(watches)
                .zip(&run_dirs)
                .enumerate()
                .map(|(k, ((entry, watch), run_dir))| {
                    let mut events = LaneEvents {
                        k,
                        progress: Progress::new(watch),
                        tx: tx.clone(),
                    };
                    scope.spawn(move || {
                        let lane = Lane {
                            index: k,
                            of: lanes,
                        };
                        let report = trainer.run(&entry.binary, run_dir, 0, lane, &mut events);
                        (report, events.progress)
                    })
                })
                .collect();
            drop(tx);
            // The terminal and the live view see every lane's lines as they come; the pending
            // records name each run's job or worker as soon as it is placed.
            let mut in_flight: Vec<Record> = entries.iter().map(|e| e.record.clone()).collect();
            for heard in rx {
                match heard {
                    Heard::Line(k, line) => ui.training_line(ns[k], 1, &line),
                    Heard::Placed(k, placed) => {
                        in_flight[k].in_flight = Some(placed);
                        if let Err(e) = pending::save_round(dir, &in_flight) {
                            ui.say(&format!("e{:04}: {e}", ns[k]));
                        }
                    }
                }
            }
            handles
                .into_iter()
                .map(|h| h.join().expect("a training lane panicked"))
                .collect()
        });

        let mut judged: Vec<Judged> = Vec::new();
        let mut bar = best.val_bpb;
        for (entry, (report, progress)) in ready.iter_mut().zip(ran) {
            let record = &mut entry.record;
            if let Some(failed) = self.record_ran(record, report?, progress) {
                record.outcome = failed;
                continue;
            }
            // Each candidate of a round runs once: no confirmation runs.
            let judgement;
            (judgement, bar) = self.judge(record, best, floor, 1);
            judged.push(Judged {
                n: record.n,
                value: record.val_bpb.expect("judged"),
                passed: judgement == Judgement::Keep,
            });
        }

        let parent = self.workspace.file_at(best.commit)?;
        let mut texts = std::collections::HashMap::new();
        for e in ready.iter() {
            if let Some(commit) = e.record.commit {
                texts.insert(e.record.n, self.workspace.file_at(commit)?);
            }
        }
        let fates = parallel::settle(&judged, |n, winner| {
            parallel::reapply(&parent, &texts[&winner], &texts[&n]).is_some()
        });
        for (j, fate) in judged.iter().zip(fates) {
            let entry = ready
                .iter_mut()
                .find(|e| e.record.n == j.n)
                .expect("a judged candidate");
            entry.record.outcome = match fate {
                Fate::Keep => Outcome::Keep,
                Fate::Discard => Outcome::Discard,
                Fate::Requeue => Outcome::Requeued,
                Fate::Superseded => Outcome::Superseded,
            };
        }
        let in_flight: Vec<Record> = ready.iter().map(|e| e.record.clone()).collect();
        pending::save_round(&self.settings.dir, &in_flight)?;
        Ok(bar)
    }
}
