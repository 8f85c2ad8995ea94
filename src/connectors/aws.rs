//! The few AWS calls rekey makes with a connection's access keys: STS
//! `GetCallerIdentity` and `AssumeRole`, the IAM access-key calls, and S3
//! `HeadBucket`. Requests are SigV4-signed by `aws-sigv4` and sent through
//! egress like every other outbound call; the IAM, STS and S3 endpoints are
//! per-connection overrides (`s3_url`, `iam_url`, `sts_url`) for other
//! partitions, VPC endpoints and tests (moto_server).

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings,
};
use aws_sigv4::sign::v4;
use quick_xml::events::Event;
use quick_xml::Reader;
use serde_json::{Map, Value};

use crate::egress::{self, Egress};

const TIMEOUT: Duration = Duration::from_secs(15);
const IAM_VERSION: &str = "2010-05-08";
const STS_VERSION: &str = "2011-06-15";

/// Access keys, with the session token of assumed-role credentials.
#[derive(Clone)]
pub struct Keys {
    pub id: String,
    pub secret: String,
    pub session_token: Option<String>,
}

impl Keys {
    pub fn from_credential(c: &Map<String, Value>) -> Result<Keys, String> {
        let get = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or_default();
        if get("access_key_id").is_empty() || get("secret_access_key").is_empty() {
            return Err("the credential has no access_key_id and secret_access_key".into());
        }
        Ok(Keys {
            id: get("access_key_id").to_string(),
            secret: get("secret_access_key").to_string(),
            session_token: None,
        })
    }
}

/// Where a connection's AWS calls go.
pub struct Endpoints {
    pub region: String,
    pub iam: String,
    pub sts: String,
    /// Path-style base when overridden (`{s3}/{bucket}`), else virtual-hosted.
    pub s3: Option<String>,
}

impl Endpoints {
    pub fn of(settings: &Map<String, Value>, endpoints: &Map<String, Value>) -> Endpoints {
        let get = |m: &Map<String, Value>, k: &str| {
            m.get(k)
                .and_then(Value::as_str)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        };
        let region = get(settings, "region").unwrap_or_else(|| "us-east-1".into());
        Endpoints {
            iam: get(endpoints, "iam_url").unwrap_or_else(|| "https://iam.amazonaws.com/".into()),
            sts: get(endpoints, "sts_url")
                .unwrap_or_else(|| format!("https://sts.{region}.amazonaws.com/")),
            s3: get(endpoints, "s3_url"),
            region,
        }
    }

    fn bucket_url(&self, bucket: &str) -> String {
        match &self.s3 {
            Some(base) => format!("{}/{bucket}", base.trim_end_matches('/')),
            None => format!("https://{bucket}.s3.{}.amazonaws.com/", self.region),
        }
    }
}

/// What AWS answered when it refused: its error code and message.
#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    #[error("{code}: {message}")]
    Refused { code: String, message: String },
    #[error("{0}")]
    Transport(String),
}

impl AwsError {
    pub fn code(&self) -> Option<&str> {
        match self {
            AwsError::Refused { code, .. } => Some(code),
            AwsError::Transport(_) => None,
        }
    }
}

pub struct Client<'a> {
    pub egress: &'a Egress,
    pub endpoints: &'a Endpoints,
    pub keys: &'a Keys,
}

/// One access key as IAM lists it.
#[derive(Debug, Clone)]
pub struct AccessKey {
    pub id: String,
    pub status: String,
    /// `CreateDate`, unix seconds (IAM keeps whole seconds).
    pub created_s: Option<i64>,
}

/// When and where IAM last saw an access key used.
#[derive(Debug, Clone)]
pub struct LastUsed {
    /// Milliseconds since the epoch.
    pub at: i64,
    pub service: String,
    pub region: String,
}

