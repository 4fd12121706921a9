//! The keys to the keeper stay with the keeper. The API server mounts the pod's ServiceAccount
//! token into every container, and the EKS webhook adds the cloud identity (IRSA or Pod
//! Identity) to every container: with either, code running in the app could GET its
//! MailCredential and call kms:Decrypt itself, the very threat the sidecar exists for. This is
//! the part of the patch that leaves both in the sidecar only. Like the rest of the patch it is
//! computed against the pod as it is, so a reinvocation yields only what is still missing.
//!
//! Why they do not come back after this webhook:
//! - The ServiceAccount admission plugin has already run when the pod reaches us (hence the
//!   `kube-api-access-*` volume and its mounts in every container), and the API server runs
//!   every in-tree mutating plugin again after a webhook changed the pod. Its second run adds
//!   `kube-api-access-*` only if `shouldAutomount`, where the pod's
//!   `automountServiceAccountToken` wins over the ServiceAccount's: the `false` set here makes
//!   that run a no-op. (It would also skip any container that already mounts something at the
//!   standard path, as the sidecar does.)
//! - Amazon's pod-identity-webhook adds its env and mount to every container not named in
//!   `eks.amazonaws.com/skip-containers`, which lists every container but the sidecar. If it runs
//!   after us and ignores the annotation, our reinvocation (`reinvocationPolicy: IfNeeded`)
//!   moves what it added.

use std::collections::{BTreeMap, BTreeSet};

use json_patch::jsonptr::PointerBuf;
use json_patch::{PatchOperation, RemoveOperation};
use k8s_openapi::api::core::v1::{
    ConfigMapProjection, Container, DownwardAPIProjection, DownwardAPIVolumeFile, EnvVar,
    KeyToPath, ObjectFieldSelector, Pod, PodSpec, ProjectedVolumeSource,
    ServiceAccountTokenProjection, Volume, VolumeMount, VolumeProjection,
};

use super::annotation::AppToken;
use super::inject::{SIDECAR_NAME, add_op};
use crate::Result;

/// Where kube clients (the sidecar's `kube::Config::infer` too) look for the token.
pub const API_TOKEN_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// The sidecar's own token volume. Not `kube-api-access-*`: the ServiceAccount plugin takes a
/// volume with that prefix for its own.
pub const API_TOKEN_VOLUME: &str = "mailcred-api-token";
/// Honoured by Amazon's pod-identity-webhook (IRSA and Pod Identity).
pub const SKIP_CONTAINERS_ANNOTATION: &str = "eks.amazonaws.com/skip-containers";
/// An hour, not the API server's default (3607 s, extended to a year for legacy clients): kube-rs
/// re-reads the file, so a short token costs nothing and a stolen one soon stops working.
const API_TOKEN_EXPIRATION_SECONDS: i64 = 3600;
const API_VOLUME_PREFIX: &str = "kube-api-access-";

/// Env that lets its holder act as the pod's cloud identity.
const IDENTITY_ENV: &[&str] = &[
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_SESSION_NAME",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
];
/// Copied to the sidecar with the identity, not taken from the app: the sidecar needs them to
/// reach STS and KMS, and they grant nothing.
const REGION_ENV: &[&str] = &[
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_STS_REGIONAL_ENDPOINTS",
];
const CLOUD_VOLUMES: &[&str] = &["aws-iam-token", "eks-pod-identity-token"];
const CLOUD_AUDIENCES: &[&str] = &["sts.amazonaws.com", "pods.eks.amazonaws.com"];
const CLOUD_TOKEN_DIRS: &[&str] = &[
    "/var/run/secrets/eks.amazonaws.com",
    "/var/run/secrets/pods.eks.amazonaws.com",
];
/// The API server's default audience is its issuer, `https://kubernetes.default.svc[...]`.
const API_AUDIENCE_PREFIX: &str = "https://kubernetes.default.svc";

/// What a token volume opens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Key {
    /// The Kubernetes API, as the pod's ServiceAccount.
    Api,
    /// STS or the Pod Identity agent, as the pod's IAM role.
    Cloud,
}

/// The identity part of the injection.
#[derive(Debug, Default)]
pub struct Plan {
    /// Removals from the containers as they are, each list from its highest index down: apply
    /// them before any operation that inserts a container.
    pub removals: Vec<PatchOperation>,
    /// What the sidecar needs and does not have yet.
    pub sidecar_mounts: Vec<VolumeMount>,
    pub sidecar_env: Vec<EnvVar>,
    /// Volumes and pod-level fields; they refer to no container index.
    pub pod: Vec<PatchOperation>,
    /// The new value of `eks.amazonaws.com/skip-containers`, when it must change.
    pub skip_containers: Option<String>,
}

/// One container and where it sits in the pod.
pub struct Slot<'a> {
    pub list: &'static str,
    pub index: usize,
    pub container: &'a Container,
}

/// Init containers, then containers.
pub fn slots(spec: &PodSpec) -> impl Iterator<Item = Slot<'_>> {
    let init = spec.init_containers.iter().flatten().enumerate();
    let init = init.map(|(index, container)| Slot {
        list: "initContainers",
        index,
        container,
    });
    let regular = spec.containers.iter().enumerate();
    init.chain(regular.map(|(index, container)| Slot {
        list: "containers",
        index,
        container,
    }))
}

