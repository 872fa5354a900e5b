//! `aac:plugin/archive`: the local archive of the bundle being materialized, read by offset. The
//! plugin gets these bytes and nothing else of the host's filesystem.

use std::fs::File;
use std::os::unix::fs::FileExt;

use crate::plugin::bindings::materializer::aac::plugin::archive::Host;
use crate::plugin::state::SessionState;

/// Most bytes handed over per call, whatever the plugin asks for.
const MAX_READ: u32 = 4 << 20;

#[derive(Default)]
pub struct ArchiveCapability {
    file: Option<File>,
}

impl ArchiveCapability {
    pub fn new(file: File) -> Self {
        Self { file: Some(file) }
    }
}

impl Host for SessionState {
    async fn read(&mut self, offset: u64, max: u32) -> wasmtime::Result<Result<Vec<u8>, String>> {
        let Some(file) = &self.archive.file else {
            return Ok(Err("this bundle has no local archive".into()));
        };
        self.cpu.enter_host();
        let mut buf = vec![0u8; max.min(MAX_READ) as usize];
        // A positional read of at most a few MiB from a local file: quick enough to do inline.
        let read = file.read_at(&mut buf, offset);
        self.cpu.leave_host();
        Ok(match read {
            Ok(n) => {
                buf.truncate(n);
                Ok(buf)
            }
            Err(err) => Err(format!("reading the archive at offset {offset}: {err}")),
        })
    }
}
