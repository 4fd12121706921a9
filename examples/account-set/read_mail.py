#!/usr/bin/env python3
"""Reads the newest messages of one registered account through the sidecar's IMAP proxy, as
the crm app does: LOGIN with the account's name and the app's local token, never a password.

  python3 examples/account-set/read_mail.py NAME [COUNT]

MAILCRED_IMAP_URL (imap://127.0.0.1:1143) and MAILCRED_APP_TOKEN_FILE come from the webhook.
An unknown account, one of another set and a wrong token all get the same NO.
"""

import email
import email.policy
import imaplib
import os
import sys
from urllib.parse import urlparse


def main():
    name = sys.argv[1]
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    url = urlparse(os.environ.get("MAILCRED_IMAP_URL", "imap://127.0.0.1:1143"))
    with open(os.environ["MAILCRED_APP_TOKEN_FILE"], encoding="ascii") as f:
        token = f.read().strip()
    # Plain IMAP on loopback: the sidecar speaks verified TLS to the real server.
    with imaplib.IMAP4(url.hostname, url.port or 1143) as imap:
        imap.login(name, token)
        imap.select("INBOX", readonly=True)
        _, data = imap.search(None, "ALL")
        ids = data[0].split()[-count:]
        for i in ids:
            _, parts = imap.fetch(i, "(BODY.PEEK[HEADER])")
            msg = email.message_from_bytes(parts[0][1], policy=email.policy.default)
            print(f"{i.decode()}: {msg['From']} | {msg['Subject']}")
        print(f"{len(ids)} message(s) of {len(data[0].split())} in INBOX of account {name}")


if __name__ == "__main__":
    main()
