//! What a sealed secret is bound to: the resource's identity and everything that decides where
//! the password (or OAuth grant secret) is sent. Its canonical encoding is the AES-GCM
//! associated data (docs/envelope.md).

use std::collections::BTreeMap;

use aws_lc_rs::digest;

use crate::Error;
use crate::crd::{
    ClientAuthMethod, EndpointKind, KmsKeyRef, MailCredential, MailCredentialSpec, OAuthGrantKind,
    OAuthProvider, OAuthSpec, TlsMode,
};
use crate::upstream_auth::SaslMechanism;

/// Envelope version of a sealed password.
pub const PASSWORD_VERSION: u32 = 1;
/// Envelope version of a sealed OAuth grant secret (binds [`BoundOAuth`] too).
pub const OAUTH_VERSION: u32 = 2;

/// KMS EncryptionContext key for the namespace (IAM policies condition on it).
pub const CONTEXT_NAMESPACE: &str = "mailcred.io/namespace";
/// KMS EncryptionContext key for the resource name.
pub const CONTEXT_NAME: &str = "mailcred.io/name";

const AAD_MAGIC: &[u8] = b"mailcred.io/envelope\0";

/// The KMS EncryptionContext: namespace and name. Not the uid, because GitOps re-creates objects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncryptionContext {
    pub namespace: String,
    pub name: String,
}

impl EncryptionContext {
    pub fn to_map(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (CONTEXT_NAMESPACE.to_string(), self.namespace.clone()),
            (CONTEXT_NAME.to_string(), self.name.clone()),
        ])
    }

    /// Length-prefixed encoding, used where a byte string must stand for the context
    /// (the local provider's associated data).
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for part in [CONTEXT_NAMESPACE, &self.namespace, CONTEXT_NAME, &self.name] {
            put_field(&mut out, part.as_bytes());
        }
        out
    }
}

/// An upstream endpoint as bound into the envelope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BoundEndpoint {
    pub kind: EndpointKind,
    /// ASCII-lowercased, trailing dot removed: DNS names compare case-insensitively.
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    pub insecure: bool,
    /// SHA-256 of the `caPem` text, if a CA is named: swapping the CA would allow interception.
    pub ca_sha256: Option<[u8; 32]>,
}

/// Every `spec.oauth` field that decides where the grant secret is sent or what it obtains.
/// Defaults are resolved (presets), so spelling out a preset's value is not an edit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BoundOAuth {
    pub provider: OAuthProvider,
    pub tenant: Option<String>,
    /// [`OAuthSpec::token_endpoint_url`]: where the secret goes.
    pub token_endpoint: String,
    pub client_id: String,
    /// Also the payload kind: which fields the sealed JSON carries.
    pub grant: OAuthGrantKind,
    pub client_auth: ClientAuthMethod,
    /// Sorted and deduplicated: OAuth scopes are a set (RFC 6749 §3.3), so reordering is not
    /// an edit, while adding, removing or changing one is.
    pub scopes: Vec<String>,
    pub mechanism: SaslMechanism,
    pub subject: Option<String>,
    pub key_id: Option<String>,
    pub certificate_thumbprint: Option<String>,
    pub ca_sha256: Option<[u8; 32]>,
    pub insecure: bool,
}

impl BoundOAuth {
    pub fn new(oauth: &OAuthSpec) -> Result<Self, Error> {
        let mut scopes = oauth.effective_scopes();
        scopes.sort();
        scopes.dedup();
        Ok(Self {
            provider: oauth.provider,
            tenant: oauth.tenant.clone(),
            token_endpoint: oauth.token_endpoint_url()?,
            client_id: oauth.client_id.clone(),
            grant: oauth.grant,
            client_auth: oauth.effective_client_auth(),
            scopes,
            mechanism: oauth.mechanism,
            subject: oauth.subject.clone(),
            key_id: oauth.key_id.clone(),
            certificate_thumbprint: oauth.certificate_thumbprint.clone(),
            ca_sha256: oauth.ca_pem.as_deref().map(sha256),
            insecure: oauth.insecure,
        })
    }

    fn encode(&self, out: &mut Vec<u8>) {
        put_field(out, b"oauth");
        put_field(out, self.grant.as_str().as_bytes());
        put_field(out, self.provider.as_str().as_bytes());
        put_optional(out, self.tenant.as_deref());
        put_field(out, self.token_endpoint.as_bytes());
        put_field(out, self.client_id.as_bytes());
        put_field(out, self.client_auth.as_str().as_bytes());
        // The CRD caps scopes at 32 entries.
        out.push(self.scopes.len() as u8);
        for scope in &self.scopes {
            put_field(out, scope.as_bytes());
        }
        put_field(out, self.mechanism.name().as_bytes());
        put_optional(out, self.subject.as_deref());
        put_optional(out, self.key_id.as_deref());
        put_optional(out, self.certificate_thumbprint.as_deref());
        put_digest(out, self.ca_sha256.as_ref());
        out.push(u8::from(self.insecure));
    }
}

