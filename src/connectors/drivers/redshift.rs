//! Amazon Redshift users. Redshift speaks PostgreSQL's protocol and changes
//! a password with `ALTER USER u PASSWORD '…'`, so the steps are
//! PostgreSQL's ([`PgFamily`]); what differs is what Redshift accepts:
//!
//! - the password as an MD5 verifier, `'md5' || md5(password || user)`
//!   (its `ALTER USER` takes a plaintext or this; it knows no SCRAM), so
//!   the plaintext never reaches the cluster or its query logs (`STL_QUERY`);
//! - `pg_user` (`usesuper`) to tell who may change whose password, since
//!   Redshift has no `pg_roles`: a user may change its own, a superuser
//!   anyone's.
//!
//! A user holds one password: the old one stops working when the new one
//! is set, and a failed verification sets the old one back.

use md5::{Digest, Md5};

use super::postgres::{Flavour, PgFamily};

/// Redshift's (and PostgreSQL's) MD5 password verifier of `user`:
/// `md5` and the hex MD5 of the password followed by the user name.
pub fn md5_verifier(user: &str, password: &str) -> String {
    let mut h = Md5::new();
    h.update(password.as_bytes());
    h.update(user.as_bytes());
    let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    format!("md5{hex}")
}

pub static REDSHIFT_USER: PgFamily = PgFamily(Flavour {
    statement: "ALTER USER",
    account: "user",
    verifier: md5_verifier,
    shown: "an MD5 verifier",
    masked: "'md5********************************'",
    may_alter: "SELECT current_user::text, \
                COALESCE((SELECT usesuper FROM pg_user WHERE usename = current_user), false) \
                  OR current_user = $1, \
                EXISTS (SELECT 1 FROM pg_user WHERE usename = $1)",
    privilege: "no superuser",
});

#[cfg(test)]
mod tests {
    use super::*;

    /// PostgreSQL's documented example (user `joe`, password `xyzzy`: the
    /// MD5 of `xyzzyjoe`), the digest computed independently.
    #[test]
    fn verifier_is_md5_of_password_then_user() {
        assert_eq!(
            md5_verifier("joe", "xyzzy"),
            "md5b5f5ba1a423792b526f799ae4eb3d59e"
        );
    }
}
