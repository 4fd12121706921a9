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

use super::{EXPIRE_EVERY, Sources, kms_providers, oauth_tokens};
use crate::cli::Args;
use crate::plan::{AccountSetPlan, AppToken, SetFeed};
use crate::source::SourceMetrics;
use crate::source::accounts::{AccountSet, AccountSetMetrics, dir, watch};

/// What account-set mode runs on, for the front-ends and the registration API.
// The fields the registration API will read are unread until it is wired.
#[allow(dead_code)]
pub struct Accounts {
    /// The directory the front-ends look accounts up in; `last_used` for the API's GET.
    pub set: Arc<AccountSet>,
    /// The client of the watch (`None` with `--credential-dir`): the registration API creates
    /// and deletes MailCredentials with it.
    pub client: Option<kube::Client>,
    pub app_token: AppToken,
    pub registration_listen: std::net::SocketAddr,
    pub seal_kms_key: Option<String>,
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
            registration_listen: plan.registration_listen,
            seal_kms_key: plan.seal_kms_key,
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
    // WIRING (accountfront): replace the error below with
    //   let relay = relay.with_accounts(directory.clone()).context("SMTP relay in account mode")?;
    //   let imap = imap.with_accounts(directory).context("IMAP proxy in account mode")?;
    //   Ok((relay, imap))
    let _ = (relay, imap, directory);
    Err(anyhow::anyhow!(
        "this build's SMTP relay and IMAP proxy cannot serve an account set yet (SmtpRelay::with_accounts / ImapProxy::with_accounts missing)"
    ))
    .context("account-set mode")
}

/// HOOK (registration branch): starts the registration API on `accounts.registration_listen`
/// with `accounts.set` (last use, outlines), `accounts.client` (create/delete), the app token
/// and the seal key. Not built in yet: the log line says so.
pub(super) fn serve_registration(accounts: &Accounts, _shutdown: CancellationToken) {
    tracing::warn!(
        listen = %accounts.registration_listen,
        "the registration API is not part of this build; accounts come from the API server or --credential-dir only"
    );
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
