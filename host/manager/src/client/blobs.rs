//! Blob and result calls: uploading a bundle or a result's files (`PUT /v1/blobs/{sha256}`),
//! downloading a blob to a file with its hash checked, storing and reading command results.

use std::path::Path;

use bytes::Bytes;
use futures::StreamExt;
use reqwest::Method;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::{ClientError, ManagerClient, Payload, Reply, Result, decode, seg};
use crate::results::{BlobStored, ChangedFile, CommandResult, ResultList, is_sha256};

fn check_sha(endpoint: &str, sha256: &str) -> Result<()> {
    if is_sha256(sha256) {
        Ok(())
    } else {
        Err(ClientError::Request {
            endpoint: endpoint.to_owned(),
            message: format!("{sha256:?} is not a sha256 (64 lowercase hex digits)"),
        })
    }
}

/// How often a download tells its follower how far it got.
const WRITTEN_STEP: u64 = 1 << 20;

/// The changed files of a run (`GET /v1/runs/{run}/files`).
#[derive(Debug, serde::Deserialize)]
pub struct FileList {
    pub files: Vec<ChangedFile>,
}

impl ManagerClient {
    /// Uploads `file` as the blob `sha256`; safe to retry (the manager keeps one copy).
    pub async fn put_blob_file(&self, sha256: &str, file: &Path) -> Result<BlobStored> {
        check_sha("put blob", sha256)?;
        let path = format!("/blobs/{sha256}");
        let body = Payload::File(file.to_owned());
        let (endpoint, reply) = self
            .send_payload(Method::PUT, &path, Some(&body), None, None, true)
            .await?;
        decode(&endpoint, reply.bytes())
    }

    /// Uploads `bytes` as the blob `sha256`.
    pub async fn put_blob(&self, sha256: &str, bytes: Bytes) -> Result<BlobStored> {
        check_sha("put blob", sha256)?;
        let path = format!("/blobs/{sha256}");
        let body = Payload::Bytes(bytes);
        let (endpoint, reply) = self
            .send_payload(
                Method::PUT,
                &path,
                Some(&body),
                None,
                Some(self.request_timeout),
                true,
            )
            .await?;
        decode(&endpoint, reply.bytes())
    }

