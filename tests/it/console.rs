//! The admin console (`/ui/`) through the real server, as a browser
//! without script would use it: plain GETs and form POSTs with the
//! session cookie. (`tests/browser/` drives Chromium through the same
//! flows.)

use serde_json::Value;

use crate::dual;

use crate::harness::*;

/// The value of the first hidden `csrf` field of a page.
pub fn csrf_of(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    html[at..].split('"').next().unwrap().to_string()
}

/// Application `crm` of org `acme` (scope `read`, one callback); its
/// `app create` answer, with the secret shown once.
pub fn crm_app(env: &Env) -> serde_json::Value {
    env.json(&[
        "app",
        "create",
        "--org",
        "acme",
        "--name",
        "crm",
        "--scope",
        "read",
        "--callback",
        "https://crm.example/cb",
    ])
}

pub async fn get(c: &reqwest::Client, srv: &Server, path: &str) -> (u16, String) {
    let r = c.get(srv.at(path)).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

pub async fn post(
    c: &reqwest::Client,
    srv: &Server,
    path: &str,
    form: &[(&str, &str)],
) -> reqwest::Response {
    c.post(srv.at(path)).form(form).send().await.unwrap()
}

/// Posts a console form that must answer 303 to `to` (a form carried out
/// sends the browser back to a page, with its notice).
pub async fn post_see_other(
    c: &reqwest::Client,
    srv: &Server,
    path: &str,
    form: &[(&str, &str)],
    to: &str,
) {
    let r = post(c, srv, path, form).await;
    assert_eq!(r.status(), 303, "{path}");
    assert_eq!(r.headers()["location"], to, "{path}");
}

/// Signs in through the console's form; returns the client and the
/// session's CSRF token (from the first page's forms).
pub async fn sign_in(srv: &Server, email: &str) -> (reqwest::Client, String) {
    let c = client();
    let (s, html) = get(&c, srv, "/ui/login?next=/ui/").await;
    assert_eq!(s, 200);
    let r = post(
        &c,
        srv,
        "/ui/login",
        &[
            ("csrf", &csrf_of(&html)),
            ("email", email),
            ("password", PASSWORD),
            ("next", "/ui/"),
        ],
    )
    .await;
    assert_eq!(r.status(), 303, "sign-in should redirect");
    assert_eq!(r.headers()["location"], "/ui/");
    let (s, home) = get(&c, srv, "/ui/").await;
    assert_eq!(s, 200, "{home}");
    assert!(home.contains("What needs you"));
    (c, csrf_of(&home))
}

dual!(anonymous_visitors_go_to_sign_in_and_back, |env| {
    let admin = env.org_with_admin("acme");
    let srv = env.serve();
    let c = client();
    let r = c
        .get(srv.at("/ui/orgs/acme/connections?x=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let to = r.headers()["location"].to_str().unwrap().to_string();
    assert_eq!(
        to,
        "/ui/login?next=%2Fui%2Forgs%2Facme%2Fconnections%3Fx%3D1"
    );
    let (_, html) = get(&c, &srv, &to).await;
    assert!(
        html.contains("value=\"/ui/orgs/acme/connections?x=1\""),
        "next is carried by the form"
    );
    // a wrong password opens nothing and says so
    let r = post(
        &c,
        &srv,
        "/ui/login",
        &[
            ("csrf", &csrf_of(&html)),
            ("email", &admin),
            ("password", "wrong-password"),
            ("next", "/ui/"),
        ],
    )
    .await;
    assert_eq!(r.status(), 401);
    let body = r.text().await.unwrap();
    assert!(body.contains("Wrong email or password"), "{body}");
    assert!(!body.contains("rekey_session="));
    assert_eq!(get(&c, &srv, "/ui/").await.0, 303, "still anonymous");
    // the right one goes back where the person was; never to another site
    post_see_other(
        &c,
        &srv,
        "/ui/login",
        &[
            ("csrf", &csrf_of(&html)),
            ("email", &admin),
            ("password", PASSWORD),
            ("next", "//evil.example/x"),
        ],
        "/ui/",
    )
    .await;
    // a sign-in form without its nonce is refused
    let other = client();
    let r = post(
        &other,
        &srv,
        "/ui/login",
        &[
            ("csrf", "forged"),
            ("email", &admin),
            ("password", PASSWORD),
        ],
    )
    .await;
    assert_eq!(r.status(), 403);
});

dual!(
    pages_load_nothing_from_outside_and_are_never_cached,
    |env| {
        let admin = env.org_with_admin("acme");
        let srv = env.serve();
        let (c, _) = sign_in(&srv, &admin).await;
        for path in [
            "/ui/",
            "/ui/orgs/acme/connections",
            "/ui/orgs/acme/apps",
            "/ui/orgs/acme/rotations",
            "/ui/orgs/acme/connections/new",
            "/ui/orgs/acme/connections/new?kind=redis",
            "/status",
            "/ui/login",
        ] {
            let r = c.get(srv.at(path)).send().await.unwrap();
            assert_eq!(r.status(), 200, "{path}");
            let h = r.headers().clone();
            assert_eq!(
                h["content-security-policy"]
                    .to_str()
                    .unwrap()
                    .split(';')
                    .next()
                    .unwrap(),
                "default-src 'self'",
                "{path}"
            );
            assert_eq!(h["cache-control"], "no-store", "{path}");
            assert_eq!(h["x-frame-options"], "DENY", "{path}");
            let html = r.text().await.unwrap();
            assert!(
                html.starts_with("<!doctype html>") && html.contains("<html lang=\"en\">"),
                "{path}"
            );
            assert!(html.contains("<title>"), "{path}");
            for outside in ["http://", "https://", "//cdn", "fonts.googleapis"] {
                let srcs = html.matches("src=\"").count() + html.matches("href=\"").count();
                assert!(srcs > 0);
                assert!(
                    !html.contains(&format!("src=\"{outside}"))
                        && !html.contains(&format!("stylesheet\" href=\"{outside}")),
                    "{path} loads from outside: {outside}"
                );
            }
        }
        // the stylesheet and the script are served from the binary
        for (path, kind) in [
            ("/ui/static/rekey.css", "text/css"),
            ("/ui/static/rekey.js", "text/javascript"),
        ] {
            let r = c.get(srv.at(path)).send().await.unwrap();
            assert_eq!(r.status(), 200);
            assert!(r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with(kind));
        }
    }
);

dual!(
    an_app_secret_is_shown_once_and_forms_need_the_csrf_field,
    |env| {
        let admin = env.org_with_admin("acme");
        let srv = env.serve();
        let (c, csrf) = sign_in(&srv, &admin).await;
        // without the session's CSRF value: refused, nothing made
        let r = post(
            &c,
            &srv,
            "/ui/orgs/acme/apps",
            &[
                ("csrf", "rk_cf_forged"),
                ("name", "crm"),
                ("scope", "read"),
                ("callbacks", "https://crm.example/cb"),
            ],
        )
        .await;
        assert_eq!(r.status(), 403);
        let r = post(
            &c,
            &srv,
            "/ui/orgs/acme/apps",
            &[
                ("name", "crm"),
                ("scope", "read"),
                ("callbacks", "https://crm.example/cb"),
            ],
        )
        .await;
        assert_eq!(r.status(), 403);
        assert_eq!(
            env.json(&["app", "list", "--org", "acme"])
                .as_array()
                .unwrap()
                .len(),
            0
        );
        // with it: created, the secret on this answer only
        let r = post(
            &c,
            &srv,
            "/ui/orgs/acme/apps",
            &[
                ("csrf", &csrf),
                ("name", "crm"),
                ("scope", "read_write"),
                ("callbacks", "https://crm.example/cb"),
            ],
        )
        .await;
        assert_eq!(r.status(), 201);
        assert_eq!(r.headers()["cache-control"], "no-store");
        let html = r.text().await.unwrap();
        let at = html.find("rk_cs_").expect("the secret is shown");
        let secret: String = html[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
            .collect();
        let apps = env.json(&["app", "list", "--org", "acme"]);
        let client_id = apps[0]["client_id"].as_str().unwrap().to_string();
        assert!(html.contains(&client_id));
        // the secret works (client credentials are refused for an app, but
        // the client authenticates: a wrong secret is `invalid_client`)
        let tok = |s: String| {
            let (srv, cid) = (&srv, client_id.clone());
            async move {
                client()
                    .post(srv.at("/oauth2/token"))
                    .basic_auth(cid, Some(s))
                    .form(&[
                        ("grant_type", "refresh_token"),
                        ("refresh_token", "rk_rt_nothing"),
                    ])
                    .send()
                    .await
                    .unwrap()
                    .json::<Value>()
                    .await
                    .unwrap()["error"]
                    .as_str()
                    .unwrap()
                    .to_string()
            }
        };
        assert_eq!(tok(secret.clone()).await, "invalid_grant");
        assert_eq!(tok("rk_cs_wrong".into()).await, "invalid_client");
        // never again: not in the list, not on the app's page
        for path in [
            "/ui/orgs/acme/apps",
            "/ui/orgs/acme/apps/crm",
            "/ui/orgs/acme/apps/crm/authorizations",
        ] {
            let (s, page) = get(&c, &srv, path).await;
            assert_eq!(s, 200, "{path}");
            assert!(!page.contains("rk_cs_"), "{path} shows a secret");
        }
        // the status toggle, audited with the person as the actor
        let r = post(
            &c,
            &srv,
            "/ui/orgs/acme/apps/crm/deactivate",
            &[("csrf", &csrf), ("from", "list")],
        )
        .await;
        assert_eq!(r.status(), 303);
        assert_eq!(
            env.json(&["app", "list", "--org", "acme"])[0]["status"],
            "deactivated"
        );
        let audit = env.json(&["audit", "list", "--org", "acme"]);
        let ev = audit
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["action"].as_str().unwrap_or("").contains("deactivate"))
            .expect("audited");
        assert_eq!(ev["actor"], format!("user:{admin}@acme"));
        assert!(
            ev["ip"].as_str().is_some_and(|ip| ip == "127.0.0.1"),
            "{ev}"
        );
    }
);

dual!(another_orgs_pages_are_not_found_in_html, |env| {
    let admin = env.org_with_admin("acme");
    env.org_with_admin("globex");
    env.ok(&[
        "app",
        "create",
        "--org",
        "globex",
        "--name",
        "theirs",
        "--scope",
        "read",
        "--callback",
        "https://g.example/cb",
    ]);
    let srv = env.serve();
    let (c, csrf) = sign_in(&srv, &admin).await;
    for path in [
        "/ui/orgs/globex/apps",
        "/ui/orgs/globex/apps/theirs",
        "/ui/orgs/globex/connections",
        "/ui/nothing-here",
        "/ui/orgs",
    ] {
        let r = c.get(srv.at(path)).send().await.unwrap();
        let s = r.status().as_u16();
        assert!(s == 404 || s == 403, "{path}: {s}");
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html"),
            "{path}"
        );
        let html = r.text().await.unwrap();
        assert!(html.contains("href=\"/ui/\""), "{path}: a way back");
        assert!(!html.contains("theirs"), "{path}");
    }
    let r = post(
        &c,
        &srv,
        "/ui/orgs/globex/apps/theirs/deactivate",
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(r.status(), 404);
    assert_eq!(
        env.json(&["app", "list", "--org", "globex"])[0]["status"],
        "active"
    );
    // the admin API keeps its JSON errors
    let r = c
        .get(srv.at("/api/v1/orgs/globex/apps"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
});

dual!(
    a_connection_is_made_from_the_catalog_form_and_its_credential_never_echoed,
    |env| {
        if !require(redis_up(), "Redis") {
            return;
        }
        let admin = env.org_with_admin("acme");
        let srv = env.serve();
        let (c, csrf) = sign_in(&srv, &admin).await;
        let (_, form) = get(&c, &srv, "/ui/orgs/acme/connections/new?kind=redis").await;
        assert!(
            form.contains("name=\"s.host\""),
            "settings generated from the catalog"
        );
        let r = post(
            &c,
            &srv,
            "/ui/orgs/acme/connections",
            &[
                ("csrf", &csrf),
                ("kind", "redis"),
                ("name", "cache"),
                ("s.host", "127.0.0.1"),
                ("s.port", "6379"),
            ],
        )
        .await;
        assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
        // bad input: a clear error, nothing written
        let r = post(
            &c,
            &srv,
            "/ui/orgs/acme/connections",
            &[
                ("csrf", &csrf),
                ("kind", "redis"),
                ("name", "cache"),
                ("s.host", "127.0.0.1"),
            ],
        )
        .await;
        assert_eq!(r.status(), 409);
        assert!(r.text().await.unwrap().contains("class=\"error\""));
        let (_, page) = get(&c, &srv, "/ui/orgs/acme/connections/cache").await;
        assert!(page.contains("⋮"), "the actions menu");
        let fields: Vec<&str> = page
            .match_indices("name=\"f.")
            .map(|(i, _)| &page[i + 8..i + 30])
            .collect();
        assert!(!fields.is_empty(), "credential fields from the catalog");
        // a Redis with no password: the default user; set it through the form
        let r = post(
            &c,
            &srv,
            "/ui/orgs/acme/connections/cache/credential",
            &[
                ("csrf", &csrf),
                ("f.password", "not-the-password-xyz"),
                ("force", "true"),
            ],
        )
        .await;
        assert_eq!(r.status(), 303);
        let (_, page) = get(
            &c,
            &srv,
            "/ui/orgs/acme/connections/cache?notice=credential",
        )
        .await;
        assert!(
            !page.contains("not-the-password-xyz"),
            "a credential is never echoed"
        );
        assert!(page.contains("Credential stored"));
        let v = env.json(&["connection", "show", "--org", "acme", "--name", "cache"]);
        assert_eq!(v["has_credentials"], true);
    }
);

/// Signs the platform operator in through the console's form.
pub async fn operator_sign_in(env: &Env, srv: &Server) -> (reqwest::Client, String) {
    env.run_stdin(
        &[
            "operator",
            "create",
            "--email",
            "op@platform.test",
            "--password-stdin",
        ],
        Some(PASSWORD),
    );
    sign_in(srv, "op@platform.test").await
}

dual!(
    an_incident_starts_from_its_dry_run_plan_and_its_report_downloads,
    |env| {
        env.org_with_admin("acme");
        env.ok(&[
            "app",
            "create",
            "--org",
            "acme",
            "--name",
            "crm",
            "--scope",
            "read",
            "--callback",
            "https://crm.example/cb",
        ]);
        let srv = env.serve();
        let (c, csrf) = operator_sign_in(&env, &srv).await;
        let fields = [
            ("csrf", csrf.as_str()),
            ("reason", "leaked backup"),
            ("scope", "all"),
            ("include_own", "true"),
        ];
        // the plan: item by item, nothing started
        let r = post(&c, &srv, "/ui/incidents/plan", &fields).await;
        assert_eq!(r.status(), 200);
        let plan = r.text().await.unwrap();
        assert!(
            plan.contains("Dry run") && plan.contains("app crm"),
            "{plan}"
        );
        assert_eq!(env.json(&["incident", "list"]).as_array().unwrap().len(), 0);
        // for real: the new secret shown once on the answer
        let r = post(&c, &srv, "/ui/incidents", &fields).await;
        assert_eq!(r.status(), 201);
        let page = r.text().await.unwrap();
        assert!(
            page.contains("rk_cs_"),
            "the regenerated app secret is shown once"
        );
        let list = env.json(&["incident", "list"]);
        let id = list[0]["id"].as_str().unwrap().to_string();
        let (s, again) = get(&c, &srv, &format!("/ui/incidents/{id}")).await;
        assert_eq!(s, 200);
        assert!(!again.contains("rk_cs_"), "never again");
        assert!(again.contains("<progress"));
        for (fmt, ctype) in [
            ("md", "text/markdown"),
            ("csv", "text/csv"),
            ("json", "application/json"),
        ] {
            let r = c
                .get(srv.at(&format!("/ui/incidents/{id}/report?format={fmt}")))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            assert!(r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with(ctype));
            assert!(r.headers()["content-disposition"]
                .to_str()
                .unwrap()
                .starts_with("attachment"));
            assert!(r.text().await.unwrap().contains("crm"));
        }
        // an org admin may not start a platform-wide one from the console either
        let (oc, ocsrf) = sign_in(&srv, "admin@acme.test").await;
        let r = post(
            &oc,
            &srv,
            "/ui/incidents/plan",
            &[("csrf", ocsrf.as_str()), ("reason", "x"), ("scope", "all")],
        )
        .await;
        assert_eq!(r.status(), 403);
    }
);

dual!(
    blast_radius_looks_a_value_up_and_revokes_it_after_asking,
    |env| {
        env.org_with_admin("acme");
        let made = crm_app(&env);
        let secret = made["client_secret"].as_str().unwrap().to_string();
        let srv = env.serve();
        let (c, csrf) = operator_sign_in(&env, &srv).await;
        let r = post(
            &c,
            &srv,
            "/ui/blast-radius",
            &[("csrf", csrf.as_str()), ("value", secret.as_str())],
        )
        .await;
        assert_eq!(r.status(), 200);
        let page = r.text().await.unwrap();
        assert!(
            page.contains("app_secret") && page.contains("Revoke it?"),
            "{page}"
        );
        // the answer holds no copy of the value: its revoke form carries
        // it sealed to this sign-in
        assert!(!page.contains(&secret), "the pasted value is not echoed");
        let handle = crate::oauth_support::field(&page, "handle").expect("a revoke handle");
        // looking is not revoking
        let before = env.json(&["incident", "blast-radius", "--app", "crm", "--org", "acme"]);
        assert_eq!(before["live"], true);
        let revoke_with = |c: reqwest::Client, csrf: String, handle: String| {
            let srv = &srv;
            async move {
                post(
                    &c,
                    srv,
                    "/ui/blast-radius",
                    &[
                        ("csrf", csrf.as_str()),
                        ("handle", handle.as_str()),
                        ("revoke", "true"),
                    ],
                )
                .await
            }
        };
        // the form works for no other sign-in, and not for long
        let (c2, csrf2) = sign_in(&srv, "op@platform.test").await;
        let r = revoke_with(c2, csrf2, handle.clone()).await;
        assert_eq!(r.status(), 400);
        assert!(r
            .text()
            .await
            .unwrap()
            .contains("expired or belongs to another sign-in"));
        env.advance(std::time::Duration::from_secs(16 * 60));
        let r = revoke_with(c.clone(), csrf.clone(), handle).await;
        assert_eq!(r.status(), 400);
        let still = env.json(&["incident", "blast-radius", "--app", "crm", "--org", "acme"]);
        assert_eq!(still["live"], true, "nothing was revoked: {still}");
        // looked up again: revoked
        let r = post(
            &c,
            &srv,
            "/ui/blast-radius",
            &[("csrf", csrf.as_str()), ("value", secret.as_str())],
        )
        .await;
        let page = r.text().await.unwrap();
        let handle = crate::oauth_support::field(&page, "handle").expect("a revoke handle");
        let r = revoke_with(c.clone(), csrf.clone(), handle).await;
        assert_eq!(r.status(), 200);
        assert!(r.text().await.unwrap().contains("Revoked"));
        let r = post(
            &c,
            &srv,
            "/ui/blast-radius",
            &[("csrf", csrf.as_str()), ("value", secret.as_str())],
        )
        .await;
        assert!(
            !r.text().await.unwrap().contains("Revoke it?"),
            "the old secret is dead"
        );
        // the API twin, and an org admin is refused both
        let (api, token) = admin_login(&srv, "op@platform.test").await;
        let r = api
            .post(srv.at("/api/v1/blast-radius"))
            .header("x-csrf-token", token)
            .json(&serde_json::json!({"value": "rk_cs_never-issued"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.json::<Value>().await.unwrap()["found"], false);
        let (oc, ocsrf) = sign_in(&srv, "admin@acme.test").await;
        assert_eq!(get(&oc, &srv, "/ui/blast-radius").await.0, 403);
        let r = post(
            &oc,
            &srv,
            "/ui/blast-radius",
            &[("csrf", ocsrf.as_str()), ("value", secret.as_str())],
        )
        .await;
        assert_eq!(r.status(), 403);
    }
);

/// Creates connections `names` in `org` through the admin API (quicker
/// than a CLI process each).
pub async fn connections_in(srv: &Server, admin: &str, org: &str, names: &[String]) {
    let (c, csrf) = admin_login(srv, admin).await;
    for name in names {
        let r = c
            .post(srv.at(&format!("/api/v1/orgs/{org}/connections")))
            .header("X-CSRF-Token", &csrf)
            .json(&serde_json::json!({"kind": "freshdesk", "name": name, "settings": {"subdomain": "acme"}}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{name}");
    }
}

/// The `nth` pager of a page (`<p class="pager" role="status">…</p>`).
pub fn pager(html: &str, nth: usize) -> Option<&str> {
    html.split("<p class=\"pager\" role=\"status\">")
        .nth(nth + 1)
        .and_then(|p| p.split("</p>").next())
}

/// The href of the link with `rel="next"` in a pager, unescaped.
pub fn next_link(pager: &str) -> Option<String> {
    let end = pager.find("\" rel=\"next\"")?;
    let start = pager[..end].rfind("href=\"")? + 6;
    // (askama writes `&` as `&#38;`; a browser reads either as `&`)
    Some(
        pager[start..end]
            .replace("&amp;", "&")
            .replace("&#38;", "&"),
    )
}

/// Walks a keyset-paged console list from `path` by the `nth` pager of
/// its page: every page's rows (what follows `row_marker`, up to a `"` or
/// `<`), the totals the pages state, and the number of pages.
pub async fn walk(
    c: &reqwest::Client,
    srv: &Server,
    path: &str,
    row_marker: &str,
    nth: usize,
) -> (Vec<String>, Vec<String>, usize) {
    let (mut seen, mut totals, mut pages) = (vec![], vec![], 0);
    let mut at = Some(path.to_string());
    while let Some(p) = at.take() {
        pages += 1;
        assert!(pages < 20, "the pages never end");
        let (s, html) = get(c, srv, &p).await;
        assert_eq!(s, 200, "{p}: {html}");
        for part in html.split(row_marker).skip(1) {
            let v = part.split(['"', '<']).next().unwrap();
            seen.push(v.replace("&#x2f;", "/").replace("&#47;", "/"));
        }
        let pg = pager(&html, nth).unwrap_or_else(|| panic!("{p}: no pager {nth}: {html}"));
        totals.push(pg.split(" in all").next().unwrap().trim().to_string());
        if pages > 1 {
            assert!(pg.contains(">first page</a>"), "{p}: a way back");
        }
        at = next_link(pg);
    }
    (seen, totals, pages)
}

/// `seen` holds each of `want` exactly once, and nothing else.
pub fn each_once(seen: &[String], want: &[String]) {
    let mut sorted = seen.to_vec();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), seen.len(), "every row once: {seen:?}");
    let mut want = want.to_vec();
    want.sort();
    assert_eq!(sorted, want, "every row, and only this org's");
}

dual!(
    the_connections_list_pages_by_keyset_with_an_exact_total,
    |env| {
        let admin = env.org_with_admin("acme");
        let other = env.org_with_admin("globex");
        let srv = env.serve();
        // more than two pages of 50; a name may hold dots (the cursor's
        // separator)
        let mut names: Vec<String> = (0..107).map(|i| format!("conn-{i:03}")).collect();
        names.push("db.prod.eu".into());
        connections_in(&srv, &admin, "acme", &names).await;
        connections_in(&srv, &other, "globex", &["globex-only".to_string()]).await;

        let (c, _) = sign_in(&srv, &admin).await;
        let marker = "<td data-label=\"Name\"><a href=\"/ui/orgs/acme/connections/";
        let (seen, totals, pages) = walk(&c, &srv, "/ui/orgs/acme/connections", marker, 0).await;
        assert_eq!(pages, 3, "50 + 50 + 8");
        assert!(totals.iter().all(|t| t == "108"), "{totals:?}");
        each_once(&seen, &names);

        // another org's list: its own only, and acme's admin cannot see it
        let (g, _) = sign_in(&srv, &other).await;
        let (s, html) = get(&g, &srv, "/ui/orgs/globex/connections").await;
        assert_eq!(s, 200);
        assert!(
            html.contains("globex-only") && html.contains("1 in all"),
            "{html}"
        );
        assert!(!html.contains("conn-0"), "{html}");
        assert!(next_link(&html).is_none());
        let (s, _) = get(&c, &srv, "/ui/orgs/globex/connections").await;
        assert_eq!(s, 404);
        // a cursor names a place in the list, not a row to show: globex's
        // admin with a cursor of acme's sees globex's rows only
        let (s, html) = get(&g, &srv, "/ui/orgs/globex/connections?after=conn-010.x").await;
        assert_eq!(s, 200);
        assert!(
            html.contains("globex-only") && !html.contains("conn-0"),
            "{html}"
        );
        // a cursor that is not one is a clear error, not a wrong page
        let (s, html) = get(&c, &srv, "/ui/orgs/acme/connections?after=nodot").await;
        assert_eq!(s, 400, "{html}");
        assert!(html.contains("page cursor"), "{html}");
    }
);

dual!(
    applications_keys_clients_and_webhooks_page_the_same_way,
    |env| {
        let admin = env.org_with_admin("acme");
        let other = env.org_with_admin("globex");
        let srv = env.serve();
        let n = |p: &str| (0..53).map(|i| format!("{p}{i:02}")).collect::<Vec<_>>();
        let (apps, keys, m2m) = (n("app-"), n("key-"), n("m2m-"));
        let hooks: Vec<String> = (0..53)
            .map(|i| format!("https://hooks.example/h{i:02}"))
            .collect();
        for (who, org, mine) in [(&admin, "acme", true), (&other, "globex", false)] {
            let (c, csrf) = admin_login(&srv, who).await;
            let one = |v: &Vec<String>| {
                if mine {
                    v.clone()
                } else {
                    vec![format!("g{}", v[0])]
                }
            };
            let mut made = vec![];
            for a in one(&apps) {
                made.push((format!("/api/v1/orgs/{org}/apps"), serde_json::json!({"name": a, "scope": "read", "callbacks": ["https://crm.example/cb"]})));
            }
            for k in one(&keys) {
                made.push((
                    format!("/api/v1/orgs/{org}/keys"),
                    serde_json::json!({"name": k, "scope": "read"}),
                ));
            }
            for m in one(&m2m) {
                made.push((
                    format!("/api/v1/orgs/{org}/m2m"),
                    serde_json::json!({"name": m, "scope": "read"}),
                ));
            }
            let urls = if mine {
                hooks.clone()
            } else {
                vec!["https://globex.example/h".to_string()]
            };
            for u in urls {
                made.push((
                    format!("/api/v1/orgs/{org}/webhooks"),
                    serde_json::json!({"url": u, "events": ["rotation.failed"]}),
                ));
            }
            for (path, body) in made {
                let r = c
                    .post(srv.at(&path))
                    .header("X-CSRF-Token", &csrf)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 201, "{path} {body}");
            }
        }
        let (c, _) = sign_in(&srv, &admin).await;
        for (path, marker, nth, want) in [
            (
                "/ui/orgs/acme/apps",
                "<td data-label=\"Name\"><a href=\"/ui/orgs/acme/apps/",
                0,
                &apps,
            ),
            ("/ui/orgs/acme/keys", "Actions for access key ", 0, &keys),
            ("/ui/orgs/acme/keys", "Actions for machine client ", 1, &m2m),
            (
                "/ui/orgs/acme/webhooks",
                "<td data-label=\"URL\"><code>",
                0,
                &hooks,
            ),
        ] {
            let (seen, totals, pages) = walk(&c, &srv, path, marker, nth).await;
            assert_eq!(pages, 2, "{path} {nth}: 50 + 3");
            assert!(totals.iter().all(|t| t == "53"), "{path} {nth}: {totals:?}");
            each_once(&seen, want);
        }
        // the keys page walks one list while holding the other's place
        let (_, html) = get(&c, &srv, "/ui/orgs/acme/keys").await;
        let to = next_link(pager(&html, 1).unwrap()).unwrap();
        assert!(
            to.contains("m2m_after=") && !to.contains("keys_after"),
            "{to}"
        );
        let (_, html) = get(&c, &srv, &to).await;
        let back = next_link(pager(&html, 0).unwrap()).unwrap();
        assert!(
            back.contains("keys_after=") && back.contains("m2m_after="),
            "{back}"
        );
    }
);

// The landing page names the access keys that expire within a week, or
// expired in the last one (their callers are refused), worst first, each
// with its Reset…; a key expiring later, or never, is not there.
dual!(keys_nearing_expiry_wait_on_the_admin, |env| {
    let admin = env.org_with_admin("acme");
    for (name, expires) in [
        ("soon", Some("3d")),
        ("later", Some("30d")),
        ("gone", Some("1h")),
        ("forever", None),
    ] {
        let mut args = vec![
            "key", "create", "--org", "acme", "--name", name, "--scope", "read",
        ];
        if let Some(e) = expires {
            args.extend(["--expires", e]);
        }
        env.json(&args);
    }
    // two hours on: `gone` expired an hour ago
    env.advance(std::time::Duration::from_secs(7200));
    let srv = env.serve();
    let (c, _) = sign_in(&srv, &admin).await;
    let (status, home) = get(&c, &srv, "/ui/").await;
    assert_eq!(status, 200);
    let due = home
        .split("<h2>Due or due within a week</h2>")
        .nth(1)
        .unwrap_or_else(|| panic!("no due section: {home}"));
    assert!(due.contains("access key soon (read)"), "{due}");
    assert!(due.contains("/ui/orgs/acme/keys/soon/reset"), "{due}");
    assert!(due.contains("access key gone (read)"), "{due}");
    assert!(due.contains("callers presenting it are refused"), "{due}");
    assert!(!due.contains("access key later"), "{due}");
    assert!(!due.contains("access key forever"), "{due}");
    assert!(
        due.find("access key gone").unwrap() < due.find("access key soon").unwrap(),
        "expired before expiring: {due}"
    );
    // the Reset… it links asks before it acts
    let (status, ask) = get(&c, &srv, "/ui/orgs/acme/keys/soon/reset").await;
    assert_eq!(status, 200, "{ask}");
});

/// The console's CSP (`default-src 'self'`) refuses inline styles, inline
/// scripts and event-handler attributes: one in a template does nothing in
/// the browser, silently (two `style` attributes did so).
#[test]
fn templates_hold_nothing_the_csp_refuses() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/templates");
    let mut seen = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        seen += 1;
        let lower = text.to_ascii_lowercase();
        for refused in [
            " style=",
            "<style",
            " onclick=",
            " onchange=",
            " onsubmit=",
            " oninput=",
            " onload=",
            "javascript:",
        ] {
            assert!(
                !lower.contains(refused),
                "{} holds {refused:?}",
                path.display()
            );
        }
        for (i, _) in lower.match_indices("<script") {
            let tag = &lower[i..lower[i..].find('>').map_or(lower.len(), |j| i + j)];
            assert!(
                tag.contains(" src="),
                "{} holds an inline script",
                path.display()
            );
        }
    }
    assert!(seen > 10, "templates read from {dir}");
}

// The console's forms that no other test posted, each checked at the real
// target through the CLI: a connection's settings, test and delete; an
// application's update and delete; sign-out, after which the console
// sends the browser to sign in.
dual!(the_remaining_forms_act_at_the_real_target, |env| {
    let admin = env.org_with_admin("acme");
    connection(
        &env,
        "redis",
        "cache",
        &["host=127.0.0.1", "port=1", "username=svc"],
    );
    store_unprobed(&env, "cache", "password", "held-redis-password-93");
    connection(
        &env,
        "redis",
        "spare",
        &["host=127.0.0.1", "port=1", "username=svc"],
    );
    crm_app(&env);
    let srv = env.serve();
    let (c, csrf) = sign_in(&srv, &admin).await;
    let base = "/ui/orgs/acme/connections/cache";

    // settings (of a connection that holds no credential yet: where a held
    // credential goes is frozen) and the rotation schedule
    let spare = "/ui/orgs/acme/connections/spare";
    let r = post(
        &c,
        &srv,
        &format!("{spare}/settings"),
        &[
            ("csrf", &csrf),
            ("s.port", "6390"),
            ("rotation_interval", "30d"),
        ],
    )
    .await;
    assert_eq!(r.status(), 303);
    let show = env.json(&["connection", "show", "--org", "acme", "--name", "spare"]);
    assert_eq!(show["settings"]["port"], "6390", "{show}");
    assert_eq!(
        show["settings"]["host"], "127.0.0.1",
        "the rest kept: {show}"
    );
    // a bad schedule says why
    let r = post(
        &c,
        &srv,
        &format!("{spare}/settings"),
        &[
            ("csrf", &csrf),
            ("s.port", "6391"),
            ("rotation_interval", "soon"),
        ],
    )
    .await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("rotation schedule"));
    // and the held credential's target stays put
    let r = post(
        &c,
        &srv,
        &format!("{base}/settings"),
        &[("csrf", &csrf), ("s.port", "6392")],
    )
    .await;
    assert_eq!(r.status(), 409);
    let show = env.json(&["connection", "show", "--org", "acme", "--name", "cache"]);
    assert_eq!(show["settings"]["port"], "1", "{show}");

    // test: nothing listens on the port, and the page says so
    let r = post(&c, &srv, &format!("{base}/test"), &[("csrf", &csrf)]).await;
    assert_eq!(r.status(), 303);
    let show = env.json(&["connection", "show", "--org", "acme", "--name", "cache"]);
    assert!(show["last_test"]["outcome"].is_string(), "{show}");
    assert_ne!(show["last_test"]["outcome"], "ok", "{show}");

    // the application: update, then delete
    let r = post(
        &c,
        &srv,
        "/ui/orgs/acme/apps/crm/update",
        &[
            ("csrf", &csrf),
            ("scope", "read_write"),
            (
                "callbacks",
                "https://crm.example/cb\nhttps://crm.example/cb2",
            ),
            ("access_token_ttl", "10m"),
            ("refresh_token_ttl", ""),
            ("refresh_grace", ""),
        ],
    )
    .await;
    assert_eq!(r.status(), 303);
    let app = env.json(&["app", "show", "--org", "acme", "--name", "crm"]);
    assert_eq!(app["scope"], "read_write", "{app}");
    assert_eq!(app["callbacks"].as_array().map(Vec::len), Some(2), "{app}");
    assert_eq!(
        app["access_token_ttl"], 600,
        "the lifetime the form set: {app}"
    );
    let r = post(
        &c,
        &srv,
        "/ui/orgs/acme/apps/crm/delete",
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(r.status(), 303);
    assert_eq!(
        env.run(&["app", "show", "--org", "acme", "--name", "crm"])
            .status
            .code(),
        Some(1)
    );

    // the connection: delete
    let r = post(&c, &srv, &format!("{base}/delete"), &[("csrf", &csrf)]).await;
    assert_eq!(r.status(), 303);
    assert_eq!(
        env.run(&["connection", "show", "--org", "acme", "--name", "cache"])
            .status
            .code(),
        Some(1)
    );

    // sign-out
    let (_, home) = get(&c, &srv, "/ui/").await;
    post_see_other(
        &c,
        &srv,
        "/ui/logout",
        &[("csrf", &csrf_of(&home))],
        "/ui/login",
    )
    .await;
    let r = c
        .get(srv.at("/ui/orgs/acme/connections"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "signed out");
});

// The public status page's campaign block: running campaigns with their
// progress (an item cancelled on its own counts as handled), the reason of
// a platform-wide one only, and no org's name anywhere — in the HTML and
// in /status.json alike, without signing in.
dual!(the_status_page_names_campaigns_but_no_org, |env| {
    for org in ["acme", "beta"] {
        env.ok(&["org", "create", org]);
        env.json(&[
            "connection",
            "create",
            "--org",
            org,
            "--kind",
            "redis",
            "--name",
            "cache",
            "--setting",
            "host=127.0.0.1",
            "--setting",
            "port=1",
            "--setting",
            "username=svc",
        ]);
        env.json_stdin(
            &[
                "connection",
                "set-credential",
                "--org",
                org,
                "--name",
                "cache",
                "--field",
                "password",
                "--value-stdin",
                "--force",
            ],
            "a-held-password-2450",
        );
    }
    // beta's own campaign, then the operator's over every org (it takes
    // the overlapping items over); no server runs them
    let own = env.json(&[
        "incident",
        "start",
        "--reason",
        "beta's intern pasted it",
        "--scope",
        "org:beta",
    ]);
    let all = env.json(&[
        "incident",
        "start",
        "--reason",
        "provider breach",
        "--scope",
        "all",
    ]);
    let n = all["items"][0]["n"].to_string();
    env.json(&[
        "incident",
        "cancel",
        all["id"].as_str().unwrap(),
        "--item",
        &n,
    ]);
    let srv = env.serve();
    let anon = client();
    let v: Value = anon
        .get(srv.at("/status.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let inc = v["incidents"].as_array().expect("incidents");
    let text = v.to_string();
    assert!(text.contains("provider breach"), "{v}");
    assert!(!text.contains("intern"), "an org's reason is its own: {v}");
    for org in ["acme", "beta"] {
        assert!(!text.contains(org), "{org} named: {v}");
    }
    let total: i64 = inc.iter().map(|c| c["items"].as_i64().unwrap_or(0)).sum();
    let settled: i64 = inc.iter().map(|c| c["settled"].as_i64().unwrap_or(0)).sum();
    assert!(total >= 2, "{v}");
    assert_eq!(settled, 1, "the cancelled item is handled: {v}");
    let (status, html) = get(&anon, &srv, "/status").await;
    assert_eq!(status, 200);
    assert!(
        html.contains("Incident campaigns in progress") && html.contains("provider breach"),
        "{html}"
    );
    for hidden in ["intern", "acme", "beta"] {
        assert!(!html.contains(hidden), "{hidden} shown: {html}");
    }
    let _ = own;
});
