"""`python-shell`'s session (contract aac:plugin@0.2.1, written by `aac-host plugin new --lang
python`): each command's prompt runs as `sh -c` in the run's workspace; output lines become
`output.stdout` / `output.stderr` events, the process's end `process.exited`, and the exit reads as
the Rust SDK's `Exit::outcome` does (OOM, cancelled, killed, exit code). A bad config refuses the
session as `config-invalid`, naming the setting. Replace `run_turn` with your agent's CLI; build
with `aac-host plugin build` (componentize-py 0.25.1).

Configuration (the run's or the runtime profile's `config`, all optional): `shell` (default
/bin/sh), `timeout_ms`, `idle_timeout_ms`, `env` (an object of strings)."""

import codecs
import json
from typing import Self

from componentize_py_types import Err
from wit_world.exports import adapter
from wit_world.imports import events, sandbox, types

KILL_REASONS = {
    sandbox.KillReason.TIMEOUT: "timeout",
    sandbox.KillReason.IDLE_TIMEOUT: "idle-timeout",
    sandbox.KillReason.CANCELLED: "cancelled",
    sandbox.KillReason.REQUESTED: "requested",
}


class Output:
    """Output events, skipped (and counted) while the host would drop them (`output-open` false);
    the count is reported before the next other event and at the end of the turn."""

    def __init__(self) -> None:
        self.skipped = 0

    def line(self, stream: str, text: str) -> None:
        if not events.output_open():
            self.skipped += 1
            return
        emit_raw(f"output.{stream}", {"text": text})

    def report_skipped(self) -> None:
        if self.skipped:
            events.skipped_output(self.skipped)
            self.skipped = 0


def emit_raw(kind: str, payload: dict) -> None:
    events.emit(types.Event(kind=kind, payload_json=json.dumps(payload)))


def config_invalid(message: str) -> Err:
    return Err(adapter.StartError(kind=adapter.StartFailure.CONFIG_INVALID, message=message))


def settings(config_json: str) -> dict:
    """The run config as settings; a wrong value raises `config-invalid` naming the key."""
    try:
        config = json.loads(config_json) if config_json.strip() else {}
    except ValueError as err:
        raise config_invalid(f"the run config is not valid JSON: {err}")
    if not isinstance(config, dict):
        raise config_invalid("the run config must be a JSON object")

    def optional(key, check, what):
        value = config.get(key)
        if value is not None and not check(value):
            raise config_invalid(f"config `{key}`: expected {what}")
        return value

    def milliseconds(key):
        is_count = lambda v: isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**64
        return optional(key, is_count, "a non-negative integer")

    env = optional("env", lambda v: isinstance(v, dict), "an object") or {}
    for key, value in env.items():
        if not isinstance(value, str):
            raise config_invalid(f"config `env.{key}`: expected a string")
    return {
        "shell": optional("shell", lambda v: isinstance(v, str), "a string") or "/bin/sh",
        "timeout_ms": milliseconds("timeout_ms"),
        "idle_timeout_ms": milliseconds("idle_timeout_ms"),
        "env": list(env.items()),
    }


def result(status, failure_kind=None, message=None) -> types.TurnResult:
    return types.TurnResult(
        status=status, failure_kind=failure_kind, message=message, thread_id=None, turn_id=None
    )


def outcome(exit: sandbox.ExitStatus) -> types.TurnResult:
    failed = types.TerminalStatus.FAILED
    kinds = types.FailureKind
    if exit.oom_killed:
        return result(failed, kinds.OOM_KILLED, "the script was killed for running out of memory")
    if exit.kill_reason == sandbox.KillReason.CANCELLED:
        return result(types.TerminalStatus.CANCELLED, None, "the script was cancelled")
    if exit.killed:
        reason = KILL_REASONS.get(exit.kill_reason, "killed")
        return result(failed, kinds.TURN_TIMEOUT, f"the script was killed: {reason}")
    if exit.code == 0:
        return result(types.TerminalStatus.COMPLETED)
    if exit.code is None:
        return result(failed, kinds.AGENT_ERROR, "the script ended without an exit code")
    return result(failed, kinds.AGENT_ERROR, f"the script exited with code {exit.code}")


class Session(adapter.Session):
    def __init__(self, run: types.RunInfo) -> None:
        self.workspace = run.workspace_dir
        self.settings = settings(run.config_json)

    @classmethod
    def start(cls, run: types.RunInfo) -> Self:
        return cls(run)

    def run_turn(self, command: types.CommandInfo) -> types.TurnResult:
        request = sandbox.ExecRequest(
            argv=[self.settings["shell"], "-c", command.prompt],
            env=self.settings["env"],
            cwd=self.workspace,
            stdin=sandbox.StdinMode.NULL,
            timeout_ms=self.settings["timeout_ms"],
            idle_timeout_ms=self.settings["idle_timeout_ms"],
        )
        try:
            process = sandbox.exec(request)
        except Err as err:
            cause = f"{type(err.value).__name__.removeprefix('ExecError_')}: {err.value.value}"
            return result(types.TerminalStatus.FAILED, types.FailureKind.AGENT_ERROR, f"could not start: {cause}")
        names = {sandbox.OutputStream.STDOUT: "stdout", sandbox.OutputStream.STDERR: "stderr"}
        decoders = {name: codecs.getincrementaldecoder("utf-8")("replace") for name in names.values()}
        partial = {name: "" for name in names.values()}
        output = Output()
        while (chunk := process.read()) is not None:
            name = names[chunk.stream]
            lines = (partial[name] + decoders[name].decode(chunk.data)).split("\n")
            partial[name] = lines.pop()
            for line in lines:
                output.line(name, line.removesuffix("\r"))
        for name in names.values():
            rest = partial[name] + decoders[name].decode(b"", final=True)
            if rest:
                output.line(name, rest)
        exit = process.wait()
        output.report_skipped()
        emit_raw("process.exited", {
            "code": exit.code,
            "killed": exit.killed,
            "kill_reason": KILL_REASONS.get(exit.kill_reason),
            "oom_killed": exit.oom_killed,
        })
        return outcome(exit)

    def close(self) -> None:
        pass
