//! mailcred's registration page (docs/link-sealing.md): the mailbox owner opens a one-time link
//! made by `kubectl mailcred request`, checks what is being registered, types the password, and
//! the page seals it in the browser (WebCrypto: AES-256-GCM with the envelope's associated data,
//! the data key wrapped with RSA-OAEP-SHA-256 to the credential's KMS public key). This service
//! receives ciphertext only and holds no decrypt right of any kind: no KMS permission, no key
//! file, no Secrets; it can read and update MailCredentials, nothing else.

pub mod body;
pub mod http;
pub mod keys;
pub mod limit;
pub mod refusal;
pub mod service;
pub mod store;
