//! Signatures on what rekey sends to an address someone gave it (webhooks,
//! `custom_rest` deliveries), in the shape Stripe and Svix made familiar:
//!
//! `X-Rekey-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`
//!
//! The receiver recomputes the HMAC over the timestamp and the raw body with
//! the signing secret it was shown once, compares in constant time, and
//! refuses a timestamp outside its tolerance ([`TOLERANCE_S`]), so a
//! captured request cannot be replayed later.

use hmac::{Hmac, Mac};
use sha2::Sha256;

pub const HEADER: &str = "X-Rekey-Signature";

/// How far a signed timestamp may be from the receiver's clock: five
/// minutes, Stripe's default, covers clock skew and retries in flight.
pub const TOLERANCE_S: i64 = 300;

fn mac(secret: &str, t: i64, body: &[u8]) -> Hmac<Sha256> {
    // HMAC takes a key of any length; this cannot fail.
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    m.update(t.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    m
}

/// The header value for `body` sent at `t` (unix seconds).
pub fn sign(secret: &str, t: i64, body: &[u8]) -> String {
    let tag = mac(secret, t, body).finalize().into_bytes();
    let mut hex = String::with_capacity(64);
    for b in tag {
        hex.push_str(&format!("{b:02x}"));
    }
    format!("t={t},v1={hex}")
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the signature header is malformed")]
    Malformed,
    #[error("the signed timestamp is outside the tolerance window")]
    Stale,
    #[error("no signature matches")]
    Mismatch,
}

/// Checks a header value against `body` at `now` (unix seconds). Any `v1`
/// entry may match (a receiver may be sent several during a secret's
/// rotation).
pub fn verify(secret: &str, header: &str, body: &[u8], now: i64) -> Result<(), SignatureError> {
    let mut t: Option<i64> = None;
    let mut tags: Vec<Vec<u8>> = Vec::new();
    for part in header.split(',') {
        let (k, v) = part
            .trim()
            .split_once('=')
            .ok_or(SignatureError::Malformed)?;
        match k {
            "t" => t = Some(v.parse().map_err(|_| SignatureError::Malformed)?),
            "v1" => tags.push(unhex(v).ok_or(SignatureError::Malformed)?),
            _ => {}
        }
    }
    let t = t.ok_or(SignatureError::Malformed)?;
    if tags.is_empty() {
        return Err(SignatureError::Malformed);
    }
    if now.abs_diff(t) > TOLERANCE_S as u64 {
        return Err(SignatureError::Stale);
    }
    for tag in tags {
        if mac(secret, t, body).verify_slice(&tag).is_ok() {
            return Ok(());
        }
    }
    Err(SignatureError::Mismatch)
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_and_a_changed_body_or_old_time_does_not() {
        let h = sign("rk_whsec_x", 1_000, b"{\"a\":1}");
        assert_eq!(verify("rk_whsec_x", &h, b"{\"a\":1}", 1_100), Ok(()));
        assert_eq!(
            verify("rk_whsec_x", &h, b"{\"a\":2}", 1_100),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify("rk_whsec_y", &h, b"{\"a\":1}", 1_100),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify("rk_whsec_x", &h, b"{\"a\":1}", 1_000 + TOLERANCE_S + 1),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify("rk_whsec_x", "v1=zz", b"", 0),
            Err(SignatureError::Malformed)
        );
    }
}
