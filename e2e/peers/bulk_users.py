#!/usr/bin/env python3
"""Appends N bulk users (user0001@example.test ...) to dovecot's passwd-file and postfix's
vmailbox, and writes their passwords to a 0600 TSV file, for the account-set scale tests.

Usage: bulk_users.py COUNT USERS_FILE VMAILBOX MAIL_ROOT TSV_OUT

Why not SHA512-CRYPT like the named users: `openssl passwd -6` took 6.6 s for 1,000 passwords
on the 2-core test machine (5,000 rounds each), more than the whole peers start. These users
get `{SSHA256}` (salted SHA-256, a scheme dovecot's passwd-file accepts per entry): 1,000 in
well under 0.1 s. They are test data of one run, random per start, like every peers password.
Maildirs are not created here: dovecot makes each on first login or delivery.
"""
import base64
import hashlib
import os
import secrets
import sys

DOMAIN = "example.test"
UID = GID = 5000  # dovecot refuses uid 0 for mail users; no passwd entry is needed


def bulk_name(i):
    return f"user{i:04d}@{DOMAIN}"


def ssha256(password):
    salt = os.urandom(8)
    digest = hashlib.sha256(password.encode() + salt).digest()
    return "{SSHA256}" + base64.b64encode(digest + salt).decode()


def main(argv):
    if len(argv) != 6:
        sys.exit(__doc__.split("\n\n")[1])
    count, users_file, vmailbox, mail_root, tsv_out = int(argv[1]), *argv[2:]
    if not 0 <= count <= 9999:
        sys.exit("COUNT must be 0..9999 (names are userNNNN)")
    users, rows = [], []
    for i in range(1, count + 1):
        name, password = bulk_name(i), secrets.token_hex(16)
        users.append(f"{name}:{ssha256(password)}:{UID}:{GID}::{mail_root}/{name}::\n")
        rows.append(f"{name}\t{password}\n")
    # The TSV holds plaintexts: created 0600 before anything is written into it.
    fd = os.open(tsv_out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.writelines(rows)
    os.chmod(tsv_out, 0o600)
    with open(users_file, "a") as f:
        f.writelines(users)
    with open(vmailbox, "a") as f:
        f.writelines(f"{bulk_name(i)} OK\n" for i in range(1, count + 1))


if __name__ == "__main__":
    main(sys.argv)
