//! The env file of the real test peers (postfix, dovecot, moto, and the OAuth servers: see
//! `PeersEnv::oauth`) that `e2e/peers/start.sh DIR` writes to `DIR/env`, named by
//! `MAILCRED_PEERS_ENV`. Tests that need the peers are `#[ignore]`d and run with
//! `-- --include-ignored`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The variable that names the peers' env file.
pub const PEERS_ENV_VAR: &str = "MAILCRED_PEERS_ENV";

/// `KEY=value` lines of the peers' env file.
#[derive(Debug, Clone)]
pub struct PeersEnv {
    path: PathBuf,
    vars: BTreeMap<String, String>,
}

/// The peers' env file named by `MAILCRED_PEERS_ENV`; panics with what to do when it is unset
/// or unreadable (only ignored tests call this).
pub fn peers_env() -> PeersEnv {
    let path = std::env::var_os(PEERS_ENV_VAR).unwrap_or_else(|| {
        panic!(
            "{PEERS_ENV_VAR} is not set: start the peers with e2e/peers/start.sh DIR and export {PEERS_ENV_VAR}=DIR/env (scripts/test.sh does both)"
        )
    });
    PeersEnv::read(Path::new(&path)).unwrap_or_else(|e| panic!("{e}"))
}

impl PeersEnv {
    /// Reads an env file: `KEY=value` per line; blank lines and `#` comments skipped, one
    /// level of quotes around a value removed.
    pub fn read(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the peers env file {}: {e}", path.display()))?;
        Ok(Self {
            path: path.to_owned(),
            vars: parse(&text),
        })
    }

    /// The value of `key`; panics naming the file when it is missing.
    pub fn get(&self, key: &str) -> &str {
        self.vars.get(key).map(String::as_str).unwrap_or_else(|| {
            panic!(
                "{key} is missing in the peers env file {}",
                self.path.display()
            )
        })
    }

    /// The value of `key` as a port number.
    pub fn port(&self, key: &str) -> u16 {
        let value = self.get(key);
        value
            .parse()
            .unwrap_or_else(|_| panic!("{key}={value} in the peers env is not a port"))
    }

    /// The PEM text of the peers' test CA (`PEERS_CA_PEM` names the file).
    pub fn ca_pem(&self) -> String {
        let path = self.get("PEERS_CA_PEM");
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
    }

    /// Every variable, e.g. to pass on to a child process.
    pub fn vars(&self) -> &BTreeMap<String, String> {
        &self.vars
    }
}

impl std::ops::Index<&str> for PeersEnv {
    type Output = str;

    fn index(&self, key: &str) -> &str {
        self.get(key)
    }
}

fn parse(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), unquote(v.trim()).to_owned()))
        .collect()
}

fn unquote(value: &str) -> &str {
    for quote in ['"', '\''] {
        if let Some(inner) = value
            .strip_prefix(quote)
            .and_then(|v| v.strip_suffix(quote))
        {
            return inner;
        }
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_comments_and_quotes() {
        let vars =
            parse("# peers\nPEERS_HOST=localhost\n\nA=\"quoted value\"\nB='x=y'\nnot a pair\n");
        assert_eq!(vars["PEERS_HOST"], "localhost");
        assert_eq!(vars["A"], "quoted value");
        assert_eq!(vars["B"], "x=y");
        assert_eq!(vars.len(), 3);
    }

    #[test]
    fn missing_key_names_the_file() {
        let env = PeersEnv {
            path: "/tmp/peers/env".into(),
            vars: BTreeMap::new(),
        };
        let panic = std::panic::catch_unwind(|| env.get("PEERS_HOST").to_owned()).unwrap_err();
        let text = panic.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(
            text.contains("PEERS_HOST") && text.contains("/tmp/peers/env"),
            "{text}"
        );
    }
}
