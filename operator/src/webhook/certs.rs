//! The webhook's own CA and serving certificate (rcgen, ECDSA P-256 on aws-lc-rs), and when
//! to renew them. Pure functions: storage and distribution live in `tls.rs`.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use time::{Duration, OffsetDateTime};

use crate::{Error, Result};

/// Every PEM the webhook needs. `ca_bundle` is what the API server trusts: the current CA
/// first, then earlier CAs until they expire (so certificates they signed stay valid during
/// a CA rotation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertBundle {
    pub ca_bundle: String,
    pub ca_key: String,
    pub cert: String,
    pub key: String,
}

/// Validity settings.
#[derive(Clone, Copy, Debug)]
pub struct Lifetimes {
    pub ca: Duration,
    pub serving: Duration,
    pub renew_before: Duration,
}

/// The names the API server uses to reach `service` in `namespace`.
pub fn service_dns_names(service: &str, namespace: &str) -> Vec<String> {
    vec![
        service.to_string(),
        format!("{service}.{namespace}"),
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
    ]
}

fn tls_error(what: &str) -> impl FnOnce(rcgen::Error) -> Error + '_ {
    move |e| Error::Tls(format!("{what}: {e}"))
}

/// A fresh CA: (certificate PEM, key PEM).
pub fn generate_ca(now: OffsetDateTime, lifetimes: &Lifetimes) -> Result<(String, String)> {
    let key = KeyPair::generate().map_err(tls_error("generating the CA key"))?;
    let mut params =
        CertificateParams::new(Vec::<String>::new()).map_err(tls_error("CA parameters"))?;
    params.distinguished_name.push(
        DnType::CommonName,
        format!("mailcred-operator webhook CA {}", now.unix_timestamp()),
    );
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    // Backdated a little: clocks of the API server and this node may differ.
    params.not_before = now - Duration::hours(1);
    params.not_after = now + lifetimes.ca;
    let cert = params
        .self_signed(&key)
        .map_err(tls_error("self-signing the CA"))?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// A serving certificate for `dns_names`, signed by the CA: (certificate PEM, key PEM).
pub fn issue_serving(
    ca_cert: &str,
    ca_key: &str,
    dns_names: &[String],
    now: OffsetDateTime,
    lifetimes: &Lifetimes,
) -> Result<(String, String)> {
    let ca_key = KeyPair::from_pem(ca_key).map_err(tls_error("reading the CA key"))?;
    let issuer = Issuer::from_ca_cert_pem(ca_cert, ca_key)
        .map_err(tls_error("reading the CA certificate"))?;
    let key = KeyPair::generate().map_err(tls_error("generating the serving key"))?;
    let mut params =
        CertificateParams::new(dns_names.to_vec()).map_err(tls_error("serving parameters"))?;
    if let Some(first) = dns_names.first() {
        params
            .distinguished_name
            .push(DnType::CommonName, first.clone());
    }
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = now - Duration::hours(1);
    params.not_after = now + lifetimes.serving;
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(tls_error("signing the serving certificate"))?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// A complete new bundle (new CA, new serving certificate).
pub fn generate_bundle(
    dns_names: &[String],
    now: OffsetDateTime,
    lifetimes: &Lifetimes,
) -> Result<CertBundle> {
    let (ca, ca_key) = generate_ca(now, lifetimes)?;
    let (cert, key) = issue_serving(&ca, &ca_key, dns_names, now, lifetimes)?;
    Ok(CertBundle {
        ca_bundle: ca,
        ca_key,
        cert,
        key,
    })
}

/// Facts about one certificate that renewal decisions need.
#[derive(Clone, Debug)]
pub struct CertInfo {
    pub not_after: OffsetDateTime,
    pub dns_names: Vec<String>,
}

/// Parses every certificate in a PEM text, in order.
pub fn inspect(pem: &str) -> Result<Vec<CertInfo>> {
    let ders = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Tls(format!("certificate PEM does not parse: {e}")))?;
    if ders.is_empty() {
        return Err(Error::Tls("no certificate in PEM".into()));
    }
    ders.iter()
        .map(|der| {
            let (_, cert) = x509_parser::parse_x509_certificate(der)
                .map_err(|e| Error::Tls(format!("certificate does not parse: {e}")))?;
            let not_after = cert.validity().not_after.to_datetime();
            let dns_names = cert
                .subject_alternative_name()
                .ok()
                .flatten()
                .map(|san| {
                    san.value
                        .general_names
                        .iter()
                        .filter_map(|n| match n {
                            x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
                            _ => None,
                        })
                        .collect()
                })
                .unwrap_or_default();
            Ok(CertInfo {
                not_after,
                dns_names,
            })
        })
        .collect()
}

/// What has to be renewed in a stored bundle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Renewal {
    None,
    /// New serving certificate from the current CA (expiring, or wrong names).
    Serving,
    /// New CA (and so a new serving certificate); the old CA stays in the bundle.
    Ca,
    /// Unusable: start over.
    All,
}

