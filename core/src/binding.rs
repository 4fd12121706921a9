//! What a sealed secret is bound to: the resource's identity and everything that decides where
//! the password is sent. Its canonical encoding is the AES-GCM associated data (docs/envelope.md).

use std::collections::BTreeMap;

use aws_lc_rs::digest;

use crate::Error;
use crate::crd::{EndpointKind, KmsKeyRef, MailCredential, MailCredentialSpec, TlsMode};

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

/// Identity plus destination of a credential.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CredentialBinding {
    pub context: EncryptionContext,
    pub username: String,
    pub endpoints: Vec<BoundEndpoint>,
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
        })
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
            match &e.ca_sha256 {
                Some(digest) => {
                    out.push(1);
                    out.extend_from_slice(digest);
                }
                None => out.push(0),
            }
        }
        out
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
