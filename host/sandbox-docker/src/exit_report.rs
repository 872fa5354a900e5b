//! A process's exit, told by its wrapper shell instead of by Docker.
//!
//! Docker ends an exec's output stream only once its exit event has gone from the shim through
//! containerd to dockerd: ~40 ms after the program's last write on an idle machine, more on a busy
//! one, for every process. So the wrapper ([`START_FUNCTION`](super::exec_start::START_FUNCTION))
//! runs the program as its child and, when it has exited, writes one report line to stdout and one
//! to stderr: `␞aac-exit:NONCE:CODE` (␞: the record separator, 0x1E). Each pipe keeps the order of
//! its writes, so a stream's report comes after everything the program wrote to it; once both are
//! in, the output is complete and the exit code known, and the stream ends there.
//!
//! Output that ends in what could be the start of a report (0x1E, then `aac-exit:`…) is held back
//! until the next chunk shows whether it is one, at most [`HOLD`]: a process waiting for input
//! after a prompt is never kept waiting longer. (A report split across two reads further apart than
//! that reaches the plugin as output, and the exit code is then Docker's.)
//!
//! The nonce is new for every process and only its wrapper knows it, so output cannot end a
//! process by accident. A program that finds its parent's nonce can end its own stream early and
//! keep running — what it can already do by closing its output and detaching: it gains nothing.
//! When no report comes (the wrapper was killed, or could not write it), the stream ends as Docker
//! ends it and the exit code is asked of Docker, as before.

use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use futures::StreamExt;

use super::exec_start::Chunks;
use aac_sandbox::{OutputChunk, OutputStream};

/// The longest exit code text after the prefix: `-2147483648` and the newline.
const MAX_CODE_TEXT: usize = 12;

/// The longest output is held back waiting to see whether it starts a report.
const HOLD: std::time::Duration = std::time::Duration::from_millis(20);

/// The exit code the wrapper reported, shared with the process's control (see [`watch`]).
#[derive(Clone, Default)]
pub(super) struct ReportedExit(Arc<Mutex<Option<i32>>>);

impl ReportedExit {
    pub(super) fn code(&self) -> Option<i32> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set(&self, code: i32) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(code);
    }
}

/// A fresh nonce for one process's report.
pub(super) fn nonce() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// The most bytes kept of what follows a stream's report: what a spare's shell writes next is one
/// short line (see `spare`); anything longer is not that line.
const MAX_AFTER: usize = 128;

/// What one stream has shown of its report so far.
#[derive(Default)]
struct StreamState {
    /// Bytes held back: they may be the start of the report line.
    held: BytesMut,
    /// The code once this stream's report line is complete.
    reported: Option<i32>,
    /// What came after the report line in what was read (at most [`MAX_AFTER`] + 1 bytes).
    after: BytesMut,
}

impl StreamState {
    fn keep_after(&mut self, data: &[u8]) {
        let room = (MAX_AFTER + 1).saturating_sub(self.after.len());
        self.after.extend_from_slice(&data[..data.len().min(room)]);
    }
}

/// Splits the reports off a process's output.
pub(super) struct ExitReports {
    prefix: Vec<u8>,
    streams: [StreamState; 2],
    exit: ReportedExit,
}

impl ExitReports {
    pub(super) fn new(nonce: &str, exit: ReportedExit) -> Self {
        Self {
            prefix: format!("\u{1e}aac-exit:{nonce}:").into_bytes(),
            streams: Default::default(),
            exit,
        }
    }

    /// Both reports are in: the output is complete.
    fn complete(&self) -> bool {
        self.streams.iter().all(|s| s.reported.is_some())
    }