impl Client<'_> {
    /// Signs and sends one request; the answer's body, or AWS's refusal.
    pub async fn send(
        &self,
        method: reqwest::Method,
        url: &str,
        service: &str,
        region: &str,
        body: &str,
    ) -> Result<(u16, String), AwsError> {
        let content_type = "application/x-www-form-urlencoded; charset=utf-8";
        let headers: Vec<(&str, &str)> = if body.is_empty() {
            vec![]
        } else {
            vec![("content-type", content_type)]
        };
        let signed = self
            .sign(method.as_str(), url, service, region, &headers, body)
            .map_err(|e| AwsError::Transport(format!("signing: {e}")))?;
        let mut req = self
            .egress
            .request(method, url)
            .await
            .map_err(|e| AwsError::Transport(e.to_string()))?
            .timeout(TIMEOUT);
        for (k, v) in &headers {
            req = req.header(*k, *v);
        }
        for (k, v) in &signed {
            req = req.header(k.as_str(), v.as_str());
        }
        if !body.is_empty() {
            req = req.body(body.to_string());
        }
        let resp = req.send().await.map_err(|e| {
            AwsError::Transport(format!("request failed: {}", egress::describe(&e)))
        })?;
        let status = resp.status().as_u16();
        let text = resp
            .text()
            .await
            .map_err(|e| AwsError::Transport(format!("reading the answer: {e}")))?;
        if (200..300).contains(&status) {
            return Ok((status, text));
        }
        let code = first(&text, "Code").unwrap_or_else(|| format!("HTTP {status}"));
        let message = first(&text, "Message").unwrap_or_else(|| match status {
            403 => "access denied".into(),
            404 => "not found".into(),
            _ => "the request was refused".into(),
        });
        Err(AwsError::Refused { code, message })
    }

    /// The SigV4 headers for a request (kept apart from the sending: the
    /// signer's settings are not `Send`).
    fn sign(
        &self,
        method: &str,
        url: &str,
        service: &str,
        region: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Result<Vec<(String, String)>, String> {
        let identity = Credentials::new(
            &self.keys.id,
            &self.keys.secret,
            self.keys.session_token.clone(),
            None,
            "rekey",
        )
        .into();
        let mut settings = SigningSettings::default();
        if service == "s3" {
            // S3 wants the payload's digest as a header of its own.
            settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        }
        // Signed with the real time even under a test clock: AWS refuses
        // a signature more than five minutes off.
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(region)
            .name(service)
            .time(wall_time())
            .settings(settings)
            .build()
            .map_err(|e| e.to_string())?
            .into();
        let signable = SignableRequest::new(
            method,
            url,
            headers.iter().copied(),
            SignableBody::Bytes(body.as_bytes()),
        )
        .map_err(|e| e.to_string())?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| e.to_string())?
            .into_parts();
        Ok(instructions
            .headers()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect())
    }

    /// A query-API call (IAM, STS): the answer's XML.
    pub async fn query(
        &self,
        service: &str,
        action: &str,
        params: &[(&str, &str)],
    ) -> Result<String, AwsError> {
        let (url, region, version) = match service {
            // IAM is global: its endpoint signs for us-east-1.
            "iam" => (&self.endpoints.iam, "us-east-1", IAM_VERSION),
            _ => (
                &self.endpoints.sts,
                self.endpoints.region.as_str(),
                STS_VERSION,
            ),
        };
        // The serializer is not `Send`: done with before the await.
        let body = {
            let mut form = form_urlencoded::Serializer::new(String::new());
            form.append_pair("Action", action)
                .append_pair("Version", version);
            for (k, v) in params {
                form.append_pair(k, v);
            }
            form.finish()
        };
        self.send(reqwest::Method::POST, url, service, region, &body)
            .await
            .map(|(_, text)| text)
    }

    /// The ARN the keys speak for.
    pub async fn caller_arn(&self) -> Result<String, AwsError> {
        let xml = self.query("sts", "GetCallerIdentity", &[]).await?;
        first(&xml, "Arn").ok_or_else(|| AwsError::Transport("no Arn in the answer".into()))
    }

    /// Temporary keys for `role_arn`.
    pub async fn assume_role(&self, role_arn: &str) -> Result<Keys, AwsError> {
        let xml = self
            .query(
                "sts",
                "AssumeRole",
                &[
                    ("RoleArn", role_arn),
                    ("RoleSessionName", "rekey-probe"),
                    ("DurationSeconds", "900"),
                ],
            )
            .await?;
        let get = |t: &str| {
            first(&xml, t).ok_or_else(|| AwsError::Transport(format!("no {t} in the answer")))
        };
        Ok(Keys {
            id: get("AccessKeyId")?,
            secret: get("SecretAccessKey")?,
            session_token: Some(get("SessionToken")?),
        })
    }

    pub async fn head_bucket(&self, bucket: &str) -> Result<(), AwsError> {
        let url = self.endpoints.bucket_url(bucket);
        let region = self.endpoints.region.clone();
        self.send(reqwest::Method::HEAD, &url, "s3", &region, "")
            .await
            .map(|_| ())
    }

    pub async fn list_access_keys(&self, user: &str) -> Result<Vec<AccessKey>, AwsError> {
        let xml = self
            .query("iam", "ListAccessKeys", &[("UserName", user)])
            .await?;
        let ids = all(&xml, "AccessKeyId");
        let statuses = all(&xml, "Status");
        let created = all(&xml, "CreateDate");
        Ok(ids
            .into_iter()
            .zip(statuses)
            .enumerate()
            .map(|(i, (id, status))| AccessKey {
                id,
                status,
                created_s: created.get(i).and_then(|d| unix_seconds(d)),
            })
            .collect())
    }

    /// A new key for `user`: its id and secret (AWS shows the secret once).
    pub async fn create_access_key(&self, user: &str) -> Result<(String, String), AwsError> {
        let xml = self
            .query("iam", "CreateAccessKey", &[("UserName", user)])
            .await?;
        match (first(&xml, "AccessKeyId"), first(&xml, "SecretAccessKey")) {
            (Some(id), Some(secret)) => Ok((id, secret)),
            _ => Err(AwsError::Transport(
                "CreateAccessKey answered without a key".into(),
            )),
        }
    }

    pub async fn update_access_key(
        &self,
        user: &str,
        key_id: &str,
        status: &str,
    ) -> Result<(), AwsError> {
        self.query(
            "iam",
            "UpdateAccessKey",
            &[
                ("UserName", user),
                ("AccessKeyId", key_id),
                ("Status", status),
            ],
        )
        .await
        .map(|_| ())
    }

    pub async fn delete_access_key(&self, user: &str, key_id: &str) -> Result<(), AwsError> {
        self.query(
            "iam",
            "DeleteAccessKey",
            &[("UserName", user), ("AccessKeyId", key_id)],
        )
        .await
        .map(|_| ())
    }

    pub async fn access_key_last_used(&self, key_id: &str) -> Result<Option<LastUsed>, AwsError> {
        let xml = self
            .query("iam", "GetAccessKeyLastUsed", &[("AccessKeyId", key_id)])
            .await?;
        let Some(date) = first(&xml, "LastUsedDate") else {
            return Ok(None);
        };
        // `2026-01-02T03:04:05Z`, with or without fractions and offset:
        // AWS reports UTC, and seconds are precision enough.
        let Some(Ok(at)) = date.get(..19).map(humantime::parse_rfc3339_weak) else {
            return Ok(None);
        };
        let at = at
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        Ok(Some(LastUsed {
            at,
            service: first(&xml, "ServiceName").unwrap_or_default(),
            region: first(&xml, "Region").unwrap_or_default(),
        }))
    }
}

