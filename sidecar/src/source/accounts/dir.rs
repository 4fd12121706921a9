//! The account set from a directory of MailCredential manifests (`--credential-dir`, local
//! use, e2e and bench without an API server): every `*.yaml` file in it that carries the set's
//! label is an account. The directory is re-scanned every `poll`; a file is re-read when its
//! modification time or size changes, a half-written one keeps its previous version.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use mailcred_core::crd::MailCredential;
use tokio_util::sync::CancellationToken;

use super::super::file::{FileSourceError, load};
use super::AccountSet;

/// Most manifests read from the directory (a bound on memory and scan time).
pub const MAX_FILES: usize = 20_000;

#[derive(Debug, thiserror::Error)]
pub enum DirSourceError {
    #[error("cannot read the credential directory {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the credential directory {path} holds more than {MAX_FILES} manifests")]
    TooMany { path: PathBuf },
}

type Stamp = (Option<SystemTime>, u64);

/// What the last scan read: per file, its stamp and resource.
#[derive(Default)]
struct Scan {
    files: HashMap<PathBuf, (Stamp, Arc<MailCredential>)>,
}

/// Scans `dir` once (failing loudly at startup if it cannot be read), then polls it.
pub async fn watch_dir(
    dir: PathBuf,
    set: Arc<AccountSet>,
    poll: Duration,
    shutdown: CancellationToken,
) -> Result<(), DirSourceError> {
    let mut scan = Scan::default();
    scan.rescan(&dir, &set).await?;
    tracing::info!(dir = %dir.display(), accounts = set.len(), "account set read from the directory");
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(poll.max(Duration::from_millis(100)));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            if let Err(e) = scan.rescan(&dir, &set).await {
                tracing::warn!(error = %e, "credential directory unreadable; keeping the accounts loaded");
            }
        }
    });
    Ok(())
}

impl Scan {
    /// Reads what changed and hands the set the full list (it removes what is gone).
    async fn rescan(&mut self, dir: &Path, set: &AccountSet) -> Result<(), DirSourceError> {
        let paths = manifests(dir).await?;
        let mut next = HashMap::with_capacity(paths.len());
        let mut changed = paths.len() != self.files.len();
        for (path, stamp) in paths {
            let previous = self.files.remove(&path);
            if let Some((old, resource)) = &previous
                && *old == stamp
            {
                next.insert(path, (stamp, resource.clone()));
                continue;
            }
            match load(&path, Some(&set.config().namespace)).await {
                Ok((stamp, resource)) => {
                    changed = true;
                    next.insert(path, (stamp, Arc::new(resource)));
                }
                // Half-written or broken: keep the previous version (its old stamp, so the
                // next scan tries again), or skip a new file until it loads.
                Err(e) => {
                    log_unloadable(&e);
                    if let Some(kept) = previous {
                        next.insert(path, kept);
                    }
                }
            }
        }
        changed |= !self.files.is_empty();
        self.files = next;
        if changed || !set.loaded() {
            let resources = self.files.values().map(|(_, r)| (**r).clone()).collect();
            set.replace_all(resources);
        }
        Ok(())
    }
}

fn log_unloadable(e: &FileSourceError) {
    tracing::warn!(error = %e, "credential manifest does not load; skipped until it changes");
}

/// The `*.yaml` files of `dir` with their stamps.
async fn manifests(dir: &Path) -> Result<Vec<(PathBuf, Stamp)>, DirSourceError> {
    let read_err = |source| DirSourceError::Read {
        path: dir.to_owned(),
        source,
    };
    let mut entries = tokio::fs::read_dir(dir).await.map_err(read_err)?;
    let mut found = Vec::new();
    while let Some(entry) = entries.next_entry().await.map_err(read_err)? {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        // Skip what vanished between listing and stat (a rename in progress).
        let Ok(meta) = entry.metadata().await else {
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        if found.len() >= MAX_FILES {
            return Err(DirSourceError::TooMany {
                path: dir.to_owned(),
            });
        }
        found.push((path, (meta.modified().ok(), meta.len())));
    }
    Ok(found)
}
