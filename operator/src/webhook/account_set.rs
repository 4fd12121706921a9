//! Account-set mode of the webhook: a pod annotated `mailcred.io/account-set: <set>` gets the
//! sidecar serving every MailCredential labelled with that set (docs/accounts.md). Besides
//! the usual injection it gets the app's local token: the sidecar writes a fresh random token
//! into an in-memory emptyDir (`medium: Memory`, 1 MiB) mounted read-write in the sidecar and
//! read-only in every app container, so the token never touches a disk, the API, env or argv,
//! and other pods (other apps) never see it.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, EmptyDirVolumeSource, EnvVar, Pod, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use mailcred_core::accounts::{ACCOUNT_SET_ANNOTATION, check_set_name};
use mailcred_core::sidecar_contract as contract;

use super::annotation::{self, INJECT_ANNOTATION};
use super::inject::{SIDECAR_NAME, add_op, plain_env};
use crate::Result;

/// The app-token volume holds one short token: 1 MiB bounds what a misbehaving writer can
/// take of the pod's memory.
pub const APP_TOKEN_SIZE_LIMIT: &str = "1Mi";

/// What a pod asked the webhook for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// `mailcred.io/inject: a,b`: these named credentials.
    Credentials(Vec<String>),
    /// `mailcred.io/account-set: crm`: every credential of the set, picked per connection.
    AccountSet(String),
}

impl Target {
    /// The credentials the webhook checks before injecting (none for a set: accounts are
    /// registered after the pod starts, and the sidecar checks each one per connection).
    pub fn credentials(&self) -> &[String] {
        match self {
            Target::Credentials(names) => names,
            Target::AccountSet(_) => &[],
        }
    }

    /// Value of the `mailcred.io/injected` annotation and of log lines.
    pub fn describe(&self) -> String {
        match self {
            Target::Credentials(names) => names.join(","),
            Target::AccountSet(set) => format!("account-set={set}"),
        }
    }
}

/// The target the pod's annotations ask for; `None` when they ask for nothing. Both
/// annotations at once is refused: one sidecar serves named credentials or one set.
pub fn target(annotations: &BTreeMap<String, String>) -> Option<Result<Target, String>> {
    let inject = annotations.get(INJECT_ANNOTATION);
    let set = annotations.get(ACCOUNT_SET_ANNOTATION);
    match (inject, set) {
        (None, None) => None,
        (Some(_), Some(_)) => Some(Err(format!(
            "the pod has both {INJECT_ANNOTATION} and {ACCOUNT_SET_ANNOTATION}; one sidecar serves either named credentials or one account set: keep {ACCOUNT_SET_ANNOTATION} and label the named credentials with {ACCOUNT_SET_ANNOTATION}=<set>, or remove {ACCOUNT_SET_ANNOTATION}"
        ))),
        (Some(value), None) => Some(annotation::parse(value).map(Target::Credentials)),
        (None, Some(value)) => {
            let set = value.trim();
            Some(
                check_set_name(set)
                    .map(|()| Target::AccountSet(set.to_string()))
                    .map_err(|why| {
                        format!("annotation {ACCOUNT_SET_ANNOTATION}: {why}; fix the annotation")
                    }),
            )
        }
    }
}

/// The sidecar's argv in account-set mode.
pub fn sidecar_argv(set: &str) -> Vec<String> {
    vec![
        contract::flag(contract::FLAG_ACCOUNT_SET),
        set.to_string(),
        contract::flag(contract::FLAG_NAMESPACE),
        contract::env_reference(contract::ENV_POD_NAMESPACE),
        contract::flag(contract::FLAG_WRITE_APP_TOKEN),
        contract::APP_TOKEN_PATH.to_string(),
    ]
}

fn mount(read_only: bool) -> VolumeMount {
    VolumeMount {
        name: contract::APP_TOKEN_VOLUME.into(),
        mount_path: contract::APP_TOKEN_MOUNT_PATH.into(),
        read_only: Some(read_only),
        ..VolumeMount::default()
    }
}

/// The in-memory volume of the app token.
pub fn app_token_volume() -> Volume {
    Volume {
        name: contract::APP_TOKEN_VOLUME.into(),
        empty_dir: Some(EmptyDirVolumeSource {
            medium: Some("Memory".into()),
            size_limit: Some(Quantity(APP_TOKEN_SIZE_LIMIT.into())),
        }),
        ..Volume::default()
    }
}

