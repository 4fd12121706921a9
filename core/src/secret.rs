//! Types that hold plaintext. Each zeroizes on drop and redacts itself in `Debug`; none
//! implements `Display`, `Serialize` or `Clone` of its contents by accident.

use std::fmt;

use secrecy::{ExposeSecret, SecretBox, SecretString};
use zeroize::Zeroizing;

use crate::Error;

/// Longest password (or app password / token) accepted for sealing, in bytes.
pub const MAX_PASSWORD_BYTES: usize = 8 * 1024;

/// A mail account password in memory. Only [`MailPassword::expose`] reveals it, and only the
/// upstream-authentication code should call that.
pub struct MailPassword(SecretString);

impl MailPassword {
    /// Accepts a non-empty password of at most [`MAX_PASSWORD_BYTES`] without NUL or line breaks
    /// (which no SMTP AUTH/IMAP LOGIN could carry safely).
    pub fn new(password: String) -> Result<Self, Error> {
        let password = Zeroizing::new(password);
        if password.is_empty() {
            return Err(Error::InvalidPassword("the password is empty".into()));
        }
        if password.len() > MAX_PASSWORD_BYTES {
            return Err(Error::InvalidPassword(format!(
                "the password is longer than {MAX_PASSWORD_BYTES} bytes"
            )));
        }
        if password.contains(['\0', '\r', '\n']) {
            return Err(Error::InvalidPassword(
                "the password contains NUL or a line break; check how it was read (a trailing newline from a file is stripped, others are not)".into(),
            ));
        }
        Ok(Self(SecretString::from(password.as_str())))
    }

    /// Reads a password from UTF-8 bytes, zeroizing the buffer it came in.
    pub fn from_bytes(bytes: Zeroizing<Vec<u8>>) -> Result<Self, Error> {
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| Error::InvalidPassword("the password is not valid UTF-8".into()))?;
        Self::new(text.to_owned())
    }

    /// The plaintext. Callers must not log, format or persist it.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// A second handle to the same plaintext (e.g. one per upstream connection pool).
    pub fn duplicate(&self) -> Self {
        Self(SecretString::from(self.expose()))
    }
}

impl fmt::Debug for MailPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MailPassword([REDACTED])")
    }
}

/// A 256-bit data key in memory.
pub struct DataKey(SecretBox<[u8; 32]>);

impl DataKey {
    pub const LEN: usize = 32;

    /// Takes a key from a buffer, which is zeroized afterwards by its owner's `Zeroizing`.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, Error> {
        let array: [u8; 32] = bytes.try_into().map_err(|_| Error::Malformed {
            field: "encryptedDataKey",
            reason: format!(
                "it unwraps to {} bytes, a data key has {}",
                bytes.len(),
                Self::LEN
            ),
        })?;
        Ok(Self(SecretBox::new(Box::new(array))))
    }

    /// A fresh random key from the system CSPRNG.
    pub fn generate() -> Result<Self, Error> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        aws_lc_rs::rand::fill(bytes.as_mut())
            .map_err(|_| Error::Crypto("the system random generator failed"))?;
        Self::from_slice(bytes.as_ref())
    }

    pub(crate) fn expose(&self) -> &[u8; 32] {
        self.0.expose_secret()
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey([REDACTED])")
    }
}
