//! An archive that is still arriving: the runner downloads a bundle into a local file while the
//! materializer reads it, so the download and the unpacking overlap instead of following each
//! other. The writer says how many bytes from the start are on disk; a read past them waits, and
//! the host's check of the whole archive (its size, its sha256) waits for its end: a download that
//! broke off or brought other bytes fails the materialization, whose staging directory is then
//! discarded. The downloader hashes the bytes as it writes them (on its own task, beside the
//! plugin), so the plugin's reads are not slowed by hashing and each byte is hashed once.

use tokio::sync::watch;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Progress {
    /// This many bytes from the start are written and readable; more will come.
    Arriving(u64),
    /// The archive is whole: this many bytes, whose sha256 (lowercase hex) the writer computed
    /// over exactly what it wrote. The reader checks it against the bundle's reference.
    Complete { bytes: u64, sha256: String },
    /// The download ended without the whole, checked archive.
    Failed(String),
}

/// Creates the two sides of an arriving archive.
pub fn arrival() -> (ArrivalWriter, ArchiveArrival) {
    let (tx, rx) = watch::channel(Progress::Arriving(0));
    (ArrivalWriter { tx }, ArchiveArrival { rx })
}

/// The downloader's side. Dropped before [`complete`](Self::complete), the archive failed.
#[derive(Debug)]
pub struct ArrivalWriter {
    tx: watch::Sender<Progress>,
}

impl ArrivalWriter {
    /// The first `bytes` bytes of the file are written (readable by another handle).
    pub fn written(&self, bytes: u64) {
        self.tx.send_replace(Progress::Arriving(bytes));
    }

    /// The archive is whole, `bytes` long, and `sha256` (hex) is the hash of exactly the bytes
    /// written to the file. The materializer checks it against the bundle's reference.
    pub fn complete(self, bytes: u64, sha256: String) {
        self.tx.send_replace(Progress::Complete { bytes, sha256 });
    }

    /// The download failed: `why` is what the materialization reports.
    pub fn failed(self, why: String) {
        self.tx.send_replace(Progress::Failed(why));
    }
}

impl Drop for ArrivalWriter {
    fn drop(&mut self) {
        self.tx.send_if_modified(|progress| match progress {
            Progress::Arriving(_) => {
                *progress = Progress::Failed("the download stopped before its end".into());
                true
            }
            _ => false,
        });
    }
}

/// The reader's side, given to the materializer with its options.
#[derive(Clone, Debug)]
pub struct ArchiveArrival {
    rx: watch::Receiver<Progress>,
}

/// How far an arriving archive can be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Readable {
    /// Bytes from the start that are on disk.
    pub end: u64,
    /// No more will come.
    pub whole: bool,
}

impl ArchiveArrival {
    /// Waits until a byte at `offset` is readable or the archive is whole.
    pub(crate) async fn readable_at(&mut self, offset: u64) -> Result<Readable, String> {
        let progress = self
            .rx
            .wait_for(|p| !matches!(p, Progress::Arriving(end) if *end <= offset))
            .await
            .map_err(|_| "the download stopped before its end".to_owned())?;
        match &*progress {
            Progress::Arriving(end) => Ok(Readable {
                end: *end,
                whole: false,
            }),
            Progress::Complete { bytes, .. } => Ok(Readable {
                end: *bytes,
                whole: true,
            }),
            Progress::Failed(why) => Err(why.clone()),
        }
    }

    /// Waits for the end of the download: the archive's size, or why it failed.
    pub(crate) async fn finished(&mut self) -> Result<u64, String> {
        self.readable_at(u64::MAX)
            .await
            .map(|readable| readable.end)
    }

    /// Why the download failed, if it has.
    pub(crate) fn failure(&self) -> Option<String> {
        match &*self.rx.borrow() {
            Progress::Failed(why) => Some(why.clone()),
            _ => None,
        }
    }

    /// The sha256 of the whole archive, as its writer computed it; `None` while it is still
    /// arriving or when the download failed (without waiting).
    pub(crate) fn sha256(&self) -> Option<String> {
        match &*self.rx.borrow() {
            Progress::Complete { sha256, .. } => Some(sha256.clone()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_read_waits_for_its_bytes_and_sees_the_end() {
        let (writer, mut reader) = arrival();
        writer.written(10);
        assert_eq!(
            reader.readable_at(3).await,
            Ok(Readable {
                end: 10,
                whole: false
            })
        );
        let mut waiting = reader.clone();
        let later = tokio::spawn(async move { waiting.readable_at(10).await });
        tokio::task::yield_now().await;
        assert!(!later.is_finished(), "offset 10 is not written yet");
        writer.written(20);
        assert_eq!(later.await.unwrap().unwrap().end, 20);
        writer.complete(25, "ab".repeat(32));
        assert_eq!(
            reader.readable_at(30).await,
            Ok(Readable {
                end: 25,
                whole: true
            })
        );
        assert_eq!(reader.finished().await, Ok(25));
        assert_eq!(reader.sha256(), Some("ab".repeat(32)));
    }

    #[tokio::test]
    async fn a_writer_dropped_midway_fails_the_waiting_reader() {
        let (writer, mut reader) = arrival();
        writer.written(5);
        let mut waiting = reader.clone();
        let later = tokio::spawn(async move { waiting.finished().await });
        tokio::task::yield_now().await;
        drop(writer);
        let why = later.await.unwrap().unwrap_err();
        assert!(why.contains("stopped before its end"), "{why}");
        assert_eq!(reader.failure().as_deref(), Some(why.as_str()));
        assert!(reader.readable_at(0).await.is_err());
    }

    #[tokio::test]
    async fn a_failed_download_names_why() {
        let (writer, reader) = arrival();
        writer.failed("the blob's content has sha256 00…, not ff…".into());
        assert!(reader.failure().unwrap().contains("sha256"));
        assert_eq!(reader.sha256(), None);
    }
}