/// `sidecar` is the pod's own when it is already there, else the one about to be added.
pub fn plan(pod: &Pod, sidecar: &Container, choice: AppToken) -> Result<Plan> {
    let mut plan = Plan::default();
    let Some(spec) = &pod.spec else {
        return Ok(plan);
    };
    let keys: BTreeMap<&str, Key> = spec
        .volumes
        .iter()
        .flatten()
        .filter_map(|v| Some((v.name.as_str(), volume_key(v)?)))
        .collect();
    let mut referenced = BTreeSet::new();
    let mut cloud_mounts: Vec<&VolumeMount> = Vec::new();
    let mut cloud_env: Vec<&EnvVar> = Vec::new();
    let mut app_names = Vec::new();

    for slot in slots(spec) {
        let c = slot.container;
        let mounts = c.volume_mounts.as_deref().unwrap_or_default();
        let env = c.env.as_deref().unwrap_or_default();
        let mount_keys: Vec<Option<Key>> = mounts.iter().map(|m| mount_key(m, &keys)).collect();
        let is_sidecar = c.name == SIDECAR_NAME;
        let drop_mount = |i: usize| match mount_keys[i] {
            // The sidecar gets its own API token at the standard path; another would collide.
            Some(Key::Api) if is_sidecar => mounts[i].name != API_TOKEN_VOLUME,
            Some(_) => !is_sidecar && choice == AppToken::SidecarOnly,
            None => false,
        };
        let drop_mounts: Vec<usize> = (0..mounts.len()).filter(|&i| drop_mount(i)).collect();
        let drop_env: Vec<usize> = if is_sidecar || choice == AppToken::Keep {
            Vec::new()
        } else {
            (0..env.len())
                .filter(|&i| IDENTITY_ENV.contains(&env[i].name.as_str()))
                .collect()
        };
        remove(&mut plan.removals, &slot, "volumeMounts", &drop_mounts);
        remove(&mut plan.removals, &slot, "env", &drop_env);
        for (i, m) in mounts.iter().enumerate() {
            if !drop_mounts.contains(&i) {
                referenced.insert(m.name.clone());
            }
        }
        if is_sidecar {
            continue;
        }
        app_names.push(c.name.as_str());
        for (m, key) in mounts.iter().zip(&mount_keys) {
            if *key == Some(Key::Cloud) {
                cloud_mounts.push(m);
            }
        }
        if env.iter().any(|e| IDENTITY_ENV.contains(&e.name.as_str())) {
            let wanted = |e: &&EnvVar| {
                IDENTITY_ENV.contains(&e.name.as_str()) || REGION_ENV.contains(&e.name.as_str())
            };
            cloud_env.extend(env.iter().filter(wanted));
        }
    }

    sidecar_needs(&mut plan, sidecar, &cloud_mounts, &cloud_env);
    referenced.extend(plan.sidecar_mounts.iter().map(|m| m.name.clone()));

    volumes(&mut plan.pod, spec, &keys, &referenced)?;
    if choice == AppToken::SidecarOnly {
        if spec.automount_service_account_token != Some(false) {
            add_op(
                &mut plan.pod,
                &["spec", "automountServiceAccountToken"],
                &false,
            )?;
        }
        plan.skip_containers = skip_containers(pod, &app_names);
    }
    Ok(plan)
}

