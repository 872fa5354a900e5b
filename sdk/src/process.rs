//! Processes in the run's sandbox: a builder, streamed output and a line iterator.

use std::time::Duration;

use crate::bindings::backend::aac::plugin::sandbox::{self, StdinMode};
pub use crate::bindings::backend::aac::plugin::sandbox::{
    ExecError, ExecRequest, ExitStatus, KillReason, OutputChunk, OutputStream,
};
use crate::events::kinds::WellKnown;
use crate::exit::Exit;

/// Which output stream a chunk or line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    /// The event kind for a line of this stream: `output.stdout` or `output.stderr`.
    pub fn event_kind(self) -> &'static str {
        match self {
            Stream::Stdout => "output.stdout",
            Stream::Stderr => "output.stderr",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl From<OutputStream> for Stream {
    fn from(stream: OutputStream) -> Self {
        match stream {
            OutputStream::Stdout => Stream::Stdout,
            OutputStream::Stderr => Stream::Stderr,
        }
    }
}

/// Longest line kept whole, in bytes: the rest of a longer line is counted, not kept, so a process
/// printing one endless line cannot exhaust the plugin's memory.
pub const MAX_LINE_BYTES: usize = 4 << 20;

/// One line of output, without its line ending. Invalid UTF-8 is replaced by U+FFFD and counted,
/// never dropped silently.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    pub stream: Stream,
    pub text: String,
    /// Size of the line as the process printed it (without its line ending).
    pub bytes: usize,
    /// Bytes of it kept in `text` (before UTF-8 repair): less than `bytes` past [`MAX_LINE_BYTES`].
    pub kept_bytes: usize,
    /// Bytes of the kept part that were not valid UTF-8.
    pub invalid_utf8_bytes: usize,
}

/// Builds an [`ExecRequest`]. The sandbox (image, mounts, network) is the runtime profile's choice.
#[derive(Clone, Debug)]
pub struct Command {
    request: ExecRequest,
}

impl Command {
    pub fn new(program: impl Into<String>) -> Self {
        Self {
            request: ExecRequest {
                argv: vec![program.into()],
                env: Vec::new(),
                cwd: None,
                stdin: StdinMode::Null,
                timeout_ms: None,
                idle_timeout_ms: None,
            },
        }
    }

    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.request.argv.push(arg.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.request.argv.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.request.env.push((key.into(), value.into()));
        self
    }

    /// Adds every `(name, value)` pair, e.g. a settings type's `env` map.
    pub fn envs<I, K, V>(mut self, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        self.request
            .env
            .extend(vars.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    pub fn cwd(mut self, dir: impl Into<String>) -> Self {
        self.request.cwd = Some(dir.into());
        self
    }

    /// Gives the process a stdin pipe to write with [`Process::write_stdin`].
    pub fn piped_stdin(mut self) -> Self {
        self.request.stdin = StdinMode::Piped;
        self
    }

    /// Kills the process when it runs longer than `timeout`.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.request.timeout_ms = Some(duration_ms(timeout));
        self
    }

    /// Kills the process when it prints nothing for `idle`.
    pub fn idle_timeout(mut self, idle: Duration) -> Self {
        self.request.idle_timeout_ms = Some(duration_ms(idle));
        self
    }

    /// [`timeout`](Self::timeout) in milliseconds, as settings hold it; `None` sets no timeout.
    pub fn timeout_ms(mut self, ms: Option<u64>) -> Self {
        self.request.timeout_ms = ms;
        self
    }

    /// [`idle_timeout`](Self::idle_timeout) in milliseconds; `None` sets no idle timeout.
    pub fn idle_timeout_ms(mut self, ms: Option<u64>) -> Self {
        self.request.idle_timeout_ms = ms;
        self
    }

    pub fn request(&self) -> &ExecRequest {
        &self.request
    }

    /// Starts the process in the sandbox.
    pub fn spawn(&self) -> Result<Process, ExecError> {
        sandbox::exec(&self.request).map(|inner| Process {
            inner,
            partial: [Vec::new(), Vec::new()],
            partial_cut: [0, 0],
            ready: std::collections::VecDeque::new(),
            ended: false,
        })
    }
}

fn duration_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// A running process. Dropping it kills the process.
pub struct Process {
    inner: sandbox::Process,
    /// Bytes of an unfinished line, per stream.
    partial: [Vec<u8>; 2],
    /// Bytes of that line past [`MAX_LINE_BYTES`], counted and not kept.
    partial_cut: [usize; 2],
    /// Complete lines not yet handed out.
    ready: std::collections::VecDeque<Line>,
    ended: bool,
}

impl Process {
    /// The next raw chunk of output; `None` at the end. Each stream's chunks keep their order;
    /// between stdout and stderr the order may differ from the order of the writes.
    pub fn read_chunk(&mut self) -> Option<OutputChunk> {
        self.inner.read()
    }

