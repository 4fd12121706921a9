//! Unit tests of identity.rs: what counts as a token, and where.

use super::*;

#[test]
fn under_means_the_directory_or_below() {
    assert!(under(API_TOKEN_PATH, API_TOKEN_PATH));
    assert!(under(&format!("{API_TOKEN_PATH}/"), API_TOKEN_PATH));
    assert!(under(&format!("{API_TOKEN_PATH}/token"), API_TOKEN_PATH));
    assert!(!under(&format!("{API_TOKEN_PATH}x"), API_TOKEN_PATH));
    assert!(!under("/var/run/secrets", API_TOKEN_PATH));
}

#[test]
fn token_volumes_are_known_by_name_or_audience() {
    let projected = |audience: Option<&str>| Volume {
        name: "custom".into(),
        projected: Some(ProjectedVolumeSource {
            default_mode: None,
            sources: Some(vec![VolumeProjection {
                service_account_token: Some(ServiceAccountTokenProjection {
                    audience: audience.map(Into::into),
                    expiration_seconds: None,
                    path: "t".into(),
                }),
                ..VolumeProjection::default()
            }]),
        }),
        ..Volume::default()
    };
    let named = |name: &str| Volume {
        name: name.into(),
        ..Volume::default()
    };
    assert_eq!(volume_key(&named("kube-api-access-x7k2p")), Some(Key::Api));
    assert_eq!(volume_key(&named("aws-iam-token")), Some(Key::Cloud));
    assert_eq!(
        volume_key(&named("eks-pod-identity-token")),
        Some(Key::Cloud)
    );
    assert_eq!(volume_key(&named("data")), None);
    assert_eq!(volume_key(&projected(None)), Some(Key::Api));
    assert_eq!(
        volume_key(&projected(Some(
            "https://kubernetes.default.svc.cluster.local"
        ))),
        Some(Key::Api)
    );
    assert_eq!(
        volume_key(&projected(Some("sts.amazonaws.com"))),
        Some(Key::Cloud)
    );
    assert_eq!(volume_key(&projected(Some("vault"))), None);
    assert_eq!(volume_key(&api_token_volume()), Some(Key::Api));
}