/// Decides what to renew in `bundle` at `now`.
pub fn renewal_needed(
    bundle: &CertBundle,
    dns_names: &[String],
    now: OffsetDateTime,
    lifetimes: &Lifetimes,
) -> Renewal {
    let (Ok(cas), Ok(serving)) = (inspect(&bundle.ca_bundle), inspect(&bundle.cert)) else {
        return Renewal::All;
    };
    if KeyPair::from_pem(&bundle.ca_key).is_err() || KeyPair::from_pem(&bundle.key).is_err() {
        return Renewal::All;
    }
    let Some(current_ca) = cas.first() else {
        return Renewal::All;
    };
    if current_ca.not_after - lifetimes.renew_before <= now {
        return Renewal::Ca;
    }
    let Some(leaf) = serving.first() else {
        return Renewal::All;
    };
    let names_match = dns_names.iter().all(|n| leaf.dns_names.contains(n));
    if !names_match || leaf.not_after - lifetimes.renew_before <= now {
        return Renewal::Serving;
    }
    Renewal::None
}

/// Applies `renewal` to `bundle`, returning the new bundle.
pub fn renew(
    bundle: &CertBundle,
    renewal: Renewal,
    dns_names: &[String],
    now: OffsetDateTime,
    lifetimes: &Lifetimes,
) -> Result<CertBundle> {
    match renewal {
        Renewal::None => Ok(bundle.clone()),
        Renewal::All => generate_bundle(dns_names, now, lifetimes),
        Renewal::Serving => {
            let current_ca = first_pem_cert(&bundle.ca_bundle)?;
            let (cert, key) =
                issue_serving(&current_ca, &bundle.ca_key, dns_names, now, lifetimes)?;
            Ok(CertBundle {
                cert,
                key,
                ..bundle.clone()
            })
        }
        Renewal::Ca => {
            let (ca, ca_key) = generate_ca(now, lifetimes)?;
            let (cert, key) = issue_serving(&ca, &ca_key, dns_names, now, lifetimes)?;
            // Keep earlier CAs that still verify something; drop expired ones.
            let mut ca_bundle = ca;
            for pem in split_pem_certs(&bundle.ca_bundle)? {
                if inspect(&pem)?.first().is_some_and(|c| c.not_after > now) {
                    ca_bundle.push_str(&pem);
                }
            }
            Ok(CertBundle {
                ca_bundle,
                ca_key,
                cert,
                key,
            })
        }
    }
}

fn split_pem_certs(pem: &str) -> Result<Vec<String>> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .map(|der| {
            let der = der.map_err(|e| Error::Tls(format!("CA bundle does not parse: {e}")))?;
            Ok(pem_encode_cert(&der))
        })
        .collect()
}

fn first_pem_cert(pem: &str) -> Result<String> {
    split_pem_certs(pem)?
        .into_iter()
        .next()
        .ok_or_else(|| Error::Tls("CA bundle is empty".into()))
}

fn pem_encode_cert(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lifetimes() -> Lifetimes {
        Lifetimes {
            ca: Duration::days(3650),
            serving: Duration::days(365),
            renew_before: Duration::days(30),
        }
    }

    #[test]
    fn fresh_bundle_needs_nothing_then_renews_on_schedule() {
        let names = service_dns_names("svc", "ns");
        let now = OffsetDateTime::now_utc();
        let b = generate_bundle(&names, now, &lifetimes()).unwrap();
        assert_eq!(renewal_needed(&b, &names, now, &lifetimes()), Renewal::None);
        assert_eq!(inspect(&b.cert).unwrap()[0].dns_names, names);

        let later = now + Duration::days(340);
        assert_eq!(
            renewal_needed(&b, &names, later, &lifetimes()),
            Renewal::Serving
        );
        let renewed = renew(&b, Renewal::Serving, &names, later, &lifetimes()).unwrap();
        assert_eq!(renewed.ca_bundle, b.ca_bundle, "same CA");
        assert_ne!(renewed.cert, b.cert);
        assert_eq!(
            renewal_needed(&renewed, &names, later, &lifetimes()),
            Renewal::None
        );

        let much_later = now + Duration::days(3630);
        assert_eq!(
            renewal_needed(&renewed, &names, much_later, &lifetimes()),
            Renewal::Ca
        );
        let rotated = renew(&renewed, Renewal::Ca, &names, much_later, &lifetimes()).unwrap();
        let cas = inspect(&rotated.ca_bundle).unwrap();
        assert_eq!(cas.len(), 2, "old CA kept until it expires");
        assert!(cas[0].not_after > cas[1].not_after);
    }

    #[test]
    fn other_service_name_or_garbage_forces_renewal() {
        let names = service_dns_names("svc", "ns");
        let now = OffsetDateTime::now_utc();
        let b = generate_bundle(&names, now, &lifetimes()).unwrap();
        let other = service_dns_names("svc", "other-ns");
        assert_eq!(
            renewal_needed(&b, &other, now, &lifetimes()),
            Renewal::Serving
        );
        let broken = CertBundle {
            cert: "garbage".into(),
            ..b
        };
        assert_eq!(
            renewal_needed(&broken, &names, now, &lifetimes()),
            Renewal::All
        );
    }
}
