//! Secrets rekey issues: 256-bit random, prefixed so secret scanners find
//! them, with a checksum so typos are refused without a database lookup, and
//! stored only as a keyed digest (HMAC-SHA-256 under the server pepper).
//!
//! Access and refresh tokens, issued thousands a second, also carry their
//! issue time (48-bit milliseconds) ahead of the random part, and their
//! stored key starts with it: rows are then inserted in key order. A random
//! key makes every insert dirty its own index page (measured at 400,000
//! tokens: 970 µs for a commit of 16 tokens against 440 µs in key order, and
//! the gap grows with the table). The time is covered by the HMAC like the
//! rest, so it cannot be altered.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenKind {
    AccessToken,
    RefreshToken,
    AccessKey,
    ClientSecret,
    AuthCode,
    AdminSession,
    Csrf,
    ServiceKey,
    OAuthState,
    /// Signs what rekey sends (webhooks, custom_rest deliveries); held
    /// sealed, since rekey must sign with it, and shown once.
    SigningSecret,
}

impl TokenKind {
    /// Kinds minted with [`mint_timed`] and keyed by issue time.
    pub fn time_ordered(self) -> bool {
        matches!(self, TokenKind::AccessToken | TokenKind::RefreshToken)
    }

    pub fn prefix(self) -> &'static str {
        match self {
            TokenKind::AccessToken => "rk_at_",
            TokenKind::RefreshToken => "rk_rt_",
            TokenKind::AccessKey => "rk_ak_",
            TokenKind::ClientSecret => "rk_cs_",
            TokenKind::AuthCode => "rk_ac_",
            TokenKind::AdminSession => "rk_ss_",
            TokenKind::Csrf => "rk_cf_",
            TokenKind::ServiceKey => "rk_sk_",
            TokenKind::OAuthState => "rk_st_",
            TokenKind::SigningSecret => "rk_whsec_",
        }
    }
}

/// Body length of 32 random bytes in unpadded base64url.
const BODY: usize = 43;
/// Body length of a time-ordered token: 6 bytes of time, then 32 random.
const TIMED_BODY: usize = 51;
/// The time at the start of a timed body: 6 bytes are 8 base64 characters.
const TIME_CHARS: usize = 8;
/// Checksum length: 4 bytes of SHA-256 in unpadded base64url.
const SUM: usize = 6;

/// Mints a new secret of `kind`: prefix, 256 random bits, checksum.
pub fn mint(kind: TokenKind) -> String {
    let mut raw = [0u8; 32];
    // The thread's CSPRNG (ChaCha, seeded and reseeded from the OS): no
    // system call per token on the issuance path.
    rand::thread_rng().fill_bytes(&mut raw);
    seal_body(kind, &raw)
}

/// Mints a time-ordered secret (access and refresh tokens): prefix, the
/// issue time `now_ms`, 256 random bits, checksum.
pub fn mint_timed(kind: TokenKind, now_ms: i64) -> String {
    let mut raw = [0u8; 38];
    let t = u64::try_from(now_ms).unwrap_or(0).to_be_bytes();
    raw[..6].copy_from_slice(&t[2..]);
    rand::thread_rng().fill_bytes(&mut raw[6..]);
    seal_body(kind, &raw)
}

fn seal_body(kind: TokenKind, raw: &[u8]) -> String {
    let body = B64URL.encode(raw);
    let sum = checksum(kind.prefix(), &body);
    format!("{}{}{}", kind.prefix(), body, sum)
}

fn checksum(prefix: &str, body: &str) -> String {
    let h = Sha256::new()
        .chain_update(prefix)
        .chain_update(body)
        .finalize();
    B64URL.encode(&h[..4])
}

/// True when `s` is well-formed for `kind` (prefix, length, checksum). A cheap
/// filter before any lookup; never a substitute for one.
pub fn well_formed(kind: TokenKind, s: &str) -> bool {
    let Some(rest) = s.strip_prefix(kind.prefix()) else {
        return false;
    };
    let body_len = rest.len().wrapping_sub(SUM);
    // Time-ordered kinds minted before they carried the time are accepted
    // as they were until they expire.
    let fits = body_len == BODY || (kind.time_ordered() && body_len == TIMED_BODY);
    if !fits || !rest.is_ascii() {
        return false;
    }
    let (body, sum) = rest.split_at(body_len);
    ct_eq(checksum(kind.prefix(), body).as_bytes(), sum.as_bytes())
}

