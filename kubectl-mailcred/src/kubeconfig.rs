//! The namespace kubectl would use: the current context's, from `$KUBECONFIG` (its first path)
//! or `~/.kube/config`. No API access: only the file is read.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

/// Kubernetes' own fallback when the context names no namespace.
pub const DEFAULT_NAMESPACE: &str = "default";

/// Only the fields that decide the namespace; everything else in the file is ignored.
#[derive(Deserialize, Default)]
struct Kubeconfig {
    #[serde(rename = "current-context", default)]
    current_context: Option<String>,
    #[serde(default)]
    contexts: Vec<NamedContext>,
}

#[derive(Deserialize)]
struct NamedContext {
    name: String,
    #[serde(default)]
    context: Option<ContextFields>,
}

#[derive(Deserialize)]
struct ContextFields {
    #[serde(default)]
    namespace: Option<String>,
}

/// The kubeconfig file kubectl reads first, if any.
pub fn path_from_env() -> Option<PathBuf> {
    if let Some(list) = std::env::var_os("KUBECONFIG") {
        return std::env::split_paths(&list).find(|p| !p.as_os_str().is_empty());
    }
    std::env::var_os("HOME").map(|home| Path::new(&home).join(".kube").join("config"))
}

/// The current context's namespace; `default` when there is no file, no current context or
/// the context names no namespace. A file that exists but does not parse is an error: sealing
/// for a guessed namespace would produce a secret that never opens.
pub fn namespace(path: Option<&Path>) -> anyhow::Result<String> {
    let Some(path) = path else {
        return Ok(DEFAULT_NAMESPACE.to_string());
    };
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(DEFAULT_NAMESPACE.to_string());
        }
        Err(e) => {
            return Err(e).with_context(|| {
                format!(
                    "cannot read the kubeconfig {}; give --namespace",
                    path.display()
                )
            });
        }
    };
    if text.trim().is_empty() {
        return Ok(DEFAULT_NAMESPACE.to_string());
    }
    let config: Kubeconfig = serde_saphyr::from_str(&text).with_context(|| {
        format!(
            "cannot parse the kubeconfig {}; give --namespace",
            path.display()
        )
    })?;
    let namespace = config.current_context.and_then(|current| {
        config
            .contexts
            .into_iter()
            .find(|c| c.name == current)
            .and_then(|c| c.context)
            .and_then(|c| c.namespace)
    });
    Ok(namespace
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| DEFAULT_NAMESPACE.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = "apiVersion: v1\nkind: Config\ncurrent-context: shop-admin\nclusters: []\nusers: []\ncontexts:\n- name: other\n  context:\n    cluster: c\n    namespace: other-ns\n- name: shop-admin\n  context:\n    cluster: c\n    user: u\n    namespace: shop\n";

    fn with_file(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn the_current_contexts_namespace_is_used() {
        let (_dir, path) = with_file(CONFIG);
        assert_eq!(namespace(Some(&path)).unwrap(), "shop");
    }

    #[test]
    fn falls_back_to_default() {
        let (_dir, no_ns) = with_file(&CONFIG.replace("    namespace: shop\n", ""));
        assert_eq!(namespace(Some(&no_ns)).unwrap(), "default");
        let (_dir2, no_current) = with_file(&CONFIG.replace("current-context: shop-admin\n", ""));
        assert_eq!(namespace(Some(&no_current)).unwrap(), "default");
        let (_dir3, dangling) =
            with_file(&CONFIG.replace("current-context: shop-admin", "current-context: gone"));
        assert_eq!(namespace(Some(&dangling)).unwrap(), "default");
        let missing = _dir3.path().join("absent");
        assert_eq!(namespace(Some(&missing)).unwrap(), "default");
        assert_eq!(namespace(None).unwrap(), "default");
    }

    #[test]
    fn an_unparsable_file_is_an_error_naming_the_flag() {
        let (_dir, path) = with_file("contexts: [unclosed\n");
        let err = format!("{:#}", namespace(Some(&path)).unwrap_err());
        assert!(err.contains("give --namespace"), "{err}");
    }
}
