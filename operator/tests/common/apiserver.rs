//! What the API server does to a pod around our webhook, as small as the tests need and
//! written from the upstream behaviour: the ServiceAccount admission plugin
//! (kubernetes/kubernetes plugin/pkg/admission/serviceaccount: `shouldAutomount`,
//! `mountServiceAccountToken`), Amazon's pod-identity-webhook (aws/amazon-eks-pod-identity-webhook
//! pkg/handler: env and mount into every container not in `eks.amazonaws.com/skip-containers`),
//! and the admission chain with its one reinvocation round (in-tree plugins re-run after any
//! webhook changed the pod, then every `IfNeeded` webhook invoked before a later change).

use std::collections::BTreeSet;

use serde_json::{Value, json};

pub const SA_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
pub const SA_VOLUME: &str = "kube-api-access-x7k2p";
pub const IRSA_PATH: &str = "/var/run/secrets/eks.amazonaws.com/serviceaccount";
pub const POD_IDENTITY_PATH: &str = "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount";
pub const SKIP_CONTAINERS: &str = "eks.amazonaws.com/skip-containers";
pub const ROLE_ARN: &str = "arn:aws:iam::111122223333:role/shop-mailer";
const LISTS: [&str; 2] = ["initContainers", "containers"];

fn containers_mut(pod: &mut Value) -> impl Iterator<Item = &mut Value> {
    let spec = pod["spec"].as_object_mut().expect("pod has a spec");
    spec.iter_mut()
        .filter(|(k, _)| LISTS.contains(&k.as_str()))
        .filter_map(|(_, v)| v.as_array_mut())
        .flatten()
}

/// Every container (init containers first).
pub fn containers(pod: &Value) -> Vec<&Value> {
    LISTS
        .iter()
        .filter_map(|l| pod["spec"].get(*l).and_then(Value::as_array))
        .flatten()
        .collect()
}

fn push(object: &mut Value, field: &str, item: Value) {
    match object.get_mut(field).and_then(Value::as_array_mut) {
        Some(list) => list.push(item),
        None => object[field] = json!([item]),
    }
}

fn has_mount_at(c: &Value, path: &str) -> bool {
    c["volumeMounts"]
        .as_array()
        .is_some_and(|m| m.iter().any(|m| m["mountPath"] == path))
}

/// The ServiceAccount plugin's Admit: unless the pod (then the ServiceAccount, here unset) says
/// `automountServiceAccountToken: false`, every container without a mount at the standard path
/// gets `kube-api-access-*`.
pub fn service_account_plugin(pod: &mut Value) {
    if pod["spec"]["automountServiceAccountToken"] == json!(false) {
        return;
    }
    let existing = pod["spec"]["volumes"].as_array().and_then(|v| {
        v.iter()
            .filter_map(|v| v["name"].as_str())
            .find(|n| n.starts_with("kube-api-access-"))
            .map(String::from)
    });
    let name = existing.clone().unwrap_or_else(|| SA_VOLUME.to_string());
    let mut needed = false;
    for c in containers_mut(pod) {
        if !has_mount_at(c, SA_PATH) {
            push(
                c,
                "volumeMounts",
                json!({"name": name, "readOnly": true, "mountPath": SA_PATH}),
            );
            needed = true;
        }
    }
    if existing.is_none() && needed {
        let volume = json!({"name": name, "projected": {"defaultMode": 420, "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}
        ]}});
        push(&mut pod["spec"], "volumes", volume);
    }
}

/// Which cloud identity the EKS webhook hands out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cloud {
    Irsa,
    PodIdentity,
}

