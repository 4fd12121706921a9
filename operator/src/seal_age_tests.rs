use super::*;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::runtime::reflector::store::Writer;
use kube::runtime::watcher::Event;
use prometheus_client::registry::Registry;

const ARN: &str = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
const ID: &str = "1234abcd-12ab-34cd-56ef-1234567890ab";

fn t(s: &str) -> Time {
    Time(s.parse().unwrap())
}

fn status(fingerprint: &str, sealed_at: Option<&str>) -> MailCredentialStatus {
    MailCredentialStatus {
        sealed_secret_fingerprint: Some(fingerprint.into()),
        sealed_at: sealed_at.map(t),
        ..MailCredentialStatus::default()
    }
}

fn seal(fingerprint: &str) -> Seal {
    Seal {
        fingerprint: Some(fingerprint.into()),
        kms_key_id: Some(ARN.into()),
        retired_by: None,
    }
}

#[test]
fn retired_keys_match_by_id_arn_tail_and_nothing_else() {
    let by_id = RetiredKeys::new(vec![ID.into()]);
    assert_eq!(by_id.matching(ARN), Some(ID));
    assert_eq!(by_id.matching(ID), Some(ID));
    let by_arn = RetiredKeys::new(vec![ARN.into()]);
    assert_eq!(by_arn.matching(ID), Some(ARN));
    assert_eq!(
        by_arn.matching("arn:aws:kms:us-east-1:111122223333:key/other"),
        None
    );
    assert_eq!(by_arn.matching("alias/mail"), None);
    let alias = RetiredKeys::new(vec!["arn:aws:kms:us-east-1:111122223333:alias/mail".into()]);
    assert_eq!(
        alias.matching("alias/mail"),
        None,
        "aliases match only exactly"
    );
    assert_eq!(RetiredKeys::default().matching(ARN), None);
}

#[test]
fn sealed_at_is_kept_while_the_fingerprint_stays_and_reset_on_reseal() {
    let now = t("2026-12-01T10:00:00Z");
    let first = t("2026-06-01T00:00:00Z");
    let current = status("sha256:aa", Some("2026-06-01T00:00:00Z"));
    assert_eq!(
        seal("sha256:aa").sealed_at(Some(&current), &now),
        Some(first)
    );
    assert_eq!(
        seal("sha256:bb").sealed_at(Some(&current), &now),
        Some(now.clone())
    );
    // Upgraded from a release without sealedAt: first seen now.
    let old = status("sha256:aa", None);
    assert_eq!(
        seal("sha256:aa").sealed_at(Some(&old), &now),
        Some(now.clone())
    );
    assert_eq!(seal("sha256:aa").sealed_at(None, &now), Some(now.clone()));
    let unsealed = Seal {
        fingerprint: None,
        kms_key_id: None,
        retired_by: None,
    };
    assert_eq!(unsealed.sealed_at(Some(&current), &now), None);
}

#[test]
fn key_retired_appears_only_when_relevant_and_names_the_command() {
    let retired = Seal {
        retired_by: Some(ID.into()),
        ..seal("sha256:aa")
    };
    let c = retired.condition("smtp", None).unwrap();
    assert_eq!((c.type_, c.status), (KEY_RETIRED, true));
    assert_eq!(c.reason, SEALED_WITH_RETIRED_KEY);
    assert!(c.message.contains(ARN), "{}", c.message);
    assert!(
        c.message
            .contains("kubectl mailcred reencrypt smtp --to-kms-key NEW-KEY-ARN"),
        "{}",
        c.message
    );
    assert!(!c.is_healthy());
    assert_eq!(seal("sha256:aa").condition("smtp", None), None);
    let mut was_retired = status("sha256:aa", None);
    was_retired.conditions.push(Condition {
        type_: KEY_RETIRED.into(),
        status: "True".into(),
        reason: SEALED_WITH_RETIRED_KEY.into(),
        message: String::new(),
        observed_generation: None,
        last_transition_time: t("2026-06-01T00:00:00Z"),
    });
    let cleared = seal("sha256:bb")
        .condition("smtp", Some(&was_retired))
        .unwrap();
    assert_eq!(
        (cleared.status, cleared.reason.as_str()),
        (false, SEALED_WITH_CURRENT_KEY)
    );
    assert!(cleared.is_healthy());
}

