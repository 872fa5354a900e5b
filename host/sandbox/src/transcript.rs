//! Transcripts: what a backend's turns did in a sandbox — each process it started, what that process
//! printed and how it ended — recorded from a real run ([`RecordingDriver`], `aac-host run
//! --record`) and replayed without Docker ([`ReplaySandbox`], `aac-host plugin test`). A plugin
//! author tests a backend's parsing against the real CLI's output in milliseconds, and a change to
//! a plugin that changes what it emits shows as a difference.
//!
//! Environment variables are never recorded (secrets travel there); argv, cwd and output are.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::{
    ExecError, ExecSpec, ExitInfo, KillReason, OpenError, OutputChunk, OutputStream,
    ProcessControl, RawProcess, Sandbox, SandboxDriver, SandboxSpec, Signal,
};

/// The version written into every transcript; a reader refuses any other.
pub const TRANSCRIPT_VERSION: u32 = 1;

/// One recorded run of a backend: its configuration, its commands, the processes its turns started,
/// and what it emitted.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Transcript {
    pub version: u32,
    /// The backend's configuration (`config_json` of the session).
    pub config: serde_json::Value,
    pub commands: Vec<RecordedCommand>,
    /// Every process the turns started, in the order they were started.
    pub processes: Vec<RecordedProcess>,
    /// What the turns emitted, in order (sequence numbers left out).
    pub events: Vec<RecordedEvent>,
    /// How each command's turn ended.
    pub outcomes: Vec<RecordedOutcome>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RecordedCommand {
    pub id: String,
    pub prompt: String,
    #[serde(default)]
    pub payload: serde_json::Value,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RecordedProcess {
    pub argv: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    pub output: Vec<RecordedChunk>,
    /// Output bytes past the transcript's bound ([`MAX_RECORDED_OUTPUT_BYTES`]), not recorded.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub omitted_bytes: u64,
    pub exit: RecordedExit,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A piece of output: text when it is UTF-8, hex otherwise; `at_ms` after the process started.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecordedChunk {
    pub stream: RecordedStream,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hex: Option<String>,
    #[serde(default)]
    pub at_ms: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordedStream {
    Stdout,
    Stderr,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedExit {
    pub code: Option<i32>,
    /// `timeout`, `idle-timeout`, `cancelled` or `requested`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub killed: Option<String>,
    #[serde(default)]
    pub oom_killed: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecordedEvent {
    pub command_id: String,
    pub kind: String,
    pub payload: serde_json::Value,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecordedOutcome {
    pub command_id: String,
    /// `completed`, `failed`, `blocked` or `cancelled`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_kind: Option<String>,
}

impl Transcript {
    /// Parses a transcript, refusing another version by name.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let transcript: Transcript = serde_json::from_str(text)?;
        anyhow::ensure!(
            transcript.version == TRANSCRIPT_VERSION,
            "transcript version {} is not supported (this host reads version {TRANSCRIPT_VERSION})",
            transcript.version
        );
        Ok(transcript)
    }
}

impl RecordedChunk {
    fn new(chunk: &OutputChunk, at_ms: u64) -> Self {
        let (text, hex) = match std::str::from_utf8(&chunk.data) {
            Ok(text) => (Some(text.to_string()), None),
            Err(_) => (None, Some(hex::encode(&chunk.data))),
        };
        Self {
            stream: match chunk.stream {
                OutputStream::Stdout => RecordedStream::Stdout,
                OutputStream::Stderr => RecordedStream::Stderr,
            },
            text,
            hex,
            at_ms,
        }
    }

    fn chunk(&self) -> anyhow::Result<OutputChunk> {
        let data = match (&self.text, &self.hex) {
            (Some(text), _) => Bytes::from(text.clone()),
            (None, Some(hex)) => Bytes::from(
                hex::decode(hex).map_err(|err| anyhow::anyhow!("bad hex in a chunk: {err}"))?,
            ),
            (None, None) => Bytes::new(),
        };
        let stream = match self.stream {
            RecordedStream::Stdout => OutputStream::Stdout,
            RecordedStream::Stderr => OutputStream::Stderr,
        };
        Ok(OutputChunk { stream, data })
    }
}

impl From<&ExitInfo> for RecordedExit {
    fn from(info: &ExitInfo) -> Self {
        Self {
            code: info.code,
            killed: info.killed.map(|reason| reason.as_str().to_string()),
            oom_killed: info.oom_killed,
        }
    }
}

impl RecordedExit {
    fn info(&self) -> ExitInfo {
        let killed = self.killed.as_deref().and_then(|reason| {
            [
                KillReason::Timeout,
                KillReason::IdleTimeout,
                KillReason::Cancelled,
                KillReason::Requested,
            ]
            .into_iter()
            .find(|known| known.as_str() == reason)
        });
        ExitInfo {
            code: self.code,
            killed,
            oom_killed: self.oom_killed,
            sandbox_error: None,
        }
    }
}

/// Output a transcript records, all its processes together; the rest is counted in each process's
/// `omitted_bytes`. A transcript is held in memory until the turn ends: a flood of output must not
/// make the host hold all of it.
pub const MAX_RECORDED_OUTPUT_BYTES: usize = 16 << 20;

/// The processes recorded so far, shared by a [`RecordingDriver`] and its sandboxes.
#[derive(Default)]
pub struct ProcessLog {
    processes: Vec<RecordedProcess>,
    output_bytes: usize,
}

impl ProcessLog {
    fn record(&mut self, index: usize, chunk: &OutputChunk, at_ms: u64) {
        let process = &mut self.processes[index];
        if self.output_bytes + chunk.data.len() > MAX_RECORDED_OUTPUT_BYTES {
            process.omitted_bytes += chunk.data.len() as u64;
            return;
        }
        self.output_bytes += chunk.data.len();
        process.output.push(RecordedChunk::new(chunk, at_ms));
    }
}

/// A driver that records every process started through it, then forwards to `inner`; or, made
/// with [`RecordingDriver::passthrough`], only forwards.
#[derive(Clone)]
pub struct RecordingDriver<D> {
    inner: D,
    log: Option<Arc<Mutex<ProcessLog>>>,
}

impl<D> RecordingDriver<D> {
    pub fn new(inner: D) -> Self {
        Self {
            inner,
            log: Some(Arc::default()),
        }
    }

    /// Records nothing: the same driver type for a caller that records only when asked.
    pub fn passthrough(inner: D) -> Self {
        Self { inner, log: None }
    }

    pub fn inner(&self) -> &D {
        &self.inner
    }

    /// The processes recorded so far, in the order they were started.
    pub fn processes(&self) -> Vec<RecordedProcess> {
        self.log
            .as_ref()
            .map(|log| log.lock().unwrap().processes.clone())
            .unwrap_or_default()
    }
}

#[async_trait]
impl<D: SandboxDriver> SandboxDriver for RecordingDriver<D> {
    async fn open(&self, spec: &SandboxSpec) -> Result<Arc<dyn Sandbox>, OpenError> {
        let inner = self.inner.open(spec).await?;
        let Some(log) = &self.log else {
            return Ok(inner);
        };
        Ok(Arc::new(RecordingSandbox {
            inner,
            log: log.clone(),
        }))
    }
}

struct RecordingSandbox {
    inner: Arc<dyn Sandbox>,
    log: Arc<Mutex<ProcessLog>>,
}

#[async_trait]
impl Sandbox for RecordingSandbox {
    fn id(&self) -> &str {
        self.inner.id()
    }

    fn egress_gateway(&self) -> Option<std::net::SocketAddr> {
        self.inner.egress_gateway()
    }

    async fn exec(&self, spec: ExecSpec) -> Result<RawProcess, ExecError> {
        let mut raw = self.inner.exec(spec.clone()).await?;
        let index = {
            let mut log = self.log.lock().unwrap();
            log.processes.push(RecordedProcess {
                argv: spec.argv,
                cwd: spec.cwd,
                ..RecordedProcess::default()
            });
            log.processes.len() - 1
        };
        let started = Instant::now();
        let log = self.log.clone();
        raw.output = raw
            .output
            .inspect(move |item| {
                if let Ok(chunk) = item {
                    let at_ms = started.elapsed().as_millis() as u64;
                    log.lock().unwrap().record(index, chunk, at_ms);
                }
            })
            .boxed();
        raw.control = Arc::new(RecordingControl {
            inner: raw.control,
            log: self.log.clone(),
            index,
        });
        Ok(raw)
    }

    async fn remove(&self) -> anyhow::Result<()> {
        self.inner.remove().await
    }

    async fn is_alive(&self) -> anyhow::Result<bool> {
        self.inner.is_alive().await
    }

    async fn warm_up(&self) -> anyhow::Result<()> {
        self.inner.warm_up().await
    }
}

struct RecordingControl {
    inner: Arc<dyn ProcessControl>,
    log: Arc<Mutex<ProcessLog>>,
    index: usize,
}

#[async_trait]
impl ProcessControl for RecordingControl {
    async fn signal(&self, signal: Signal) -> anyhow::Result<()> {
        self.inner.signal(signal).await
    }

    async fn exit_info(&self) -> anyhow::Result<ExitInfo> {
        let info = self.inner.exit_info().await?;
        self.log.lock().unwrap().processes[self.index].exit = RecordedExit::from(&info);
        Ok(info)
    }
}

/// A sandbox that plays a transcript's processes back, in order: each exec must ask for the
/// command line the transcript recorded next, and gets its output and exit status at once.
pub struct ReplaySandbox {
    processes: Mutex<VecDeque<RecordedProcess>>,
    /// What went differently from the transcript, in order.
    mismatches: Mutex<Vec<String>>,
}

impl ReplaySandbox {
    pub fn new(transcript: &Transcript) -> Self {
        Self {
            processes: Mutex::new(transcript.processes.iter().cloned().collect()),
            mismatches: Mutex::default(),
        }
    }

    /// Execs that did not match the transcript, and recorded processes never asked for.
    pub fn mismatches(&self) -> Vec<String> {
        let mut all = self.mismatches.lock().unwrap().clone();
        let left = self.processes.lock().unwrap();
        if let Some(next) = left.front() {
            all.push(format!(
                "{} recorded process(es) were never started, the first `{}`",
                left.len(),
                next.argv.join(" ")
            ));
        }
        all
    }
}

#[async_trait]
impl Sandbox for ReplaySandbox {
    fn id(&self) -> &str {
        "replay"
    }

    async fn exec(&self, spec: ExecSpec) -> Result<RawProcess, ExecError> {
        let next = {
            let mut processes = self.processes.lock().unwrap();
            let matches = processes.front().is_some_and(|next| next.argv == spec.argv);
            matches.then(|| processes.pop_front()).flatten()
        };
        let asked = spec.argv.join(" ");
        let Some(process) = next else {
            let message =
                format!("the plugin started `{asked}`, which the transcript does not have next");
            self.mismatches.lock().unwrap().push(message.clone());
            return Err(ExecError::SpawnFailed(format!("replay: {message}")));
        };
        let chunks: Vec<anyhow::Result<OutputChunk>> =
            process.output.iter().map(RecordedChunk::chunk).collect();
        Ok(RawProcess {
            output: futures::stream::iter(chunks).boxed(),
            stdin: Some(Box::pin(tokio::io::sink())),
            control: Arc::new(ReplayedExit(process.exit.info())),
        })
    }

    async fn remove(&self) -> anyhow::Result<()> {
        Ok(())
    }

    async fn is_alive(&self) -> anyhow::Result<bool> {
        Ok(true)
    }
}

struct ReplayedExit(ExitInfo);

#[async_trait]
impl ProcessControl for ReplayedExit {
    async fn signal(&self, _signal: Signal) -> anyhow::Result<()> {
        Ok(())
    }

    async fn exit_info(&self) -> anyhow::Result<ExitInfo> {
        Ok(self.0.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_round_trip_as_text_or_hex() {
        for data in [&b"hello\n"[..], &[0xff, 0x00, 0x41][..]] {
            let chunk = OutputChunk {
                stream: OutputStream::Stderr,
                data: Bytes::copy_from_slice(data),
            };
            let recorded = RecordedChunk::new(&chunk, 5);
            let json = serde_json::to_string(&recorded).unwrap();
            let back: RecordedChunk = serde_json::from_str(&json).unwrap();
            let replayed = back.chunk().unwrap();
            assert_eq!(&replayed.data[..], data);
            assert_eq!(replayed.stream, OutputStream::Stderr);
        }
    }

    #[test]
    fn output_past_the_bound_is_counted_not_recorded() {
        let mut log = ProcessLog::default();
        log.processes.push(RecordedProcess::default());
        log.processes.push(RecordedProcess::default());
        let chunk = |len: usize| OutputChunk {
            stream: OutputStream::Stdout,
            data: Bytes::from(vec![b'a'; len]),
        };
        log.record(0, &chunk(MAX_RECORDED_OUTPUT_BYTES - 10), 0);
        log.record(0, &chunk(11), 1);
        // The bound is the transcript's, not each process's: the next process is cut too, but a
        // chunk that still fits is kept.
        log.record(1, &chunk(10), 2);
        log.record(1, &chunk(1), 3);
        assert_eq!(log.processes[0].output.len(), 1);
        assert_eq!(log.processes[0].omitted_bytes, 11);
        assert_eq!(log.processes[1].output.len(), 1);
        assert_eq!(log.processes[1].omitted_bytes, 1);
        let json = serde_json::to_value(&log.processes[1]).unwrap();
        assert_eq!(json["omitted_bytes"], 1);
        let json = serde_json::to_value(RecordedProcess::default()).unwrap();
        assert!(json.get("omitted_bytes").is_none(), "{json}");
    }

    #[tokio::test]
    async fn a_replay_hands_out_the_recorded_processes_in_order_and_names_a_difference() {
        let transcript = Transcript {
            version: TRANSCRIPT_VERSION,
            processes: vec![RecordedProcess {
                argv: vec!["sh".into(), "-c".into(), "echo hi".into()],
                output: vec![RecordedChunk {
                    stream: RecordedStream::Stdout,
                    text: Some("hi\n".into()),
                    hex: None,
                    at_ms: 0,
                }],
                exit: RecordedExit {
                    code: Some(3),
                    ..RecordedExit::default()
                },
                ..RecordedProcess::default()
            }],
            ..Transcript::default()
        };
        let sandbox = ReplaySandbox::new(&transcript);
        let exec = |argv: &[&str]| ExecSpec {
            argv: argv.iter().map(|arg| arg.to_string()).collect(),
            ..ExecSpec::default()
        };
        let mut raw = sandbox.exec(exec(&["sh", "-c", "echo hi"])).await.unwrap();
        let chunk = raw.output.next().await.unwrap().unwrap();
        assert_eq!(&chunk.data[..], b"hi\n");
        assert_eq!(raw.control.exit_info().await.unwrap().code, Some(3));
        assert!(sandbox.mismatches().is_empty());

        let err = sandbox.exec(exec(&["ls"])).await.err().unwrap();
        assert!(err.to_string().contains("`ls`"), "{err}");
        assert_eq!(sandbox.mismatches().len(), 1);
        assert!(Transcript::parse(r#"{"version": 9, "config": {}, "commands": [], "processes": [], "events": [], "outcomes": []}"#)
            .unwrap_err()
            .to_string()
            .contains("version 9"));
    }
}
