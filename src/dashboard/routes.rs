//! The dashboard's addresses. Everything is read-only and named by a run's tag and an
//! experiment's number, both checked before any file is touched: no path from a request ever
//! reaches the file system, so nothing outside a run folder can be served.
//!
//! - `/`: the default run's page (the one given, else the latest)
//! - `/runs`: the runs there are, as JSON
//! - `/run/{tag}/`: a run's page
//! - `/run/{tag}/api/state`: its overview, as JSON
//! - `/run/{tag}/api/experiments/{n}`: one experiment (`12` or `e0012`), as JSON
//! - `/run/{tag}/api/events`: server-sent events, `overview`, `live` and `problem`

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode, Uri};
use axum::response::sse::{KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Json, Router};

use super::view::Folder;
use super::{events, page, Site};
use crate::research::tag::Tag;

/// Why a request gets no page.
#[derive(Debug, thiserror::Error)]
pub enum Problem {
    #[error("{0}")]
    NotFound(String),
    /// The run's journal cannot be read (damaged in the middle, or an I/O error).
    #[error("{0}")]
    Unreadable(String),
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = match self {
            Problem::NotFound(_) => StatusCode::NOT_FOUND,
            Problem::Unreadable(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        (status, format!("{self}\n")).into_response()
    }
}

pub fn router(site: Arc<Site>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/runs", get(runs))
        .route("/run/{tag}", get(to_page))
        .route("/run/{tag}/", get(run_page))
        .route("/run/{tag}/api/state", get(state))
        .route("/run/{tag}/api/experiments/{n}", get(experiment))
        .route("/run/{tag}/api/events", get(follow))
        .fallback(nowhere)
        .with_state(site)
}

async fn index(State(site): State<Arc<Site>>) -> Result<Redirect, Problem> {
    let tag = site.default_tag().ok_or_else(|| {
        Problem::NotFound(format!(
            "no run with a journal in {} yet: start one with `autoresearch run`",
            site.runs.display()
        ))
    })?;
    Ok(Redirect::to(&format!("/run/{tag}/")))
}

async fn runs(State(site): State<Arc<Site>>) -> Json<Vec<String>> {
    Json(site.tags())
}

/// The page's relative addresses (`api/...`) need the trailing slash.
async fn to_page(
    State(site): State<Arc<Site>>,
    Path(tag): Path<String>,
) -> Result<Redirect, Problem> {
    let (tag, _) = site.run(&tag)?;
    Ok(Redirect::permanent(&format!("/run/{tag}/")))
}

async fn run_page(
    State(site): State<Arc<Site>>,
    Path(tag): Path<String>,
) -> Result<Html<String>, Problem> {
    let (tag, _) = site.run(&tag)?;
    Ok(Html(page::served(tag.as_str())))
}

async fn state(
    State(site): State<Arc<Site>>,
    Path(tag): Path<String>,
) -> Result<Response, Problem> {
    let folder = site.folder(&tag)?;
    Ok(json(&folder.overview()))
}

async fn experiment(
    State(site): State<Arc<Site>>,
    Path((tag, n)): Path<(String, String)>,
) -> Result<Response, Problem> {
    let folder = site.folder(&tag)?;
    let number = n
        .strip_prefix('e')
        .unwrap_or(&n)
        .parse::<usize>()
        .map_err(|_| {
            Problem::NotFound(format!(
                "{n:?} is not an experiment: name one by its number, 12 or e0012"
            ))
        })?;
    let detail = folder.detail(number).ok_or_else(|| {
        Problem::NotFound(format!(
            "run {tag} has no experiment e{number:04} (yet): its journal holds {} records",
            folder.records.len()
        ))
    })?;
    Ok(json(&detail))
}

async fn follow(
    State(site): State<Arc<Site>>,
    Path(tag): Path<String>,
) -> Result<Response, Problem> {
    let (tag, dir) = site.run(&tag)?;
    let stream = events::follow(tag.to_string(), dir);
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

async fn nowhere(uri: Uri) -> Problem {
    Problem::NotFound(format!(
        "nothing at {uri}: the dashboard serves / and /run/TAG/"
    ))
}

fn json<T: serde::Serialize>(value: &T) -> Response {
    let body = serde_json::to_string(value).expect("views serialise");
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

impl Site {
    /// The run named `text`: a valid tag whose folder has a journal or a live loop.
    fn run(&self, text: &str) -> Result<(Tag, PathBuf), Problem> {
        let tag: Tag = text.parse().map_err(Problem::NotFound)?;
        let dir = self.runs.join(tag.as_str());
        if !Site::is_run(&dir) {
            return Err(Problem::NotFound(format!(
                "no run {tag} in {}: the runs there are {}",
                self.runs.display(),
                self.tags().join(", ")
            )));
        }
        Ok((tag, dir))
    }

    fn folder(&self, text: &str) -> Result<Folder, Problem> {
        let (tag, dir) = self.run(text)?;
        Folder::read(tag.as_str(), &dir).map_err(|e| Problem::Unreadable(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use axum::body::{to_bytes, Body};
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;
    use crate::research::journal::JOURNAL_FILE;
    use crate::research::record::{tests::record, Outcome};

    /// A runs folder with run `night` (a baseline and one experiment) and a file beside it
    /// that must never be served.
    fn site() -> (tempfile::TempDir, Arc<Site>) {
        let root = tempfile::tempdir().unwrap();
        let runs = root.path().join("runs");
        std::fs::create_dir_all(runs.join("night")).unwrap();
        let lines: Vec<String> = [
            record(0, Outcome::Keep, Some(2.0)),
            record(1, Outcome::Discard, Some(2.1)),
        ]
        .iter()
        .map(|r| serde_json::to_string(r).unwrap() + "\n")
        .collect();
        std::fs::write(runs.join("night").join(JOURNAL_FILE), lines.concat()).unwrap();
        std::fs::write(root.path().join("secret.txt"), "not for the dashboard").unwrap();
        let site = Site {
            runs,
            default_tag: None,
        };
        (root, Arc::new(site))
    }

    async fn get(site: &Arc<Site>, uri: &str) -> (StatusCode, String) {
        let request = Request::get(uri).body(Body::empty()).unwrap();
        let response = router(site.clone()).oneshot(request).await.unwrap();
        let status = response.status();
        let location = response
            .headers()
            .get(header::LOCATION)
            .map(|l| l.to_str().unwrap().to_string());
        let body = to_bytes(response.into_body(), 1 << 24).await.unwrap();
        let text = location.unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
        (status, text)
    }

    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(future)
    }

    #[test]
    fn a_run_and_its_experiments_are_served_and_the_default_is_the_latest() {
        let (_root, site) = site();
        block_on(async {
            assert_eq!(
                get(&site, "/").await,
                (StatusCode::SEE_OTHER, "/run/night/".into())
            );
            assert_eq!(
                get(&site, "/run/night").await,
                (StatusCode::PERMANENT_REDIRECT, "/run/night/".into())
            );
            let (status, page) = get(&site, "/run/night/").await;
            assert_eq!(status, StatusCode::OK);
            assert!(page.contains("<title>autoresearch night</title>"));
            let (status, state) = get(&site, "/run/night/api/state").await;
            assert_eq!(status, StatusCode::OK);
            let state: serde_json::Value = serde_json::from_str(&state).unwrap();
            assert_eq!(state["rows"].as_array().unwrap().len(), 2);
            assert_eq!(state["header"]["experiments"], 1);
            for n in ["1", "e0001"] {
                let (status, detail) = get(&site, &format!("/run/night/api/experiments/{n}")).await;
                assert_eq!(status, StatusCode::OK, "{n}");
                let detail: serde_json::Value = serde_json::from_str(&detail).unwrap();
                assert_eq!(
                    (detail["record"]["n"].as_u64(), detail["best_n"].as_u64()),
                    (Some(1), Some(0))
                );
            }
            assert_eq!(
                get(&site, "/runs").await,
                (StatusCode::OK, "[\"night\"]".into())
            );
        });
    }

    #[test]
    fn unknown_runs_and_experiments_are_404s_that_say_what_there_is() {
        let (_root, site) = site();
        let cases = [
            ("/run/day/", "no run day in "),
            ("/run/day/api/state", "no run day in "),
            ("/run/day/api/events", "no run day in "),
            (
                "/run/night/api/experiments/7",
                "run night has no experiment e0007 (yet): its journal holds 2 records",
            ),
            (
                "/run/night/api/experiments/seven",
                "\"seven\" is not an experiment: name one by its number, 12 or e0012",
            ),
            (
                "/nothing",
                "nothing at /nothing: the dashboard serves / and /run/TAG/",
            ),
        ];
        block_on(async {
            for (uri, message) in cases {
                let (status, text) = get(&site, uri).await;
                assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
                assert!(text.contains(message), "{uri}: {text}");
            }
            assert!(get(&site, "/run/day/")
                .await
                .1
                .contains("the runs there are night"));
        });
    }

    #[test]
    fn no_path_outside_a_run_folder_is_served() {
        let (_root, site) = site();
        let attempts = [
            "/run/../secret.txt",
            "/run/..%2Fsecret.txt/",
            "/run/..%2F..%2Fsecret.txt/api/state",
            "/run/%2e%2e/api/state",
            "/run/night/api/experiments/..%2F..%2Fsecret.txt",
            "/run/night/../../secret.txt",
            "/run/night%2F..%2F..%2Fsecret.txt/",
        ];
        block_on(async {
            for uri in attempts {
                let (status, text) = get(&site, uri).await;
                assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
                assert!(
                    !text.contains("not for the dashboard"),
                    "{uri} served the file"
                );
            }
        });
    }

    #[test]
    fn a_damaged_journal_is_said_as_such() {
        let (_root, site) = site();
        std::fs::write(site.runs.join("night").join(JOURNAL_FILE), "garbage\n{}\n").unwrap();
        block_on(async {
            let (status, text) = get(&site, "/run/night/api/state").await;
            assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
            assert!(text.contains("is unreadable at line 1"), "{text}");
        });
    }
}