fn credential(name: &str, status: Option<MailCredentialStatus>) -> MailCredential {
    let mut c: MailCredential = serde_json::from_value(serde_json::json!({
        "apiVersion": "mailcred.io/v1alpha1", "kind": "MailCredential",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {"username": "u", "smtp": {"host": "h", "port": 465, "tls": "implicit"}, "access": {"serviceAccounts": ["x"]}}
    }))
    .unwrap();
    c.status = status;
    c
}

fn scrape(registry: &Registry) -> String {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, registry).unwrap();
    out
}

#[test]
fn gauges_follow_the_cache_and_vanish_with_the_credential() {
    let ages = SealAges::with_clock(|| t("2026-12-01T00:00:00Z"));
    let mut registry = Registry::default();
    registry.register_collector(Box::new(ages.clone()));
    // No controller term: no series at all.
    assert!(!scrape(&registry).contains("mailcred_credential_seal_age_seconds{"));

    let mut writer = Writer::<MailCredential>::default();
    ages.watch(Some(writer.as_reader()));
    let mut retired = status("sha256:aa", Some("2026-11-30T00:00:00Z"));
    retired.conditions.push(Condition {
        type_: KEY_RETIRED.into(),
        status: "True".into(),
        reason: SEALED_WITH_RETIRED_KEY.into(),
        message: String::new(),
        observed_generation: None,
        last_transition_time: t("2026-11-30T00:00:00Z"),
    });
    let a = credential("a", Some(retired));
    let b = credential("b", Some(status("sha256:bb", Some("2026-12-01T00:00:00Z"))));
    let pending = credential("pending", None);
    for c in [&a, &b, &pending] {
        writer.apply_watcher_event(&Event::Apply(c.clone()));
    }
    let text = scrape(&registry);
    assert!(
        text.contains("mailcred_credential_seal_age_seconds{namespace=\"shop\",name=\"a\"} 86400"),
        "{text}"
    );
    assert!(
        text.contains("mailcred_credential_seal_age_seconds{namespace=\"shop\",name=\"b\"} 0"),
        "{text}"
    );
    assert!(text.contains("mailcred_credential_key_retired{namespace=\"shop\",name=\"a\"} 1"));
    assert!(text.contains("mailcred_credential_key_retired{namespace=\"shop\",name=\"b\"} 0"));
    assert!(!text.contains("name=\"pending\""), "{text}");

    writer.apply_watcher_event(&Event::Delete(a));
    let text = scrape(&registry);
    assert!(!text.contains("name=\"a\""), "{text}");
    assert!(text.contains("name=\"b\""));

    ages.watch(None);
    assert!(!scrape(&registry).contains("name=\"b\""));
}

#[test]
fn the_alerts_use_exactly_the_gauges_exported_here() {
    let alerts = include_str!("../../charts/mailcred/files/alerts.yaml");
    let mut used: Vec<String> = alerts
        .match_indices("mailcred_credential_")
        .map(|(at, _)| {
            alerts[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect()
        })
        .collect();
    used.sort();
    used.dedup();
    assert_eq!(used, [KEY_RETIRED_METRIC, SEAL_AGE_METRIC]);
}

proptest::proptest! {
    /// A retired key matches itself in every spelling (ARN or bare id) and no other key.
    #[test]
    fn retired_keys_match_only_their_own_key(
        a in "[0-9a-f]{8}-[0-9a-f]{4}",
        b in "[0-9a-f]{8}-[0-9a-f]{4}",
        region in "(us-east-1|eu-west-1)",
    ) {
        let arn = |id: &str| format!("arn:aws:kms:{region}:111122223333:key/{id}");
        let retired = RetiredKeys::new(vec![arn(&a)]);
        proptest::prop_assert!(retired.matching(&a).is_some());
        proptest::prop_assert!(retired.matching(&arn(&a)).is_some());
        if a != b {
            proptest::prop_assert!(retired.matching(&b).is_none());
            proptest::prop_assert!(retired.matching(&arn(&b)).is_none());
            proptest::prop_assert!(RetiredKeys::new(vec![b.clone()]).matching(&arn(&a)).is_none());
        }
    }
}
