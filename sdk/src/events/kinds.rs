//! The well-known event kinds (docs/events.md; schema in `wit/events.schema.json`) as typed
//! payloads: a backend that builds its events from these emits what every consumer of the
//! registry expects. Plain serde types, usable in native tests (`serde_json::to_value`).

use serde::Serialize;

use crate::exit::Exit;

/// A payload of a well-known kind.
pub trait WellKnown: Serialize {
    const KIND: &'static str;

    /// Emits it as an event of its kind, bounded like every event.
    fn emit(&self) {
        super::emit(Self::KIND, self)
    }
}

macro_rules! well_known {
    ($($kind:literal => $type:ident),* $(,)?) => {
        $(impl WellKnown for $type {
            const KIND: &'static str = $kind;
        })*
    };
}

well_known! {
    "agent.thread" => AgentThread,
    "agent.message" => AgentMessage,
    "agent.reasoning" => AgentReasoning,
    "agent.usage" => AgentUsage,
    "agent.plan" => AgentPlan,
    "agent.error" => AgentError,
    "command.started" => CommandStarted,
    "command.completed" => CommandCompleted,
    "file.changed" => FileChanged,
    "tool.started" => ToolStarted,
    "tool.completed" => ToolCompleted,
    "process.exited" => ProcessExited,
}

/// `agent.thread`: the agent's conversation, which later turns resume.
#[derive(Clone, Debug, Serialize)]
pub struct AgentThread {
    pub thread_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

/// `agent.message`: text the agent says to the user.
#[derive(Clone, Debug, Serialize)]
pub struct AgentMessage {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub text: String,
}

/// `agent.reasoning`: the agent's visible reasoning.
#[derive(Clone, Debug, Serialize)]
pub struct AgentReasoning {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub text: String,
}

/// `agent.usage`: tokens of the turn, named after the OpenTelemetry GenAI attributes
/// (`gen_ai.usage.input_tokens`, `gen_ai.usage.output_tokens`,
/// `gen_ai.usage.cache_read.input_tokens`, `gen_ai.usage.cache_creation.input_tokens`).
/// `input_tokens` counts all input, cached or not, as OpenTelemetry asks.
#[derive(Clone, Debug, Default, Serialize)]
pub struct AgentUsage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_read_input_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_creation_input_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_output_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
}

/// `agent.plan`: the agent's to-do list as it stands.
#[derive(Clone, Debug, Serialize)]
pub struct AgentPlan {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub items: Vec<PlanItem>,
}

#[derive(Clone, Debug, Serialize)]
pub struct PlanItem {
    pub text: String,
    pub completed: bool,
}

/// `agent.error`: the agent or its model reported an error.
#[derive(Clone, Debug, Serialize)]
pub struct AgentError {
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// `command.started`: the agent runs a shell command.
#[derive(Clone, Debug, Serialize)]
pub struct CommandStarted {
    pub id: String,
    pub command: String,
}

/// `command.completed`: that command ended.
#[derive(Clone, Debug, Serialize)]
pub struct CommandCompleted {
    pub id: String,
    pub command: String,
    /// Its output as the agent saw it (stdout and stderr together), `null` when unknown.
    pub output: Option<String>,
    /// `null` when the agent does not say.
    pub exit_code: Option<i32>,
    pub status: Status,
}

/// How an agent's action ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Completed,
    Failed,
    Declined,
}

/// `file.changed`: the agent changed files in the workspace.
#[derive(Clone, Debug, Serialize)]
pub struct FileChanged {
    pub id: String,
    pub changes: Vec<FileChange>,
    pub status: Status,
}

#[derive(Clone, Debug, Serialize)]
pub struct FileChange {
    pub path: String,
    pub kind: ChangeKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    Add,
    Update,
    Delete,
}

/// `tool.started`: the agent calls a tool other than the shell.
#[derive(Clone, Debug, Serialize)]
pub struct ToolStarted {
    pub id: String,
    pub tool: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<serde_json::Value>,
}

/// `tool.completed`: that call ended.
#[derive(Clone, Debug, Serialize)]
pub struct ToolCompleted {
    pub id: String,
    pub tool: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    pub is_error: bool,
}

/// `process.exited`: a process the backend started in the sandbox ended.
#[derive(Clone, Debug, Serialize)]
pub struct ProcessExited {
    pub code: Option<i32>,
    pub killed: bool,
    pub kill_reason: Option<&'static str>,
    pub oom_killed: bool,
}

impl From<&Exit> for ProcessExited {
    fn from(exit: &Exit) -> Self {
        Self {
            code: exit.code,
            killed: exit.killed,
            kill_reason: exit.kill_reason.map(crate::process::KillReason::as_str),
            oom_killed: exit.oom_killed,
        }
    }
}
