//! The sidecar container and the JSON patch that adds it, built from typed objects. The patch
//! is computed against the pod as it is now, so a reinvocation (or a pod that already has the
//! sidecar) yields only what is still missing, usually nothing.

use std::collections::BTreeMap;

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, PatchOperation};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EnvVar, EnvVarSource, ExecAction, ObjectFieldSelector,
    Pod, Probe, ResourceRequirements, SeccompProfile, SecurityContext,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use mailcred_core::sidecar_contract as contract;
use serde::Serialize;

use super::account_set::{self, Target};
use super::annotation::{AppToken, INJECTED_ANNOTATION};
use super::identity;
use crate::config::{SidecarArgs, SidecarMode};
use crate::{Error, Result};

/// Name of the injected container (the binary's name); its presence marks a pod as injected.
pub const SIDECAR_NAME: &str = contract::SIDECAR_BINARY;
/// Env the application containers get.
pub const SMTP_URL_ENV: &str = contract::ENV_APP_SMTP_URL;
pub const IMAP_URL_ENV: &str = contract::ENV_APP_IMAP_URL;

/// The sidecar container serving `credentials`.
pub fn sidecar_container(args: &SidecarArgs, credentials: &[String]) -> Container {
    let mut argv = Vec::with_capacity(credentials.len() * 2 + 2);
    for name in credentials {
        argv.push(contract::flag(contract::FLAG_CREDENTIAL));
        argv.push(name.clone());
    }
    // $(POD_NAMESPACE) is expanded by the kubelet from the downward-API env below.
    argv.push(contract::flag(contract::FLAG_NAMESPACE));
    argv.push(contract::env_reference(contract::ENV_POD_NAMESPACE));

    let field = |path: &str| EnvVarSource {
        field_ref: Some(ObjectFieldSelector {
            field_path: path.to_string(),
            api_version: None,
        }),
        ..EnvVarSource::default()
    };
    let mut env = vec![
        EnvVar {
            name: contract::ENV_POD_NAME.into(),
            value_from: Some(field("metadata.name")),
            ..EnvVar::default()
        },
        EnvVar {
            name: contract::ENV_POD_NAMESPACE.into(),
            value_from: Some(field("metadata.namespace")),
            ..EnvVar::default()
        },
        // The sidecar's own check (third after this webhook and RBAC): it refuses a
        // credential that does not list the pod's ServiceAccount.
        EnvVar {
            name: contract::ENV_SERVICE_ACCOUNT.into(),
            value_from: Some(field("spec.serviceAccountName")),
            ..EnvVar::default()
        },
        plain_env(
            contract::ENV_SMTP_LISTEN,
            args.sidecar_smtp_addr.to_string(),
        ),
        plain_env(
            contract::ENV_IMAP_LISTEN,
            args.sidecar_imap_addr.to_string(),
        ),
        plain_env(
            contract::ENV_ADMIN_LISTEN,
            args.sidecar_admin_addr.to_string(),
        ),
    ];
    if let Some(ttl) = args.sidecar_cache_ttl_seconds {
        env.push(plain_env(contract::ENV_CACHE_TTL_SECONDS, ttl.to_string()));
    }
    if !args.sidecar_trusted_kms_endpoints.is_empty() {
        env.push(plain_env(
            contract::ENV_TRUSTED_KMS_ENDPOINTS,
            args.sidecar_trusted_kms_endpoints.join(","),
        ));
    }
    if let Some(port) = args.sidecar_metrics_port {
        env.push(plain_env(
            contract::ENV_METRICS_LISTEN,
            format!("0.0.0.0:{port}"),
        ));
    }
    for (name, value) in &args.sidecar_env {
        env.push(plain_env(name, value.clone()));
    }

    // The admin listener is loopback-only, which kubelet's httpGet (it dials the pod IP)
    // cannot reach; the sidecar binary probes itself from inside the pod instead.
    let probe = |period: i32, failures: i32| Probe {
        exec: Some(ExecAction {
            command: Some(vec![
                contract::SIDECAR_BINARY.into(),
                contract::PROBE_SUBCOMMAND.into(),
                contract::flag(contract::PROBE_URL_FLAG),
                format!("http://{}{}", args.sidecar_admin_addr, contract::READY_PATH),
            ]),
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(2),
        failure_threshold: Some(failures),
        ..Probe::default()
    };
    let native = args.sidecar_mode == SidecarMode::Native;

    Container {
        name: SIDECAR_NAME.into(),
        image: Some(args.sidecar_image.clone()),
        image_pull_policy: Some(args.sidecar_image_pull_policy.clone()),
        args: Some(argv),
        // Named so that a PodMonitor selects it (the chart's podmonitor.yaml).
        ports: args.sidecar_metrics_port.map(|port| {
            vec![ContainerPort {
                name: Some(contract::METRICS_PORT_NAME.into()),
                container_port: i32::from(port),
                protocol: Some("TCP".into()),
                ..ContainerPort::default()
            }]
        }),
        env: Some(env),
        // Native sidecar: started before the app (and its later init containers), stopped after.
        restart_policy: native.then(|| "Always".to_string()),
        security_context: Some(SecurityContext {
            run_as_non_root: Some(true),
            run_as_user: args.sidecar_run_as_user.0,
            run_as_group: args.sidecar_run_as_user.0,
            read_only_root_filesystem: Some(true),
            allow_privilege_escalation: Some(false),
            privileged: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                add: None,
            }),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                localhost_profile: None,
            }),
            ..SecurityContext::default()
        }),
        resources: Some(ResourceRequirements {
            requests: Some(BTreeMap::from([
                (
                    "cpu".to_string(),
                    Quantity(args.sidecar_cpu_request.clone()),
                ),
                (
                    "memory".to_string(),
                    Quantity(args.sidecar_memory_request.clone()),
                ),
            ])),
            limits: Some(BTreeMap::from([(
                "memory".to_string(),
                Quantity(args.sidecar_memory_limit.clone()),
            )])),
            ..ResourceRequirements::default()
        }),
        readiness_probe: Some(probe(5, 3)),
        // With a native sidecar the app starts only once this succeeds: no "connection
        // refused" on the app's first mail.
        startup_probe: native.then(|| probe(1, 60)),
        ..Container::default()
    }
}

