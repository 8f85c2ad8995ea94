//! Security issue #22, items 1 and 10: an OAuth connection's flow is bound
//! to the browser of the admin who started it (a flow cookie that survives
//! the provider's redirect), so a leaked authorize URL is worth nothing; and
//! an org admin sees only their own org's part of the operator's campaign,
//! and completes only their own org's re-authorizations.

use serde_json::{json, Value};

use crate::connections::{pair, Pair};
use crate::dual;
use crate::harness::*;
use crate::oauth_support::{browse, field, param, USER};

const MALLORY: &str = "mallory@provider.test";

/// The admin `pair` gives org `acme`.
const ACME_ADMIN: &str = "admin@acme.test";

/// The attacker's own account at the provider.
fn add_mallory(p: &Pair) {
    p.provider.json_stdin(
        &[
            "user",
            "create",
            "--org",
            "prov",
            "--email",
            MALLORY,
            "--permission",
            "read_write",
            "--password-stdin",
        ],
        PASSWORD,
    );
}

/// The flow cookie a response sets: (name, value, whole header).
fn flow_cookie(r: &reqwest::Response) -> Option<(String, String, String)> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("rekey_flow") || v.starts_with("__Host-rekey_flow"))
        .map(|h| {
            let kv = h.split(';').next().unwrap_or_default();
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k.to_string(), v.to_string(), h.to_string())
        })
}

