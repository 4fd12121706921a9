//! The app's local token in account-set mode: the one secret between the application and its
//! sidecar (SMTP AUTH, IMAP LOGIN, registration API). Read from a file, or made here: 32 bytes
//! from the OS CSPRNG, hex, written with mode 0440 to the in-memory volume the app containers
//! mount read-only. Never logged (redacted `Debug`, no `Display`), zeroized on drop.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

/// Random bytes in a generated token.
pub const TOKEN_BYTES: usize = 32;
/// Shortest token accepted from a file: 128 bits of hex.
pub const MIN_TOKEN_CHARS: usize = 32;
/// Longest token accepted from a file.
pub const MAX_TOKEN_CHARS: usize = 512;

#[derive(Debug, thiserror::Error)]
pub enum AppTokenError {
    #[error("cannot read the app token file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the app token in {path} must be {MIN_TOKEN_CHARS} to {MAX_TOKEN_CHARS} printable ASCII characters without spaces; make one with `head -c 32 /dev/urandom | xxd -p -c 64` or use --write-app-token"
    )]
    Malformed { path: PathBuf },
    #[error("cannot write the app token to {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the system random generator failed")]
    Random,
}

/// The token text, zeroized on drop.
pub struct AppToken(Zeroizing<String>);

impl std::fmt::Debug for AppToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AppToken([REDACTED])")
    }
}

impl AppToken {
    /// The text, for the front-ends' and the registration API's comparison only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Reads the token from `path` (one line; the newline is not part of it).
    pub fn read(path: &Path) -> Result<Self, AppTokenError> {
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|source| {
            AppTokenError::Read {
                path: path.to_owned(),
                source,
            }
        })?);
        let token = text.trim_end_matches(['\r', '\n']);
        if !well_formed(token) {
            return Err(AppTokenError::Malformed {
                path: path.to_owned(),
            });
        }
        Ok(Self(Zeroizing::new(token.to_owned())))
    }

    /// A token for `path`: the one already there if well-formed (the sidecar container
    /// restarted in the same pod), else a fresh one written there with mode 0440.
    pub fn read_or_generate(path: &Path) -> Result<Self, AppTokenError> {
        if let Ok(existing) = Self::read(path) {
            return Ok(existing);
        }
        let token = Self::generate()?;
        write_0440(path, token.expose())?;
        Ok(token)
    }

    fn generate() -> Result<Self, AppTokenError> {
        let mut bytes = Zeroizing::new([0u8; TOKEN_BYTES]);
        aws_lc_rs::rand::fill(bytes.as_mut()).map_err(|_| AppTokenError::Random)?;
        let mut hex = Zeroizing::new(String::with_capacity(TOKEN_BYTES * 2));
        for b in bytes.iter() {
            hex.push(char::from(HEX[usize::from(b >> 4)]));
            hex.push(char::from(HEX[usize::from(b & 0xf)]));
        }
        Ok(Self(hex))
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn well_formed(token: &str) -> bool {
    (MIN_TOKEN_CHARS..=MAX_TOKEN_CHARS).contains(&token.len())
        && token.bytes().all(|b| b.is_ascii_graphic())
}

/// Writes `token` to a temporary file beside `path` (created 0440) and renames it over
/// `path`, so the app never reads half a token.
fn write_0440(path: &Path, token: &str) -> Result<(), AppTokenError> {
    let write_err = |source| AppTokenError::Write {
        path: path.to_owned(),
        source,
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    // A leftover of a crash; its mode (0440) would refuse a second create.
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o440)
        .open(&tmp)
        .map_err(write_err)?;
    file.write_all(token.as_bytes())
        .and_then(|()| file.write_all(b"\n"))
        .and_then(|()| file.sync_all())
        .map_err(write_err)?;
    std::fs::rename(&tmp, path).map_err(write_err)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn generated_token_is_64_hex_written_0440_and_kept_on_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app-token");
        let first = AppToken::read_or_generate(&path).unwrap();
        assert_eq!(first.expose().len(), 64);
        assert!(first.expose().bytes().all(|b| HEX.contains(&b)));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o440);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("{}\n", first.expose())
        );
        let again = AppToken::read_or_generate(&path).unwrap();
        assert_eq!(
            again.expose(),
            first.expose(),
            "a restart keeps the app's token"
        );
        assert_eq!(format!("{again:?}"), "AppToken([REDACTED])");
    }

    #[test]
    fn fresh_tokens_differ_and_a_malformed_file_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app-token");
        std::fs::write(&path, "short\n").unwrap();
        let token = AppToken::read_or_generate(&path).unwrap();
        assert_ne!(token.expose(), "short");
        let other = AppToken::generate().unwrap();
        assert_ne!(token.expose(), other.expose());
    }

    #[test]
    fn a_read_token_must_be_long_enough() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t");
        std::fs::write(&path, "too-short\n").unwrap();
        let e = AppToken::read(&path).unwrap_err().to_string();
        assert!(e.contains("32 to 512") && !e.contains("too-short"), "{e}");
        std::fs::write(&path, format!("{}\n", "a".repeat(40))).unwrap();
        assert_eq!(AppToken::read(&path).unwrap().expose(), "a".repeat(40));
    }
}