/// The EKS webhook's mutation. `honours_skip: false` stands for a version that ignores
/// `eks.amazonaws.com/skip-containers`.
pub fn eks_webhook(pod: &Value, cloud: Cloud, honours_skip: bool) -> Value {
    let mut pod = pod.clone();
    let skip: Vec<String> = pod["metadata"]["annotations"][SKIP_CONTAINERS]
        .as_str()
        .filter(|_| honours_skip)
        .map(|v| v.split(',').map(String::from).collect())
        .unwrap_or_default();
    let (volume, path, env) = match cloud {
        Cloud::Irsa => (
            json!({"name": "aws-iam-token", "projected": {"sources": [{"serviceAccountToken": {"audience": "sts.amazonaws.com", "expirationSeconds": 86400, "path": "token"}}]}}),
            IRSA_PATH,
            vec![
                ("AWS_STS_REGIONAL_ENDPOINTS", "regional".to_string()),
                ("AWS_DEFAULT_REGION", "eu-west-1".to_string()),
                ("AWS_REGION", "eu-west-1".to_string()),
                ("AWS_ROLE_ARN", ROLE_ARN.to_string()),
                ("AWS_WEB_IDENTITY_TOKEN_FILE", format!("{IRSA_PATH}/token")),
            ],
        ),
        Cloud::PodIdentity => (
            json!({"name": "eks-pod-identity-token", "projected": {"sources": [{"serviceAccountToken": {"audience": "pods.eks.amazonaws.com", "expirationSeconds": 86400, "path": "eks-pod-identity-token"}}]}}),
            POD_IDENTITY_PATH,
            vec![
                (
                    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                    "http://169.254.170.23/v1/credentials".to_string(),
                ),
                (
                    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                    format!("{POD_IDENTITY_PATH}/eks-pod-identity-token"),
                ),
            ],
        ),
    };
    let volume_name = volume["name"].as_str().unwrap_or_default().to_string();
    for c in containers_mut(&mut pod) {
        if c["name"]
            .as_str()
            .is_some_and(|n| skip.iter().any(|s| s == n))
        {
            continue;
        }
        for (name, value) in &env {
            let set = c["env"]
                .as_array()
                .is_some_and(|e| e.iter().any(|e| e["name"] == *name));
            if !set {
                push(c, "env", json!({"name": name, "value": value}));
            }
        }
        let mounted = c["volumeMounts"]
            .as_array()
            .is_some_and(|m| m.iter().any(|m| m["name"] == volume_name));
        if !mounted {
            push(
                c,
                "volumeMounts",
                json!({"name": volume_name, "readOnly": true, "mountPath": path}),
            );
        }
    }
    let has_volume = pod["spec"]["volumes"]
        .as_array()
        .is_some_and(|v| v.iter().any(|v| v["name"] == volume_name));
    if !has_volume {
        match pod["spec"].get_mut("volumes").and_then(Value::as_array_mut) {
            // It inserts at /spec/volumes/0, shifting every index: our patch must not assume any.
            Some(list) => list.insert(0, volume),
            None => pod["spec"]["volumes"] = json!([volume]),
        }
    }
    pod
}

/// A mutating webhook in the chain.
pub struct Hook<'a> {
    pub if_needed: bool,
    pub call: Box<dyn FnMut(&Value) -> Value + 'a>,
}

/// One pod CREATE through the mutating phase.
pub fn admit(mut pod: Value, hooks: &mut [Hook<'_>]) -> Value {
    service_account_plugin(&mut pod);
    let mut previously = Vec::new();
    let mut reinvoke = BTreeSet::new();
    let mut changed_any = false;
    for (i, hook) in hooks.iter_mut().enumerate() {
        let out = (hook.call)(&pod);
        if out != pod {
            reinvoke.extend(previously.drain(..));
            changed_any = true;
            pod = out;
        }
        if hook.if_needed {
            previously.push(i);
        }
    }
    if !changed_any {
        return pod;
    }
    let before = pod.clone();
    service_account_plugin(&mut pod);
    if pod != before {
        reinvoke.extend(previously.drain(..));
    }
    for (i, hook) in hooks.iter_mut().enumerate() {
        if !reinvoke.contains(&i) {
            continue;
        }
        let out = (hook.call)(&pod);
        if out != pod {
            reinvoke.extend(previously.drain(..));
            pod = out;
        }
        if hook.if_needed {
            previously.push(i);
        }
    }
    pod
}

/// What the API server's validation would refuse: a mount of a volume that does not exist, two
/// mounts at one path in a container, two volumes with one name.
pub fn assert_valid(pod: &Value) {
    let volumes: Vec<&str> = pod["spec"]["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["name"].as_str())
        .collect();
    let unique: BTreeSet<&str> = volumes.iter().copied().collect();
    assert_eq!(unique.len(), volumes.len(), "duplicate volume: {volumes:?}");
    for c in containers(pod) {
        let mut paths = BTreeSet::new();
        for m in c["volumeMounts"].as_array().into_iter().flatten() {
            let name = m["name"].as_str().unwrap_or_default();
            assert!(
                unique.contains(name),
                "{} mounts missing volume {name}",
                c["name"]
            );
            assert!(
                paths.insert(m["mountPath"].as_str().unwrap_or_default()),
                "{} mounts twice at {}",
                c["name"],
                m["mountPath"]
            );
        }
    }
}
