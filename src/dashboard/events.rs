//! The page's live feed: server-sent events from a watch on the run folder's files. Each open
//! page has its own watch, which keeps only the last size and time of three files, so a page
//! left open all night costs the server nothing more than one that just opened.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use axum::response::sse::Event;
use futures_util::Stream;

use super::view::{Folder, LiveView};
use crate::research::journal::JOURNAL_FILE;
use crate::research::live::{self, process_exists, LIVE_FILE};
use crate::research::pending::PENDING_FILE;

/// How often the files are looked at: a change reaches the page within this and the time to
/// read the journal (milliseconds), well inside the 2 s a watcher expects.
pub const POLL: Duration = Duration::from_millis(250);

/// A file's size and modification time: it changed when either did.
type Stamp = Option<(u64, SystemTime)>;

fn stamp(path: &Path) -> Stamp {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.len(), meta.modified().ok()?))
}

struct Watch {
    tag: String,
    dir: PathBuf,
    /// The journal's and the pending record's stamps when the page last got the overview.
    records: Option<[Stamp; 2]>,
    live: Option<Stamp>,
    /// The loop process the page was last told about, and whether it was there: a loop killed
    /// outright changes no file, so the page learns of it from here.
    writer: Option<(u32, bool)>,
}

impl Watch {
    /// The event the page needs now, if any: the whole overview when a record changed (it
    /// carries the live state too), else the live state when that moved.
    fn next(&mut self) -> Option<Event> {
        let records = [
            stamp(&self.dir.join(JOURNAL_FILE)),
            stamp(&self.dir.join(PENDING_FILE)),
        ];
        let live = stamp(&self.dir.join(LIVE_FILE));
        if self.records != Some(records) {
            self.records = Some(records);
            self.live = Some(live);
            return Some(match Folder::read(&self.tag, &self.dir) {
                Ok(folder) => {
                    // The live state the overview carries is the one the page now knows.
                    self.writer = folder.live.as_ref().map(|l| (l.run.pid, l.writer_alive()));
                    Event::default()
                        .event("overview")
                        .data(serde_json::to_string(&folder.overview()).expect("views serialise"))
                }
                Err(e) => Event::default().event("problem").data(e.to_string()),
            });
        }
        let gone = self
            .writer
            .is_some_and(|(pid, alive)| alive && !process_exists(pid));
        if self.live != Some(live) || gone {
            self.live = Some(live);
            let view = LiveView::from(live::read(&self.dir)?);
            self.writer = Some((view.state.run.pid, view.alive));
            let json = serde_json::to_string(&view).expect("views serialise");
            return Some(Event::default().event("live").data(json));
        }
        None
    }
}

/// The events for run `tag` in `dir`: the overview at once, then every change.
pub fn follow(tag: String, dir: PathBuf) -> impl Stream<Item = Result<Event, Infallible>> {
    let watch = Watch {
        tag,
        dir,
        records: None,
        live: None,
        writer: None,
    };
    futures_util::stream::unfold(watch, |mut watch| async move {
        loop {
            if let Some(event) = watch.next() {
                return Some((Ok(event), watch));
            }
            tokio::time::sleep(POLL).await;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::research::live::{tests::info, LiveFile, Phase};
    use crate::research::record::{tests::record, Outcome};

    fn event_name(event: Option<Event>) -> Option<String> {
        // An event's wire form starts with its name.
        let text = format!("{:?}", event?);
        ["overview", "live", "problem"]
            .into_iter()
            .find(|name| text.contains(&format!("event: {name}")))
            .map(String::from)
    }

    #[test]
    fn a_new_record_sends_the_overview_and_a_step_only_the_live_state() {
        let dir = tempfile::tempdir().unwrap();
        let mut watch = Watch {
            tag: "t".into(),
            dir: dir.path().to_path_buf(),
            records: None,
            live: None,
            writer: None,
        };
        assert_eq!(event_name(watch.next()).as_deref(), Some("overview"));
        assert_eq!(event_name(watch.next()), None);
        let mut live = LiveFile::new(dir.path(), info("t"));
        assert_eq!(event_name(watch.next()).as_deref(), Some("live"));
        live.phase(Phase::Training, Some(1), Some(1));
        assert_eq!(event_name(watch.next()).as_deref(), Some("live"));
        let line = serde_json::to_string(&record(0, Outcome::Keep, Some(2.0))).unwrap();
        std::fs::write(dir.path().join(JOURNAL_FILE), format!("{line}\n")).unwrap();
        assert_eq!(event_name(watch.next()).as_deref(), Some("overview"));
        assert_eq!(event_name(watch.next()), None);
        // The loop is killed outright: no file changes, and the page is told all the same.
        watch.writer = Some((u32::MAX, true));
        assert_eq!(event_name(watch.next()).as_deref(), Some("live"));
        assert_eq!(event_name(watch.next()), None);
        std::fs::write(dir.path().join(JOURNAL_FILE), "not json\n{}\n").unwrap();
        assert_eq!(event_name(watch.next()).as_deref(), Some("problem"));
    }
}
