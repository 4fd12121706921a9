//! Everything the arguments decide, checked before the sidecar binds a port, reads the API or
//! initialises a cloud SDK: a missing credential name, an unknown namespace or an unreadable
//! token file is reported as what it is, not after a wait for a cloud metadata endpoint.

use std::path::{Path, PathBuf};
use std::time::Duration;

use mailcred_core::MailPassword;
use mailcred_imap::ImapProxyConfig;
use mailcred_smtp::RelayConfig;

use crate::cli::Args;
use crate::source;

/// Where one front-end's MailCredential comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedSpec {
    /// A YAML file, re-read when it changes.
    File(PathBuf),
    /// A named resource in the Kubernetes API.
    Api { namespace: String, name: String },
}

/// The validated arguments.
pub struct Plan {
    pub smtp_feed: FeedSpec,
    /// `None`: IMAP uses the SMTP credential (one feed, one cache).
    pub imap_feed: Option<FeedSpec>,
    pub relay: RelayConfig,
    pub imap: ImapProxyConfig,
}

/// Arguments that parse but do not make a runnable sidecar.
#[derive(Debug, thiserror::Error)]
pub enum ArgError {
    #[error("no credential given: pass --credential NAME (or --credential-file PATH)")]
    NoCredential,
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
        let relay = relay_config(args)?;
        let imap = imap_config(args)?;
        if let Some(path) = &args.credential_file {
            return Ok(Self {
                smtp_feed: FeedSpec::File(path.clone()),
                imap_feed: None,
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
            smtp_feed: api(smtp_name),
            imap_feed: (imap_name != smtp_name).then(|| api(imap_name)),
            relay,
            imap,
        })
    }
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
        assert_eq!(
            p.smtp_feed,
            FeedSpec::Api {
                namespace: "ns".into(),
                name: "mail".into()
            }
        );
        assert!(p.imap_feed.is_none());
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
        assert_eq!(
            p.imap_feed,
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
}
