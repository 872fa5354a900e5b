//! The routes of blobs and results: `PUT/GET /v1/blobs/{sha256}` (bundles in, results out),
//! `PUT /v1/runs/{run}/commands/{cmd}/result` (runner), and the client's views of a run's change:
//! `GET /v1/runs/{run}/result[?command=ID]` (a git diff), `GET /v1/runs/{run}/results` (metadata),
//! `GET /v1/runs/{run}/files` and `GET /v1/runs/{run}/files/{path}`.

use std::collections::BTreeMap;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Extension, Json};
use serde::Deserialize;

use super::Manager;
use super::routes::{lease_token, parse, query};
use crate::error::ManagerError;
use crate::results::{ChangedFile, CommandResult, FileChange, ResultList};
use crate::tokens::Role;

type Result<T> = std::result::Result<T, ManagerError>;

/// Results of one run read at most (one per command).
const MAX_RESULTS: usize = 100_000;

pub(super) fn add(v1: Router<Manager>) -> Router<Manager> {
    v1.route("/blobs/{sha}", put(put_blob).get(get_blob))
        .route("/runs/{run}/commands/{cmd}/result", put(put_result))
        .route("/runs/{run}/results", get(list_results))
        .route("/runs/{run}/result", get(run_diff))
        .route("/runs/{run}/files", get(list_files))
        .route("/runs/{run}/files/{*path}", get(get_file))
}

async fn put_blob(
    State(m): State<Manager>,
    Path(sha): Path<String>,
    request: Request,
) -> Result<Response> {
    let max = m.max_blob_bytes();
    let announced = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(len) = announced.filter(|len| *len > max) {
        return Err(ManagerError::PayloadTooLarge(format!(
            "the blob is {len} bytes, over the manager's blob limit of {max} bytes; nothing was \
             stored"
        )));
    }
    let body = request.into_body().into_data_stream();
    let stored = m.store().blobs().put(&sha, body, max).await?;
    let status = if stored.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(stored)).into_response())
}

/// Streams a stored blob.
async fn stream_blob(m: &Manager, sha: &str) -> Result<Response> {
    crate::store::blobs::check_sha(sha)?;
    let path = m.store().blobs().path(sha);
    let file = match tokio::fs::File::open(&path).await {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ManagerError::NotFound(format!("blob {sha} is not stored")));
        }
        Err(e) => return Err(ManagerError::Storage(format!("blob {sha}: {e}"))),
    };
    let len = file
        .metadata()
        .await
        .map_err(|e| ManagerError::Storage(format!("blob {sha}: {e}")))?
        .len();
    let stream = tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024);
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (header::CONTENT_LENGTH, len.to_string()),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

async fn get_blob(State(m): State<Manager>, Path(sha): Path<String>) -> Result<Response> {
    stream_blob(&m, &sha).await
}

async fn put_result(
    State(m): State<Manager>,
    Path((run, cmd)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response> {
    let token = lease_token(&headers)?;
    let result: CommandResult = parse(&body)?;
    let stored = m
        .blocking(move |s| s.put_result(&run, &cmd, &token, result))
        .await?;
    Ok(Json(stored).into_response())
}

/// A runner token reads only the results of the run it holds: it presents that run's lease token.
async fn list_results(
    State(m): State<Manager>,
    Path(run): Path<String>,
    role: Option<Extension<Role>>,
    headers: HeaderMap,
) -> Result<Response> {
    let lease = match role {
        Some(Extension(Role::Runner)) => Some(lease_token(&headers).map_err(|_| {
            ManagerError::Forbidden(format!(
                "a runner token reads the results of run {run} only with the lease token of its                  attempt (X-Lease-Token)"
            ))
        })?),
        _ => None,
    };
    let results = m
        .blocking(move |s| {
            if let Some(lease) = lease {
                s.check_holds_lease(&run, &lease)?;
            }
            s.results(&run, MAX_RESULTS)
        })
        .await?;
    Ok(Json(ResultList { results }).into_response())
}

#[derive(Deserialize)]
struct ResultQuery {
    command: Option<String>,
}

/// The git diff of one command (`?command=`), or from the bundle to the run's last stored state.
async fn run_diff(
    State(m): State<Manager>,
    Path(run): Path<String>,
    q: std::result::Result<Query<ResultQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response> {
    let q = query(q)?;
    let r = run.clone();
    let (result, sha) = match q.command {
        Some(cmd) => {
            let result = m.blocking(move |s| s.result_of(&r, &cmd)).await?;
            let sha = result.diff_sha256.clone();
            (Some(result), sha)
        }
        None => {
            let results = m.blocking(move |s| s.results(&r, MAX_RESULTS)).await?;
            let last = results.into_iter().last();
            let sha = last.as_ref().and_then(|l| l.run_diff_sha256.clone());
            (last, sha)
        }
    };
    let Some(result) = result else {
        // No command stored a result: nothing changed yet.
        return Ok(([(header::CONTENT_TYPE, "text/x-diff")], "").into_response());
    };
    let Some(sha) = sha else {
        return Err(ManagerError::NotFound(format!(
            "the diff of run {run} (command {}) was not stored: {}",
            result.command_id,
            result
                .truncated_reason
                .as_deref()
                .unwrap_or("the runner left it out")
        )));
    };
    let mut response = stream_blob(&m, &sha).await?;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/x-diff"),
    );
    Ok(response)
}

/// The run's changed files: each path's latest change over all its commands' results.
async fn changed_files(m: &Manager, run: String) -> Result<Vec<ChangedFile>> {
    let results = m.blocking(move |s| s.results(&run, MAX_RESULTS)).await?;
    let mut latest: BTreeMap<String, ChangedFile> = BTreeMap::new();
    for file in results.into_iter().flat_map(|r| r.files) {
        latest.insert(file.path.clone(), file);
    }
    Ok(latest.into_values().collect())
}

#[derive(serde::Serialize)]
struct FileList {
    files: Vec<ChangedFile>,
}

async fn list_files(State(m): State<Manager>, Path(run): Path<String>) -> Result<Response> {
    let files = changed_files(&m, run).await?;
    Ok(Json(FileList { files }).into_response())
}

async fn get_file(
    State(m): State<Manager>,
    Path((run, path)): Path<(String, String)>,
) -> Result<Response> {
    let files = changed_files(&m, run.clone()).await?;
    let Some(file) = files.into_iter().find(|f| f.path == path) else {
        return Err(ManagerError::NotFound(format!(
            "run {run} changed no file {path:?}"
        )));
    };
    match (&file.change, &file.sha256) {
        (FileChange::Deleted, _) => Err(ManagerError::NotFound(format!(
            "run {run} deleted {path:?}"
        ))),
        (_, None) => Err(ManagerError::NotFound(format!(
            "the content of {path:?} was not stored: its command's result reached the limit"
        ))),
        (_, Some(sha)) => stream_blob(&m, sha).await,
    }
}
