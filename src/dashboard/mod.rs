//! The dashboard: a read-only web page for watching a research night, served by the appliance
//! itself (`serve`, or `run --dashboard` beside the loop), or written as one self-contained file
//! (`report --html`). It reads only a run folder's files, as `report` does, so it works the same
//! beside a live loop, after one, or in another process.
//!
//! `view` builds what the page shows from the files, `page` is the page itself, `routes` answers
//! requests, `events` streams a run's changes to an open page.

pub mod events;
pub mod page;
pub mod routes;
pub mod view;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::research::journal::JOURNAL_FILE;
use crate::research::live::LIVE_FILE;
use crate::research::tag::Tag;

/// Where the dashboard listens unless told otherwise: this machine only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8765";

/// The runs a dashboard shows.
#[derive(Debug, Clone)]
pub struct Site {
    /// The folder that holds the run folders.
    pub runs: PathBuf,
    /// The run `/` shows; None: the one whose journal changed last.
    pub default_tag: Option<Tag>,
}

impl Site {
    fn is_run(dir: &Path) -> bool {
        dir.join(JOURNAL_FILE).is_file() || dir.join(LIVE_FILE).is_file()
    }

    /// The run `/` shows, if there is one: the one given, else the one whose journal or live
    /// state changed last (a new run has only the latter during its baseline).
    pub fn default_tag(&self) -> Option<String> {
        if let Some(tag) = &self.default_tag {
            return Some(tag.to_string());
        }
        let changed = |tag: &String| {
            let dir = self.runs.join(tag);
            [JOURNAL_FILE, LIVE_FILE]
                .iter()
                .filter_map(|f| dir.join(f).metadata().ok()?.modified().ok())
                .max()
        };
        self.tags().into_iter().max_by_key(changed)
    }

    /// Every run in the folder, by name.
    pub fn tags(&self) -> Vec<String> {
        let mut tags: Vec<String> = std::fs::read_dir(&self.runs)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| Site::is_run(&e.path()))
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|name| name.parse::<Tag>().is_ok())
            .collect();
        tags.sort();
        tags
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    #[error("the dashboard cannot listen on {addr}: pass another --listen (another program may hold the port)")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the dashboard stopped")]
    Serve(#[source] std::io::Error),
}

/// A dashboard that holds its address, ready to serve.
pub struct Dashboard {
    listener: std::net::TcpListener,
    site: Site,
}

impl Dashboard {
    /// Takes the address now, so a port in use is said before anything else starts.
    pub fn bind(addr: SocketAddr, site: Site) -> Result<Self, DashboardError> {
        let bind = |source| DashboardError::Bind { addr, source };
        let listener = std::net::TcpListener::bind(addr).map_err(bind)?;
        listener.set_nonblocking(true).map_err(bind)?;
        Ok(Dashboard { listener, site })
    }

    /// The address it listens on (the port chosen when asked for port 0).
    pub fn address(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound socket has an address")
    }

    /// The page's address, for people.
    pub fn url(&self) -> String {
        format!("http://{}/", self.address())
    }

    /// Serves until the process ends.
    pub fn serve(self) -> Result<(), DashboardError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(DashboardError::Serve)?;
        runtime.block_on(async move {
            let listener =
                tokio::net::TcpListener::from_std(self.listener).map_err(DashboardError::Serve)?;
            let app = routes::router(Arc::new(self.site));
            axum::serve(listener, app)
                .await
                .map_err(DashboardError::Serve)
        })
    }

    /// Serves from a thread of its own, beside the loop; a failure is logged, not fatal: the
    /// night goes on without its page.
    pub fn spawn(self) -> std::thread::JoinHandle<()> {
        std::thread::Builder::new()
            .name("dashboard".into())
            .spawn(move || {
                if let Err(e) = self.serve() {
                    tracing::warn!("{e}: {:?}", std::error::Error::source(&e));
                }
            })
            .expect("a thread for the dashboard")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_in_use_is_said_with_the_fix() {
        let site = || Site {
            runs: PathBuf::from("runs"),
            default_tag: None,
        };
        let first = Dashboard::bind("127.0.0.1:0".parse().unwrap(), site()).unwrap();
        assert!(first.url().starts_with("http://127.0.0.1:"));
        let taken = first.address();
        let err = Dashboard::bind(taken, site()).err().unwrap();
        assert_eq!(
            err.to_string(),
            format!("the dashboard cannot listen on {taken}: pass another --listen (another program may hold the port)")
        );
    }
}
