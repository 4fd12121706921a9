//! Fixtures for tests of mailcred-core and of the crates above it (feature `test-util`):
//! MailCredential builders, ready credentials, credential sources that succeed, fail or hang,
//! the reader of the real peers' env file (with its OAuth part, `PeersEnv::oauth`), scripted
//! TLS servers with a test CA (`ScriptedServer`, `TestTls`) and log capture (`CapturedLogs`).
//! Never compiled into a product build.
//!
//! ```ignore
//! let resource = TestCredential::new("ns", "mail").smtp("localhost", 587, TlsMode::Starttls).build();
//! let source = StaticSource::new(UsableCredential::test(&resource, "pw"));
//! ```

mod logs;
mod oauth_peers;
mod peers;
mod resource;
mod source;
mod tls;
mod tokens;

pub use logs::{CapturedLogs, LogFormat, ProcessLogs, process_logs};
pub use oauth_peers::OAuthPeers;
pub use peers::{PEERS_ENV_VAR, PeersEnv, peers_env};
pub use resource::{
    TestCredential, endpoint, manifest_json, placeholder_sealed_secret, write_manifest,
};
pub use source::{FailingSource, HangingSource, SealedSource, StaticDirectory, StaticSource};
pub use tls::{ScriptedServer, TestTls};
pub use tokens::{PeerTokens, StubTokens};
