//! A MailCredential read from a YAML file, re-read when its modification time or size
//! changes (single-machine use and tests; in Kubernetes the API source is used).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use mailcred_core::crd::MailCredential;
use mailcred_core::credential::from_yaml;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::ResourceFeed;

/// Largest credential file read (a MailCredential is a few KiB).
const MAX_FILE_BYTES: u64 = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum FileSourceError {
    #[error("cannot read credential file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("credential file {path} is larger than {MAX_FILE_BYTES} bytes")]
    TooLarge { path: PathBuf },
    #[error("credential file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: mailcred_core::Error,
    },
}

/// Reads the file once (failing loudly at startup) and then polls it.
pub async fn watch_file(
    path: PathBuf,
    default_namespace: Option<String>,
    poll: Duration,
    shutdown: CancellationToken,
) -> Result<ResourceFeed, FileSourceError> {
    let (stamp, resource) = load(&path, default_namespace.as_deref()).await?;
    let (tx, rx) = watch::channel(Some(Arc::new(resource)));
    tokio::spawn(async move {
        let mut last = stamp;
        let mut tick = tokio::time::interval(poll.max(Duration::from_millis(100)));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let Ok(now) = stamp_of(&path).await else {
                continue;
            };
            if now == last {
                continue;
            }
            match load(&path, default_namespace.as_deref()).await {
                Ok((stamp, resource)) => {
                    last = stamp;
                    tracing::info!(path = %path.display(), "credential file changed; reloaded");
                    let _ = tx.send(Some(Arc::new(resource)));
                }
                // Half-written file: keep the previous version and retry on the next change.
                Err(e) => {
                    tracing::warn!(error = %e, "credential file changed but does not load; keeping the previous version")
                }
            }
        }
    });
    Ok(rx)
}

type Stamp = (Option<SystemTime>, u64);

async fn stamp_of(path: &Path) -> std::io::Result<Stamp> {
    let meta = tokio::fs::metadata(path).await?;
    Ok((meta.modified().ok(), meta.len()))
}

pub(super) async fn load(
    path: &Path,
    default_namespace: Option<&str>,
) -> Result<(Stamp, MailCredential), FileSourceError> {
    let read_err = |source| FileSourceError::Read {
        path: path.to_owned(),
        source,
    };
    let stamp = stamp_of(path).await.map_err(read_err)?;
    if stamp.1 > MAX_FILE_BYTES {
        return Err(FileSourceError::TooLarge {
            path: path.to_owned(),
        });
    }
    let text = tokio::fs::read_to_string(path).await.map_err(read_err)?;
    let mut resource = from_yaml(&text).map_err(|source| FileSourceError::Parse {
        path: path.to_owned(),
        source,
    })?;
    if resource.metadata.namespace.is_none() {
        resource.metadata.namespace = default_namespace.map(str::to_owned);
    }
    Ok((stamp, resource))
}
