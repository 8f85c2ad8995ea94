//! Shape checks of settings and credential values by their catalog format:
//! a PEM that parses, a service-account JSON with the fields one has, AWS
//! key ids that look like AWS key ids. Values are never echoed back.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

use super::catalog::{Field, Format};

/// Checks `value` against `field`; the error says what is wrong, not what was given
/// (for secrets).
pub fn check(field: &Field, value: &str) -> Result<(), String> {
    let v = value.trim();
    let shown = |v: &str| {
        if field.secret {
            "the value".to_string()
        } else {
            format!("{v:?}")
        }
    };
    let fail = |why: &str| Err(format!("{}: {} {why}", field.key, shown(v)));
    if v.is_empty() {
        return Err(format!("{} is empty", field.key));
    }
    match field.format {
        Format::String => Ok(()),
        Format::Url => match url::Url::parse(v) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(()),
            _ => fail("is not an http(s) URL"),
        },
        Format::Hostname => {
            // A host name, or an IP address (v6 with or without brackets);
            // never a port, path or anything else that bends a URL.
            let ip = v.trim_start_matches('[').trim_end_matches(']');
            let ok = super::hosts::is_host_name(v) || ip.parse::<std::net::IpAddr>().is_ok();
            if ok {
                Ok(())
            } else {
                fail("is not a host name or address")
            }
        }
        Format::Integer => v
            .parse::<i64>()
            .map(|_| ())
            .or_else(|_| fail("is not an integer")),
        Format::Port => match v.parse::<u16>() {
            Ok(p) if p > 0 => Ok(()),
            _ => fail("is not a port (1-65535)"),
        },
        Format::Email => crate::identity::normalize_email(v)
            .map(|_| ())
            .or_else(|_| fail("is not an email address")),
        Format::Enum => {
            if field.options.iter().any(|o| o == v) {
                Ok(())
            } else {
                Err(format!(
                    "{}: must be one of {}",
                    field.key,
                    field.options.join(", ")
                ))
            }
        }
        Format::Bool => match v {
            "true" | "false" => Ok(()),
            _ => fail("is not true or false"),
        },
        Format::PemPrivateKey => pem(
            v,
            &[
                "PRIVATE KEY",
                "RSA PRIVATE KEY",
                "EC PRIVATE KEY",
                "ENCRYPTED PRIVATE KEY",
            ],
        )
        .map_err(|e| format!("{}: not a PEM private key ({e})", field.key)),
        Format::PemCertificate => pem(v, &["CERTIFICATE"])
            .map_err(|e| format!("{}: not a PEM certificate ({e})", field.key)),
        Format::ServiceAccountJson => service_account(v)
            .map_err(|e| format!("{}: not a service-account key ({e})", field.key)),
        Format::AwsAccessKeyId => {
            let ok = v.len() == 20
                && (v.starts_with("AKIA") || v.starts_with("ASIA"))
                && v.chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
            if ok {
                Ok(())
            } else {
                fail("is not an AWS access key id (AKIA… or ASIA…, 20 characters)")
            }
        }
        Format::AwsSecretAccessKey => {
            let ok = v.len() == 40
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '/' || c == '+');
            if ok {
                Ok(())
            } else {
                fail("is not an AWS secret access key (40 characters)")
            }
        }
    }
}

/// A PEM block with one of `labels` whose body is base64 of a DER SEQUENCE.
fn pem(v: &str, labels: &[&str]) -> Result<(), String> {
    pem_der(v, labels).map(|_| ())
}

/// The DER body of a PEM block with one of `labels`.
pub fn pem_der(v: &str, labels: &[&str]) -> Result<Vec<u8>, String> {
    let begin = v.find("-----BEGIN ").ok_or("no BEGIN line")?;
    let rest = &v[begin + 11..];
    let label_end = rest.find("-----").ok_or("malformed BEGIN line")?;
    let label = &rest[..label_end];
    if !labels.contains(&label) {
        return Err(format!("unexpected PEM type {label:?}"));
    }
    let body_start = label_end + 5;
    let end_marker = format!("-----END {label}-----");
    let end = rest.find(&end_marker).ok_or("no matching END line")?;
    let body: String = rest[body_start..end]
        .lines()
        .filter(|l| !l.contains(':'))
        .collect::<Vec<_>>()
        .join("")
        .split_whitespace()
        .collect();
    let der = B64
        .decode(body)
        .map_err(|_| "body is not base64".to_string())?;
    if der.first() != Some(&0x30) || der.len() < 32 {
        return Err("body is not DER".into());
    }
    Ok(der)
}

fn service_account(v: &str) -> Result<(), String> {
    let j: serde_json::Value = serde_json::from_str(v).map_err(|_| "not JSON".to_string())?;
    if j["type"] != "service_account" {
        return Err("type is not service_account".into());
    }
    for f in [
        "project_id",
        "private_key_id",
        "private_key",
        "client_email",
    ] {
        if !j[f].is_string() {
            return Err(format!("{f} is missing"));
        }
    }
    pem(j["private_key"].as_str().unwrap_or(""), &["PRIVATE KEY"])
        .map_err(|e| format!("private_key: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(format: Format) -> Field {
        Field {
            key: "k".into(),
            label: "K".into(),
            secret: true,
            optional: false,
            format,
            options: vec![],
            default: None,
            description: None,
            destination: false,
        }
    }

    #[test]
    fn shapes() {
        let der = B64.encode([0x30u8; 40]);
        let pem_ok = format!("-----BEGIN PRIVATE KEY-----\n{der}\n-----END PRIVATE KEY-----\n");
        assert!(check(&f(Format::PemPrivateKey), &pem_ok).is_ok());
        assert!(check(
            &f(Format::PemPrivateKey),
            "-----BEGIN PRIVATE KEY-----\nnot base64!\n-----END PRIVATE KEY-----"
        )
        .is_err());
        assert!(check(&f(Format::PemCertificate), &pem_ok).is_err());
        let sa = serde_json::json!({"type": "service_account", "project_id": "p", "private_key_id": "1", "private_key": pem_ok, "client_email": "a@p.iam.gserviceaccount.com"});
        assert!(check(&f(Format::ServiceAccountJson), &sa.to_string()).is_ok());
        assert!(check(&f(Format::ServiceAccountJson), "{\"type\":\"user\"}").is_err());
        assert!(check(&f(Format::AwsAccessKeyId), "AKIAIOSFODNN7EXAMPLE").is_ok());
        assert!(check(&f(Format::AwsAccessKeyId), "nope").is_err());
        assert!(check(
            &f(Format::AwsSecretAccessKey),
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
        )
        .is_ok());
        let e = check(&f(Format::Port), "99999").unwrap_err();
        assert!(!e.contains("99999"), "secret values are not echoed: {e}");
    }
}