    /// Takes one chunk of output; returns what of it to hand on now (a slice of `data`: output
    /// without a report goes on uncopied).
    fn feed(&mut self, stream: OutputStream, data: Bytes) -> Option<Bytes> {
        let prefix = &self.prefix;
        let state = &mut self.streams[index(stream)];
        if state.reported.is_some() {
            // Written after the program exited (a child it left behind, or the shell's next
            // line): not its output.
            state.keep_after(&data);
            return None;
        }
        let data = if state.held.is_empty() {
            data
        } else {
            let mut joined = std::mem::take(&mut state.held);
            joined.extend_from_slice(&data);
            joined.freeze()
        };
        // `data[..end]` is handed on.
        let mut end = data.len();
        let mut from = 0;
        while let Some(at) = find(&data[from..], prefix).map(|at| from + at) {
            match parse_code(&data[at + prefix.len()..]) {
                Code::Complete(code, line_len) => {
                    state.reported = Some(code);
                    state.keep_after(&data[at + prefix.len() + line_len..]);
                    end = at;
                    break;
                }
                Code::Incomplete => {
                    state.held = BytesMut::from(&data[at..]);
                    end = at;
                    break;
                }
                // Not a report line after all: it is output, and the search goes on past it.
                Code::NotAReport => from = at + 1,
            }
        }
        if state.reported.is_none() && state.held.is_empty() {
            let keep = partial_prefix_len(&data[..end], prefix);
            state.held = BytesMut::from(&data[end - keep..end]);
            end -= keep;
        }
        if self.complete() {
            // The two lines carry the same code; stdout's is the one taken.
            self.exit.set(self.streams[0].reported.unwrap_or_default());
        }
        (end > 0).then(|| data.slice(..end))
    }

    /// Some output is held back.
    fn holding(&self) -> bool {
        self.streams.iter().any(|s| !s.held.is_empty())
    }

    /// The stream ended without both reports: what was held back is output after all. A code
    /// one stream reported still counts.
    fn finish(&mut self) -> Vec<OutputChunk> {
        if let Some(code) = self.streams.iter().find_map(|s| s.reported) {
            self.exit.set(code);
        }
        self.release()
    }

    /// What followed each stream's report (stdout's, stderr's).
    fn take_after(&mut self) -> [Bytes; 2] {
        let [stdout, stderr] = &mut self.streams;
        [
            std::mem::take(&mut stdout.after).freeze(),
            std::mem::take(&mut stderr.after).freeze(),
        ]
    }

    /// What is held back, as output.
    fn release(&mut self) -> Vec<OutputChunk> {
        [OutputStream::Stdout, OutputStream::Stderr]
            .into_iter()
            .filter_map(|stream| {
                let held = std::mem::take(&mut self.streams[index(stream)].held);
                (!held.is_empty()).then(|| OutputChunk {
                    stream,
                    data: held.freeze(),
                })
            })
            .collect()
    }
}

/// A stream's slot in per-stream arrays: stdout's, then stderr's.
pub(super) fn index(stream: OutputStream) -> usize {
    match stream {
        OutputStream::Stdout => 0,
        OutputStream::Stderr => 1,
    }
}

enum Code {
    /// The code, and the length of the rest of the line (its newline included).
    Complete(i32, usize),
    Incomplete,
    NotAReport,
}

/// The code and newline that end a report line.
fn parse_code(after: &[u8]) -> Code {
    let Some(end) = after.iter().position(|&b| b == b'\n') else {
        let plausible = after.len() < MAX_CODE_TEXT
            && after
                .iter()
                .enumerate()
                .all(|(i, &b)| b.is_ascii_digit() || (i == 0 && b == b'-'));
        return if plausible {
            Code::Incomplete
        } else {
            Code::NotAReport
        };
    };
    std::str::from_utf8(&after[..end])
        .ok()
        .and_then(|text| text.parse().ok())
        .map_or(Code::NotAReport, |code| Code::Complete(code, end + 1))
}

