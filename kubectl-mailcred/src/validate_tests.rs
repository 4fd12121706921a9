use super::*;

#[test]
fn host_port_forms() {
    assert_eq!(
        host_port(Upstream::Smtp, "mail.example.test:587").unwrap(),
        ("mail.example.test".into(), 587)
    );
    assert_eq!(
        host_port(Upstream::Imap, "[2001:db8::1]:993").unwrap(),
        ("2001:db8::1".into(), 993)
    );
    let url = host_port(Upstream::Smtp, "smtps://mail.example.test")
        .unwrap_err()
        .to_string();
    assert!(
        url.contains("without smtps://") && url.contains("mail.example.test:465"),
        "{url}"
    );
    let bare = host_port(Upstream::Imap, "2001:db8::1:993")
        .unwrap_err()
        .to_string();
    assert!(bare.contains("in brackets"), "{bare}");
}

#[test]
fn dns_names() {
    assert!(is_dns_subdomain("a.b-c.d"));
    assert!(!is_dns_subdomain("a..b") && !is_dns_subdomain("") && !is_dns_subdomain("A"));
    assert!(!is_dns_label("a.b") && !is_dns_label(&"a".repeat(64)));
    assert!(!is_dns_subdomain(
        &format!("{}.{}", "a".repeat(63), "b".repeat(63)).repeat(3)
    ));
}
