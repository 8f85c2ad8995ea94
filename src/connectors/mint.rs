//! Access tokens rekey must obtain before it can probe a credential that is
//! not itself a bearer token: client credentials (a token request), an RSA
//! key pair (Snowflake's key-pair JWT), a Google service-account key (a
//! JWT-bearer grant) and a certificate (an Azure AD client assertion).

use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use base64::Engine;
use pkcs8::{DecodePrivateKey, EncodePublicKey};
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs1v15::SigningKey;
use rsa::signature::{SignatureEncoding, Signer};
use rsa::RsaPrivateKey;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::catalog::{AuthMethod, ClientAuthStyle, Kind, Method};
use super::oauth_client::{token_request, Failure};
use super::template::{render, Vars};
use crate::egress::Egress;

fn s(m: &Map<String, Value>, k: &str) -> String {
    m.get(k)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// Parses a PKCS#8 (optionally encrypted) or PKCS#1 RSA private key.
pub fn rsa_key(pem: &str, passphrase: Option<&str>) -> Result<RsaPrivateKey, String> {
    let pem = pem.trim();
    if pem.contains("ENCRYPTED PRIVATE KEY") {
        let pass = passphrase
            .filter(|p| !p.is_empty())
            .ok_or("the private key is encrypted; set private_key_passphrase")?;
        return RsaPrivateKey::from_pkcs8_encrypted_pem(pem, pass)
            .map_err(|_| "cannot decrypt the private key (wrong passphrase?)".to_string());
    }
    RsaPrivateKey::from_pkcs8_pem(pem)
        .or_else(|_| RsaPrivateKey::from_pkcs1_pem(pem))
        .map_err(|_| "not an RSA private key".to_string())
}

/// A compact RS256 JWT.
pub fn jwt_rs256(key: &RsaPrivateKey, header: Value, claims: Value) -> String {
    let signing = format!(
        "{}.{}",
        B64URL.encode(header.to_string()),
        B64URL.encode(claims.to_string())
    );
    let sig = SigningKey::<Sha256>::new(key.clone()).sign(signing.as_bytes());
    format!("{signing}.{}", B64URL.encode(sig.to_bytes()))
}

/// Snowflake's key-pair JWT: `iss = ACCOUNT.USER.SHA256:<public key fingerprint>`,
/// `sub = ACCOUNT.USER`, valid for under an hour.
pub fn snowflake_jwt(
    account: &str,
    user: &str,
    key: &RsaPrivateKey,
    now_ms: i64,
) -> Result<String, String> {
    // The account locator without region or cloud suffix, upper-cased.
    let account = account.split('.').next().unwrap_or_default().to_uppercase();
    let user = user.to_uppercase();
    let fp = public_key_fingerprint(key)?;
    let now = now_ms / 1000;
    Ok(jwt_rs256(
        key,
        json!({"alg": "RS256", "typ": "JWT"}),
        json!({"iss": format!("{account}.{user}.{fp}"), "sub": format!("{account}.{user}"), "iat": now, "exp": now + 3540}),
    ))
}

/// The public key as Snowflake's `RSA_PUBLIC_KEY` takes it: the base64 of
/// its DER (SubjectPublicKeyInfo), without PEM armour.
pub fn public_key_body(key: &RsaPrivateKey) -> Result<String, String> {
    let der = key
        .to_public_key()
        .to_public_key_der()
        .map_err(|e| e.to_string())?;
    Ok(B64.encode(der.as_bytes()))
}

/// `SHA256:<base64 of the DER public key's digest>`, as Snowflake shows it
/// in `RSA_PUBLIC_KEY_FP` and expects in a key-pair JWT's issuer.
pub fn public_key_fingerprint(key: &RsaPrivateKey) -> Result<String, String> {
    let der = key
        .to_public_key()
        .to_public_key_der()
        .map_err(|e| e.to_string())?;
    Ok(format!(
        "SHA256:{}",
        B64.encode(Sha256::digest(der.as_bytes()))
    ))
}

/// A token request through the same path refreshes use
/// ([`oauth_client::token_request`]); only the access token is kept.
/// Why no access token was obtained: the message, and whether it may pass
/// by itself (a timeout, a 5xx or 429 from the token endpoint) rather than
/// being a refusal of the credential.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct MintError {
    pub message: String,
    pub passing: bool,
}

impl From<String> for MintError {
    fn from(message: String) -> MintError {
        MintError {
            message,
            passing: false,
        }
    }
}

impl From<&str> for MintError {
    fn from(message: &str) -> MintError {
        message.to_string().into()
    }
}

async fn token_post(
    egress: &Egress,
    url: &str,
    form: &[(&str, &str)],
    client: Option<(ClientAuthStyle, &str, &str)>,
) -> Result<String, MintError> {
    let form = form
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let body = token_request(egress, url, client, form)
        .await
        .map_err(|f| match f {
            Failure::InvalidGrant(m) | Failure::Refused(m) => MintError::from(m),
            Failure::Unavailable { message, .. } => MintError {
                message,
                passing: true,
            },
        })?;
    Ok(body
        .get("access_token")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or("the token response has no access_token")?)
}