/// Its own API token, and the cloud identity the app containers had, minus what it has.
fn sidecar_needs(
    plan: &mut Plan,
    sidecar: &Container,
    cloud_mounts: &[&VolumeMount],
    cloud_env: &[&EnvVar],
) {
    // Other API tokens in the sidecar are being removed: their paths are free.
    let mut paths: BTreeSet<&str> = sidecar
        .volume_mounts
        .iter()
        .flatten()
        .filter(|m| !under(&m.mount_path, API_TOKEN_PATH) || m.name == API_TOKEN_VOLUME)
        .map(|m| m.mount_path.as_str())
        .collect();
    if paths.insert(API_TOKEN_PATH) {
        plan.sidecar_mounts.push(VolumeMount {
            name: API_TOKEN_VOLUME.into(),
            mount_path: API_TOKEN_PATH.into(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
    }
    for m in cloud_mounts {
        if paths.insert(m.mount_path.as_str()) {
            plan.sidecar_mounts.push((*m).clone());
        }
    }
    // A value the sidecar already has (from --sidecar-env, or the EKS webhook) wins.
    let mut names: BTreeSet<&str> = sidecar
        .env
        .iter()
        .flatten()
        .map(|e| e.name.as_str())
        .collect();
    for e in cloud_env {
        if names.insert(e.name.as_str()) {
            plan.sidecar_env.push((*e).clone());
        }
    }
}

/// Token volumes nothing mounts any more go; the sidecar's own comes.
fn volumes(
    ops: &mut Vec<PatchOperation>,
    spec: &PodSpec,
    keys: &BTreeMap<&str, Key>,
    referenced: &BTreeSet<String>,
) -> Result<()> {
    let volumes = spec.volumes.as_deref().unwrap_or_default();
    let unused: Vec<usize> = (0..volumes.len())
        .filter(|&i| {
            let name = volumes[i].name.as_str();
            keys.contains_key(name) && !referenced.contains(name)
        })
        .collect();
    for i in unused.iter().rev() {
        ops.push(remove_op(&["spec", "volumes", &i.to_string()]));
    }
    if !volumes.iter().any(|v| v.name == API_TOKEN_VOLUME) {
        match &spec.volumes {
            Some(_) => add_op(ops, &["spec", "volumes", "-"], &api_token_volume())?,
            None => add_op(ops, &["spec", "volumes"], &[api_token_volume()])?,
        }
    }
    Ok(())
}

/// What `kube-api-access-*` holds, with a shorter-lived token.
pub fn api_token_volume() -> Volume {
    let token = ServiceAccountTokenProjection {
        audience: None,
        expiration_seconds: Some(API_TOKEN_EXPIRATION_SECONDS),
        path: "token".into(),
    };
    let ca = ConfigMapProjection {
        name: "kube-root-ca.crt".into(),
        items: Some(vec![KeyToPath {
            key: "ca.crt".into(),
            path: "ca.crt".into(),
            mode: None,
        }]),
        optional: None,
    };
    let namespace = DownwardAPIProjection {
        items: Some(vec![DownwardAPIVolumeFile {
            path: "namespace".into(),
            field_ref: Some(ObjectFieldSelector {
                api_version: Some("v1".into()),
                field_path: "metadata.namespace".into(),
            }),
            ..DownwardAPIVolumeFile::default()
        }]),
    };
    Volume {
        name: API_TOKEN_VOLUME.into(),
        projected: Some(ProjectedVolumeSource {
            // kube-api-access-*'s mode: the sidecar runs as another user than the app.
            default_mode: Some(0o644),
            sources: Some(vec![
                VolumeProjection {
                    service_account_token: Some(token),
                    ..VolumeProjection::default()
                },
                VolumeProjection {
                    config_map: Some(ca),
                    ..VolumeProjection::default()
                },
                VolumeProjection {
                    downward_api: Some(namespace),
                    ..VolumeProjection::default()
                },
            ]),
        }),
        ..Volume::default()
    }
}

/// The annotation's entries (some may be the user's own) plus every app container, minus the
/// sidecar; `None` when that is what it already says.
fn skip_containers(pod: &Pod, app_names: &[&str]) -> Option<String> {
    let current = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(SKIP_CONTAINERS_ANNOTATION));
    let mut names: Vec<&str> = current
        .into_iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|n| !n.is_empty() && *n != SIDECAR_NAME)
        .collect();
    for name in app_names {
        if !names.contains(name) {
            names.push(name);
        }
    }
    let value = names.join(",");
    (current != Some(&value) && !value.is_empty()).then_some(value)
}

fn volume_key(v: &Volume) -> Option<Key> {
    if v.name.starts_with(API_VOLUME_PREFIX) {
        return Some(Key::Api);
    }
    if CLOUD_VOLUMES.contains(&v.name.as_str()) {
        return Some(Key::Cloud);
    }
    let sources = v.projected.as_ref()?.sources.as_ref()?;
    sources
        .iter()
        .filter_map(|s| s.service_account_token.as_ref())
        .find_map(|t| match t.audience.as_deref().unwrap_or_default() {
            "" => Some(Key::Api),
            a if a.starts_with(API_AUDIENCE_PREFIX) => Some(Key::Api),
            a if CLOUD_AUDIENCES.contains(&a) => Some(Key::Cloud),
            // Another audience (Vault, SPIFFE…) opens neither the API nor KMS: the app's own.
            _ => None,
        })
}

fn mount_key(m: &VolumeMount, keys: &BTreeMap<&str, Key>) -> Option<Key> {
    // Whatever sits at the standard path is read as the pod's token, legacy Secrets included.
    if under(&m.mount_path, API_TOKEN_PATH) {
        return Some(Key::Api);
    }
    if let Some(key) = keys.get(m.name.as_str()) {
        return Some(*key);
    }
    CLOUD_TOKEN_DIRS
        .iter()
        .any(|d| under(&m.mount_path, d))
        .then_some(Key::Cloud)
}

/// `path` is `dir` or below it.
fn under(path: &str, dir: &str) -> bool {
    let path = path.trim_end_matches('/');
    path.strip_prefix(dir)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

fn remove(ops: &mut Vec<PatchOperation>, slot: &Slot<'_>, field: &str, ascending: &[usize]) {
    let index = slot.index.to_string();
    // Highest first: each removal shifts the elements after it.
    for i in ascending.iter().rev() {
        let i = i.to_string();
        ops.push(remove_op(&["spec", slot.list, &index, field, &i]));
    }
}

fn remove_op(tokens: &[&str]) -> PatchOperation {
    PatchOperation::Remove(RemoveOperation {
        path: PointerBuf::from_tokens(tokens.iter().copied()),
    })
}

#[cfg(test)]
#[path = "identity_tests.rs"]
mod tests;
