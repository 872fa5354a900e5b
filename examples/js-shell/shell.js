// The `shell` backend in JavaScript: each command's prompt runs as `sh -c` in the run's workspace;
// output lines become `output.stdout` / `output.stderr` events, the process's end `process.exited`,
// and the exit reads as the Rust SDK's `Exit::outcome` does (OOM, cancelled, killed, exit code).
// Built with jco from the repository's wit/ (`cargo xtask plugins --polyglot`).
import { exec } from 'aac:plugin/sandbox@0.1.0';
import { emit } from 'aac:plugin/events@0.1.0';

const decoder = { stdout: new TextDecoder(), stderr: new TextDecoder() };

function emitEvent(kind, payload) {
  emit({ kind, payloadJson: JSON.stringify(payload) });
}

function outcome(status) {
  const failed = (failureKind, message) => ({ status: 'failed', failureKind, message });
  if (status.oomKilled) return failed('oom-killed', 'the script was killed for running out of memory');
  if (status.killReason === 'cancelled') return { status: 'cancelled', message: 'the script was cancelled' };
  if (status.killed) return failed('turn-timeout', `the script was killed: ${status.killReason ?? 'killed'}`);
  if (status.code === 0) return { status: 'completed' };
  if (status.code === undefined) return failed('agent-error', 'the script ended without an exit code');
  return failed('agent-error', `the script exited with code ${status.code}`);
}

class Session {
  constructor(run) {
    this.workspace = run.workspaceDir;
    const config = run.configJson.trim() ? JSON.parse(run.configJson) : {};
    this.shell = config.shell ?? '/bin/sh';
    this.env = Object.entries(config.env ?? {}).map(([key, value]) => [key, String(value)]);
  }

  static start(run) {
    return new Session(run);
  }

  runTurn(command) {
    let process;
    try {
      process = exec({
        argv: [this.shell, '-c', command.prompt],
        env: this.env,
        cwd: this.workspace,
        stdin: 'null',
      });
    } catch (err) {
      return { status: 'failed', failureKind: 'agent-error', message: `could not start: ${JSON.stringify(err.payload ?? String(err))}` };
    }
    const partial = { stdout: '', stderr: '' };
    for (let chunk = process.read(); chunk !== undefined; chunk = process.read()) {
      const text = partial[chunk.stream] + decoder[chunk.stream].decode(chunk.data, { stream: true });
      const lines = text.split('\n');
      partial[chunk.stream] = lines.pop();
      for (const line of lines) emitEvent(`output.${chunk.stream}`, { text: line.replace(/\r$/, '') });
    }
    for (const stream of ['stdout', 'stderr']) {
      const rest = partial[stream] + decoder[stream].decode();
      if (rest) emitEvent(`output.${stream}`, { text: rest });
    }
    const status = process.wait();
    emitEvent('process.exited', {
      code: status.code ?? null,
      killed: status.killed,
      kill_reason: status.killReason ?? null,
      oom_killed: status.oomKilled,
    });
    return outcome(status);
  }

  close() {}
}

export const adapter = {
  describe() {
    return { name: 'js-shell', version: '0.1.0', description: 'The shell backend, in JavaScript.' };
  },
  Session,
};
