//! The Kubernetes objects the manifests in `deploy/k8s/` use, typed with exactly the fields they
//! may set (`deny_unknown_fields`: a misspelt or misplaced field fails to parse). No Kubernetes
//! schema validator installs offline here (kubeconform is a Go binary; kubectl's client-side dry
//! run needs an API server), so this is the check of the fields used.

use std::collections::BTreeMap;

use serde::Deserialize;

type Labels = BTreeMap<String, String>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    pub name: String,
    #[serde(default)]
    pub labels: Labels,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Object<Spec> {
    pub api_version: String,
    pub kind: String,
    pub metadata: Metadata,
    pub spec: Spec,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PvcSpec {
    pub access_modes: Vec<String>,
    pub resources: Resources,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    #[serde(default)]
    pub requests: BTreeMap<String, String>,
    #[serde(default)]
    pub limits: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DeploymentSpec {
    pub replicas: u32,
    pub strategy: Option<Strategy>,
    pub selector: Selector,
    pub template: PodTemplate,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Strategy {
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Selector {
    pub match_labels: Labels,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct JobSpec {
    pub backoff_limit: u32,
    pub ttl_seconds_after_finished: Option<u32>,
    pub template: PodTemplate,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PodTemplate {
    pub metadata: TemplateMetadata,
    pub spec: PodSpec,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateMetadata {
    pub labels: Labels,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PodSpec {
    pub termination_grace_period_seconds: u64,
    pub restart_policy: Option<String>,
    pub security_context: Option<PodSecurityContext>,
    pub containers: Vec<Container>,
    pub volumes: Vec<Volume>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PodSecurityContext {
    pub run_as_non_root: Option<bool>,
    pub run_as_user: Option<u32>,
    pub run_as_group: Option<u32>,
    pub fs_group: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Container {
    pub name: String,
    pub image: String,
    pub args: Vec<String>,
    #[serde(default)]
    pub env: Vec<EnvVar>,
    #[serde(default)]
    pub ports: Vec<ContainerPort>,
    pub liveness_probe: Option<Probe>,
    pub readiness_probe: Option<Probe>,
    pub resources: Resources,
    pub security_context: Option<ContainerSecurityContext>,
    pub volume_mounts: Vec<VolumeMount>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EnvVar {
    pub name: String,
    pub value: Option<String>,
    pub value_from: Option<EnvSource>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EnvSource {
    pub field_ref: FieldRef,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FieldRef {
    pub field_path: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ContainerPort {
    pub name: String,
    pub container_port: u16,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Probe {
    pub http_get: HttpGet,
    pub period_seconds: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpGet {
    pub path: String,
    pub port: String,
    pub scheme: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ContainerSecurityContext {
    pub allow_privilege_escalation: bool,
    pub read_only_root_filesystem: bool,
    pub capabilities: Capabilities,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Capabilities {
    pub drop: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VolumeMount {
    pub name: String,
    pub mount_path: String,
    pub read_only: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Volume {
    pub name: String,
    pub persistent_volume_claim: Option<ClaimRef>,
    pub secret: Option<SecretVolume>,
    pub config_map: Option<ConfigMapVolume>,
    pub host_path: Option<HostPath>,
    pub empty_dir: Option<EmptyDir>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClaimRef {
    pub claim_name: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SecretVolume {
    pub secret_name: String,
    pub default_mode: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigMapVolume {
    pub name: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostPath {
    pub path: String,
    #[serde(rename = "type")]
    pub kind: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmptyDir {}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServiceSpec {
    #[serde(rename = "type")]
    pub kind: String,
    pub selector: Labels,
    pub ports: Vec<ServicePort>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServicePort {
    pub name: String,
    pub port: u16,
    pub target_port: String,
}

/// One parsed manifest document.
#[derive(Debug)]
pub enum Manifest {
    Pvc(Object<PvcSpec>),
    Deployment(Object<DeploymentSpec>),
    Job(Object<JobSpec>),
    Service(Object<ServiceSpec>),
}

impl Manifest {
    /// Parses one document by its `apiVersion` and `kind`; an object of another kind fails.
    pub fn parse(doc: serde_yaml::Value, file: &str) -> Self {
        let kind = doc["kind"].as_str().unwrap_or_default().to_owned();
        let api = doc["apiVersion"].as_str().unwrap_or_default().to_owned();
        fn typed<T: serde::de::DeserializeOwned>(doc: serde_yaml::Value, what: &str) -> T {
            serde_yaml::from_value(doc).unwrap_or_else(|e| panic!("{what}: {e}"))
        }
        let what = format!("{file}: {kind}");
        match (api.as_str(), kind.as_str()) {
            ("v1", "PersistentVolumeClaim") => Manifest::Pvc(typed(doc, &what)),
            ("apps/v1", "Deployment") => Manifest::Deployment(typed(doc, &what)),
            ("batch/v1", "Job") => Manifest::Job(typed(doc, &what)),
            ("v1", "Service") => Manifest::Service(typed(doc, &what)),
            other => panic!("{file}: an object this check does not know: {other:?}"),
        }
    }
}
