//! Everything the arguments decide, checked before the sidecar binds a port, reads the API or
//! initialises a cloud SDK: a missing credential name, an unknown namespace or an unreadable
//! token file is reported as what it is, not after a wait for a cloud metadata endpoint.

mod app_token;

use std::path::{Path, PathBuf};
use std::time::Duration;

use mailcred_core::MailPassword;
use mailcred_core::accounts::check_set_name;
use mailcred_imap::ImapProxyConfig;
use mailcred_smtp::RelayConfig;

pub use app_token::{AppToken, AppTokenError};

use crate::cli::Args;
use crate::source;
use crate::source::accounts::AccountSetConfig;

/// Where one front-end's MailCredential comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedSpec {
    /// A YAML file, re-read when it changes.
    File(PathBuf),
    /// A named resource in the Kubernetes API.
    Api { namespace: String, name: String },
}

/// Where an account set's MailCredentials come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetFeed {
    /// `*.yaml` manifests in a directory, re-read when they change.
    Dir(PathBuf),
    /// One list+watch by label selector in the namespace.
    Api,
}

/// What the sidecar serves.
pub enum Mode {
    /// One credential (or one per protocol).
    Single {
        smtp_feed: FeedSpec,
        /// `None`: IMAP uses the SMTP credential (one feed, one cache).
        imap_feed: Option<FeedSpec>,
    },
    /// Every MailCredential of a set, picked per connection.
    Accounts(AccountSetPlan),
}

/// Account-set mode's settings.
pub struct AccountSetPlan {
    pub config: AccountSetConfig,
    pub feed: SetFeed,
    /// Also the SMTP and IMAP local token (already in `relay` and `imap`), and the
    /// registration API's bearer token.
    pub app_token: AppToken,
}

/// The validated arguments.
pub struct Plan {
    pub mode: Mode,
    pub relay: RelayConfig,
    pub imap: ImapProxyConfig,
}