/// Where `needle` starts in `haystack`: a scan for its first byte (the record separator, rare in
/// output), then a comparison only there.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    let first = *needle.first()?;
    let mut from = 0;
    while let Some(at) = haystack[from..].iter().position(|&b| b == first) {
        let at = from + at;
        if haystack[at..].starts_with(needle) {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// How many bytes at the end of `data` are the start of `prefix` (never all of it: a whole prefix
/// is found by [`find`]).
fn partial_prefix_len(data: &[u8], prefix: &[u8]) -> usize {
    let window = prefix.len().saturating_sub(1).min(data.len());
    // Only a record separator in the last few bytes can start one.
    let Some(start) = data[data.len() - window..]
        .iter()
        .position(|&b| Some(&b) == prefix.first())
    else {
        return 0;
    };
    (1..=window - start)
        .rev()
        .find(|&len| data.ends_with(&prefix[..len]))
        .unwrap_or(0)
}

/// Takes an exec's output once its process's output is complete: the rest of the stream, and
/// what followed the report on stdout and on stderr (see `spare`: a spare's shell goes on).
pub(super) type AfterExit = Box<dyn FnOnce(Chunks, [Bytes; 2]) + Send>;

/// `output` with the reports taken off, ending once both are in; then `after_exit`, if given,
/// takes the rest of the stream.
pub(super) fn watch(output: Chunks, reports: ExitReports, after_exit: Option<AfterExit>) -> Chunks {
    enum State {
        Reading,
        /// Handing on what was held back; then reading again (`true`) or the end.
        Flushing(std::vec::IntoIter<OutputChunk>, bool),
    }
    futures::stream::unfold(
        (output, reports, State::Reading, after_exit),
        |(mut output, mut reports, mut state, after_exit)| async move {
            loop {
                if let State::Flushing(rest, more) = &mut state {
                    match rest.next() {
                        Some(chunk) => {
                            return Some((Ok(chunk), (output, reports, state, after_exit)));
                        }
                        None if *more => state = State::Reading,
                        None => return None,
                    }
                }
                if reports.complete() {
                    if let Some(after_exit) = after_exit {
                        after_exit(output, reports.take_after());
                    }
                    return None;
                }
                let next = if reports.holding() {
                    match tokio::time::timeout(HOLD, output.next()).await {
                        Ok(next) => next,
                        Err(_) => {
                            state = State::Flushing(reports.release().into_iter(), true);
                            continue;
                        }
                    }
                } else {
                    output.next().await
                };
                match next {
                    Some(Ok(chunk)) => {
                        if let Some(data) = reports.feed(chunk.stream, chunk.data) {
                            let chunk = OutputChunk {
                                stream: chunk.stream,
                                data,
                            };
                            return Some((Ok(chunk), (output, reports, state, after_exit)));
                        }
                    }
                    Some(Err(err)) => {
                        return Some((Err(err), (output, reports, state, after_exit)));
                    }
                    None => state = State::Flushing(reports.finish().into_iter(), false),
                }
            }
        },
    )
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONCE: &str = "0123456789abcdef0123456789abcdef";

    fn chunk(stream: OutputStream, data: &str) -> anyhow::Result<OutputChunk> {
        Ok(OutputChunk {
            stream,
            data: Bytes::copy_from_slice(data.as_bytes()),
        })
    }

    /// Runs `chunks` through the watch: the output handed on per stream, and the reported code.
    async fn through(chunks: Vec<(OutputStream, &str)>) -> (String, String, Option<i32>) {
        let exit = ReportedExit::default();
        let input: Vec<_> = chunks.into_iter().map(|(s, d)| chunk(s, d)).collect();
        let mut output = watch(
            futures::stream::iter(input).boxed(),
            ExitReports::new(NONCE, exit.clone()),
            None,
        );
        let (mut out, mut err) = (String::new(), String::new());
        while let Some(chunk) = output.next().await {
            let chunk = chunk.unwrap();
            let text = String::from_utf8(chunk.data.to_vec()).unwrap();
            match chunk.stream {
                OutputStream::Stdout => out.push_str(&text),
                OutputStream::Stderr => err.push_str(&text),
            }
        }
        (out, err, exit.code())
    }

    fn report(code: i32) -> String {
        format!("\u{1e}aac-exit:{NONCE}:{code}\n")
    }

    #[tokio::test]
    async fn both_reports_end_the_output_with_the_code() {
        use OutputStream::{Stderr, Stdout};
        let r = report(3);
        let (out, err, code) = through(vec![
            (Stdout, "hello\n"),
            (Stderr, "warn"),
            (Stdout, &format!("no newline{r}")),
            (Stderr, &r),
            (Stdout, "after the end\n"),
        ])
        .await;
        assert_eq!(out, "hello\nno newline");
        assert_eq!(err, "warn");
        assert_eq!(code, Some(3));
    }

    #[tokio::test]
    async fn a_report_split_anywhere_is_still_found() {
        use OutputStream::{Stderr, Stdout};
        let line = format!("output{}", report(137));
        for cut in 1..line.len() {
            let (first, second) = line.split_at(cut);
            let r = report(137);
            let (out, err, code) =
                through(vec![(Stdout, first), (Stderr, &r), (Stdout, second)]).await;
            assert_eq!(
                (out.as_str(), err.as_str(), code),
                ("output", "", Some(137)),
                "cut {cut}"
            );
        }
    }

    #[tokio::test]
    async fn output_that_only_looks_like_a_report_is_output() {
        use OutputStream::{Stderr, Stdout};
        let forged = "\u{1e}aac-exit:ffffffffffffffffffffffffffffffff:0\n";
        let near = format!(
            "\u{1e}aac-exit:{NONCE}:zero\n\u{1e}aac-exit:{NONCE}:1234567890123\n\
             aac-exit:{NONCE}:0\n"
        );
        let (out, err, code) = through(vec![
            (Stdout, forged),
            (Stdout, &near),
            (Stdout, "\u{1e}aac-ex"),
            (Stderr, "\u{1e}aac-exit:"),
        ])
        .await;
        assert_eq!(out, format!("{forged}{near}\u{1e}aac-ex"));
        assert_eq!(err, "\u{1e}aac-exit:");
        assert_eq!(code, None, "no report: the code is Docker's to tell");
    }

    /// A prompt that ends like the start of a report is handed on within the hold bound, while the
    /// process waits for input.
    #[tokio::test(start_paused = true)]
    async fn a_prompt_is_not_held_past_the_bound() {
        let (tx, rx) = futures::channel::mpsc::unbounded();
        let exit = ReportedExit::default();
        let mut output = watch(rx.boxed(), ExitReports::new(NONCE, exit.clone()), None);
        tx.unbounded_send(chunk(OutputStream::Stdout, "name?\u{1e}aac"))
            .unwrap();
        let first = output.next().await.unwrap().unwrap();
        assert_eq!(&first.data[..], b"name?");
        let held = output.next().await.unwrap().unwrap();
        assert_eq!(&held.data[..], "\u{1e}aac".as_bytes());
        let r = report(0);
        tx.unbounded_send(chunk(OutputStream::Stdout, &r)).unwrap();
        tx.unbounded_send(chunk(OutputStream::Stderr, &r)).unwrap();
        assert!(output.next().await.is_none());
        assert_eq!(exit.code(), Some(0));
    }

    #[tokio::test]
    async fn one_report_then_the_end_still_gives_the_code() {
        use OutputStream::{Stderr, Stdout};
        let r = report(0);
        let (out, err, code) =
            through(vec![(Stdout, &format!("done\n{r}")), (Stderr, "tail")]).await;
        assert_eq!(
            (out.as_str(), err.as_str(), code),
            ("done\n", "tail", Some(0))
        );
    }

    #[tokio::test]
    async fn what_follows_the_reports_goes_to_the_taker_with_the_rest_of_the_stream() {
        use OutputStream::{Stderr, Stdout};
        let r = report(0);
        let input = vec![
            chunk(Stdout, &format!("out{r}next")),
            chunk(Stderr, "err"),
            chunk(Stdout, " line\n"),
            chunk(Stderr, &format!("{r}x")),
            chunk(Stdout, "unread"),
        ];
        let (taken_tx, taken_rx) = tokio::sync::oneshot::channel();
        let taker: AfterExit = Box::new(move |rest, after| {
            let _ = taken_tx.send((rest, after));
        });
        let exit = ReportedExit::default();
        let output = watch(
            futures::stream::iter(input).boxed(),
            ExitReports::new(NONCE, exit.clone()),
            Some(taker),
        );
        let handed: Vec<_> = output.map(|c| c.unwrap().data).collect().await;
        assert_eq!(handed, vec![Bytes::from("out"), Bytes::from("err")]);
        assert_eq!(exit.code(), Some(0));
        let (rest, after) = taken_rx.await.expect("the rest was handed over");
        assert_eq!(after, [Bytes::from("next line\n"), Bytes::from("x")]);
        let rest: Vec<_> = rest.map(|c| c.unwrap().data).collect().await;
        assert_eq!(rest, vec![Bytes::from("unread")]);
    }

    #[tokio::test]
    async fn what_follows_a_report_is_kept_only_up_to_its_bound() {
        let mut reports = ExitReports::new(NONCE, ReportedExit::default());
        let r = report(1);
        let long = "y".repeat(4 * MAX_AFTER);
        reports.feed(OutputStream::Stdout, Bytes::from(format!("{r}{long}")));
        reports.feed(OutputStream::Stdout, Bytes::from(long.clone()));
        let [stdout, _] = reports.take_after();
        assert_eq!(stdout.len(), MAX_AFTER + 1);
    }
}
