//! What the CRD schema cannot check: the sealed secret's format (without decrypting it), the
//! key id's shape for its provider, that the binding can be formed, policy pattern syntax,
//! the insecure flags and CA bundles, and ServiceAccount names. Every problem carries the
//! field and what to do, because it ends up verbatim in status and Events.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use mailcred_core::binding::{OAUTH_VERSION, PASSWORD_VERSION};
use mailcred_core::crd::{MailCredentialSpec, SecretState, TlsMode, UpstreamEndpoint};
use mailcred_core::policy::{AddressPattern, AddressRole, MailboxPattern};
use mailcred_core::{CredentialBinding, envelope, oauth_rules};

/// One thing a platform engineer has to fix. `reason` is a CamelCase condition reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub reason: &'static str,
    pub message: String,
}

impl Problem {
    pub(crate) fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }
}

/// Everything the controller learned from the spec alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Validation {
    /// `Ok(fingerprint)` when the sealed secret parses, else why not (or that it is pending).
    pub sealed: Result<String, Problem>,
    /// Sealed / Pending / Expired / Invalid, for the `Secret` column.
    pub secret: SecretState,
    /// The envelope format version as stored (1 password, 2 OAuth grant; 0 while unsealed).
    pub sealed_version: u32,
    /// Endpoint, username and policy problems (the binding and what the sidecar enforces).
    pub spec: Vec<Problem>,
    /// ServiceAccount names that can be bound, in spec order, without duplicates.
    pub service_accounts: Vec<String>,
    /// Problems with `access.serviceAccounts`.
    pub access: Vec<Problem>,
    /// `smtp host:port`-style labels of endpoints that run without TLS (and `oauth URL` for
    /// an http:// token endpoint).
    pub insecure_endpoints: Vec<String>,
    /// `Some(true)` for an OAuth grant that must not be shared by replicas (refreshToken),
    /// `Some(false)` for other OAuth grants, `None` for passwords.
    pub single_replica_grant: Option<bool>,
}

/// Validates one MailCredential's spec; `namespace`/`name` are the ones the secret is bound to,
/// `now` decides whether a seal request has expired.
pub fn validate(namespace: &str, name: &str, spec: &MailCredentialSpec, now: &Time) -> Validation {
    let sealed = validate_sealed(spec, now);
    Validation {
        secret: crate::seal_request::secret_state(&sealed, spec),
        sealed,
        sealed_version: spec.sealed_secret.as_ref().map_or(0, |s| s.version),
        spec: validate_spec(namespace, name, spec),
        service_accounts: bindable_service_accounts(&spec.access.service_accounts),
        access: validate_access(&spec.access.service_accounts),
        insecure_endpoints: insecure_endpoints(spec),
        single_replica_grant: spec.oauth.as_ref().map(oauth_rules::single_replica_only),
    }
}

fn validate_sealed(spec: &MailCredentialSpec, now: &Time) -> Result<String, Problem> {
    let Some(sealed) = &spec.sealed_secret else {
        return Err(crate::seal_request::unsealed_problem(spec, now));
    };
    // parse() checks the version first, then the key reference, then every field's encoding.
    match envelope::parse(sealed) {
        Ok(_) => check_payload_kind(spec, sealed.version).map(|()| envelope::fingerprint(sealed)),
        Err(e) => {
            let reason = match e {
                mailcred_core::Error::UnsupportedVersion { .. } => "UnsupportedVersion",
                mailcred_core::Error::Malformed {
                    field: "kms.keyId", ..
                } => "InvalidKeyId",
                mailcred_core::Error::Malformed { .. } => "MalformedSealedSecret",
                _ => "InvalidSealedSecret",
            };
            Err(Problem::new(reason, e.to_string()))
        }
    }
}

/// The envelope version says what it holds (1 password, 2 OAuth grant), so a mismatch with
/// `spec.oauth` is visible without a key; the sidecar would refuse it as SealedSecretMismatch.
fn check_payload_kind(spec: &MailCredentialSpec, version: u32) -> Result<(), Problem> {
    match (&spec.oauth, version) {
        (Some(_), PASSWORD_VERSION) => Err(Problem::new(
            "SealedKindMismatch",
            "the sealed secret is a password (envelope version 1) but spec.oauth is set: seal the OAuth grant's secret with `kubectl mailcred seal --oauth-provider ...` (or `kubectl mailcred authorize`), or remove spec.oauth",
        )),
        (None, OAUTH_VERSION) => Err(Problem::new(
            "SealedKindMismatch",
            "the sealed secret is an OAuth grant (envelope version 2) but spec.oauth is not set: restore spec.oauth as it was sealed, or seal a password with `kubectl mailcred seal --password-stdin`",
        )),
        _ => Ok(()),
    }
}

fn validate_spec(namespace: &str, name: &str, spec: &MailCredentialSpec) -> Vec<Problem> {
    let mut problems = Vec::new();
    if let Err(e) = CredentialBinding::new(namespace, name, spec) {
        let reason = if spec.smtp.is_none() && spec.imap.is_none() {
            "NoEndpoints"
        } else {
            "InvalidSpec"
        };
        problems.push(Problem::new(reason, e.to_string()));
    }
    for (kind, endpoint) in spec.endpoints() {
        check_endpoint(kind.as_str(), endpoint, &mut problems);
    }
    if let Some(oauth) = &spec.oauth {
        problems.extend(
            oauth_rules::check(oauth)
                .into_iter()
                .map(|p| Problem::new(p.reason, p.message)),
        );
    }
    check_policy(spec, &mut problems);
    problems
}

