//! AES-256-GCM with a random 96-bit nonce (aws-lc-rs), shared by the envelope payload and the
//! local provider's key wrapping.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use zeroize::Zeroizing;

use crate::Error;

pub(crate) const TAG_LEN: usize = 16;

/// Encrypts `plaintext`; returns the fresh nonce and ciphertext with the tag appended.
pub(crate) fn seal(
    key: &[u8; 32],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<([u8; NONCE_LEN], Vec<u8>), Error> {
    let key = aes_key(key)?;
    let mut nonce = [0u8; NONCE_LEN];
    aws_lc_rs::rand::fill(&mut nonce)
        .map_err(|_| Error::Crypto("the system random generator failed"))?;
    let mut in_out = plaintext.to_vec();
    let sealed = key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(aad),
        &mut in_out,
    );
    if sealed.is_err() {
        // Leave no plaintext copy behind on the error path.
        zeroize::Zeroize::zeroize(&mut in_out);
        return Err(Error::Crypto("AES-256-GCM encryption failed"));
    }
    Ok((nonce, in_out))
}

/// Decrypts and authenticates; `None` when the tag does not verify (wrong key, nonce,
/// associated data or ciphertext: deliberately indistinguishable).
pub(crate) fn open(
    key: &[u8; 32],
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    ciphertext: &[u8],
) -> Result<Option<Zeroizing<Vec<u8>>>, Error> {
    let key = aes_key(key)?;
    let mut in_out = Zeroizing::new(ciphertext.to_vec());
    let len = match key.open_in_place(
        Nonce::assume_unique_for_key(*nonce),
        Aad::from(aad),
        &mut in_out,
    ) {
        Ok(plaintext) => plaintext.len(),
        Err(_) => return Ok(None),
    };
    in_out.truncate(len);
    Ok(Some(in_out))
}

fn aes_key(key: &[u8; 32]) -> Result<LessSafeKey, Error> {
    UnboundKey::new(&AES_256_GCM, key)
        .map(LessSafeKey::new)
        .map_err(|_| Error::Crypto("AES-256-GCM key setup failed"))
}