/// Turns a freshly built sidecar into an account-set sidecar: its argv, the registration
/// listener and the writable token mount.
pub fn into_account_set_mode(sidecar: &mut Container, set: &str) {
    sidecar.args = Some(sidecar_argv(set));
    sidecar.env.get_or_insert_with(Vec::new).push(plain_env(
        contract::ENV_REGISTRATION_LISTEN,
        contract::DEFAULT_REGISTRATION_LISTEN.into(),
    ));
    sidecar
        .volume_mounts
        .get_or_insert_with(Vec::new)
        .push(mount(false));
}

/// The env every app container gets in account-set mode, besides the SMTP and IMAP URLs.
pub fn app_env() -> Vec<EnvVar> {
    vec![
        plain_env(
            contract::ENV_APP_TOKEN_FILE,
            contract::APP_TOKEN_PATH.into(),
        ),
        plain_env(
            contract::ENV_APP_REGISTRATION_URL,
            format!("http://{}", contract::DEFAULT_REGISTRATION_LISTEN),
        ),
    ]
}

/// Operations adding the token volume and its read-only mount in every app container, for
/// what the pod does not have yet (reinvocation adds nothing). They run after the identity
/// plan's operations, which always leave `spec.volumes` in place.
pub fn volume_ops(pod: &Pod, ops: &mut Vec<json_patch::PatchOperation>) -> Result<()> {
    let Some(spec) = &pod.spec else {
        return Ok(());
    };
    let has_volume = spec
        .volumes
        .iter()
        .flatten()
        .any(|v| v.name == contract::APP_TOKEN_VOLUME);
    if !has_volume {
        add_op(ops, &["spec", "volumes", "-"], &app_token_volume())?;
    }
    for (i, c) in spec.containers.iter().enumerate() {
        if c.name == SIDECAR_NAME {
            continue;
        }
        let index = i.to_string();
        match &c.volume_mounts {
            None => add_op(
                ops,
                &["spec", "containers", &index, "volumeMounts"],
                &[mount(true)],
            )?,
            Some(mounts) => {
                let taken = mounts.iter().any(|m| {
                    m.name == contract::APP_TOKEN_VOLUME
                        || m.mount_path.trim_end_matches('/') == contract::APP_TOKEN_MOUNT_PATH
                });
                if !taken {
                    add_op(
                        ops,
                        &["spec", "containers", &index, "volumeMounts", "-"],
                        &mount(true),
                    )?;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn one_annotation_or_the_other() {
        assert_eq!(target(&annotations(&[])), None);
        assert_eq!(
            target(&annotations(&[(ACCOUNT_SET_ANNOTATION, " crm ")])),
            Some(Ok(Target::AccountSet("crm".into())))
        );
        assert_eq!(
            target(&annotations(&[(INJECT_ANNOTATION, "a,b")])),
            Some(Ok(Target::Credentials(vec!["a".into(), "b".into()])))
        );
        let both = target(&annotations(&[
            (INJECT_ANNOTATION, "a"),
            (ACCOUNT_SET_ANNOTATION, "crm"),
        ]));
        let why = both.unwrap().unwrap_err();
        assert!(
            why.contains("both mailcred.io/inject and mailcred.io/account-set"),
            "{why}"
        );
        for bad in ["", "CRM", "crm,hd", "a_b", &"a".repeat(64)] {
            let why = target(&annotations(&[(ACCOUNT_SET_ANNOTATION, bad)]))
                .unwrap()
                .unwrap_err();
            assert!(
                why.starts_with("annotation mailcred.io/account-set: account set")
                    && why.contains("not a valid name")
                    && why.ends_with("fix the annotation"),
                "{why}"
            );
        }
    }

    #[test]
    fn argv_names_the_set_the_namespace_and_the_token_path() {
        assert_eq!(
            sidecar_argv("crm"),
            [
                "--account-set",
                "crm",
                "--namespace",
                "$(POD_NAMESPACE)",
                "--write-app-token",
                "/var/run/mailcred/app-token"
            ]
        );
        let v = serde_json::to_value(app_token_volume()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"name": "mailcred-app-token", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}})
        );
    }

    proptest::proptest! {
        #[test]
        fn accepted_sets_are_valid_set_names(v in "\\PC{0,80}") {
            let a = annotations(&[(ACCOUNT_SET_ANNOTATION, v.as_str())]);
            if let Some(Ok(Target::AccountSet(set))) = target(&a) {
                proptest::prop_assert!(check_set_name(&set).is_ok());
                proptest::prop_assert_eq!(set.as_str(), v.trim());
            }
        }
    }
}
