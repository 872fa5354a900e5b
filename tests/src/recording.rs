//! A sandbox driver that forwards to Docker and records when each exec was asked for and when its
//! process ended (its output closed): the benchmarks' view of "first exec" and "process gone".

use std::sync::{Arc, Mutex};
use std::time::Instant;

use aac_host::sandbox::docker::DockerDriver;
use aac_host::sandbox::{
    ExecError, ExecSpec, OpenError, RawProcess, Sandbox, SandboxDriver, SandboxSpec,
};
use async_trait::async_trait;
use futures::StreamExt;

/// One exec: its command line, when it was asked for, when its process ended.
#[derive(Clone, Debug)]
pub struct ExecRecord {
    pub argv: Vec<String>,
    pub called: Instant,
    pub ended: Option<Instant>,
}

pub type ExecLog = Arc<Mutex<Vec<ExecRecord>>>;

#[derive(Clone)]
pub struct RecordingDriver {
    inner: DockerDriver,
    pub log: ExecLog,
}

impl RecordingDriver {
    pub fn new(inner: DockerDriver) -> Self {
        Self {
            inner,
            log: Arc::default(),
        }
    }
}

#[async_trait]
impl SandboxDriver for RecordingDriver {
    async fn open(&self, spec: &SandboxSpec) -> Result<Arc<dyn Sandbox>, OpenError> {
        let inner = self.inner.open(spec).await?;
        Ok(Arc::new(RecordingSandbox {
            inner,
            log: self.log.clone(),
        }))
    }
}

struct RecordingSandbox {
    inner: Arc<dyn Sandbox>,
    log: ExecLog,
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
        let index = {
            let mut log = self.log.lock().unwrap();
            log.push(ExecRecord {
                argv: spec.argv.clone(),
                called: Instant::now(),
                ended: None,
            });
            log.len() - 1
        };
        let mut raw = self.inner.exec(spec).await?;
        let log = self.log.clone();
        let output = raw.output;
        raw.output = futures::stream::unfold(output, move |mut output| {
            let log = log.clone();
            async move {
                match output.next().await {
                    Some(item) => Some((item, output)),
                    None => {
                        log.lock().unwrap()[index].ended = Some(Instant::now());
                        None
                    }
                }
            }
        })
        .boxed();
        Ok(raw)
    }

    async fn remove(&self) -> anyhow::Result<()> {
        self.inner.remove().await
    }

    async fn is_alive(&self) -> anyhow::Result<bool> {
        self.inner.is_alive().await
    }
}
