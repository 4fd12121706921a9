//! Reading the password: a TTY prompt without echo (asked twice) or standard input.

use std::io::{IsTerminal, Read};

use anyhow::{Context, bail};
use mailcred_core::MailPassword;
use zeroize::Zeroizing;

/// Longest input read from stdin; anything longer is not a password.
const MAX_STDIN_BYTES: u64 = 64 * 1024;

pub fn read(from_stdin: bool) -> anyhow::Result<MailPassword> {
    if from_stdin {
        return read_stdin();
    }
    if !std::io::stdin().is_terminal() {
        bail!(
            "standard input is not a terminal: pass --password-stdin to read the password from it"
        );
    }
    let first = Zeroizing::new(
        rpassword::prompt_password("Mail password: ").context("cannot read the password")?,
    );
    let second =
        Zeroizing::new(rpassword::prompt_password("Again: ").context("cannot read the password")?);
    if first != second {
        bail!("the two passwords differ; nothing was sealed");
    }
    Ok(MailPassword::new(first.to_string())?)
}

fn read_stdin() -> anyhow::Result<MailPassword> {
    let mut buf = Zeroizing::new(Vec::new());
    std::io::stdin()
        .take(MAX_STDIN_BYTES + 1)
        .read_to_end(&mut buf)
        .context("cannot read the password from standard input")?;
    if buf.len() as u64 > MAX_STDIN_BYTES {
        bail!("standard input holds more than {MAX_STDIN_BYTES} bytes: that is not a password");
    }
    // A file or `echo` adds one line ending; the password itself cannot contain one.
    if buf.ends_with(b"\n") {
        buf.pop();
        if buf.ends_with(b"\r") {
            buf.pop();
        }
    }
    if buf.is_empty() {
        bail!("the password is empty (nothing on standard input)");
    }
    Ok(MailPassword::from_bytes(buf)?)
}
