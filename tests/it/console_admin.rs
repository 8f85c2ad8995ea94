//! The console's Users, Keys & clients, Audit log and Credential age pages,
//! and their admin API twins (`/api/v1/orgs/{org}/users…`,
//! `/api/v1/orgs/{org}/audit`, `/api/v1/audit`), through the real server:
//! forms posted with the session's CSRF field, results checked at the
//! real target through the CLI.

use std::time::Duration;

use serde_json::{json, Value};

use crate::console::{csrf_of, get, post, sign_in};
use crate::dual;
use crate::harness::*;
use crate::oauth_support::{self, refresh, tokens, world, USER};

/// The value shown in a reveal box under `label` (the `<code>` after its `<dt>`).
fn revealed(html: &str, label: &str) -> String {
    let at = html
        .find(&format!("<dt>{label}</dt>"))
        .unwrap_or_else(|| panic!("{label} is shown: {html}"));
    let rest = &html[at..];
    let code = rest.find("<code id=\"reveal-").expect("a code");
    let rest = &rest[code..];
    let start = rest.find('>').unwrap() + 1;
    let end = rest.find("</code>").unwrap();
    rest[start..end].to_string()
}

/// A token with `prefix` in `html`.
pub(crate) fn token_in(html: &str, prefix: &str) -> Option<String> {
    let at = html.find(prefix)?;
    Some(
        html[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
            .collect(),
    )
}

/// Signs in through the form with any password; the client and its CSRF value.
async fn sign_in_as(
    srv: &Server,
    email: &str,
    password: &str,
) -> Option<(reqwest::Client, String)> {
    let c = client();
    let (_, html) = get(&c, srv, "/ui/login?next=/ui/").await;
    let r = post(
        &c,
        srv,
        "/ui/login",
        &[
            ("csrf", &csrf_of(&html)),
            ("email", email),
            ("password", password),
            ("next", "/ui/"),
        ],
    )
    .await;
    if r.status() != 303 {
        return None;
    }
    let (_, home) = get(&c, srv, "/ui/").await;
    Some((c, csrf_of(&home)))
}

fn operator(env: &Env) -> String {
    let email = "ops@platform.test";
    env.json_stdin(
        &["operator", "create", "--email", email, "--password-stdin"],
        PASSWORD,
    );
    email.to_string()
}

async fn api_key_works(srv: &Server, key: &str) -> u16 {
    client()
        .get(srv.at("/v1/me"))
        .header("Accesskey", key)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn cc_token(srv: &Server, id: &str, secret: &str) -> u16 {
    client()
        .post(srv.at("/oauth2/token"))
        .basic_auth(id, Some(secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

dual!(the_admin_pages_load_under_the_csp, |env| {
    let admin = env.org_with_admin("acme");
    let ops = operator(&env);
    env.ok(&[
        "key", "create", "--org", "acme", "--name", "ci", "--scope", "read",
    ]);
    let srv = env.serve();
    let (c, _) = sign_in(&srv, &admin).await;
    let (o, _) = sign_in(&srv, &ops).await;
    let check = |r: reqwest::Response, path: String| async move {
        assert_eq!(r.status(), 200, "{path}");
        let csp = r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(csp.starts_with("default-src 'self'"), "{path}: {csp}");
        assert_eq!(r.headers()["cache-control"], "no-store", "{path}");
        let html = r.text().await.unwrap();
        assert!(html.contains("<html lang=\"en\">"), "{path}");
        html
    };
    for path in [
        "/ui/orgs/acme/users",
        "/ui/orgs/acme/keys",
        "/ui/orgs/acme/keys/ci/reset",
        "/ui/orgs/acme/keys/ci/revoke",
        "/ui/orgs/acme/audit",
        "/ui/orgs/acme/age",
    ] {
        let html = check(c.get(srv.at(path)).send().await.unwrap(), path.into()).await;
        // every labelled control: each `id` an input has is a label's `for`
        for (i, _) in html.match_indices("<input id=\"") {
            let id: String = html[i + 11..].chars().take_while(|c| *c != '"').collect();
            assert!(
                html.contains(&format!("for=\"{id}\"")),
                "{path}: #{id} unlabelled"
            );
        }
    }
    for path in [
        "/ui/audit",
        "/ui/age",
        "/ui/orgs/acme/age",
        "/ui/orgs/acme/users",
    ] {
        let html = check(o.get(srv.at(path)).send().await.unwrap(), path.into()).await;
        assert!(html.contains("href=\"/ui/audit\"") && html.contains("href=\"/ui/age\""));
    }
    // the org admin is told the operator's pages are not theirs, in HTML
    for path in ["/ui/audit", "/ui/age"] {
        let r = c.get(srv.at(path)).send().await.unwrap();
        assert_eq!(r.status(), 403, "{path}");
        assert!(r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
    }
});

dual!(
    users_are_created_changed_and_reactivated_through_forms,
    |env| {
        let admin = env.org_with_admin("acme");
        let srv = env.serve();
        let (c, csrf) = sign_in(&srv, &admin).await;
        let users = |env: &Env| env.json(&["user", "list", "--org", "acme"]);
        // without the CSRF field, or with a wrong one: refused, nothing made
        for form in [
            vec![
                ("email", "ann@acme.test"),
                ("permission", "read_write"),
                ("admin", "true"),
            ],
            vec![
                ("csrf", "forged"),
                ("email", "ann@acme.test"),
                ("permission", "read_write"),
                ("admin", "true"),
            ],
        ] {
            let r = post(&c, &srv, "/ui/orgs/acme/users", &form).await;
            assert_eq!(r.status(), 403);
        }
        assert_eq!(users(&env).as_array().unwrap().len(), 1);
        // bad input: a clear error, nothing made
        let r = post(
            &c,
            &srv,
            "/ui/orgs/acme/users",
            &[
                ("csrf", &csrf),
                ("email", "ann@acme.test"),
                ("permission", "owner"),
            ],
        )
        .await;
        assert_eq!(r.status(), 400);
        assert!(r.text().await.unwrap().contains("read or read_write"));
        assert_eq!(users(&env).as_array().unwrap().len(), 1);
        // made, with a generated password shown on this answer only
        let r = post(
            &c,
            &srv,
            "/ui/orgs/acme/users",
            &[
                ("csrf", &csrf),
                ("email", "Ann@Acme.test"),
                ("permission", "read_write"),
                ("admin", "true"),
            ],
        )
        .await;
        assert_eq!(r.status(), 201);
        let html = r.text().await.unwrap();
        let pw = revealed(&html, "Password");
        assert!(pw.len() >= 24, "{pw}");
        assert!(html.contains("data-copy=\"reveal-2\""), "a copy button");
        let (_, list) = get(&c, &srv, "/ui/orgs/acme/users").await;
        assert!(list.contains("ann@acme.test"));
        assert!(!list.contains(&pw), "the password is never shown again");
        // …and it is the user's password: Ann signs in to the console with it
        assert!(sign_in_as(&srv, "ann@acme.test", &pw).await.is_some());
        assert!(sign_in_as(&srv, "ann@acme.test", "not-her-password")
            .await
            .is_none());
        // permission, through its form
        let r = post(
            &c,
            &srv,
            "/ui/orgs/acme/users/ann%40acme.test/permission",
            &[("permission", "read")],
        )
        .await;
        assert_eq!(r.status(), 403, "no CSRF field");
        let r = post(
            &c,
            &srv,
            "/ui/orgs/acme/users/ann%40acme.test/permission",
            &[("csrf", &csrf), ("permission", "read")],
        )
        .await;
        assert_eq!(r.status(), 303);
        let u = users(&env);
        let ann = u
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["email"] == "ann@acme.test")
            .unwrap();
        assert_eq!(ann["permission"], "read");
        assert_eq!(ann["admin"], true);
        // deactivate and activate; audited with the person and their address
        let r = post(
            &c,
            &srv,
            "/ui/orgs/acme/users/ann%40acme.test/deactivate",
            &[("csrf", &csrf)],
        )
        .await;
        assert_eq!(r.status(), 303);
        assert!(
            sign_in_as(&srv, "ann@acme.test", &pw).await.is_none(),
            "deactivated"
        );
        let (_, page) = get(&c, &srv, "/ui/orgs/acme/users/ann%40acme.test/deactivate").await;
        assert!(page.contains("already deactivated"), "{page}");
        let r = post(
            &c,
            &srv,
            "/ui/orgs/acme/users/ann%40acme.test/activate",
            &[("csrf", &csrf)],
        )
        .await;
        assert_eq!(r.status(), 303);
        assert!(r.headers()["location"]
            .to_str()
            .unwrap()
            .ends_with("notice=activated"));
        assert!(sign_in_as(&srv, "ann@acme.test", &pw).await.is_some());
        let audit = env.json(&["audit", "list", "--org", "acme", "--action", "user."]);
        let ann: Vec<&Value> = audit
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["target"] == "ann@acme.test")
            .collect();
        let actions: Vec<&str> = ann.iter().map(|e| e["action"].as_str().unwrap()).collect();
        assert_eq!(
            actions,
            [
                "user.activate",
                "user.deactivate",
                "user.set_permission",
                "user.create"
            ]
        );
        for e in ann {
            assert_eq!(e["actor"], format!("user:{admin}@acme"));
            assert_eq!(e["ip"], "127.0.0.1");
        }
    }
);

dual!(
    deactivating_a_user_says_what_it_does_and_makes_their_authorizations_invalid,
    |env| {
        let w = world(env, &[], &[]).await;
        let (_, rt) = tokens(&w, "read_write").await;
        let (_, rt2) = tokens(&w, "read").await;
        let (s, _) = refresh(&w, &rt2).await;
        assert_eq!(s, 200);
        let (c, csrf) = sign_in(&w.srv, "admin@acme.test").await;
        // the page that asks first counts what dies
        let path = format!(
            "/ui/orgs/acme/users/{}/deactivate",
            USER.replace('@', "%40")
        );
        let (s, page) = get(&c, &w.srv, &path).await;
        assert_eq!(s, 200);
        assert!(
            page.contains(
                "Their OAuth refresh tokens become Invalid at once: 2 active authorizations"
            ),
            "{page}"
        );
        assert!(page.contains("name=\"csrf\""));
        assert!(page.contains("Deactivate user"));
        let statuses = |w: &oauth_support::World| -> Vec<String> {
            oauth_support::authorizations(w)
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a["status"].as_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(statuses(&w), ["Active", "Active"]);
        // without the CSRF field: refused, nothing changed
        let r = post(&c, &w.srv, &path, &[]).await;
        assert_eq!(r.status(), 403);
        assert_eq!(statuses(&w), ["Active", "Active"]);
        let r = post(&c, &w.srv, &path, &[("csrf", &csrf)]).await;
        assert_eq!(r.status(), 303);
        assert_eq!(statuses(&w), ["Invalid", "Invalid"]);
        let (s, _) = refresh(&w, &rt).await;
        assert_ne!(s, 200, "a refresh token of a deactivated user is dead");
        // activated again, what they authorized before stays Invalid
        let r = post(
            &c,
            &w.srv,
            &format!("/ui/orgs/acme/users/{}/activate", USER.replace('@', "%40")),
            &[("csrf", &csrf)],
        )
        .await;
        assert_eq!(r.status(), 303);
        assert_eq!(statuses(&w), ["Invalid", "Invalid"]);
        let (_, page) = get(&c, &w.srv, &path).await;
        assert!(page.contains("0 active authorizations"), "{page}");
    }
);

dual!(
    keys_and_machine_clients_through_forms_secrets_shown_once,
    |env| {
        let admin = env.org_with_admin("acme");
        let srv = env.serve();
        let (c, csrf) = sign_in(&srv, &admin).await;
        let keys = |env: &Env| env.json(&["key", "list", "--org", "acme"]);
        // create, refused without the CSRF field
        let r = post(
            &c,
            &srv,
            "/ui/orgs/acme/keys",
            &[("name", "ci"), ("scope", "read")],
        )
        .await;
        assert_eq!(r.status(), 403);
        assert_eq!(keys(&env).as_array().unwrap().len(), 0);
        let r = post(
            &c,
            &srv,
            "/ui/orgs/acme/keys",
            &[
                ("csrf", &csrf),
                ("name", "ci"),
                ("scope", "read"),
                ("expires", ""),
            ],
        )
        .await;
        assert_eq!(r.status(), 201);
        let html = r.text().await.unwrap();
        let k1 = revealed(&html, "Access key");
        assert!(k1.starts_with("rk_ak_"));
        assert!(html.contains("data-copy=\"reveal-1\""), "a copy button");
        assert_eq!(api_key_works(&srv, &k1).await, 200);
        let (s, list) = get(&c, &srv, "/ui/orgs/acme/keys").await;
        assert_eq!(s, 200);
        assert!(
            list.contains(">ci<") && token_in(&list, "rk_ak_").is_none(),
            "never shown again"
        );
        // reset, with an overlap chosen on the page that asks first
        let (_, ask) = get(&c, &srv, "/ui/orgs/acme/keys/ci/reset").await;
        assert!(
            ask.contains("name=\"overlap\"") && ask.contains("Reset access key"),
            "{ask}"
        );
        let r = post(
            &c,
            &srv,
            "/ui/orgs/acme/keys/ci/reset",
            &[("overlap", "1h")],
        )
        .await;
        assert_eq!(r.status(), 403);
        let r = post(
            &c,
            &srv,
            "/ui/orgs/acme/keys/ci/reset",
            &[("csrf", &csrf), ("overlap", "1h")],
        )
        .await;
        assert_eq!(r.status(), 200);
        let html = r.text().await.unwrap();
        let k2 = revealed(&html, "Access key");
        assert_ne!(k1, k2);
        assert_eq!(api_key_works(&srv, &k1).await, 200, "the overlap");
        assert_eq!(api_key_works(&srv, &k2).await, 200);
        let (_, list) = get(&c, &srv, "/ui/orgs/acme/keys").await;
        assert!(list.contains("previous key works until"));
        assert!(token_in(&list, "rk_ak_").is_none());
        // end the overlap (asked first): the old key stops
        let (_, ask) = get(&c, &srv, "/ui/orgs/acme/keys/ci/end-overlap").await;
        assert!(ask.contains("stops working at once"), "{ask}");
        let r = post(
            &c,
            &srv,
            "/ui/orgs/acme/keys/ci/end-overlap",
            &[("csrf", &csrf)],
        )
        .await;
        assert_eq!(r.status(), 303);
        assert_eq!(api_key_works(&srv, &k1).await, 401);
        assert_eq!(api_key_works(&srv, &k2).await, 200);
        // rotate: a verified cut-over, the new key shown once, the old one kept for the window
        let r = post(&c, &srv, "/ui/orgs/acme/keys/ci/rotate", &[("csrf", &csrf)]).await;
        assert_eq!(r.status(), 201);
        let html = r.text().await.unwrap();
        let k3 = revealed(&html, "Access key");
        assert_eq!(api_key_works(&srv, &k3).await, 200);
        assert_eq!(
            api_key_works(&srv, &k2).await,
            200,
            "kept for the cut-over window"
        );
        let rots = env.json(&["rotation", "list", "--org", "acme"]);
        assert!(rots.to_string().contains("\"key\""), "{rots}");
        // revoke, asked first
        let r = post(&c, &srv, "/ui/orgs/acme/keys/ci/revoke", &[]).await;
        assert_eq!(r.status(), 403);
        let r = post(&c, &srv, "/ui/orgs/acme/keys/ci/revoke", &[("csrf", &csrf)]).await;
        assert_eq!(r.status(), 303);
        assert_eq!(keys(&env)[0]["status"], "revoked");
        assert_eq!(api_key_works(&srv, &k3).await, 401);

        // machine clients
        let m2m = |env: &Env| env.json(&["m2m", "list", "--org", "acme"]);
        let r = post(
            &c,
            &srv,
            "/ui/orgs/acme/m2m",
            &[("name", "sync"), ("scope", "read")],
        )
        .await;
        assert_eq!(r.status(), 403);
        assert_eq!(m2m(&env).as_array().unwrap().len(), 0);
        let r = post(
            &c,
            &srv,
            "/ui/orgs/acme/m2m",
            &[
                ("csrf", &csrf),
                ("name", "sync"),
                ("scope", "read"),
                ("user", "nobody@acme.test"),
            ],
        )
        .await;
        assert_eq!(r.status(), 400, "an unknown user is a clear error");
        assert_eq!(m2m(&env).as_array().unwrap().len(), 0);
        let r = post(
            &c,
            &srv,
            "/ui/orgs/acme/m2m",
            &[
                ("csrf", &csrf),
                ("name", "sync"),
                ("scope", "read"),
                ("user", &admin),
                ("access_token_ttl", "10m"),
            ],
        )
        .await;
        assert_eq!(r.status(), 201);
        let html = r.text().await.unwrap();
        let id = revealed(&html, "Client ID");
        let s1 = revealed(&html, "Client secret");
        assert!(s1.starts_with("rk_cs_"));
        assert_eq!(cc_token(&srv, &id, &s1).await, 200);
        let (_, list) = get(&c, &srv, "/ui/orgs/acme/keys").await;
        assert!(list.contains(&id) && list.contains(&admin));
        assert!(token_in(&list, "rk_cs_").is_none(), "never shown again");
        // its last use, with where from, once the uses are written (every 5 s)
        let mut used = false;
        for _ in 0..40 {
            let (_, list) = get(&c, &srv, "/ui/orgs/acme/keys").await;
            let m2m = &list[list.find("id=\"m2m\"").unwrap()..];
            if m2m.contains("from 127.0.0.1 (last used at") {
                used = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        assert!(used, "the machine client's last use is shown");
        // regenerate without overlap, revoking its tokens
        let (_, ask) = get(&c, &srv, "/ui/orgs/acme/m2m/sync/regenerate-secret").await;
        assert!(
            ask.contains("name=\"revoke_tokens\"") && ask.contains("name=\"overlap\""),
            "{ask}"
        );
        let r = post(
            &c,
            &srv,
            "/ui/orgs/acme/m2m/sync/regenerate-secret",
            &[("csrf", &csrf), ("overlap", "0"), ("revoke_tokens", "true")],
        )
        .await;
        assert_eq!(r.status(), 200);
        let s2 = revealed(&r.text().await.unwrap(), "Client secret");
        assert_eq!(cc_token(&srv, &id, &s1).await, 401);
        assert_eq!(cc_token(&srv, &id, &s2).await, 200);
        // rotate: the new secret shown once
        let r = post(
            &c,
            &srv,
            "/ui/orgs/acme/m2m/sync/rotate",
            &[("csrf", &csrf)],
        )
        .await;
        assert_eq!(r.status(), 201);
        let s3 = revealed(&r.text().await.unwrap(), "Client secret");
        assert_eq!(cc_token(&srv, &id, &s3).await, 200);
        assert_eq!(
            cc_token(&srv, &id, &s2).await,
            200,
            "kept for the cut-over window"
        );
        // deactivate, activate, delete (asked first)
        let r = post(
            &c,
            &srv,
            "/ui/orgs/acme/m2m/sync/deactivate",
            &[("csrf", &csrf)],
        )
        .await;
        assert_eq!(r.status(), 303);
        assert_eq!(m2m(&env)[0]["status"], "deactivated");
        assert_eq!(cc_token(&srv, &id, &s3).await, 401);
        let r = post(
            &c,
            &srv,
            "/ui/orgs/acme/m2m/sync/activate",
            &[("csrf", &csrf)],
        )
        .await;
        assert_eq!(r.status(), 303);
        assert_eq!(m2m(&env)[0]["status"], "active");
        let (_, ask) = get(&c, &srv, "/ui/orgs/acme/m2m/sync/delete").await;
        assert!(ask.contains("Delete machine client"), "{ask}");
        let r = post(
            &c,
            &srv,
            "/ui/orgs/acme/m2m/sync/delete",
            &[("csrf", &csrf)],
        )
        .await;
        assert_eq!(r.status(), 303);
        assert_eq!(m2m(&env).as_array().unwrap().len(), 0);
        // every action audited with the person as the actor
        let audit = env.json(&["audit", "list", "--org", "acme", "--limit", "100"]);
        for e in audit.as_array().unwrap() {
            let a = e["action"].as_str().unwrap();
            if a.starts_with("key.") || a.starts_with("m2m.") {
                assert_eq!(e["actor"], format!("user:{admin}@acme"), "{e}");
            }
        }
    }
);

dual!(
    the_audit_log_filters_and_pages_in_the_console_and_the_api,
    |env| {
        let admin = env.org_with_admin("acme");
        env.org_with_admin("globex");
        let ops = operator(&env);
        env.ok(&[
            "key", "create", "--org", "globex", "--name", "theirs", "--scope", "read",
        ]);
        let srv = env.serve();
        let (api, token) = admin_login(&srv, &admin).await;
        let make = |name: String| {
            let (api, token, srv) = (&api, &token, &srv);
            async move {
                let r = api
                    .post(srv.at("/api/v1/orgs/acme/keys"))
                    .header("x-csrf-token", token)
                    .json(&json!({"name": name, "scope": "read"}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 201);
            }
        };
        for i in 0..12 {
            make(format!("early-{i:02}")).await;
        }
        env.advance(Duration::from_secs(3 * 3600));
        for i in 0..13 {
            make(format!("late-{i:02}")).await;
        }
        env.ok(&[
            "key", "create", "--org", "acme", "--name", "by-cli", "--scope", "read",
        ]);
        let audit = |path: String| {
            let (api, srv) = (&api, &srv);
            async move {
                let r = api.get(srv.at(&path)).send().await.unwrap();
                let s = r.status().as_u16();
                (s, r.json::<Value>().await.unwrap())
            }
        };
        // every page by keyset, newest first, the exact total on each
        let mut seen = vec![];
        let mut next: Option<i64> = None;
        for round in 0.. {
            let q = match next {
                Some(b) => {
                    format!("/api/v1/orgs/acme/audit?action=key.create&limit=10&before_seq={b}")
                }
                None => "/api/v1/orgs/acme/audit?action=key.create&limit=10".into(),
            };
            let (s, v) = audit(q).await;
            assert_eq!(s, 200, "{v}");
            assert_eq!(v["total"], 26, "{v}");
            for e in v["items"].as_array().unwrap() {
                seen.push(e["seq"].as_i64().unwrap());
                assert_eq!(e["action"], "key.create");
                assert!(e["hash"].is_string() && e["at"].is_string());
            }
            next = v["next_before_seq"].as_i64();
            if next.is_none() {
                assert_eq!(round, 2);
                break;
            }
        }
        assert_eq!(seen.len(), 26);
        assert!(
            seen.windows(2).all(|w| w[0] > w[1]),
            "newest first, no repeats: {seen:?}"
        );
        // by actor, by target, by time
        let (_, v) = audit("/api/v1/orgs/acme/audit?action=key.&actor=ADMIN%40acme".into()).await;
        assert_eq!(v["total"], 25, "{v}");
        let (_, v) = audit("/api/v1/orgs/acme/audit?actor=cli&action=key.create".into()).await;
        assert_eq!(v["total"], 1);
        assert_eq!(v["items"][0]["target"], "by-cli");
        let (_, v) = audit("/api/v1/orgs/acme/audit?target=early-0".into()).await;
        assert_eq!(v["total"], 10, "{v}");
        let (_, v) = audit("/api/v1/orgs/acme/audit?action=key.create&since=1h".into()).await;
        assert_eq!(v["total"], 14, "the late ones and the CLI's: {v}");
        let (_, v) = audit("/api/v1/orgs/acme/audit?action=key.create&until=1h".into()).await;
        assert_eq!(v["total"], 12, "{v}");
        // a LIKE wildcard is matched literally
        let (_, v) = audit("/api/v1/orgs/acme/audit?target=%25".into()).await;
        assert_eq!(v["total"], 0, "{v}");
        // bad input: a clear error
        for q in [
            "since=yesterday-ish",
            "before_seq=x",
            "limit=0",
            "limit=100000",
        ] {
            let (s, v) = audit(format!("/api/v1/orgs/acme/audit?{q}")).await;
            assert_eq!(s, 400, "{q}: {v}");
            assert_eq!(v["error"], "invalid_request");
        }
        // another org's log is not found; the whole log is the operator's
        let (s, _) = audit("/api/v1/orgs/globex/audit".into()).await;
        assert_eq!(s, 404);
        let (s, _) = audit("/api/v1/audit".into()).await;
        assert_eq!(s, 403);
        let (op, _) = admin_login(&srv, &ops).await;
        let v: Value = get_json(&op, srv.at("/api/v1/audit?action=key.create")).await;
        assert_eq!(v["total"], 27, "every org's: {v}");
        let v: Value = get_json(&op, srv.at("/api/v1/audit?org=globex&action=key.")).await;
        assert_eq!(v["total"], 1);
        assert_eq!(v["items"][0]["target"], "theirs");

        // the console: the same search, the total and the next page
        let (c, _) = sign_in(&srv, &admin).await;
        let (s, html) = get(&c, &srv, "/ui/orgs/acme/audit?action=key.create&limit=10").await;
        assert_eq!(s, 200);
        assert!(html.contains("26 events match"), "{html}");
        assert_eq!(html.matches("<td data-label=\"Seq\">").count(), 10);
        assert!(html.contains("value=\"key.create\""), "the filter is kept");
        assert!(!html.contains("theirs"));
        let at = html
            .find("class=\"pager\"><a href=\"")
            .expect("older events")
            + 23;
        // the link as a browser reads it (askama writes `&` as `&#38;`)
        let next = html[at..]
            .split('"')
            .next()
            .unwrap()
            .replace("&#38;", "&")
            .replace("&amp;", "&");
        assert!(
            next.contains("before_seq=") && next.contains("action=key.create"),
            "{next}"
        );
        let (s, html) = get(&c, &srv, &next).await;
        assert_eq!(s, 200);
        assert!(html.contains("26 events match"));
        assert_eq!(html.matches("<td data-label=\"Seq\">").count(), 10);
        assert!(html.contains(">early-11<"), "the older page: {html}");
        assert!(!html.contains(">by-cli<") && !html.contains(">late-12<"));
        let (_, html) = get(&c, &srv, "/ui/orgs/acme/audit?target=by-cli").await;
        assert!(
            html.contains("1 event matches") && html.contains(">cli<"),
            "{html}"
        );
        // by actor and by time, as the API counts them
        let (_, html) = get(
            &c,
            &srv,
            "/ui/orgs/acme/audit?action=key.&actor=ADMIN%40acme",
        )
        .await;
        assert!(html.contains("25 events match"), "{html}");
        assert!(
            html.contains("value=\"ADMIN@acme\""),
            "the filter is kept: {html}"
        );
        let (_, html) = get(&c, &srv, "/ui/orgs/acme/audit?actor=cli&action=key.create").await;
        assert!(
            html.contains("1 event matches") && html.contains(">by-cli<"),
            "{html}"
        );
        let (_, html) = get(&c, &srv, "/ui/orgs/acme/audit?action=key.create&since=1h").await;
        assert!(html.contains("14 events match"), "{html}");
        let (_, html) = get(&c, &srv, "/ui/orgs/acme/audit?action=key.create&until=1h").await;
        assert!(html.contains("12 events match"), "{html}");
        let (s, html) = get(&c, &srv, "/ui/orgs/acme/audit?since=whenever").await;
        assert_eq!(s, 400);
        assert!(html.contains("class=\"error\""));
        let (o, _) = sign_in(&srv, &ops).await;
        let (s, html) = get(&o, &srv, "/ui/audit?org=globex").await;
        assert_eq!(s, 200);
        assert!(
            html.contains("theirs") && !html.contains("late-00"),
            "{html}"
        );
    }
);

dual!(
    another_orgs_users_keys_and_log_are_not_found_in_html,
    |env| {
        let admin = env.org_with_admin("acme");
        env.org_with_admin("globex");
        env.ok(&[
            "key", "create", "--org", "globex", "--name", "theirs", "--scope", "read",
        ]);
        env.ok(&[
            "m2m",
            "create",
            "--org",
            "globex",
            "--name",
            "their-sync",
            "--scope",
            "read",
        ]);
        let srv = env.serve();
        let (c, csrf) = sign_in(&srv, &admin).await;
        for path in [
            "/ui/orgs/globex/users",
            "/ui/orgs/globex/users/admin%40globex.test/deactivate",
            "/ui/orgs/globex/keys",
            "/ui/orgs/globex/keys/theirs/revoke",
            "/ui/orgs/globex/m2m/their-sync/delete",
            "/ui/orgs/globex/audit",
            "/ui/orgs/globex/age",
        ] {
            let r = c.get(srv.at(path)).send().await.unwrap();
            assert_eq!(r.status(), 404, "{path}");
            assert!(r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html"));
            let html = r.text().await.unwrap();
            assert!(html.contains("href=\"/ui/\""), "{path}: a way back");
            assert!(
                !html.contains("theirs") && !html.contains("admin@globex"),
                "{path}"
            );
        }
        for path in [
            "/ui/orgs/globex/users",
            "/ui/orgs/globex/users/admin%40globex.test/deactivate",
            "/ui/orgs/globex/keys",
            "/ui/orgs/globex/keys/theirs/revoke",
            "/ui/orgs/globex/m2m/their-sync/delete",
        ] {
            let r = post(
                &c,
                &srv,
                path,
                &[
                    ("csrf", &csrf),
                    ("name", "x"),
                    ("scope", "read"),
                    ("email", "x@y.test"),
                    ("permission", "read"),
                ],
            )
            .await;
            assert_eq!(r.status(), 404, "{path}");
        }
        assert_eq!(
            env.json(&["key", "list", "--org", "globex"])[0]["status"],
            "active"
        );
        assert_eq!(
            env.json(&["m2m", "list", "--org", "globex"])
                .as_array()
                .unwrap()
                .len(),
            1
        );
        let u = env.json(&["user", "list", "--org", "globex"]);
        assert_eq!(u.as_array().unwrap().len(), 1);
        assert_eq!(u[0]["active"], true);
    }
);

dual!(the_users_api_twin, |env| {
    let admin = env.org_with_admin("acme");
    env.org_with_admin("globex");
    let srv = env.serve();
    let (api, token) = admin_login(&srv, &admin).await;
    let send = |m: reqwest::Method, path: &str, body: Option<Value>| {
        let mut r = api.request(m, srv.at(path)).header("x-csrf-token", &token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        async move {
            let r = r.send().await.unwrap();
            let s = r.status().as_u16();
            (s, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    use reqwest::Method;
    // made with a generated password, answered once
    let (s, v) = send(
        Method::POST,
        "/api/v1/orgs/acme/users",
        Some(json!({"email": "Bob@Acme.test", "permission": "read"})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["email"], "bob@acme.test");
    assert_eq!(v["org"], "acme");
    assert_eq!(v["admin"], false);
    assert_eq!(v["active"], true);
    assert!(v["password"].as_str().is_some_and(|p| p.len() >= 24));
    assert!(v["created_at"].is_string() && v["id"].is_string());
    let bob = v["id"].as_str().unwrap().to_string();
    // with one given: not echoed
    let (s, v) = send(Method::POST, "/api/v1/orgs/acme/users", Some(json!({"email": "cy@acme.test", "permission": "read_write", "admin": true, "password": "a-long-enough-password"}))).await;
    assert_eq!(s, 201);
    assert!(v.get("password").is_none(), "{v}");
    // bad input changes nothing
    for body in [
        json!({"email": "bob@acme.test", "permission": "read"}),
        json!({"email": "dee@acme.test", "permission": "root"}),
        json!({"email": "not-an-email", "permission": "read"}),
        json!({"email": "dee@acme.test", "permission": "read", "role": "x"}),
        json!({"email": "dee@acme.test", "permission": "read", "password": ""}),
    ] {
        let (s, v) = send(Method::POST, "/api/v1/orgs/acme/users", Some(body.clone())).await;
        assert!(s == 400 || s == 409, "{body}: {s} {v}");
    }
    // no CSRF header: refused
    let r = api
        .post(srv.at("/api/v1/orgs/acme/users"))
        .json(&json!({"email": "eve@acme.test", "permission": "read"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // the list, by email, paged with the exact total; fields as `user list --json`
    let (s, v) = send(Method::GET, "/api/v1/orgs/acme/users?limit=2", None).await;
    assert_eq!(s, 200);
    assert_eq!(v["total"], 3);
    assert_eq!(v["items"].as_array().unwrap().len(), 2);
    assert_eq!(
        v["items"][0],
        env.json(&["user", "list", "--org", "acme"])[0]
    );
    let after = v["next_after"].as_str().unwrap().to_string();
    let (_, v2) = send(
        Method::GET,
        &format!("/api/v1/orgs/acme/users?limit=2&after={after}"),
        None,
    )
    .await;
    assert_eq!(v2["items"].as_array().unwrap().len(), 1);
    assert!(v2["next_after"].is_null());
    let (_, v) = send(Method::GET, "/api/v1/orgs/acme/users?q=BOB", None).await;
    assert_eq!(v["total"], 1);
    assert!(
        v["items"][0].get("password").is_none() && v["items"][0].get("password_hash").is_none()
    );
    // permission; deactivate and activate by id or email
    let (s, v) = send(
        Method::PATCH,
        &format!("/api/v1/orgs/acme/users/{bob}"),
        Some(json!({"permission": "read_write"})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["permission"], "read_write");
    let (s, _) = send(
        Method::PATCH,
        "/api/v1/orgs/acme/users/bob@acme.test",
        Some(json!({"permission": "admin"})),
    )
    .await;
    assert_eq!(s, 400);
    let (s, v) = send(
        Method::POST,
        &format!("/api/v1/orgs/acme/users/{bob}/deactivate"),
        None,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["active"], false);
    let (s, v) = send(
        Method::POST,
        "/api/v1/orgs/acme/users/bob@acme.test/activate",
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(v["active"], true);
    let (s, _) = send(
        Method::POST,
        "/api/v1/orgs/acme/users/nobody@acme.test/deactivate",
        None,
    )
    .await;
    assert_eq!(s, 404);
    // audited as the person
    let ev = env.json(&[
        "audit",
        "list",
        "--org",
        "acme",
        "--action",
        "user.deactivate",
    ]);
    assert_eq!(ev[0]["actor"], format!("user:{admin}@acme"));
    assert_eq!(ev[0]["target"], "bob@acme.test");
    // another org: not found, nothing changed
    let (s, _) = send(Method::GET, "/api/v1/orgs/globex/users", None).await;
    assert_eq!(s, 404);
    let (s, _) = send(
        Method::POST,
        "/api/v1/orgs/globex/users/admin@globex.test/deactivate",
        None,
    )
    .await;
    assert_eq!(s, 404);
    assert_eq!(
        env.json(&["user", "list", "--org", "globex"])[0]["active"],
        true
    );
});

dual!(credential_age_charts_ages_against_schedules, |env| {
    let admin = env.org_with_admin("acme");
    let ops = operator(&env);
    env.ok(&[
        "key", "create", "--org", "acme", "--name", "old-key", "--scope", "read",
    ]);
    env.ok(&[
        "key",
        "create",
        "--org",
        "acme",
        "--name",
        "fresh-key",
        "--scope",
        "read",
    ]);
    env.ok(&[
        "key",
        "update",
        "--org",
        "acme",
        "--name",
        "old-key",
        "--rotation-interval",
        "1d",
    ]);
    env.ok(&[
        "key",
        "update",
        "--org",
        "acme",
        "--name",
        "fresh-key",
        "--rotation-interval",
        "30d",
    ]);
    env.advance(Duration::from_secs(2 * 86_400));
    let srv = env.serve();
    let (c, _) = sign_in(&srv, &admin).await;
    let (s, html) = get(&c, &srv, "/ui/orgs/acme/age").await;
    assert_eq!(s, 200);
    assert!(html.contains(
        "<svg class=\"chart\" role=\"img\" aria-labelledby=\"age-chart-title age-chart-desc\""
    ));
    assert!(html.contains("<title id=\"age-chart-title\">"));
    let svg = &html[html.find("<svg").unwrap()..html.find("</svg>").unwrap()];
    assert!(
        !svg.contains("<script") && !svg.contains("onload=") && !svg.contains("href"),
        "no script in the chart"
    );
    assert_eq!(html.matches("<rect ").count(), 2, "one bar per credential");
    // worst first: the overdue key, red, before the one on schedule
    let old = html.find("access key old-key").expect("old-key charted");
    let fresh = html
        .find("access key fresh-key")
        .expect("fresh-key charted");
    assert!(old < fresh);
    let bar = &html[old..];
    let rect = &bar[bar.find("<rect").unwrap()..];
    assert!(
        rect[..rect.find('>').unwrap()].contains("fill=\"#a3161b\""),
        "past due is red"
    );
    assert_eq!(html.matches("<line ").count(), 2, "a tick at each schedule");
    // the table carries the same facts
    assert!(html.contains(">past due<") && html.contains(">on schedule<"));
    assert!(html.contains("1 past due"));
    // the operator's view has every org's and the platform's own
    let (o, _) = sign_in(&srv, &ops).await;
    let (s, html) = get(&o, &srv, "/ui/age").await;
    assert_eq!(s, 200);
    assert!(html.contains("master key"), "the platform's own");
    assert!(html.contains("acme/old-key"));
    let (s, _) = get(&o, &srv, "/ui/age?after=99").await;
    assert_eq!(s, 400);
});

// The operator's Service keys page and its API twin: a key created in the
// console is shown once (never in the list or on reload), reads a
// connection's credentials, and is refused once revoked behind the page's
// confirmation; the API lists, creates (201, no-store) and revokes (204);
// an org admin gets 403 from both.
dual!(the_operators_service_keys_page_and_api, |env| {
    let ops = operator(&env);
    let admin = env.org_with_admin("acme");
    connection(
        &env,
        "redis",
        "cache",
        &["host=127.0.0.1", "port=1", "username=svc"],
    );
    store_unprobed(&env, "cache", "password", "held-redis-password-91");
    let srv = env.serve();
    let (o, csrf) = sign_in_as(&srv, &ops, PASSWORD)
        .await
        .expect("operator signs in");
    let (status, html) = get(&o, &srv, "/ui/service-keys").await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("No service keys yet"), "{html}");
    let r = post(
        &o,
        &srv,
        "/ui/service-keys",
        &[("csrf", &csrf), ("name", "billing-worker")],
    )
    .await;
    assert_eq!(r.status(), 201);
    let html = r.text().await.unwrap();
    let key = revealed(&html, "Service key");
    assert!(key.starts_with("rk_sk_"), "{html}");
    let v = stored_credential(&env, &srv, &key, "cache").await;
    assert_eq!(v["password"], "held-redis-password-91");
    let (_, list) = get(&o, &srv, "/ui/service-keys").await;
    assert!(
        list.contains("billing-worker") && !list.contains(&key),
        "{list}"
    );
    assert!(list.contains("1 service key"), "the exact total: {list}");
    // a bad name changes nothing and says why
    let r = post(
        &o,
        &srv,
        "/ui/service-keys",
        &[("csrf", &csrf), ("name", "")],
    )
    .await;
    assert_eq!(r.status(), 400);
    // no CSRF, no revoke
    let r = post(&o, &srv, "/ui/service-keys/billing-worker/revoke", &[]).await;
    assert_eq!(r.status(), 403);
    let r = post(
        &o,
        &srv,
        "/ui/service-keys/billing-worker/revoke",
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(html.contains("is revoked"), "{html}");
    let id = env.json(&["connection", "show", "--org", "acme", "--name", "cache"])["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = client()
        .get(srv.at(&format!("/api/v1/orgs/acme/connections/{id}/credentials")))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // the API twin
    let (a, acsrf) = admin_login(&srv, &ops).await;
    let r = a
        .post(srv.at("/api/v1/service-keys"))
        .header("X-CSRF-Token", &acsrf)
        .json(&json!({"name": "etl"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let v: Value = r.json().await.unwrap();
    let key2 = v["key"].as_str().unwrap().to_string();
    let list = get_json(&a, srv.at("/api/v1/service-keys")).await;
    assert_eq!(list.as_array().map(Vec::len), Some(2), "{list}");
    assert!(!list.to_string().contains(&key2), "{list}");
    let r = a
        .delete(srv.at("/api/v1/service-keys/etl"))
        .header("X-CSRF-Token", &acsrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = a
        .delete(srv.at("/api/v1/service-keys/etl"))
        .header("X-CSRF-Token", &acsrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "revoked already");
    let list = get_json(&a, srv.at("/api/v1/service-keys")).await;
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .all(|k| k["status"] == "revoked"),
        "{list}"
    );
    // an org admin manages none of them
    let (c, ccsrf) = admin_login(&srv, &admin).await;
    assert_eq!(
        c.get(srv.at("/api/v1/service-keys"))
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
    let r = c
        .post(srv.at("/api/v1/service-keys"))
        .header("X-CSRF-Token", &ccsrf)
        .json(&json!({"name": "sneaky"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let (status, _) = get(&c, &srv, "/ui/service-keys").await;
    assert_eq!(status, 403);
    let audit = env.json(&["audit", "list", "--action", "service_key."]);
    assert_eq!(audit.as_array().map(Vec::len), Some(4), "{audit}");
    // paged by name, 50 a page, with the exact total on each
    let (api, token) = admin_login(&srv, &ops).await;
    for i in 0..50 {
        let r = api
            .post(srv.at("/api/v1/service-keys"))
            .header("X-CSRF-Token", &token)
            .json(&json!({"name": format!("worker-{i:02}")}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let (_, first) = get(&o, &srv, "/ui/service-keys").await;
    assert!(first.contains("52 service keys"), "{first}");
    assert!(first.contains("billing-worker") && first.contains("worker-47"));
    assert!(!first.contains("worker-48"), "50 on the first page");
    let next = crate::console::next_link(&first).expect("a next page");
    let (s, second) = get(&o, &srv, &next).await;
    assert_eq!(s, 200, "{second}");
    assert!(
        second.contains("worker-49") && !second.contains("worker-47"),
        "{second}"
    );
    assert!(second.contains("52 service keys") && second.contains("first page"));
});