/// The wall clock, never the test clock: AWS checks a signature's time
/// against its own.
fn wall_time() -> SystemTime {
    use crate::clock::Clock;
    let ms = u64::try_from(crate::clock::SystemClock.now_ms()).unwrap_or(0);
    SystemTime::UNIX_EPOCH + Duration::from_millis(ms)
}

/// The IAM user name in an ARN (`arn:aws:iam::123456789012:user/path/name`),
/// `None` for roles and other principals.
pub fn user_name(arn: &str) -> Option<String> {
    let resource = arn.splitn(6, ':').nth(5)?;
    let path = resource.strip_prefix("user/")?;
    path.rsplit('/')
        .next()
        .filter(|n| !n.is_empty())
        .map(str::to_string)
}

/// The text of every element named `tag`, in document order.
/// An ISO 8601 time as IAM writes it (`2026-12-06T03:20:52Z`, perhaps with
/// fractions or an offset of +00:00): its whole seconds, read as UTC.
fn unix_seconds(s: &str) -> Option<i64> {
    let head = s.get(..19)?;
    let t = humantime::parse_rfc3339_weak(head).ok()?;
    let d = t.duration_since(std::time::UNIX_EPOCH).ok()?;
    i64::try_from(d.as_secs()).ok()
}

fn all(xml: &str, tag: &str) -> Vec<String> {
    let mut reader = Reader::from_str(xml);
    let mut out = Vec::new();
    let mut inside = false;
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) => inside = e.local_name().as_ref() == tag.as_bytes(),
            Ok(Event::Text(t)) if inside => {
                if let Ok(s) = t.unescape() {
                    out.push(s.into_owned());
                }
                inside = false;
            }
            Ok(Event::End(_)) => inside = false,
            Ok(Event::Eof) | Err(_) => break,
            _ => {}
        }
    }
    out
}

fn first(xml: &str, tag: &str) -> Option<String> {
    all(xml, tag).into_iter().next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_iam_answers() {
        let xml = r#"<ListAccessKeysResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/">
<ListAccessKeysResult><AccessKeyMetadata>
<member><UserName>svc</UserName><AccessKeyId>AKIA1</AccessKeyId><Status>Active</Status></member>
<member><UserName>svc</UserName><AccessKeyId>AKIA2</AccessKeyId><Status>Inactive</Status></member>
</AccessKeyMetadata></ListAccessKeysResult></ListAccessKeysResponse>"#;
        assert_eq!(all(xml, "AccessKeyId"), ["AKIA1", "AKIA2"]);
        assert_eq!(all(xml, "Status"), ["Active", "Inactive"]);
        let err = r#"<ErrorResponse><Error><Type>Sender</Type><Code>LimitExceeded</Code>
<Message>Cannot exceed quota for AccessKeysPerUser: 2</Message></Error></ErrorResponse>"#;
        assert_eq!(first(err, "Code").as_deref(), Some("LimitExceeded"));
    }

    #[test]
    fn user_names_from_arns() {
        assert_eq!(
            user_name("arn:aws:iam::123456789012:user/svc").as_deref(),
            Some("svc")
        );
        assert_eq!(
            user_name("arn:aws:iam::123456789012:user/team/a/svc").as_deref(),
            Some("svc")
        );
        assert_eq!(
            user_name("arn:aws:sts::123456789012:assumed-role/r/s"),
            None
        );
    }
}
