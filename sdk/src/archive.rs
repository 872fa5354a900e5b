//! The local archive the host hands a materializer for the current call, as a [`std::io::Read`].

use std::io;

use crate::bindings::materializer::aac::plugin::archive;

/// Reads the current bundle's local archive through the `archive` host interface, in chunks.
pub struct Reader {
    offset: u64,
}

/// Bytes asked of the host per call: large enough that the host-call overhead vanishes.
const CHUNK: u32 = 1 << 20;

impl Reader {
    pub fn new() -> Self {
        Self { offset: 0 }
    }
}

impl Default for Reader {
    fn default() -> Self {
        Self::new()
    }
}

impl io::Read for Reader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let max = u32::try_from(buf.len()).unwrap_or(u32::MAX).min(CHUNK);
        let bytes = archive::read(self.offset, max).map_err(io::Error::other)?;
        let n = bytes.len().min(buf.len());
        buf[..n].copy_from_slice(&bytes[..n]);
        self.offset += n as u64;
        Ok(n)
    }
}
