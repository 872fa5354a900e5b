// `js-shell`: an aac-host backend adapter in JavaScript (contract aac:plugin@0.2.1, written by
// `aac-host plugin new --lang js`). Each command's prompt runs as `sh -c` in the run's workspace;
// output lines become `output.stdout` / `output.stderr` events, the process's end
// `process.exited`, and the exit reads as the Rust SDK's `Exit::outcome` does (OOM, cancelled,
// killed, exit code). A bad config refuses the session as `config-invalid`, naming the setting.
// Replace `runTurn` with your agent's CLI; build with `aac-host plugin build` (jco 1.34.0).
//
// Configuration (the run's or the runtime profile's `config`, all optional): `shell` (default
// /bin/sh), `timeout_ms`, `idle_timeout_ms`, `env` (an object of strings).
import { exec } from 'aac:plugin/sandbox@0.2.1';
import { emit, outputOpen, skippedOutput } from 'aac:plugin/events@0.2.1';

// Output events not built because the host would drop them (`output-open` false): reported with
// `skipped-output` before the next other event and at the end of the turn, so they stay counted.
let skipped = 0n;

function reportSkipped() {
  if (skipped > 0n) {
    skippedOutput(skipped);
    skipped = 0n;
  }
}

function emitEvent(kind, payload) {
  reportSkipped();
  emit({ kind, payloadJson: JSON.stringify(payload) });
}

function emitOutput(stream, text) {
  if (!outputOpen()) {
    skipped += 1n;
    return;
  }
  emit({ kind: `output.${stream}`, payloadJson: JSON.stringify({ text }) });
}

// A `start-error` (thrown: jco turns `{ payload }` into the result's error).
function configInvalid(message) {
  return { payload: { kind: 'config-invalid', message } };
}

// The run config as settings; a wrong value throws `config-invalid` naming the key.
function settings(configJson) {
  let config = {};
  if (configJson.trim()) {
    try {
      config = JSON.parse(configJson);
    } catch (err) {
      throw configInvalid(`the run config is not valid JSON: ${err.message}`);
    }
  }
  if (config === null || typeof config !== 'object' || Array.isArray(config)) {
    throw configInvalid('the run config must be a JSON object');
  }
  const optional = (key, check, what) => {
    const value = config[key];
    if (value === undefined || value === null) return undefined;
    if (!check(value)) throw configInvalid(`config \`${key}\`: expected ${what}`);
    return value;
  };
  const milliseconds = (key) => {
    const value = optional(key, (v) => Number.isSafeInteger(v) && v >= 0, 'a non-negative integer');
    return value === undefined ? undefined : BigInt(value);
  };
  const env = optional('env', (v) => typeof v === 'object' && !Array.isArray(v), 'an object') ?? {};
  for (const [key, value] of Object.entries(env)) {
    if (typeof value !== 'string') throw configInvalid(`config \`env.${key}\`: expected a string`);
  }
  return {
    shell: optional('shell', (v) => typeof v === 'string', 'a string') ?? '/bin/sh',
    timeoutMs: milliseconds('timeout_ms'),
    idleTimeoutMs: milliseconds('idle_timeout_ms'),
    env: Object.entries(env),
  };
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
    this.settings = settings(run.configJson);
  }

  static start(run) {
    return new Session(run);
  }

  runTurn(command) {
    let process;
    try {
      process = exec({
        argv: [this.settings.shell, '-c', command.prompt],
        env: this.settings.env,
        cwd: this.workspace,
        stdin: 'null',
        timeoutMs: this.settings.timeoutMs,
        idleTimeoutMs: this.settings.idleTimeoutMs,
      });
    } catch (err) {
      const cause = err.payload ? `${err.payload.tag}: ${err.payload.val}` : String(err);
      return { status: 'failed', failureKind: 'agent-error', message: `could not start: ${cause}` };
    }
    const decoder = { stdout: new TextDecoder(), stderr: new TextDecoder() };
    const partial = { stdout: '', stderr: '' };
    for (let chunk = process.read(); chunk !== undefined; chunk = process.read()) {
      const text = partial[chunk.stream] + decoder[chunk.stream].decode(chunk.data, { stream: true });
      const lines = text.split('\n');
      partial[chunk.stream] = lines.pop();
      for (const line of lines) emitOutput(chunk.stream, line.replace(/\r$/, ''));
    }
    for (const stream of ['stdout', 'stderr']) {
      const rest = partial[stream] + decoder[stream].decode();
      if (rest) emitOutput(stream, rest);
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
    return { name: 'js-shell', version: '0.1.0', description: 'Runs each prompt as a shell script (JavaScript).' };
  },
  Session,
};