/// The 6 time bytes of a time-ordered token, if `s` has that shape.
fn issue_time(s: &str) -> Option<[u8; 6]> {
    let rest = [TokenKind::AccessToken, TokenKind::RefreshToken]
        .iter()
        .find_map(|k| s.strip_prefix(k.prefix()))?;
    if rest.len() != TIMED_BODY + SUM {
        return None;
    }
    let mut t = [0u8; 6];
    let n = B64URL.decode_slice(rest.get(..TIME_CHARS)?, &mut t).ok()?;
    (n == 6).then_some(t)
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 15)] as char);
    }
}

/// Constant-time equality.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// The server pepper: the HMAC key under which issued secrets are digested.
/// It is held sealed in the database (so keyring rotation never changes it,
/// and digests stay valid across master-key rotations).
#[derive(Clone)]
pub struct Pepper([u8; 32]);

impl std::fmt::Debug for Pepper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pepper(…)")
    }
}

impl Pepper {
    pub fn generate() -> Pepper {
        let mut raw = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut raw);
        Pepper(raw)
    }

    pub fn from_bytes(b: &[u8]) -> Option<Pepper> {
        b.try_into().ok().map(Pepper)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The stored form (and lookup key) of an issued secret: hex
    /// HMAC-SHA-256, after the hex issue time for time-ordered tokens.
    pub fn digest(&self, secret: &str) -> String {
        // HMAC accepts keys of any length, so construction cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        mac.update(secret.as_bytes());
        let mut out = String::with_capacity(76);
        if let Some(t) = issue_time(secret) {
            push_hex(&mut out, &t);
        }
        push_hex(&mut out, &mac.finalize().into_bytes());
        out
    }

    /// Constant-time check of `secret` against a stored digest.
    pub fn verify(&self, secret: &str, digest: &str) -> bool {
        ct_eq(self.digest(secret).as_bytes(), digest.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_tokens_are_well_formed_and_distinct() {
        let a = mint_timed(TokenKind::AccessToken, 1_700_000_000_000);
        let b = mint_timed(TokenKind::AccessToken, 1_700_000_000_000);
        assert!(a.starts_with("rk_at_"));
        assert_ne!(a, b);
        assert!(well_formed(TokenKind::AccessToken, &a));
        assert!(!well_formed(TokenKind::RefreshToken, &a));
        let mut typo = a.clone();
        typo.replace_range(10..11, if &a[10..11] == "A" { "B" } else { "A" });
        assert!(!well_formed(TokenKind::AccessToken, &typo));
    }

    #[test]
    fn timed_tokens_are_keyed_in_issue_order() {
        let p = Pepper::generate();
        let keys: Vec<String> = [1_700_000_000_000i64, 1_700_000_000_001, 1_800_000_000_000]
            .iter()
            .map(|t| p.digest(&mint_timed(TokenKind::RefreshToken, *t)))
            .collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "{keys:?}");
        assert!(keys.iter().all(|k| k.len() == 76));
        // the time is part of what the HMAC covers: another time, another key
        let t = mint_timed(TokenKind::AccessToken, 1_700_000_000_000);
        assert!(well_formed(TokenKind::AccessToken, &t));
        assert_eq!(&p.digest(&t)[..12], "018bcfe56800");
        // tokens of the earlier, untimed shape still validate and digest as before
        let old = mint(TokenKind::AccessToken);
        assert!(well_formed(TokenKind::AccessToken, &old));
        assert_eq!(p.digest(&old).len(), 64);
        // other kinds never take the timed shape
        let long_key = seal_body(TokenKind::AccessKey, &[7u8; 38]);
        assert!(!well_formed(TokenKind::AccessKey, &long_key));
    }

    #[test]
    fn digest_is_keyed() {
        let p1 = Pepper::generate();
        let p2 = Pepper::generate();
        let t = mint(TokenKind::ClientSecret);
        assert_eq!(p1.digest(&t).len(), 64);
        assert_ne!(p1.digest(&t), p2.digest(&t));
        assert!(p1.verify(&t, &p1.digest(&t)));
        assert!(!p1.verify(&t, &p2.digest(&t)));
    }

    #[test]
    fn digest_is_lowercase_hex_of_the_hmac() {
        let p = Pepper::generate();
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&p.0).expect("key");
        mac.update(b"rk_at_x");
        let want: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(p.digest("rk_at_x"), want);
    }
}