pub(super) fn plain_env(name: &str, value: String) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value),
        ..EnvVar::default()
    }
}

/// The env added to every application container.
pub fn app_env(args: &SidecarArgs) -> Vec<EnvVar> {
    vec![
        plain_env(SMTP_URL_ENV, format!("smtp://{}", args.sidecar_smtp_addr)),
        plain_env(IMAP_URL_ENV, format!("imap://{}", args.sidecar_imap_addr)),
    ]
}

/// True when the pod already runs the sidecar (as init or regular container).
pub fn has_sidecar(pod: &Pod) -> bool {
    let Some(spec) = &pod.spec else { return false };
    spec.containers.iter().any(|c| c.name == SIDECAR_NAME)
        || spec
            .init_containers
            .iter()
            .flatten()
            .any(|c| c.name == SIDECAR_NAME)
}

/// What injection changes on `pod`.
#[derive(Debug, Default)]
pub struct Injection {
    pub operations: Vec<PatchOperation>,
    /// False when the sidecar was already there (reinvocation).
    pub added_sidecar: bool,
}

/// Operations that bring `pod` to the injected state for `credentials`.
pub fn injection(
    pod: &Pod,
    args: &SidecarArgs,
    credentials: &[String],
    app_token: AppToken,
) -> Result<Injection> {
    injection_for(
        pod,
        args,
        &Target::Credentials(credentials.to_vec()),
        app_token,
    )
}

