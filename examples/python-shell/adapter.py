"""One session per run: each command's prompt runs as `sh -c` in the run's workspace; output lines
become `output.stdout` / `output.stderr` events, the process's end `process.exited`, and the exit
reads as the Rust SDK's `Exit::outcome` does (OOM, cancelled, killed, exit code)."""

import codecs
import json
from typing import Self

from componentize_py_types import Err
from wit_world.exports import adapter
from wit_world.imports import events, sandbox, types


def emit(kind: str, payload: dict) -> None:
    events.emit(types.Event(kind=kind, payload_json=json.dumps(payload)))


def result(status, failure_kind=None, message=None) -> types.TurnResult:
    return types.TurnResult(
        status=status, failure_kind=failure_kind, message=message, thread_id=None, turn_id=None
    )


def outcome(exit: sandbox.ExitStatus) -> types.TurnResult:
    failed = types.TerminalStatus.FAILED
    kinds = types.FailureKind
    if exit.oom_killed:
        return result(failed, kinds.OOM_KILLED, "the script was killed for running out of memory")
    if exit.kill_reason == "cancelled":
        return result(types.TerminalStatus.CANCELLED, None, "the script was cancelled")
    if exit.killed:
        return result(failed, kinds.TURN_TIMEOUT, f"the script was killed: {exit.kill_reason or 'killed'}")
    if exit.code == 0:
        return result(types.TerminalStatus.COMPLETED)
    if exit.code is None:
        return result(failed, kinds.AGENT_ERROR, "the script ended without an exit code")
    return result(failed, kinds.AGENT_ERROR, f"the script exited with code {exit.code}")


class Session(adapter.Session):
    def __init__(self, run: types.RunInfo) -> None:
        config = json.loads(run.config_json) if run.config_json.strip() else {}
        self.workspace = run.workspace_dir
        self.shell = config.get("shell", "/bin/sh")
        self.env = [(key, str(value)) for key, value in config.get("env", {}).items()]

    @classmethod
    def start(cls, run: types.RunInfo) -> Self:
        return cls(run)

    def run_turn(self, command: types.CommandInfo) -> types.TurnResult:
        request = sandbox.ExecRequest(
            argv=[self.shell, "-c", command.prompt],
            env=self.env,
            cwd=self.workspace,
            stdin=sandbox.StdinMode.NULL,
            timeout_ms=None,
            idle_timeout_ms=None,
        )
        try:
            process = sandbox.exec(request)
        except Err as err:
            return result(types.TerminalStatus.FAILED, types.FailureKind.AGENT_ERROR, f"could not start: {err.value}")
        names = {sandbox.OutputStream.STDOUT: "stdout", sandbox.OutputStream.STDERR: "stderr"}
        decoders = {name: codecs.getincrementaldecoder("utf-8")("replace") for name in names.values()}
        partial = {name: "" for name in names.values()}
        while (chunk := process.read()) is not None:
            name = names[chunk.stream]
            lines = (partial[name] + decoders[name].decode(chunk.data)).split("\n")
            partial[name] = lines.pop()
            for line in lines:
                emit(f"output.{name}", {"text": line.removesuffix("\r")})
        for name in names.values():
            rest = partial[name] + decoders[name].decode(b"", final=True)
            if rest:
                emit(f"output.{name}", {"text": rest})
        exit = process.wait()
        emit("process.exited", {
            "code": exit.code,
            "killed": exit.killed,
            "kill_reason": exit.kill_reason,
            "oom_killed": exit.oom_killed,
        })
        return outcome(exit)

    def close(self) -> None:
        pass