    /// Streams the reply of a GET at `path` into `out`; returns its size, and its sha256 unless a
    /// follower checks it. At most `max` bytes are taken.
    async fn download(
        &self,
        path: &str,
        out: &Path,
        max: u64,
        mut follower: Option<&mut (dyn FnMut(u64) + Send)>,
    ) -> Result<(String, u64)> {
        let (endpoint, reply) = self
            .send_payload(Method::GET, path, None, None, None, false)
            .await?;
        let Reply::Streaming(resp) = reply else {
            unreachable!("asked for a streaming reply")
        };
        let io = |e: std::io::Error| ClientError::Request {
            endpoint: endpoint.clone(),
            message: format!("cannot write {}: {e}", out.display()),
        };
        let mut file = tokio::io::BufWriter::with_capacity(
            1 << 20,
            tokio::fs::File::create(out).await.map_err(io)?,
        );
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut told = 0u64;
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| ClientError::Unavailable {
                endpoint: endpoint.clone(),
                attempts: 1,
                status: None,
                last: format!("the download broke off after {size} bytes: {e}"),
            })?;
            size += chunk.len() as u64;
            if size > max {
                return Err(ClientError::Request {
                    endpoint: endpoint.clone(),
                    message: format!("the download is over its limit of {max} bytes"),
                });
            }
            hasher.update(&chunk);
            file.write_all(&chunk).await.map_err(io)?;
            if let Some(written) = follower.as_mut()
                && size - told >= WRITTEN_STEP
            {
                file.flush().await.map_err(io)?;
                told = size;
                written(size);
            }
        }
        file.flush().await.map_err(io)?;
        if let Some(written) = follower.as_mut() {
            written(size);
        }
        Ok((hex::encode(hasher.finalize()), size))
    }

    /// Downloads the blob `sha256` into `out` (at most `max` bytes); a body whose hash differs is
    /// an error and the file is removed.
    pub async fn get_blob_to_file(&self, sha256: &str, out: &Path, max: u64) -> Result<u64> {
        self.fetch_blob(sha256, out, max, None).await
    }

    /// Downloads the blob `sha256` into `out` for a reader that follows it: `written` hears how many
    /// bytes from the start are on disk (readable through another handle) as they arrive, every
    /// [`WRITTEN_STEP`] bytes. The hash is checked as for [`get_blob_to_file`](Self::get_blob_to_file),
    /// on this task, beside the reader: a follower that trusts the file needs no hash of its own.
    pub async fn get_blob_to_file_as_it_arrives(
        &self,
        sha256: &str,
        out: &Path,
        max: u64,
        written: &mut (dyn FnMut(u64) + Send),
    ) -> Result<u64> {
        self.fetch_blob(sha256, out, max, Some(written)).await
    }

    async fn fetch_blob(
        &self,
        sha256: &str,
        out: &Path,
        max: u64,
        written: Option<&mut (dyn FnMut(u64) + Send)>,
    ) -> Result<u64> {
        check_sha("get blob", sha256)?;
        let path = format!("/blobs/{sha256}");
        let got = self.download(&path, out, max, written).await;
        match got {
            Ok((actual, size)) if actual == sha256 => Ok(size),
            Ok((actual, _)) => {
                let _ = tokio::fs::remove_file(out).await;
                Err(ClientError::Request {
                    endpoint: format!("GET /v1{path}"),
                    message: format!("the blob's content has sha256 {actual}, not {sha256}"),
                })
            }
            Err(e) => {
                let _ = tokio::fs::remove_file(out).await;
                Err(e)
            }
        }
    }

    /// The blob `sha256`, whole, in memory (at most `max` bytes).
    pub async fn get_blob(&self, sha256: &str, max: u64) -> Result<Bytes> {
        check_sha("get blob", sha256)?;
        self.get_bytes(&format!("/blobs/{sha256}"), max).await
    }

    async fn get_bytes(&self, path: &str, max: u64) -> Result<Bytes> {
        let (endpoint, reply) = self
            .send_payload(Method::GET, path, None, None, None, false)
            .await?;
        let Reply::Streaming(resp) = reply else {
            unreachable!("asked for a streaming reply")
        };
        let mut buf = Vec::new();
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| ClientError::Unavailable {
                endpoint: endpoint.clone(),
                attempts: 1,
                status: None,
                last: format!("the reply broke off: {e}"),
            })?;
            if (buf.len() + chunk.len()) as u64 > max {
                return Err(ClientError::Request {
                    endpoint,
                    message: format!("the reply is over its limit of {max} bytes"),
                });
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(Bytes::from(buf))
    }

    /// Stores a command's result (runner, under its lease); every blob it names must be uploaded.
    pub async fn put_result(
        &self,
        run: &str,
        cmd: &str,
        lease_token: &str,
        result: &CommandResult,
    ) -> Result<CommandResult> {
        seg("put result", run)?;
        seg("put result", cmd)?;
        let path = format!("/runs/{run}/commands/{cmd}/result");
        self.call(Method::PUT, &path, Some(result), Some(lease_token))
            .await
    }

    /// The stored results of a run's commands, in command order.
    pub async fn results(&self, run: &str) -> Result<Vec<CommandResult>> {
        seg("results", run)?;
        let path = format!("/runs/{run}/results");
        let list: ResultList = self.call(Method::GET, &path, Self::NO_BODY, None).await?;
        Ok(list.results)
    }

    /// The stored results of the run this runner holds (a runner token reads them only with
    /// the lease token of its attempt).
    pub async fn held_results(&self, run: &str, lease_token: &str) -> Result<Vec<CommandResult>> {
        seg("results", run)?;
        let path = format!("/runs/{run}/results");
        let list: ResultList = self
            .call(Method::GET, &path, Self::NO_BODY, Some(lease_token))
            .await?;
        Ok(list.results)
    }

    /// The git diff of the run from its bundle to its last state, or of one command.
    pub async fn diff(&self, run: &str, command: Option<&str>, max: u64) -> Result<Bytes> {
        seg("diff", run)?;
        let path = match command {
            Some(cmd) => {
                seg("diff", cmd)?;
                format!("/runs/{run}/result?command={cmd}")
            }
            None => format!("/runs/{run}/result"),
        };
        self.get_bytes(&path, max).await
    }

    /// Each file the run changed, with its latest change.
    pub async fn changed_files(&self, run: &str) -> Result<Vec<ChangedFile>> {
        seg("files", run)?;
        let list: FileList = self
            .call(
                Method::GET,
                &format!("/runs/{run}/files"),
                Self::NO_BODY,
                None,
            )
            .await?;
        Ok(list.files)
    }
}