    /// The next complete line from either stream, in the order lines were completed.
    /// A final line without a newline is returned when its stream ends.
    pub fn next_line(&mut self) -> Option<Line> {
        loop {
            if let Some(line) = self.ready.pop_front() {
                return Some(line);
            }
            if self.ended {
                return None;
            }
            match self.inner.read() {
                Some(chunk) => self.split_lines(chunk.stream.into(), &chunk.data),
                None => {
                    self.ended = true;
                    for stream in [Stream::Stdout, Stream::Stderr] {
                        let rest = std::mem::take(&mut self.partial[stream.index()]);
                        let cut = std::mem::take(&mut self.partial_cut[stream.index()]);
                        if !rest.is_empty() || cut > 0 {
                            self.ready.push_back(line_of(stream, &rest, cut));
                        }
                    }
                }
            }
        }
    }

    /// An iterator over [`next_line`](Process::next_line).
    pub fn lines(&mut self) -> Lines<'_> {
        Lines { process: self }
    }

    pub fn write_stdin(&self, data: &[u8]) -> Result<(), String> {
        self.inner.write_stdin(data)
    }

    pub fn close_stdin(&self) {
        self.inner.close_stdin()
    }

    /// Waits for the process to exit and returns its status; unread output is discarded.
    pub fn wait(&self) -> ExitStatus {
        self.inner.wait()
    }

    pub fn kill(&self) {
        self.inner.kill()
    }

    /// Waits for the process to exit, emits the well-known `process.exited` event and returns
    /// how it ended, e.g. for [`Exit::outcome`].
    pub fn finish(&self) -> Exit {
        let exit = Exit::from(self.wait());
        crate::events::kinds::ProcessExited::from(&exit).emit();
        exit
    }

    fn split_lines(&mut self, stream: Stream, data: &[u8]) {
        let mut rest = data;
        while let Some(newline) = rest.iter().position(|&b| b == b'\n') {
            self.keep(stream, &rest[..newline]);
            let bytes = std::mem::take(&mut self.partial[stream.index()]);
            let cut = std::mem::take(&mut self.partial_cut[stream.index()]);
            self.ready.push_back(line_of(stream, &bytes, cut));
            rest = &rest[newline + 1..];
        }
        self.keep(stream, rest);
    }

    /// Adds `data` to the stream's unfinished line, up to [`MAX_LINE_BYTES`]; the rest is counted.
    fn keep(&mut self, stream: Stream, data: &[u8]) {
        let partial = &mut self.partial[stream.index()];
        let room = MAX_LINE_BYTES.saturating_sub(partial.len()).min(data.len());
        partial.extend_from_slice(&data[..room]);
        self.partial_cut[stream.index()] += data.len() - room;
    }
}

fn line_of(stream: Stream, bytes: &[u8], cut: usize) -> Line {
    let bytes = if cut == 0 {
        bytes.strip_suffix(b"\r").unwrap_or(bytes)
    } else {
        bytes
    };
    let (text, invalid_utf8_bytes) = match std::str::from_utf8(bytes) {
        Ok(text) => (text.to_string(), 0),
        Err(_) => (
            String::from_utf8_lossy(bytes).into_owned(),
            invalid_utf8_bytes(bytes),
        ),
    };
    Line {
        stream,
        text,
        bytes: bytes.len() + cut,
        kept_bytes: bytes.len(),
        invalid_utf8_bytes,
    }
}

/// How many bytes of `bytes` are not part of a valid UTF-8 sequence.
fn invalid_utf8_bytes(mut bytes: &[u8]) -> usize {
    let mut invalid = 0;
    while !bytes.is_empty() {
        match std::str::from_utf8(bytes) {
            Ok(_) => break,
            Err(err) => {
                let bad = err.error_len().unwrap_or(bytes.len() - err.valid_up_to());
                invalid += bad;
                bytes = &bytes[err.valid_up_to() + bad..];
            }
        }
    }
    invalid
}

/// Lines of a process's output; see [`Process::next_line`].
pub struct Lines<'a> {
    process: &'a mut Process,
}

impl Iterator for Lines<'_> {
    type Item = Line;

    fn next(&mut self) -> Option<Line> {
        self.process.next_line()
    }
}

impl ExitStatus {
    /// True when the process exited by itself with code 0.
    pub fn success(&self) -> bool {
        self.code == Some(0) && !self.killed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_utf8_is_replaced_and_counted() {
        let line = line_of(Stream::Stdout, b"ok \xff\xfe then \xe2\x82", 0);
        assert_eq!(line.text, "ok \u{FFFD}\u{FFFD} then \u{FFFD}");
        assert_eq!(line.invalid_utf8_bytes, 4);
        assert_eq!(line.bytes, 13);
    }

    #[test]
    fn a_cut_line_counts_what_it_lost() {
        let line = line_of(Stream::Stderr, b"abc", 10);
        assert_eq!(
            (line.bytes, line.kept_bytes, line.invalid_utf8_bytes),
            (13, 3, 0)
        );
    }
}
