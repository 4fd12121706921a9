"""Fault scenario s6: the upstream presents an expired certificate (a TlsRecorder with a
switchable certificate, and a control with a valid one from the same CA)."""
from datetime import datetime, timedelta, timezone

from chaos import TlsRecorder
from context import imap_login, last_temporary_failure, seal, send, start_sidecar, subject

from mailcred_e2e.sidecar import file_source
from mailcred_e2e.wait import wait_until


def make_pki(directory):
    """A CA, an expired leaf and a valid leaf for localhost / 127.0.0.1 (python cryptography)."""
    import ipaddress
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.now(timezone.utc)
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mailcred fault-suite CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - timedelta(days=400)).not_valid_after(now + timedelta(days=400))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                       crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    (directory / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))

    def leaf(name, not_before, not_after):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
                .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(not_before).not_valid_after(not_after)
                .add_extension(x509.SubjectAlternativeName([
                    x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
                .sign(ca_key, hashes.SHA256()))
        cert_path, key_path = directory / f"{name}.crt.pem", directory / f"{name}.key.pem"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        return str(cert_path), str(key_path)

    expired = leaf("expired", now - timedelta(days=30), now - timedelta(days=1))
    valid = leaf("valid", now - timedelta(days=1), now + timedelta(days=30))
    return directory / "ca.pem", expired, valid


def s6_expired_cert(ctx):
    """The upstream presents a certificate whose notAfter is in the past."""
    suite = ctx.suite
    ca, expired, valid = make_pki(ctx.workdir / "s6-pki")
    smtp_srv = TlsRecorder(b"421 4.3.2 fault-suite TLS recorder, not a mail server\r\n")
    imap_srv = TlsRecorder(b"* BYE fault-suite TLS recorder, not a mail server\r\n")
    for srv in (smtp_srv, imap_srv):
        srv.use(*expired)
        ctx.later(srv.close)
    cred = seal(ctx, ctx.workdir / "s6.yaml", ca_file=str(ca),
                smtp=("localhost", smtp_srv.port, "implicit"), imap=("localhost", imap_srv.port, "implicit"))
    sc = start_sidecar(ctx, "s6", file_source(cred), ctx.aws_env(), ttl=900)
    if not suite.check("s6 expired-cert: sidecar ready", sc.ready(), sc.tail()):
        return
    code, text, _ = send(suite, sc.smtp, ctx.user, [ctx.user], subject("s6"))
    print(f"  s6: app saw: {code} {text}")
    wait_until(smtp_srv.settled, 5)
    suite.check("s6 expired-cert: SMTP refused with 454 4.7.x", code == 454 and " 4.7." in f" {text}",
                f"{code} {text}")
    audit = last_temporary_failure(sc)
    suite.check("s6 expired-cert: audit reason upstream_tls", audit.get("reason") == "upstream_tls", repr(audit))
    said_expired = "expired" in text.lower() or "expired" in sc.text().lower()
    suite.check("s6 expired-cert: the reply or the log says the certificate expired", said_expired, text)
    suite.check("s6 expired-cert: SMTP server reached but no TLS session completed",
                smtp_srv.accepted >= 1 and smtp_srv.handshakes == 0, f"accepted {smtp_srv.accepted} "
                f"handshakes {smtp_srv.handshakes}")
    suite.check("s6 expired-cert: the sidecar aborted with a certificate-expired alert",
                any("expired" in e.lower() for e in smtp_srv.handshake_errors), repr(smtp_srv.handshake_errors[:2]))
    suite.check("s6 expired-cert: AUTH never sent", "AUTH" not in smtp_srv.verbs, repr(smtp_srv.verbs))
    ok, detail, _ = imap_login(suite, sc.imap)
    wait_until(imap_srv.settled, 5)
    suite.check("s6 expired-cert: IMAP LOGIN -> NO [UNAVAILABLE]", not ok and "UNAVAILABLE" in detail, detail)
    suite.check("s6 expired-cert: IMAP: no TLS session completed, LOGIN never sent",
                imap_srv.accepted >= 1 and imap_srv.handshakes == 0 and "LOGIN" not in imap_srv.verbs,
                f"accepted {imap_srv.accepted} handshakes {imap_srv.handshakes} verbs {imap_srv.verbs}")
    # Control: the same CA with a certificate still valid: the handshake completes, so the
    # refusal above was the expiry and not some other difference.
    for srv in (smtp_srv, imap_srv):
        srv.use(*valid)
    code, text, _ = send(suite, sc.smtp, ctx.user, [ctx.user], subject("s6-control"))
    audit = last_temporary_failure(sc)
    suite.check("s6 expired-cert: control (valid leaf, same CA) completes the handshake",
                smtp_srv.handshakes >= 1 and audit.get("reason") != "upstream_tls",
                f"{code} {text} handshakes={smtp_srv.handshakes} reason={audit.get('reason')}")