fn check_endpoint(kind: &str, e: &UpstreamEndpoint, problems: &mut Vec<Problem>) {
    let field = format!("spec.{kind}");
    let has_reason = e
        .insecure_reason
        .as_deref()
        .is_some_and(|r| !r.trim().is_empty());
    if e.tls == TlsMode::None && !e.insecure {
        problems.push(Problem::new(
            "InsecureNotAllowed",
            format!(
                "{field}.tls is none (plaintext) but {field}.insecure is not true; use tls: implicit or starttls, or set insecure: true with an insecureReason (tests only)"
            ),
        ));
    }
    if e.insecure && !has_reason {
        problems.push(Problem::new(
            "InsecureWithoutReason",
            format!("{field}.insecure is true but {field}.insecureReason is empty; say why plaintext is acceptable, or turn insecure off"),
        ));
    }
    if e.insecure && e.tls != TlsMode::None {
        problems.push(Problem::new(
            "InsecureWithTls",
            format!(
                "{field}.insecure is true but {field}.tls is {}: insecure only permits tls: none and never disables certificate checks; remove insecure",
                e.tls.as_str()
            ),
        ));
    }
    if let Some(pem) = &e.ca_pem
        && let Err(err) = mailcred_core::tls::ca_certificates(pem)
    {
        // The sidecar builds its trust store with the same function: what passes here works there.
        problems.push(Problem::new("InvalidCaPem", format!("{field}.{err}")));
    }
}

fn check_policy(spec: &MailCredentialSpec, problems: &mut Vec<Problem>) {
    let smtp = &spec.policy.smtp;
    for (i, p) in smtp.allowed_senders.iter().enumerate() {
        if let Err(why) = AddressPattern::parse(p, AddressRole::Sender) {
            problems.push(Problem::new(
                "InvalidPolicy",
                format!("spec.policy.smtp.allowedSenders[{i}] {p:?}: {why}"),
            ));
        }
    }
    for (i, p) in smtp.allowed_recipients.iter().enumerate() {
        if let Err(why) = AddressPattern::parse(p, AddressRole::Recipient) {
            problems.push(Problem::new(
                "InvalidPolicy",
                format!("spec.policy.smtp.allowedRecipients[{i}] {p:?}: {why}"),
            ));
        }
    }
    let imap = &spec.policy.imap;
    if imap.enabled && spec.imap.is_some() && imap.allowed_mailboxes.is_empty() {
        problems.push(Problem::new(
            "InvalidPolicy",
            "spec.policy.imap.allowedMailboxes is empty, so IMAP could open no mailbox; list the mailboxes (e.g. INBOX) or set spec.policy.imap.enabled: false",
        ));
    }
    for (i, p) in imap.allowed_mailboxes.iter().enumerate() {
        if let Err(why) = MailboxPattern::parse(p) {
            problems.push(Problem::new(
                "InvalidPolicy",
                format!("spec.policy.imap.allowedMailboxes[{i}] {p:?}: {why}"),
            ));
        }
    }
    // The CRD's CEL rule says the same; this covers API servers without CEL and old objects.
    if imap.seen_only && !imap.read_only {
        problems.push(Problem::new(
            "InvalidPolicy",
            "spec.policy.imap.seenOnly is true but readOnly is false: seenOnly narrows read-only access to setting and clearing \\Seen, read-write allows every change already; remove seenOnly or set readOnly: true (the sidecar applies seen-only until then)",
        ));
    }
}

fn bindable_service_accounts(names: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for n in names {
        if is_dns_subdomain(n) && !out.contains(n) {
            out.push(n.clone());
        }
    }
    out
}

fn validate_access(names: &[String]) -> Vec<Problem> {
    let mut problems = Vec::new();
    if names.is_empty() {
        problems.push(Problem::new(
            "NoServiceAccounts",
            "spec.access.serviceAccounts is empty, so no workload may use this credential; list the ServiceAccounts (in this namespace) of the pods that send or read mail",
        ));
    }
    for (i, n) in names.iter().enumerate() {
        if !is_dns_subdomain(n) {
            problems.push(Problem::new(
                "InvalidServiceAccountName",
                format!("spec.access.serviceAccounts[{i}] {n:?} is not a valid ServiceAccount name (lowercase letters, digits, '-' and '.', at most 253); it was not granted access"),
            ));
        }
    }
    problems
}

fn insecure_endpoints(spec: &MailCredentialSpec) -> Vec<String> {
    let mut out: Vec<String> = spec
        .endpoints()
        .filter(|(_, e)| e.tls == TlsMode::None && e.insecure)
        .map(|(kind, e)| format!("{} {}:{}", kind.as_str(), e.host, e.port))
        .collect();
    if let Some(o) = &spec.oauth
        && o.insecure
        && let Ok(url) = o.token_endpoint_url()
        && url.starts_with("http://")
    {
        out.push(format!("oauth {url}"));
    }
    out
}

/// RFC 1123 subdomain, as Kubernetes requires for object names (core's, shared with the plugin).
pub use mailcred_core::names::is_dns_subdomain;
