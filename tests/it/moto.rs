//! A `moto_server` per test (AWS IAM, STS and S3 on loopback), with IAM
//! authentication on: requests signed with a deleted key or a wrong secret
//! are refused, as AWS refuses them. The first few calls are allowed
//! unauthenticated (moto's `INITIAL_NO_AUTH_ACTION_COUNT`), which is how a
//! test makes its first IAM user.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rekey::connectors::aws::{Client, Endpoints, Keys};
use rekey::egress::{Egress, Policy};

use crate::harness::{in_ci, require};

pub struct Moto {
    child: Child,
    pub url: String,
    egress: Egress,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Calls made unauthenticated: CreateUser, PutUserPolicy, CreateAccessKey.
const SETUP_CALLS: &str = "3";

impl Moto {
    /// A fresh moto_server, or `None` (SKIPPED) off CI when it is not
    /// installed (`pip install 'moto[server]'`; `.ci/run` installs it).
    pub async fn start() -> Option<Moto> {
        let installed = Command::new("moto_server")
            .arg("--help")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !require(installed, "moto_server") {
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("INITIAL_NO_AUTH_ACTION_COUNT", SETUP_CALLS)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server starts");
        let url = format!("http://127.0.0.1:{port}");
        let m = Moto {
            child,
            url,
            egress: Egress::new(Policy::new(&[], &[]).unwrap(), None),
        };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(m);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(!in_ci(), "moto_server did not start");
        None
    }

    pub fn endpoints(&self) -> Endpoints {
        let e = serde_json::json!({"s3_url": self.url, "iam_url": self.url, "sts_url": self.url});
        Endpoints::of(&serde_json::Map::new(), e.as_object().unwrap())
    }

    /// The `--endpoint` flags of a connection to this server.
    pub fn endpoint_flags(&self) -> Vec<String> {
        ["s3_url", "iam_url", "sts_url"]
            .iter()
            .flat_map(|k| ["--endpoint".to_string(), format!("{k}={}", self.url)])
            .collect()
    }

    fn client<'a>(&'a self, ep: &'a Endpoints, keys: &'a Keys) -> Client<'a> {
        Client {
            egress: &self.egress,
            endpoints: ep,
            keys,
        }
    }

    /// An IAM user allowed everything, and its first access key.
    pub async fn user_with_key(&self, user: &str) -> Keys {
        let ep = self.endpoints();
        let anyone = Keys {
            id: "AKIASETUPSETUPSETUP0".into(),
            secret: "setup".into(),
            session_token: None,
        };
        let c = self.client(&ep, &anyone);
        c.query("iam", "CreateUser", &[("UserName", user)])
            .await
            .unwrap();
        let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#;
        c.query(
            "iam",
            "PutUserPolicy",
            &[
                ("UserName", user),
                ("PolicyName", "all"),
                ("PolicyDocument", policy),
            ],
        )
        .await
        .unwrap();
        let (id, secret) = c.create_access_key(user).await.unwrap();
        Keys {
            id,
            secret,
            session_token: None,
        }
    }

    pub async fn create_bucket(&self, keys: &Keys, bucket: &str) {
        let ep = self.endpoints();
        self.client(&ep, keys)
            .send(
                reqwest::Method::PUT,
                &format!("{}/{bucket}", self.url),
                "s3",
                "us-east-1",
                "",
            )
            .await
            .unwrap();
    }

    /// Does AWS accept these keys (STS GetCallerIdentity)?
    pub async fn accepts(&self, keys: &Keys) -> bool {
        let ep = self.endpoints();
        self.client(&ep, keys).caller_arn().await.is_ok()
    }

    /// A new access key of `user`, made with `keys` (as a person would).
    pub async fn create_key(&self, keys: &Keys, user: &str) -> String {
        let ep = self.endpoints();
        self.client(&ep, keys)
            .create_access_key(user)
            .await
            .unwrap()
            .0
    }

    /// The user's access keys, as IAM lists them.
    pub async fn key_ids(&self, keys: &Keys, user: &str) -> Vec<String> {
        let ep = self.endpoints();
        self.client(&ep, keys)
            .list_access_keys(user)
            .await
            .unwrap()
            .into_iter()
            .map(|k| k.id)
            .collect()
    }

    /// An `s3` connection `bucket` of org `acme` on this server (bucket
    /// `rekey-bucket`), holding `keys`.
    pub fn s3_connection(&self, env: &crate::harness::Env, keys: &Keys) {
        let mut args: Vec<String> = [
            "connection",
            "create",
            "--org",
            "acme",
            "--kind",
            "s3",
            "--name",
            "bucket",
            "--setting",
            "bucket=rekey-bucket",
            "--setting",
            "region=us-east-1",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(self.endpoint_flags());
        env.json(&args.iter().map(String::as_str).collect::<Vec<_>>());
        crate::harness::set_credential(
            env,
            "bucket",
            &["access_key_id", "secret_access_key"],
            &[&keys.id, &keys.secret],
        );
    }
}