/// The access token the probe of `method` presents, for methods whose
/// credential is not one: `None` when the method needs none.
pub async fn access_token(
    egress: &Egress,
    kind: &Kind,
    method: &AuthMethod,
    settings: &Map<String, Value>,
    creds: &Map<String, Value>,
    now_ms: i64,
) -> Result<Option<String>, MintError> {
    match method.method {
        Method::ClientCredentials => {
            let o = method
                .oauth
                .as_ref()
                .ok_or("no token endpoint in the catalog")?;
            let vars = Vars {
                settings,
                credentials: creds,
            };
            let url = super::hosts::render_url(kind, &o.token_url, &vars)
                .map_err(|e| e.to_string())?
                .url;
            let scopes: Vec<String> = o
                .scopes
                .iter()
                .filter_map(|x| render(x, &vars).ok())
                .collect();
            let scope = scopes.join(o.scope_separator.as_deref().unwrap_or(" "));
            let (id, secret) = (s(creds, "client_id"), s(creds, "client_secret"));
            let mut form: Vec<(&str, &str)> = vec![("grant_type", "client_credentials")];
            if !scope.is_empty() {
                form.push(("scope", &scope));
            }
            let t = token_post(egress, &url, &form, Some((o.client_auth, &id, &secret))).await?;
            Ok(Some(t))
        }
        Method::RsaKeyPair => {
            let pass = creds.get("private_key_passphrase").and_then(Value::as_str);
            let key = rsa_key(&s(creds, "private_key"), pass)?;
            Ok(Some(snowflake_jwt(
                &s(settings, "account"),
                &s(settings, "username"),
                &key,
                now_ms,
            )?))
        }
        Method::ServiceAccount => {
            let raw = creds
                .values()
                .find_map(|v| v.as_str().filter(|t| t.contains("service_account")))
                .ok_or("no service-account key stored")?;
            let sa: Value = serde_json::from_str(raw)
                .map_err(|_| "the service-account key is not JSON".to_string())?;
            let key = rsa_key(sa["private_key"].as_str().unwrap_or_default(), None)?;
            let token_uri = sa["token_uri"]
                .as_str()
                .unwrap_or("https://oauth2.googleapis.com/token")
                .to_string();
            let now = now_ms / 1000;
            let assertion = jwt_rs256(
                &key,
                json!({"alg": "RS256", "typ": "JWT", "kid": sa["private_key_id"]}),
                json!({"iss": sa["client_email"], "scope": "https://www.googleapis.com/auth/cloud-platform", "aud": token_uri, "iat": now, "exp": now + 3600}),
            );
            let form = [
                ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                ("assertion", assertion.as_str()),
            ];
            Ok(Some(token_post(egress, &token_uri, &form, None).await?))
        }
        Method::Certificate => {
            let key = rsa_key(&s(creds, "private_key"), None)?;
            let der = super::shapes::pem_der(&s(creds, "certificate"), &["CERTIFICATE"])?;
            let x5t = B64URL.encode(sha1::Sha1::digest(&der));
            let tenant = s(settings, "tenant_id");
            let url = format!("https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token");
            let client_id = s(creds, "client_id");
            let now = now_ms / 1000;
            let assertion = jwt_rs256(
                &key,
                json!({"alg": "RS256", "typ": "JWT", "x5t": x5t}),
                json!({"aud": url, "iss": client_id, "sub": client_id, "jti": crate::store::new_id(), "nbf": now, "exp": now + 600}),
            );
            let scope = format!(
                "{}/.default",
                s(settings, "instance_url").trim_end_matches('/')
            );
            let form = [
                ("grant_type", "client_credentials"),
                ("client_id", client_id.as_str()),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ),
                ("client_assertion", assertion.as_str()),
                ("scope", scope.as_str()),
            ];
            Ok(Some(token_post(egress, &url, &form, None).await?))
        }
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::pkcs1v15::{Signature, VerifyingKey};
    use rsa::signature::Verifier;

    #[test]
    fn snowflake_jwt_is_signed_and_named() {
        let key = RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap();
        let t = snowflake_jwt("xy12345.eu-central-1", "svc_user", &key, 1_700_000_000_000).unwrap();
        let parts: Vec<&str> = t.split('.').collect();
        assert_eq!(parts.len(), 3);
        let claims: Value = serde_json::from_slice(&B64URL.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(claims["sub"], "XY12345.SVC_USER");
        assert!(claims["iss"]
            .as_str()
            .unwrap()
            .starts_with("XY12345.SVC_USER.SHA256:"));
        assert!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap() < 3600);
        let sig = Signature::try_from(B64URL.decode(parts[2]).unwrap().as_slice()).unwrap();
        VerifyingKey::<Sha256>::new(key.to_public_key())
            .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &sig)
            .unwrap();
    }
}