/// Identity plus destination of a credential.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CredentialBinding {
    pub context: EncryptionContext,
    pub username: String,
    pub endpoints: Vec<BoundEndpoint>,
    /// `Some` when the sealed secret is an OAuth grant (envelope version 2).
    pub oauth: Option<BoundOAuth>,
}

impl CredentialBinding {
    pub fn new(namespace: &str, name: &str, spec: &MailCredentialSpec) -> Result<Self, Error> {
        if namespace.is_empty() || name.is_empty() {
            return Err(Error::InvalidSpec(
                "namespace and name are required to bind a sealed secret".into(),
            ));
        }
        if spec.username.is_empty() {
            return Err(Error::InvalidSpec("spec.username is empty".into()));
        }
        let endpoints: Vec<BoundEndpoint> = spec
            .endpoints()
            .map(|(kind, e)| BoundEndpoint {
                kind,
                host: canonical_host(&e.host),
                port: e.port,
                tls: e.tls,
                insecure: e.insecure,
                ca_sha256: e.ca_pem.as_deref().map(sha256),
            })
            .collect();
        if endpoints.is_empty() {
            return Err(Error::InvalidSpec(
                "neither spec.smtp nor spec.imap is set; a credential needs at least one upstream"
                    .into(),
            ));
        }
        Ok(Self {
            context: EncryptionContext {
                namespace: namespace.to_string(),
                name: name.to_string(),
            },
            username: spec.username.clone(),
            endpoints,
            oauth: spec.oauth.as_ref().map(BoundOAuth::new).transpose()?,
        })
    }

    /// The envelope version a secret for this binding is sealed with: 1 for a password,
    /// 2 for an OAuth grant. Opening an envelope of the other version is a mismatch.
    pub fn format_version(&self) -> u32 {
        if self.oauth.is_some() {
            OAUTH_VERSION
        } else {
            PASSWORD_VERSION
        }
    }

    /// Binding of a resource read from the API (or a file): needs metadata.namespace and name.
    pub fn for_resource(resource: &MailCredential) -> Result<Self, Error> {
        let namespace = resource.metadata.namespace.as_deref().ok_or_else(|| {
            Error::InvalidSpec("metadata.namespace is missing; MailCredential is namespaced".into())
        })?;
        let name = resource
            .metadata
            .name
            .as_deref()
            .ok_or_else(|| Error::InvalidSpec("metadata.name is missing".into()))?;
        Self::new(namespace, name, &resource.spec)
    }

    /// The AES-GCM associated data for envelope `version` under `kms`.
    pub fn associated_data(&self, version: u32, kms: &KmsKeyRef) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(AAD_MAGIC);
        out.extend_from_slice(&version.to_be_bytes());
        put_field(&mut out, kms.provider.as_str().as_bytes());
        put_field(&mut out, kms.key_id.as_bytes());
        put_field(&mut out, kms.wrapping.as_str().as_bytes());
        out.extend_from_slice(&self.context.canonical_bytes());
        put_field(&mut out, self.username.as_bytes());
        // At most two endpoints exist (smtp, imap); the count keeps the encoding unambiguous.
        out.push(self.endpoints.len() as u8);
        for e in &self.endpoints {
            put_field(&mut out, e.kind.as_str().as_bytes());
            put_field(&mut out, e.host.as_bytes());
            out.extend_from_slice(&e.port.to_be_bytes());
            put_field(&mut out, e.tls.as_str().as_bytes());
            out.push(u8::from(e.insecure));
            put_digest(&mut out, e.ca_sha256.as_ref());
        }
        // Version 1 ends here, byte for byte as before. Version 2 appends the payload kind and
        // the OAuth fields; a v2 binding without them (or v1 with them) never arises, because
        // envelope::open refuses a version that differs from format_version().
        if version >= OAUTH_VERSION
            && let Some(oauth) = &self.oauth
        {
            oauth.encode(&mut out);
        }
        out
    }
}

fn put_optional(out: &mut Vec<u8>, value: Option<&str>) {
    match value {
        Some(v) => {
            out.push(1);
            put_field(out, v.as_bytes());
        }
        None => out.push(0),
    }
}

fn put_digest(out: &mut Vec<u8>, digest: Option<&[u8; 32]>) {
    match digest {
        Some(d) => {
            out.push(1);
            out.extend_from_slice(d);
        }
        None => out.push(0),
    }
}

fn put_field(out: &mut Vec<u8>, bytes: &[u8]) {
    // Fields are bounded by the CRD schema far below u32::MAX.
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

fn canonical_host(host: &str) -> String {
    host.trim_end_matches('.').to_ascii_lowercase()
}

pub(crate) fn sha256(text: &str) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, text.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}
