//! Spare processes: a `docker exec` started ahead of time that waits for its command line on
//! stdin. A session's next process then starts with one pipe write and a fork instead of a runc
//! exec (~70 ms on this engine). A warm pool prepares one in every container it hands out; a
//! sandbox prepares the next one in the background each time one is used.

use std::pin::Pin;

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::ExecConfig;
use futures::stream::BoxStream;
use tokio::io::AsyncWrite;

use super::deadline::{Call, CallError, bounded};
use super::exec::{PID_FILE_PREFIX, SHELL_NAME};
use crate::exec_start::START_FUNCTION;
use aac_sandbox::{ExecError, ExecSpec};

/// Waits for one line, records the shell's pid (which `exec` hands to the program), then runs the
/// line: `export 'K=V' && … start 'DIR' 'ARG' …` (`start`: see `exec_start`). `$nl` lets quoted
/// arguments carry newlines while the command stays one line. The pid file is `$1`: `$0` (the name
/// the shell puts before its own error messages) is [`SHELL_NAME`]. Runs after
/// [`START_FUNCTION`].
const SPARE_SCRIPT: &str = "nl='\n'\nIFS= read -r line && echo $$ > \"$1\" && eval \"$line\"";

/// A started exec waiting for its command.
pub(super) struct SpareExec {
    pub(super) exec_id: String,
    pub(super) pid_file: String,
    pub(super) output: BoxStream<'static, Result<LogOutput, bollard::errors::Error>>,
    pub(super) input: Pin<Box<dyn AsyncWrite + Send>>,
}

/// Starts a spare process in `container`.
pub(super) async fn start(docker: &Docker, container: &str) -> Result<SpareExec, ExecError> {
    let pid_file = format!("{PID_FILE_PREFIX}{}.pid", uuid::Uuid::new_v4().simple());
    let config = ExecConfig {
        attach_stdin: Some(true),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        tty: Some(false),
        cmd: Some(vec![
            "/bin/sh".into(),
            "-c".into(),
            format!("{START_FUNCTION}{SPARE_SCRIPT}"),
            SHELL_NAME.into(),
            pid_file.clone(),
        ]),
        ..Default::default()
    };
    let failed = |err: CallError| {
        ExecError::SpawnFailed(format!("container {container}: spare process: {err}"))
    };
    let target = format!("container {container}");
    let exec = bounded(
        Call::CreateExec,
        &target,
        docker.create_exec(container, config),
    )
    .await
    .map_err(failed)?;
    let options = StartExecOptions {
        detach: false,
        tty: false,
        output_capacity: None,
    };
    match bounded(
        Call::StartExec,
        &target,
        docker.start_exec(&exec.id, Some(options)),
    )
    .await
    .map_err(failed)?
    {
        StartExecResults::Attached { output, input } => Ok(SpareExec {
            exec_id: exec.id,
            pid_file,
            output,
            input,
        }),
        StartExecResults::Detached => Err(ExecError::SpawnFailed(
            "docker started the spare process detached".into(),
        )),
    }
}

/// The line a spare process runs for `spec` (one line, newline-terminated), its exit reported
/// with `nonce`.
pub(super) fn command_line(spec: &ExecSpec, default_cwd: &str, nonce: &str) -> String {
    let cwd = spec.cwd.as_deref().unwrap_or(default_cwd);
    let mut line = String::new();
    for (key, value) in &spec.env {
        line.push_str(&format!("export {} && ", quote(&format!("{key}={value}"))));
    }
    line.push_str(&format!("start {} {}", quote(nonce), quote(cwd)));
    for arg in &spec.argv {
        line.push(' ');
        line.push_str(&quote(arg));
    }
    line.push('\n');
    line
}

/// `arg` as one shell word inside `eval`: single-quoted, with `'` and newlines spliced in.
fn quote(arg: &str) -> String {
    format!(
        "'{}'",
        arg.replace('\'', r"'\''").replace('\n', r#"'"$nl"'"#)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_one_line_whatever_the_arguments() {
        let spec = ExecSpec {
            argv: vec!["sh".into(), "-c".into(), "echo 'a'\necho \"$HOME\"".into()],
            env: vec![("K".into(), "it's".into())],
            cwd: Some("/work space".into()),
            ..ExecSpec::default()
        };
        let line = command_line(&spec, "/workspace", "n0");
        assert_eq!(line.matches('\n').count(), 1, "{line}");
        assert!(line.ends_with('\n'));
        assert_eq!(
            line.trim_end(),
            r#"export 'K=it'\''s' && start 'n0' '/work space' 'sh' '-c' 'echo '\''a'\'''"$nl"'echo "$HOME"'"#
        );
    }
}