fn audit_actors(env: &Env, action: &str) -> Vec<String> {
    env.json(&["audit", "list", "--action", action, "--limit", "1000"])
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == action)
        .map(|e| e["actor"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn upstream(env: &Env) -> Value {
    env.json(&["connection", "show", "--org", "acme", "--name", "upstream"])
}

/// The callback a provider redirect lands on, opened by `c`: (status, page).
async fn land(c: &reqwest::Client, back: &url::Url, cookie: Option<String>) -> (u16, String) {
    let mut r = c.get(back.as_str());
    if let Some(h) = cookie {
        r = r.header("cookie", h);
    }
    let r = r.send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

dual!(
    a_leaked_authorize_url_is_refused_without_the_browsers_flow_cookie,
    |env| {
        let p = pair(&env, "1h", &[]).await;
        add_mallory(&p);
        let admin = ACME_ADMIN;
        let (browser, csrf) = admin_login(&p.csrv, admin).await;
        let r = browser
            .post(
                p.csrv
                    .at("/api/v1/orgs/acme/connections/upstream/authorize"),
            )
            .header("x-csrf-token", &csrf)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let (name, value, header) = flow_cookie(&r).expect("the start sets the flow cookie");
        // public_url is http://127.0.0.1:…: no __Host- prefix (it needs Secure)
        assert!(name.starts_with("rekey_flow"), "{header}");
        assert!(header.contains("HttpOnly"), "{header}");
        assert!(header.contains("SameSite=Lax"), "{header}");
        assert!(header.contains("Path=/"), "{header}");
        assert!(value.len() >= 32, "{header}");
        let v: Value = r.json().await.unwrap();
        let url = v["authorize_url"].as_str().unwrap().to_string();
        assert!(url.starts_with(&p.psrv.url), "{url}");

        // Mallory holds the URL (a shared link, history, a log) and attaches
        // her own provider account from her own browser: refused, nothing
        // stored, and the state is not used up.
        let back = browse(&url, MALLORY, PASSWORD, "allow").await.unwrap();
        assert!(param(&back, "code").is_some());
        let (s, page) = land(&client(), &back, None).await;
        assert_eq!(s, 400, "{page}");
        assert!(page.contains("browser"), "{page}");
        // a wrong cookie of the right name does no better
        let (s, page) = land(&client(), &back, Some(format!("{name}=x{value}"))).await;
        assert_eq!(s, 400, "{page}");
        // nor a bogus code without the cookie (which used to burn the state)
        let mut bogus = back.clone();
        bogus
            .query_pairs_mut()
            .clear()
            .append_pair("code", "bogus")
            .append_pair("state", &param(&back, "state").unwrap());
        let (s, _) = land(&client(), &bogus, None).await;
        assert_eq!(s, 400);
        assert_ne!(upstream(&env)["status"], "connected");
        assert!(audit_actors(&env, "connection.authorized").is_empty());

        // the admin's own browser still completes the same flow
        let back = browse(&url, USER, PASSWORD, "allow").await.unwrap();
        let (s, page) = land(&browser, &back, None).await;
        assert_eq!(s, 200, "{page}");
        assert!(page.contains("authorized"), "{page}");
        assert_eq!(upstream(&env)["status"], "connected");
        assert_eq!(
            audit_actors(&env, "connection.authorized"),
            vec!["user:admin@acme.test@acme".to_string()]
        );
        // single use: the same browser cannot replay it
        let (s, _) = land(&browser, &back, None).await;
        assert_eq!(s, 400);
    }
);

dual!(
    the_cli_prints_a_start_link_that_binds_the_admins_browser_after_sign_in,
    |env| {
        let p = pair(&env, "1h", &[]).await;
        let admin = ACME_ADMIN;
        env.org_with_admin("evil");
        let mut c = env.cmd();
        c.env("REKEY_PUBLIC_URL", &p.csrv.url).args([
            "connection",
            "authorize",
            "--org",
            "acme",
            "--name",
            "upstream",
            "--json",
        ]);
        let out = c.output().unwrap();
        assert!(out.status.success());
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        let link = v["authorize_url"].as_str().unwrap().to_string();
        assert!(
            link.starts_with(&format!("{}/connect/", p.csrv.url)),
            "{link}"
        );

        // the link's state used directly at the callback, cookie-less: refused
        let state = link.rsplit('/').next().unwrap().to_string();
        let cb = url::Url::parse(&format!(
            "{}/oauth/callback?code=x&state={state}",
            p.csrv.url
        ))
        .unwrap();
        assert_eq!(land(&client(), &cb, None).await.0, 400);

        // an admin of another org may not open it
        let (evil, _) = admin_login(&p.csrv, "admin@evil.test").await;
        let r = evil.get(&link).send().await.unwrap();
        assert_eq!(r.status(), 403);
        assert!(flow_cookie(&r).is_none());

        // not signed in: a sign-in page, no redirect, no flow cookie
        let browser = client();
        let r = browser.get(&link).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(flow_cookie(&r).is_none());
        let page = r.text().await.unwrap();
        let csrf = field(&page, "csrf").expect("a sign-in form");
        // a wrong password: the form again
        let r = browser
            .post(&link)
            .form(&[
                ("csrf", csrf.as_str()),
                ("email", admin),
                ("password", "wrong-password-0000"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        assert!(flow_cookie(&r).is_none());
        let r = browser
            .post(&link)
            .form(&[
                ("csrf", csrf.as_str()),
                ("email", admin),
                ("password", PASSWORD),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 302);
        assert!(flow_cookie(&r).is_some());
        let to = r.headers()["location"].to_str().unwrap().to_string();
        assert!(to.starts_with(&p.psrv.url), "{to}");
        let back = browse(&to, USER, PASSWORD, "allow").await.unwrap();
        let (s, page) = land(&browser, &back, None).await;
        assert_eq!(s, 200, "{page}");
        assert_eq!(upstream(&env)["status"], "connected");
        assert_eq!(
            audit_actors(&env, "connection.authorized"),
            vec!["user:admin@acme.test@acme".to_string()]
        );
    }
);

/// Every string a campaign answer for an org admin of `evil` must not hold.
fn assert_nothing_of_acme(what: &str, text: &str) {
    for leak in ["upstream", "acme", "/connect/", "state=", "rk_st_"] {
        assert!(!text.contains(leak), "{what} shows {leak:?}: {text}");
    }
}

dual!(
    an_org_admin_sees_only_their_org_of_the_operators_campaign_and_cannot_take_its_reauthorization,
    |env| {
        let p = pair(&env, "1h", &[("REKEY_JOBS_INTERVAL", "0")]).await;
        add_mallory(&p);
        let c = crate::connections::authorize(&env, &p, "authorize").await;
        assert_eq!(c["status"], "connected");
        let acme_admin = ACME_ADMIN;
        let evil_admin = env.org_with_admin("evil");
        // evil's own credential: a REST API key a person rotates (a runbook)
        env.json(&[
            "connection",
            "create",
            "--org",
            "evil",
            "--kind",
            "custom_rest",
            "--name",
            "crm",
            "--setting",
            "base_url=http://127.0.0.1:9",
        ]);
        env.json_stdin(
            &[
                "connection",
                "set-credential",
                "--org",
                "evil",
                "--name",
                "crm",
                "--field",
                "api_key",
                "--value-stdin",
                "--force",
            ],
            "evil-api-key-0001",
        );
        // the operator's campaign over every org, run until people must act
        let mut cmd = env.cmd();
        cmd.env("REKEY_PUBLIC_URL", &p.csrv.url).args([
            "incident",
            "start",
            "--reason",
            "provider breach",
            "--scope",
            "all",
            "--wait",
            "--json",
        ]);
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let s: Value = serde_json::from_slice(&out.stdout).unwrap();
        let id = s["id"].as_str().unwrap().to_string();
        let up = s["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["target"]["name"] == "upstream")
            .unwrap();
        assert_eq!(up["status"], "waiting_person", "{s}");
        let link = up["detail"]
            .as_str()
            .unwrap()
            .strip_prefix("re-authorize at ")
            .unwrap()
            .to_string();
        assert!(
            link.starts_with(&format!("{}/connect/", p.csrv.url)),
            "{link}"
        );

        // evil's admin asks for a campaign over evil: 409, naming the
        // operator's campaign and nothing of another org
        let (evil, csrf) = admin_login(&p.csrv, &evil_admin).await;
        let r = evil
            .post(p.csrv.at("/api/v1/incidents"))
            .header("x-csrf-token", &csrf)
            .json(&json!({"reason": "ours", "scope": "org:evil"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 409);
        assert_eq!(
            r.headers()["location"].to_str().unwrap(),
            format!("/api/v1/incidents/{id}")
        );
        let text = r.text().await.unwrap();
        assert_nothing_of_acme("the conflict", &text);
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["campaign"]["id"], id.as_str(), "{v}");
        assert!(v["campaign"].get("items").is_none(), "{v}");
        assert!(v["message"].as_str().unwrap().contains("operator"), "{v}");

        // status, list and every report format: evil's items only
        let get = |path: String| {
            let evil = evil.clone();
            async move {
                let r = evil.get(path).send().await.unwrap();
                assert_eq!(r.status(), 200);
                r.text().await.unwrap()
            }
        };
        let text = get(p.csrv.at(&format!("/api/v1/incidents/{id}"))).await;
        assert_nothing_of_acme("the status", &text);
        let v: Value = serde_json::from_str(&text).unwrap();
        let items = v["items"].as_array().unwrap();
        assert_eq!(items.len(), 1, "{v}");
        assert_eq!(items[0]["target"]["name"], "crm");
        assert_eq!(v["total"], 1, "{v}");
        let text = get(p.csrv.at("/api/v1/incidents")).await;
        assert_nothing_of_acme("the list", &text);
        assert!(text.contains(&id), "{text}");
        for f in ["json", "csv", "md"] {
            let text = get(p
                .csrv
                .at(&format!("/api/v1/incidents/{id}/report?format={f}")))
            .await;
            assert_nothing_of_acme(f, &text);
            assert!(text.contains("crm"), "{text}");
        }
        // and the operator's campaign is not evil's to cancel
        let r = evil
            .post(p.csrv.at(&format!("/api/v1/incidents/{id}/cancel")))
            .header("x-csrf-token", &csrf)
            .send()
            .await
            .unwrap();
        assert!(r.status() == 403 || r.status() == 404, "{}", r.status());

        // Had evil's admin the link anyway: it is not theirs to open, and
        // the state alone at the callback does nothing (nor uses it up).
        let r = evil.get(&link).send().await.unwrap();
        assert_eq!(r.status(), 403);
        assert!(flow_cookie(&r).is_none());
        let state = link.rsplit('/').next().unwrap().to_string();
        let cb = url::Url::parse(&format!(
            "{}/oauth/callback?code=x&state={state}",
            p.csrv.url
        ))
        .unwrap();
        assert_eq!(land(&evil, &cb, None).await.0, 400);

        // acme's admin opens it signed in, then signs out before coming
        // back: a campaign's flow completes only for a signed-in admin
        let (acme, acme_csrf) = admin_login(&p.csrv, acme_admin).await;
        let r = acme.get(&link).send().await.unwrap();
        assert_eq!(r.status(), 302);
        let to = r.headers()["location"].to_str().unwrap().to_string();
        assert!(to.starts_with(&p.psrv.url), "{to}");
        let back = browse(&to, USER, PASSWORD, "allow").await.unwrap();
        let r = acme
            .delete(p.csrv.at("/api/v1/session"))
            .header("x-csrf-token", &acme_csrf)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
        let (s, page) = land(&acme, &back, None).await;
        assert_eq!(s, 400, "{page}");
        assert!(page.contains("sign in"), "{page}");
        assert_ne!(upstream(&env)["status"], "connected");

        // signed in again, from the link: the grant is stored, by them
        let (acme, _) = admin_login(&p.csrv, acme_admin).await;
        let r = acme.get(&link).send().await.unwrap();
        assert_eq!(r.status(), 302);
        let to = r.headers()["location"].to_str().unwrap().to_string();
        let back = browse(&to, USER, PASSWORD, "allow").await.unwrap();
        let (s, page) = land(&acme, &back, None).await;
        assert_eq!(s, 200, "{page}");
        assert_eq!(upstream(&env)["status"], "connected");
        let actors = audit_actors(&env, "connection.authorized");
        assert_eq!(
            actors.last().map(String::as_str),
            Some("user:admin@acme.test@acme"),
            "{actors:?}"
        );
        assert!(
            !actors.iter().any(|a| a.starts_with("incident")),
            "{actors:?}"
        );
    }
);
