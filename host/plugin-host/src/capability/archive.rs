//! `aac:plugin/archive`: the local archive of the bundle being materialized, read by offset. The
//! plugin gets these bytes and nothing else of the host's filesystem.
//!
//! The host verifies the archive itself: it hashes the bytes as it serves them (natively, far
//! faster than sha256 compiled to wasm) and checks them against the bundle reference once the
//! plugin is done, so what was verified is exactly what the plugin read.
//!
//! The archive may still be arriving (the runner downloads it while the plugin reads): a read
//! past what is on disk waits for it, and the check waits for the download's end. Such a file is
//! the host's own (written by its download, in the run's private directory), so the hash is the
//! download's, of the bytes it wrote: computed beside the plugin instead of inside its reads.

use std::fs::File;
use std::os::unix::fs::FileExt;

use sha2::{Digest, Sha256};

use crate::bindings::materializer::aac::plugin::archive::Host;
use crate::materializer::ArchiveArrival;
use crate::state::{MaterializerWorld, SessionState};

/// Most bytes handed over per call, whatever the plugin asks for.
const MAX_READ: u32 = 4 << 20;

#[derive(Default)]
pub struct ArchiveCapability {
    file: Option<File>,
    hasher: Sha256,
    /// End of the bytes hashed so far; reads continuing from here are hashed as they go.
    next: u64,
    /// False once the plugin read out of order: the file is then hashed again at the end.
    sequential: bool,
    /// Set while the file is still being written.
    arrival: Option<ArchiveArrival>,
}

impl ArchiveCapability {
    pub fn new(file: File, arrival: Option<ArchiveArrival>) -> Self {
        Self {
            file: Some(file),
            hasher: Sha256::new(),
            next: 0,
            sequential: true,
            arrival,
        }
    }

    /// Checks the archive against the reference's size and sha256 (lowercase hex).
    pub fn verify(&mut self, size: Option<u64>, sha256: Option<&str>) -> Result<(), String> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        let arrived = match &self.arrival {
            None => None,
            Some(arrival) => match arrival.sha256() {
                Some(sha256) => Some(sha256),
                None => {
                    let why = arrival
                        .failure()
                        .unwrap_or_else(|| "it is still arriving".into());
                    return Err(format!("the archive did not arrive whole: {why}"));
                }
            },
        };
        let actual_size = file
            .metadata()
            .map_err(|err| format!("cannot stat the archive: {err}"))?
            .len();
        if let Some(expected) = size
            && actual_size != expected
        {
            return Err(format!(
                "the archive is {actual_size} bytes, but its reference says {expected}"
            ));
        }
        let Some(expected) = sha256 else {
            return Ok(());
        };
        let actual = match arrived {
            Some(downloaded) => downloaded,
            // Read in order: only what the plugin left unread (a tar's end padding) is hashed now.
            None if self.sequential => hex::encode(hash_file(
                file,
                self.next,
                std::mem::take(&mut self.hasher),
            )?),
            None => hex::encode(hash_file(file, 0, Sha256::new())?),
        };
        if !actual.eq_ignore_ascii_case(expected) {
            return Err(format!(
                "the bundle's sha256 is {actual}, but its reference says {expected}"
            ));
        }
        Ok(())
    }
}

/// Hashes `file` from `offset` to its end into `hasher`.
fn hash_file(
    file: &File,
    mut offset: u64,
    mut hasher: Sha256,
) -> Result<sha2::digest::Output<Sha256>, String> {
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read_at(&mut buf, offset)
            .map_err(|err| format!("reading the archive at offset {offset}: {err}"))?;
        if n == 0 {
            return Ok(hasher.finalize());
        }
        hasher.update(&buf[..n]);
        offset += n as u64;
    }
}

impl Host for SessionState<MaterializerWorld> {
    async fn read(&mut self, offset: u64, max: u32) -> wasmtime::Result<Result<Vec<u8>, String>> {
        let archive = &mut self.world.archive;
        let Some(file) = &archive.file else {
            return Ok(Err("this bundle has no local archive".into()));
        };
        let mut len = u64::from(max.min(MAX_READ));
        if let Some(arrival) = &mut archive.arrival {
            // Waiting here is not the plugin's CPU: the call's wall deadline still bounds it.
            match arrival.readable_at(offset).await {
                Ok(readable) if !readable.whole => len = len.min(readable.end - offset),
                Ok(_) => {}
                Err(why) => {
                    return Ok(Err(format!(
                        "reading the archive at offset {offset}: it did not arrive: {why}"
                    )));
                }
            }
        }
        let mut buf = vec![0u8; len as usize];
        // A positional read of at most a few MiB from a local file: quick enough to do inline.
        let read = file.read_at(&mut buf, offset);
        // An arriving archive is hashed by its download (see the module's comment).
        if let (Ok(n), None) = (&read, &archive.arrival) {
            if archive.sequential && offset == archive.next {
                archive.hasher.update(&buf[..*n]);
                archive.next += *n as u64;
            } else {
                archive.sequential = false;
            }
        }
        Ok(match read {
            Ok(n) => {
                buf.truncate(n);
                Ok(buf)
            }
            Err(err) => Err(format!("reading the archive at offset {offset}: {err}")),
        })
    }
}
