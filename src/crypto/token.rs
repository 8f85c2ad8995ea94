//! Secrets rekey issues: 256-bit random, prefixed so secret scanners find
//! them, with a checksum so typos are refused without a database lookup, and
//! stored only as a keyed digest (HMAC-SHA-256 under the server pepper).

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
}

impl TokenKind {
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
        }
    }
}

/// Body length of 32 random bytes in unpadded base64url.
const BODY: usize = 43;
/// Checksum length: 4 bytes of SHA-256 in unpadded base64url.
const SUM: usize = 6;

/// Mints a new secret of `kind`: prefix, 256 random bits, checksum.
pub fn mint(kind: TokenKind) -> String {
    let mut raw = [0u8; 32];
    // The thread's CSPRNG (ChaCha, seeded and reseeded from the OS): no
    // system call per token on the issuance path.
    rand::thread_rng().fill_bytes(&mut raw);
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
    if rest.len() != BODY + SUM || !rest.is_ascii() {
        return false;
    }
    let (body, sum) = rest.split_at(BODY);
    ct_eq(checksum(kind.prefix(), body).as_bytes(), sum.as_bytes())
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

    /// The stored form of an issued secret: hex HMAC-SHA-256.
    pub fn digest(&self, secret: &str) -> String {
        // HMAC accepts keys of any length, so construction cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        mac.update(secret.as_bytes());
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = String::with_capacity(64);
        for b in mac.finalize().into_bytes() {
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 15)] as char);
        }
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
        let a = mint(TokenKind::AccessToken);
        let b = mint(TokenKind::AccessToken);
        assert!(a.starts_with("rk_at_"));
        assert_ne!(a, b);
        assert!(well_formed(TokenKind::AccessToken, &a));
        assert!(!well_formed(TokenKind::RefreshToken, &a));
        let mut typo = a.clone();
        typo.replace_range(10..11, if &a[10..11] == "A" { "B" } else { "A" });
        assert!(!well_formed(TokenKind::AccessToken, &typo));
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
