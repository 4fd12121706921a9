//! Account-set mode's part of the sidecar's assembly: the set and its feed (one list+watch by
//! label selector, or `--credential-dir`), then the KMS, the expiry timer, the front-ends in
//! account mode, and the hook of the registration API.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use mailcred_core::credential::{CredentialSource, UsableCredential};
use mailcred_core::{Error, accounts::AccountDirectory};
use mailcred_imap::ImapProxy;
use mailcred_smtp::SmtpRelay;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;
use zeroize::Zeroizing;

/// Bound of one KMS call of the registration API's sealer (GenerateDataKey).
const REGISTRATION_KMS_TIMEOUT: Duration = Duration::from_secs(20);

use super::{EXPIRE_EVERY, Sources, kms_providers, oauth_tokens};
use crate::cli::Args;
use crate::listen;
use crate::plan::{AccountSetPlan, AppToken, SetFeed};
use crate::registration::{self, KubeStore, Parts, RegistrationApi};
use crate::source::SourceMetrics;
use crate::source::accounts::{AccountSet, AccountSetMetrics, dir, watch};

/// What account-set mode runs on, for the front-ends and the registration API.
pub struct Accounts {
    /// The directory the front-ends look accounts up in; `last_used` for the API's GET.
    pub set: Arc<AccountSet>,
    /// The client of the watch (`None` with `--credential-dir`): the registration API creates
    /// and deletes MailCredentials with it.
    pub client: Option<kube::Client>,
    /// The registration API's bearer token (`app_token.expose().as_bytes()`).
    pub app_token: AppToken,
}

/// Fills the set (the first list must succeed), then attaches the KMS: no cloud SDK starts
/// before the API (or the directory) answered.
pub(super) async fn start(
    args: &Args,
    plan: AccountSetPlan,
    registry: &mut Registry,
    source_metrics: SourceMetrics,
    shutdown: CancellationToken,
) -> anyhow::Result<Sources> {
    let metrics = AccountSetMetrics::register(registry, source_metrics);
    let set = AccountSet::new(plan.config, metrics);
    let client = match &plan.feed {
        SetFeed::Dir(path) => {
            dir::watch_dir(
                path.clone(),
                set.clone(),
                Duration::from_millis(args.file_poll_ms),
                shutdown.clone(),
            )
            .await?;
            None
        }
        SetFeed::Api => {
            let client = kube::Client::try_default()
                .await
                .map_err(watch::AccountWatchError::Config)?;
            watch::watch_set_with_client(client.clone(), set.clone(), shutdown.clone()).await?;
            Some(client)
        }
    };
    let tokens = oauth_tokens(registry);
    let kms = Arc::new(kms_providers(args).await?);
    set.attach(kms, Some(tokens));
    let expiry = {
        let (set, shutdown) = (set.clone(), shutdown);
        tokio::spawn(async move { set.expire_until(EXPIRE_EVERY, shutdown).await })
    };
    let loaded = {
        let set = set.clone();
        Box::new(move || set.loaded())
    };
    tracing::info!(
        set = %set.config().set,
        namespace = %set.config().namespace,
        accounts = set.len(),
        cache_size = set.config().cache_size,
        "account-set mode"
    );
    // The front-ends are given the directory; until a connection picks an account, nothing.
    let none: Arc<dyn CredentialSource> = Arc::new(NoAccountChosen);
    Ok(Sources {
        smtp: none.clone(),
        imap: none,
        loaded,
        expiry: vec![expiry],
        accounts: Some(Accounts {
            set,
            client,
            app_token: plan.app_token,
        }),
    })
}

/// Puts both front-ends in account mode (the application names the account per connection).
pub(super) fn front_ends(
    relay: SmtpRelay,
    imap: ImapProxy,
    accounts: &Accounts,
) -> anyhow::Result<(SmtpRelay, ImapProxy)> {
    let directory: Arc<dyn AccountDirectory> = accounts.set.clone();
    let relay = relay
        .with_accounts(directory.clone())
        .context("SMTP relay in account-set mode")?;
    let imap = imap
        .with_accounts(directory)
        .context("IMAP proxy in account-set mode")?;
    Ok((relay, imap))
}

/// Starts the registration API on its loopback listener (bound here, before it is
/// announced): the set's name, namespace and ServiceAccount, the app token, a store over the
/// watch's client, the encrypt-only sealer the flags name, and the set's last-use lookup.
/// With `--credential-dir` there is no API server to create accounts in: not served.
pub(super) async fn serve_registration(
    args: &Args,
    accounts: &Accounts,
    shutdown: CancellationToken,
) -> anyhow::Result<Option<tokio::task::JoinHandle<std::io::Result<()>>>> {
    let Some(client) = accounts.client.clone() else {
        tracing::info!(
            "registration API not served: --credential-dir has no API server to create accounts in"
        );
        return Ok(None);
    };
    let flags = &args.registration;
    let listener = listen::bind(
        "registration",
        flags.registration_listen,
        args.unsafe_listen_any,
    )
    .await?;
    let sealer = registration::build_sealer(
        flags,
        args.local_key_file.as_deref(),
        &args.trusted_kms_endpoints,
        REGISTRATION_KMS_TIMEOUT,
    )
    .await
    .context("the registration API's sealing key")?;
    let config = accounts.set.config();
    let last_used: registration::LastUsed = {
        let set = accounts.set.clone();
        Arc::new(move |name| set.last_used(name))
    };
    let api = Arc::new(RegistrationApi::new(
        Parts {
            set: config.set.clone(),
            namespace: config.namespace.clone(),
            service_account: config.service_account.clone(),
            app_token: Zeroizing::new(accounts.app_token.expose().as_bytes().to_vec()),
            store: Arc::new(KubeStore::new(client, &config.namespace)),
            checker: registration::upstream_checker(flags),
            sealer,
            last_used,
        },
        flags,
    ));
    tracing::info!(
        listen = %listener.local_addr().context("registration listener address")?,
        "registration API serving"
    );
    Ok(Some(tokio::spawn(registration::serve(
        listener, api, shutdown,
    ))))
}

/// The source a front-end holds in account mode before a connection picks an account: it
/// has nothing to give (front-ends in account mode ask the directory instead).
struct NoAccountChosen;

#[async_trait::async_trait]
impl CredentialSource for NoAccountChosen {
    async fn credential(&self) -> Result<Arc<UsableCredential>, Error> {
        Err(Error::NotLoaded)
    }
}
