//! A directory of MailCredential YAML files (`kubectl mailcred request -w DIR/x.yaml`), for
//! the local e2e suite and the demo. The version of a file is the SHA-256 of its bytes; a write
//! re-reads the file under a lock, compares, and renames a complete new file into place, so a
//! sidecar polling the file never reads half of one.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use mailcred_core::crd::MailCredential;
use mailcred_core::credential::from_yaml;
use tokio::sync::Mutex;

use super::{Store, StoreError, Stored};

/// Files looked at per directory scan, and bytes per file: a bound on work per request.
const MAX_FILES: usize = 1000;
const MAX_FILE_BYTES: u64 = 256 * 1024;

pub struct FileStore {
    dir: PathBuf,
    write_lock: Mutex<()>,
}

impl FileStore {
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            write_lock: Mutex::new(()),
        }
    }

    fn find(&self, namespace: &str, name: &str) -> Result<Option<(PathBuf, Stored)>, StoreError> {
        let entries = std::fs::read_dir(&self.dir).map_err(|e| {
            StoreError::Unavailable(format!("cannot list {}: {e}", self.dir.display()))
        })?;
        for entry in entries.take(MAX_FILES).flatten() {
            let path = entry.path();
            let is_yaml = path.extension().is_some_and(|e| e == "yaml" || e == "yml");
            if !is_yaml || entry.metadata().map_or(true, |m| m.len() > MAX_FILE_BYTES) {
                continue;
            }
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            let Ok(resource) = std::str::from_utf8(&bytes)
                .map_err(|_| ())
                .and_then(|t| from_yaml(t).map_err(|_| ()))
            else {
                continue;
            };
            if resource.metadata.namespace.as_deref() == Some(namespace)
                && resource.metadata.name.as_deref() == Some(name)
            {
                let version = sha256_hex(&bytes);
                return Ok(Some((path, Stored { resource, version })));
            }
        }
        Ok(None)
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn write_atomically(path: &Path, text: &str) -> Result<(), StoreError> {
    let tmp = path.with_extension("yaml.linkpage-tmp");
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| StoreError::Unavailable(format!("cannot write {}: {e}", path.display())))
}

#[async_trait]
impl Store for FileStore {
    async fn get(&self, namespace: &str, name: &str) -> Result<Option<Stored>, StoreError> {
        Ok(self.find(namespace, name)?.map(|(_, stored)| stored))
    }

    async fn replace(&self, resource: &MailCredential, version: &str) -> Result<(), StoreError> {
        let _guard = self.write_lock.lock().await;
        let namespace = resource.metadata.namespace.as_deref().unwrap_or_default();
        let name = resource.metadata.name.as_deref().unwrap_or_default();
        let Some((path, current)) = self.find(namespace, name)? else {
            return Err(StoreError::Conflict);
        };
        if current.version != version {
            return Err(StoreError::Conflict);
        }
        let yaml = serde_saphyr::to_string(resource)
            .map_err(|e| StoreError::Unavailable(format!("cannot render YAML: {e}")))?;
        write_atomically(&path, &format!("---\n{yaml}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailcred_core::testkit::TestCredential;

    fn write(dir: &Path, file: &str, resource: &MailCredential) {
        let yaml = serde_saphyr::to_string(resource).unwrap();
        std::fs::write(dir.join(file), format!("---\n{yaml}")).unwrap();
    }

    #[tokio::test]
    async fn finds_by_namespace_and_name_and_writes_only_at_the_version_read() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "a.yaml",
            &TestCredential::new("shop", "billing").build(),
        );
        write(
            dir.path(),
            "b.yaml",
            &TestCredential::new("shop", "support").build(),
        );
        std::fs::write(dir.path().join("junk.yaml"), "not: [a credential").unwrap();
        let store = FileStore::new(dir.path().to_path_buf());
        assert!(store.get("shop", "nobody").await.unwrap().is_none());
        assert!(store.get("other", "billing").await.unwrap().is_none());
        let read = store.get("shop", "billing").await.unwrap().unwrap();

        let mut edited = read.resource.clone();
        edited.spec.username = "new@example.test".into();
        store.replace(&edited, &read.version).await.unwrap();
        // The same version again: the file moved on, so the second write is refused.
        assert!(matches!(
            store.replace(&edited, &read.version).await,
            Err(StoreError::Conflict)
        ));
        let again = store.get("shop", "billing").await.unwrap().unwrap();
        assert_eq!(again.resource.spec.username, "new@example.test");
        assert_ne!(again.version, read.version);
        let text = std::fs::read_to_string(dir.path().join("a.yaml")).unwrap();
        assert!(text.contains("new@example.test"));
    }
}