/// Operations that bring `pod` to the injected state for `target` (named credentials, or
/// an account set: account_set.rs).
pub fn injection_for(
    pod: &Pod,
    args: &SidecarArgs,
    target: &Target,
    app_token: AppToken,
) -> Result<Injection> {
    let credentials = target.credentials();
    let mut out = Injection::default();
    let Some(spec) = &pod.spec else {
        return Ok(out);
    };

    let existing = identity::slots(spec).find(|s| s.container.name == SIDECAR_NAME);
    let mut sidecar = match &existing {
        Some(slot) => slot.container.clone(),
        None => {
            let mut c = sidecar_container(args, credentials);
            if let Target::AccountSet(set) = target {
                account_set::into_account_set_mode(&mut c, set);
            }
            c
        }
    };
    let plan = identity::plan(pod, &sidecar, app_token)?;
    // Removals first: they use the indices of the pod as it is, before the sidecar is inserted.
    out.operations.extend(plan.removals);

    match &existing {
        Some(slot) => {
            let index = slot.index.to_string();
            let mounts = ["spec", slot.list, &index, "volumeMounts"];
            extend(
                &mut out,
                &mounts,
                sidecar.volume_mounts.is_some(),
                &plan.sidecar_mounts,
            )?;
            let env = ["spec", slot.list, &index, "env"];
            extend(&mut out, &env, sidecar.env.is_some(), &plan.sidecar_env)?;
        }
        None => {
            // After the sidecar's own mounts (the account-set token volume).
            sidecar
                .volume_mounts
                .get_or_insert_with(Vec::new)
                .extend(plan.sidecar_mounts);
            sidecar
                .env
                .get_or_insert_with(Vec::new)
                .extend(plan.sidecar_env);
            match args.sidecar_mode {
                SidecarMode::Native => match &spec.init_containers {
                    Some(list) if !list.is_empty() => {
                        // First, so init containers that send mail can use it.
                        add(&mut out, &["spec", "initContainers", "0"], &sidecar)?;
                    }
                    _ => add(&mut out, &["spec", "initContainers"], &[sidecar])?,
                },
                SidecarMode::Container => add(&mut out, &["spec", "containers", "-"], &sidecar)?,
            }
            out.added_sidecar = true;
        }
    }

    let names = target.describe();
    let annotations = pod.metadata.annotations.as_ref();
    let mut wanted_annotations = BTreeMap::new();
    if annotations.and_then(|a| a.get(INJECTED_ANNOTATION)) != Some(&names) {
        wanted_annotations.insert(INJECTED_ANNOTATION.to_string(), names);
    }
    if let Some(skip) = plan.skip_containers {
        wanted_annotations.insert(identity::SKIP_CONTAINERS_ANNOTATION.to_string(), skip);
    }
    if annotations.is_some() {
        for (key, value) in &wanted_annotations {
            add(&mut out, &["metadata", "annotations", key], value)?;
        }
    } else if !wanted_annotations.is_empty() {
        add(&mut out, &["metadata", "annotations"], &wanted_annotations)?;
    }

    // The PodMonitor selects pods by this label (a label selector cannot test annotations).
    if args.sidecar_metrics_port.is_some() {
        let labels = pod.metadata.labels.as_ref();
        if labels
            .and_then(|l| l.get(contract::METRICS_POD_LABEL))
            .map(String::as_str)
            != Some("true")
        {
            if labels.is_some() {
                add(
                    &mut out,
                    &["metadata", "labels", contract::METRICS_POD_LABEL],
                    &"true",
                )?;
            } else {
                let wanted = BTreeMap::from([(contract::METRICS_POD_LABEL, "true")]);
                add(&mut out, &["metadata", "labels"], &wanted)?;
            }
        }
    }

    let mut wanted = app_env(args);
    if let Target::AccountSet(_) = target {
        wanted.extend(account_set::app_env());
    }
    for (i, container) in spec.containers.iter().enumerate() {
        if container.name == SIDECAR_NAME {
            continue;
        }
        let index = i.to_string();
        match &container.env {
            None => add(&mut out, &["spec", "containers", &index, "env"], &wanted)?,
            Some(existing) => {
                // A value the app set itself wins: it may point at another proxy on purpose.
                for var in &wanted {
                    if !existing.iter().any(|e| e.name == var.name) {
                        add(&mut out, &["spec", "containers", &index, "env", "-"], var)?;
                    }
                }
            }
        }
    }
    out.operations.extend(plan.pod);
    if let Target::AccountSet(_) = target {
        account_set::volume_ops(pod, &mut out.operations)?;
    }
    Ok(out)
}

/// Appends `items` to the list at `path`, creating it when the container has none.
fn extend<T: Serialize>(
    out: &mut Injection,
    path: &[&str],
    exists: bool,
    items: &[T],
) -> Result<()> {
    if items.is_empty() {
        return Ok(());
    }
    if !exists {
        return add(out, path, &items);
    }
    let mut element = path.to_vec();
    element.push("-");
    for item in items {
        add(out, &element, item)?;
    }
    Ok(())
}

fn add(out: &mut Injection, tokens: &[&str], value: &impl Serialize) -> Result<()> {
    add_op(&mut out.operations, tokens, value)
}

/// An `add` of `value` at the JSON pointer made of `tokens` (escaped here).
pub(super) fn add_op(
    ops: &mut Vec<PatchOperation>,
    tokens: &[&str],
    value: &impl Serialize,
) -> Result<()> {
    let value = serde_json::to_value(value).map_err(|source| Error::Serialize {
        what: "injection patch value",
        source,
    })?;
    ops.push(PatchOperation::Add(AddOperation {
        path: PointerBuf::from_tokens(tokens.iter().copied()),
        value,
    }));
    Ok(())
}

#[cfg(test)]
#[path = "inject_tests.rs"]
mod tests;
