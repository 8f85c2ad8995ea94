//! AWS access-key rotation against moto_server (IAM, STS and S3, with IAM
//! authentication on): the new key is made by AWS, stored, accepted, and
//! the old one is deleted at AWS after cut-over and refused from then on.

use std::time::Duration;

use rekey::connectors::aws::Keys;

use crate::dual;
use crate::harness::*;
use crate::moto::Moto;

/// Org `acme` with an `s3` connection `bucket` on moto, holding `keys`.
fn s3_connection(env: &Env, moto: &Moto, keys: &Keys) {
    env.ok(&["org", "create", "acme"]);
    moto.s3_connection(env, keys);
}

fn keys_of(v: &serde_json::Value) -> Keys {
    Keys::from_credential(v.as_object().unwrap()).unwrap()
}

dual!(
    aws_access_keys_rotate_through_iam_and_the_old_key_is_refused,
    |env| {
        let Some(moto) = Moto::start().await else {
            return;
        };
        let old = moto.user_with_key("svc").await;
        moto.create_bucket(&old, "rekey-bucket").await;
        s3_connection(&env, &moto, &old);

        // the probe is real: signed GetCallerIdentity, then HeadBucket
        let t = env.json(&["connection", "test", "--org", "acme", "--name", "bucket"]);
        assert_eq!(t["last_test"]["outcome"], "ok", "{t}");
        assert!(
            t["last_test"]["message"]
                .as_str()
                .unwrap()
                .contains("HeadBucket"),
            "{t}"
        );

        let plan = env.json(&[
            "rotate",
            "--org",
            "acme",
            "--connection",
            "bucket",
            "--dry-run",
        ]);
        assert!(plan.to_string().contains("iam:CreateAccessKey"), "{plan}");

        let key = service_key(&env);
        let srv = env.serve_with(&[("REKEY_JOBS_INTERVAL", "1s")]);
        let r = env.json(&[
            "rotate",
            "--org",
            "acme",
            "--connection",
            "bucket",
            "--cutover-window",
            "1h",
        ]);
        let id = r["id"].as_str().unwrap().to_string();
        let v = wait_for_status(&env, &id, "waiting_cutover").await;
        let apply = v["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == "apply")
            .unwrap();
        assert!(
            apply["detail"]
                .as_str()
                .unwrap()
                .contains("created access key"),
            "{v}"
        );

        // both keys work until cut-over; the stored one is the new one
        let new = keys_of(&stored_credential(&env, &srv, &key, "bucket").await);
        assert_ne!(new.id, old.id);
        // (the old key is not used here: a use after the promotion is a
        // consumer that has not moved, and would hold the cut-over)
        assert!(moto.accepts(&new).await);
        let mut listed = moto.key_ids(&new, "svc").await;
        listed.sort();
        let mut both = vec![old.id.clone(), new.id.clone()];
        both.sort();
        assert_eq!(listed, both);

        // the window passes: the old key is deleted at AWS and refused
        env.advance(Duration::from_secs(3601));
        let v = wait_for_status(&env, &id, "completed").await;
        let retire = v["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == "retire")
            .unwrap();
        assert!(
            retire["detail"]
                .as_str()
                .unwrap()
                .contains("deactivated and deleted"),
            "{v}"
        );
        assert!(!moto.accepts(&old).await, "the old key is refused");
        assert!(moto.accepts(&new).await);
        assert_eq!(moto.key_ids(&new, "svc").await, vec![new.id.clone()]);
        let t = env.json(&["connection", "test", "--org", "acme", "--name", "bucket"]);
        assert_eq!(t["last_test"]["outcome"], "ok", "{t}");
        // no secret in the audit log or the rotation's record
        let audit = env.ok(&["audit", "list", "--limit", "1000", "--json"]);
        assert!(!audit.contains(&new.secret) && !audit.contains(&old.secret));
        assert!(!v.to_string().contains(&new.secret));
        drop(srv);
    }
);

dual!(
    aws_user_with_two_keys_is_refused_before_anything_changes,
    |env| {
        let Some(moto) = Moto::start().await else {
            return;
        };
        let old = moto.user_with_key("svc").await;
        moto.create_bucket(&old, "rekey-bucket").await;
        s3_connection(&env, &moto, &old);
        // someone made a second key by hand: IAM has no room for a third
        let ep = moto.endpoints();
        let egress =
            rekey::egress::Egress::new(rekey::egress::Policy::new(&[], &[]).unwrap(), None);
        let (other, _) = rekey::connectors::aws::Client {
            egress: &egress,
            endpoints: &ep,
            keys: &old,
        }
        .create_access_key("svc")
        .await
        .unwrap();

        let out = env.run(&[
            "rotate",
            "--org",
            "acme",
            "--connection",
            "bucket",
            "--wait",
            "--json",
        ]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["status"], "failed", "{v}");
        let reason = v["reason"].as_str().unwrap();
        assert!(reason.starts_with("check:"), "{reason}");
        assert!(
            reason.contains("two access keys")
                && reason.contains(&other)
                && reason.contains(&old.id),
            "{reason}"
        );
        // nothing changed: still the two keys, the stored one still works
        assert_eq!(moto.key_ids(&old, "svc").await.len(), 2);
        let t = env.json(&["connection", "test", "--org", "acme", "--name", "bucket"]);
        assert_eq!(t["last_test"]["outcome"], "ok", "{t}");
        let show = env.json(&["connection", "show", "--org", "acme", "--name", "bucket"]);
        assert_eq!(show["slots"]["current"]["version"], 1, "{show}");
    }
);

dual!(
    aws_reports_the_old_key_still_in_use_and_the_cutover_waits,
    |env| {
        let Some(moto) = Moto::start().await else {
            return;
        };
        let old = moto.user_with_key("svc").await;
        moto.create_bucket(&old, "rekey-bucket").await;
        s3_connection(&env, &moto, &old);
        let _srv = env.serve_with(&[("REKEY_JOBS_INTERVAL", "1s")]);
        let r = env.json(&[
            "rotate",
            "--org",
            "acme",
            "--connection",
            "bucket",
            "--cutover-window",
            "1h",
        ]);
        let id = r["id"].as_str().unwrap().to_string();
        wait_for_status(&env, &id, "waiting_cutover").await;
        // a consumer still on the old key: IAM records the use (to the second)
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        assert!(moto.accepts(&old).await);
        env.advance(std::time::Duration::from_secs(3601));
        let v = poll(&env, &["rotation", "show", &id], |v| {
            v["steps"].to_string().contains("AWS reports")
        })
        .await;
        assert_eq!(v["status"], "waiting_cutover", "{v}");
        let last = v["steps"].as_array().unwrap().last().unwrap()["detail"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            last.contains(&format!("AWS reports {} used", old.id)),
            "{last}"
        );
        // both keys still work: nobody is cut off
        assert!(moto.accepts(&old).await);
    }
);