/// Arguments that parse but do not make a runnable sidecar.
#[derive(Debug, thiserror::Error)]
pub enum ArgError {
    #[error(
        "no credential given: pass --credential NAME (or --credential-file PATH, or --account-set SET)"
    )]
    NoCredential,
    #[error("{0}")]
    SetName(String),
    #[error(
        "account-set mode needs the pod's ServiceAccount (only accounts that list it are served): pass --service-account or set MAILCRED_SERVICE_ACCOUNT"
    )]
    NoServiceAccount,
    #[error(
        "account-set mode needs the app's local token: pass --app-token-file FILE, or --write-app-token PATH to make one"
    )]
    NoAppToken,
    #[error(transparent)]
    AppToken(#[from] AppTokenError),
    #[error(
        "--credential-dir holds an account set's manifests: it needs --account-set SET (one credential file: --credential-file)"
    )]
    DirWithoutSet,
    #[error(transparent)]
    Namespace(#[from] source::kube::KubeSourceError),
    #[error("cannot read the {which} token file {path}: {source}")]
    TokenFile {
        which: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the IMAP token file {path}: {source}")]
    TokenInvalid {
        path: PathBuf,
        source: mailcred_core::Error,
    },
}

impl Plan {
    pub fn from_args(args: &Args) -> Result<Self, ArgError> {
        let mut relay = relay_config(args)?;
        let mut imap = imap_config(args)?;
        if let Some(set) = &args.account_set {
            let plan = account_set_plan(args, set)?;
            // One token for the app: SMTP AUTH and IMAP LOGIN carry it with the account name.
            relay.local_token = Some(plan.app_token.expose().to_owned());
            imap.local_token = Some(
                MailPassword::new(plan.app_token.expose().to_owned()).map_err(|source| {
                    ArgError::TokenInvalid {
                        path: args
                            .app_token_file
                            .clone()
                            .or_else(|| args.write_app_token.clone())
                            .unwrap_or_default(),
                        source,
                    }
                })?,
            );
            return Ok(Self {
                mode: Mode::Accounts(plan),
                relay,
                imap,
            });
        }
        if args.credential_dir.is_some() {
            return Err(ArgError::DirWithoutSet);
        }
        if let Some(path) = &args.credential_file {
            return Ok(Self {
                mode: Mode::Single {
                    smtp_feed: FeedSpec::File(path.clone()),
                    imap_feed: None,
                },
                relay,
                imap,
            });
        }
        let first = args.credentials.first();
        let smtp_name = args.smtp_credential.as_ref().or(first);
        let imap_name = args.imap_credential.as_ref().or(first);
        let (Some(smtp_name), Some(imap_name)) = (smtp_name, imap_name) else {
            return Err(ArgError::NoCredential);
        };
        let namespace = source::kube::pod_namespace(args.namespace.as_deref())?;
        let api = |name: &String| FeedSpec::Api {
            namespace: namespace.clone(),
            name: name.clone(),
        };
        Ok(Self {
            mode: Mode::Single {
                smtp_feed: api(smtp_name),
                imap_feed: (imap_name != smtp_name).then(|| api(imap_name)),
            },
            relay,
            imap,
        })
    }
}

/// Account-set mode: the set name, the ServiceAccount, the namespace and the app token, all
/// checked (and the token file written) before any listener or cloud SDK.
fn account_set_plan(args: &Args, set: &str) -> Result<AccountSetPlan, ArgError> {
    check_set_name(set).map_err(ArgError::SetName)?;
    let service_account = args
        .service_account
        .clone()
        .filter(|s| !s.is_empty())
        .ok_or(ArgError::NoServiceAccount)?;
    let namespace = source::kube::pod_namespace(args.namespace.as_deref())?;
    let app_token = match (&args.app_token_file, &args.write_app_token) {
        (Some(path), _) => AppToken::read(path)?,
        (None, Some(path)) => AppToken::read_or_generate(path)?,
        (None, None) => return Err(ArgError::NoAppToken),
    };
    Ok(AccountSetPlan {
        config: AccountSetConfig {
            set: set.to_owned(),
            namespace,
            service_account,
            ttl: args.cache_ttl(),
            cache_size: args.account_cache_size,
        },
        feed: args
            .credential_dir
            .clone()
            .map_or(SetFeed::Api, SetFeed::Dir),
        app_token,
    })
}

fn read_token(which: &'static str, path: &Path) -> Result<String, ArgError> {
    let text = std::fs::read_to_string(path).map_err(|source| ArgError::TokenFile {
        which,
        path: path.to_owned(),
        source,
    })?;
    Ok(text.trim_end_matches(['\r', '\n']).to_owned())
}

fn relay_config(args: &Args) -> Result<RelayConfig, ArgError> {
    let local_token = match &args.smtp_token_file {
        Some(path) => Some(read_token("SMTP", path)?),
        None => None,
    };
    Ok(RelayConfig {
        pod: args.pod.clone(),
        max_line: args.smtp_max_line,
        command_timeout: Duration::from_secs(args.smtp_command_timeout),
        data_timeout: Duration::from_secs(args.smtp_data_timeout),
        upstream_timeout: Duration::from_secs(args.upstream_timeout),
        upstream_pool_size: args.upstream_pool_size,
        max_connections: args.max_connections,
        shutdown_grace: Duration::from_secs(args.shutdown_grace),
        local_token,
        allow_non_loopback: args.unsafe_listen_any,
        ..RelayConfig::default()
    })
}

fn imap_config(args: &Args) -> Result<ImapProxyConfig, ArgError> {
    let local_token = match &args.imap_token_file {
        Some(path) => Some(
            MailPassword::new(read_token("IMAP", path)?).map_err(|source| {
                ArgError::TokenInvalid {
                    path: path.clone(),
                    source,
                }
            })?,
        ),
        None => None,
    };
    Ok(ImapProxyConfig {
        pod: args.pod.clone(),
        local_token,
        max_append_bytes: args.imap_max_append,
        idle_timeout: Duration::from_secs(args.imap_idle_minutes.max(30) * 60),
        upstream_timeout: Duration::from_secs(args.upstream_timeout),
        max_connections: args.max_connections,
        allow_non_loopback: args.unsafe_listen_any,
        shutdown_grace: Duration::from_secs(args.shutdown_grace),
        ..ImapProxyConfig::default()
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn plan(argv: &[&str]) -> Result<Plan, ArgError> {
        let args =
            Args::try_parse_from(std::iter::once("mailcred-sidecar").chain(argv.iter().copied()))
                .expect("arguments parse");
        Plan::from_args(&args)
    }

    #[test]
    fn no_credential_is_an_argument_error() {
        assert!(matches!(
            plan(&["--namespace", "ns"]),
            Err(ArgError::NoCredential)
        ));
    }

    #[test]
    fn one_credential_serves_both_protocols_from_one_feed() {
        let p = plan(&["--credential", "mail", "--namespace", "ns"]).unwrap();
        let Mode::Single {
            smtp_feed,
            imap_feed,
        } = p.mode
        else {
            panic!("single-credential mode")
        };
        assert_eq!(
            smtp_feed,
            FeedSpec::Api {
                namespace: "ns".into(),
                name: "mail".into()
            }
        );
        assert!(imap_feed.is_none());
    }

    #[test]
    fn imap_may_use_another_credential() {
        let p = plan(&[
            "--credential",
            "a,b",
            "--imap-credential",
            "b",
            "--namespace",
            "ns",
        ])
        .unwrap();
        let Mode::Single { imap_feed, .. } = p.mode else {
            panic!("single-credential mode")
        };
        assert_eq!(
            imap_feed,
            Some(FeedSpec::Api {
                namespace: "ns".into(),
                name: "b".into()
            })
        );
    }

    #[test]
    fn unreadable_token_file_is_reported_before_anything_runs() {
        let err = plan(&[
            "--credential-file",
            "/nonexistent/c.yaml",
            "--smtp-token-file",
            "/nonexistent/token",
        ])
        .err()
        .expect("refused");
        assert!(
            err.to_string()
                .contains("SMTP token file /nonexistent/token"),
            "{err}"
        );
    }

    #[test]
    fn account_set_mode_checks_name_service_account_and_token_first() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("app-token");
        let token_arg = token.to_str().unwrap();
        let base = ["--namespace", "ns", "--service-account", "app"];
        let with = |extra: &[&str]| {
            let mut argv: Vec<&str> = base.to_vec();
            argv.extend_from_slice(extra);
            plan(&argv)
        };
        let err = |r: Result<Plan, ArgError>| r.err().expect("refused").to_string();
        assert!(
            err(with(&[
                "--account-set",
                "CRM",
                "--write-app-token",
                token_arg
            ]))
            .contains("not a valid name")
        );
        assert!(err(with(&["--account-set", "crm"])).contains("--write-app-token"));
        assert!(
            err(plan(&[
                "--account-set",
                "crm",
                "--namespace",
                "ns",
                "--write-app-token",
                token_arg
            ]))
            .contains("ServiceAccount")
        );
        assert!(!token.exists(), "nothing written before every check passed");
        assert!(
            err(plan(&["--credential-dir", "/d", "--namespace", "ns"])).contains("--account-set")
        );
        let p = with(&["--account-set", "crm", "--write-app-token", token_arg]).unwrap();
        let Mode::Accounts(set) = p.mode else {
            panic!("account-set mode")
        };
        assert_eq!(set.config.set, "crm");
        assert_eq!(set.config.service_account, "app");
        assert_eq!(set.feed, SetFeed::Api);
        assert_eq!(set.config.cache_size, 1000);
        let written = std::fs::read_to_string(&token).unwrap();
        assert_eq!(written.trim_end(), set.app_token.expose());
        assert_eq!(p.relay.local_token.as_deref(), Some(set.app_token.expose()));
        assert_eq!(
            p.imap.local_token.as_ref().map(|t| t.expose().to_owned()),
            Some(set.app_token.expose().to_owned())
        );
    }
}
