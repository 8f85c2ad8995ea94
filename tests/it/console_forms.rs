//! The console's forms that no other test posts: a rotation's runbook
//! step, cancel, retry and finish-now; an application's regenerate-secret
//! (with and without overlap) and rotate; the operator's new org; and the
//! sign-in around them (an expired session back to where the person was,
//! the failed-login throttle). Through the real server, each result
//! checked at the real target (the CLI, the token endpoint, Redis).

use std::time::Duration;

use crate::console::{crm_app, csrf_of, get, operator_sign_in, post, post_see_other, sign_in};
use crate::console_admin::token_in;
use crate::dual;
use crate::harness::*;
use crate::rotation::{acl_user, logs_in, redis_connection};

/// Does the token endpoint accept `secret` for the application? Client
/// authentication comes before the grant is looked at: an accepted
/// client gets `invalid_grant` (400) for a made-up code, a refused one
/// `invalid_client` (401).
async fn app_secret_works(srv: &Server, client_id: &str, secret: &str) -> bool {
    let r = client()
        .post(srv.at("/oauth2/token"))
        .basic_auth(client_id, Some(secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", "made-up-code"),
            ("redirect_uri", "https://crm.example/cb"),
        ])
        .send()
        .await
        .unwrap();
    match r.status().as_u16() {
        400 => true,
        401 => false,
        s => panic!("token endpoint answered {s}: {}", r.text().await.unwrap()),
    }
}

dual!(
    a_runbook_rotation_is_stepped_cancelled_and_retried_through_forms,
    |env| {
        let admin = env.org_with_admin("acme");
        let api = crate::attacker::Listener::start(200, &[], "{}").await;
        connection(
            &env,
            "custom_rest",
            "crm",
            &[&format!("base_url={}", api.url), "probe_path=/me"],
        );
        store_unprobed(&env, "crm", "api_key", "old-api-key-000000000001");
        let v = env.json(&["rotate", "--org", "acme", "--connection", "crm"]);
        assert_eq!(v["status"], "waiting_person", "{v}");
        let id = v["id"].as_str().unwrap().to_string();
        let srv = env.serve();
        let (c, csrf) = sign_in(&srv, &admin).await;
        let base = format!("/ui/orgs/acme/rotations/{id}");
        let (s, page) = get(&c, &srv, &base).await;
        assert_eq!(s, 200);
        assert!(
            page.contains("name=\"done\" value=\"1\""),
            "a done box per step: {page}"
        );

        // a step marked done, at the rotation itself
        post_see_other(
            &c,
            &srv,
            &format!("{base}/step"),
            &[("csrf", &csrf), ("done", "1")],
            &format!("{base}?notice=step"),
        )
        .await;
        let v = env.json(&["rotation", "show", &id]);
        assert_eq!(v["runbook"][0]["done"], true, "{v}");
        // a step that does not exist, or no step named, is refused and marks nothing
        for bad in [vec![("done", "9")], vec![]] {
            let mut form = vec![("csrf", csrf.as_str())];
            form.extend(bad.iter().copied());
            let r = post(&c, &srv, &format!("{base}/step"), &form).await;
            assert!(r.status().is_client_error(), "{bad:?}: {}", r.status());
            assert!(r.text().await.unwrap().contains("role=\"alert\""));
        }
        // without the form's CSRF field nothing happens either
        let r = post(&c, &srv, &format!("{base}/step"), &[("done", "2")]).await;
        assert_eq!(r.status(), 403);
        let v = env.json(&["rotation", "show", &id]);
        let done: Vec<bool> = v["runbook"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["done"] == true)
            .collect();
        assert_eq!(done, [true, false, false, false], "{v}");

        // cancel: asked first, then done
        let (s, ask) = get(&c, &srv, &format!("{base}/cancel")).await;
        assert_eq!(s, 200);
        assert!(ask.contains("Cancel rotation"), "{ask}");
        assert_eq!(
            env.json(&["rotation", "show", &id])["status"],
            "waiting_person"
        );
        let r = post(&c, &srv, &format!("{base}/cancel"), &[("csrf", &csrf)]).await;
        assert_eq!(r.status(), 303);
        let v = env.json(&["rotation", "show", &id]);
        assert_eq!(v["status"], "cancelled", "{v}");
        // a cancelled rotation cannot be cancelled again: the page says why
        let r = post(&c, &srv, &format!("{base}/cancel"), &[("csrf", &csrf)]).await;
        assert!(r.status().is_client_error(), "{}", r.status());

        // retry starts a fresh rotation, and the answer leads to it
        let r = post(&c, &srv, &format!("{base}/retry"), &[("csrf", &csrf)]).await;
        assert_eq!(r.status(), 303);
        let to = r.headers()["location"].to_str().unwrap().to_string();
        assert!(to.ends_with("?notice=retried"), "{to}");
        let new_id = to
            .trim_start_matches("/ui/orgs/acme/rotations/")
            .trim_end_matches("?notice=retried")
            .to_string();
        assert_ne!(new_id, id);
        let v = env.json(&["rotation", "show", &new_id]);
        assert_eq!(v["status"], "waiting_person", "{v}");
        assert_eq!(v["target"]["name"], "crm", "{v}");
        let (s, page) = get(&c, &srv, &to).await;
        assert_eq!(s, 200);
        assert!(page.contains("Retrying."), "the notice is shown");
    }
);

dual!(a_cut_over_is_finished_now_through_its_form, |env| {
    if !require(redis_up(), "Redis") {
        return;
    }
    let admin = env.org_with_admin("acme");
    let old = "the-old-password-0042";
    let user = acl_user(old, true).await;
    redis_connection(&env, &user, old);
    let srv = env.serve_with(&[("REKEY_JOBS_INTERVAL", "1s")]);
    let v = env.json(&[
        "rotate",
        "--org",
        "acme",
        "--connection",
        "cache",
        "--cutover-window",
        "1h",
    ]);
    let id = v["id"].as_str().unwrap().to_string();
    wait_for_status(&env, &id, "waiting_cutover").await;
    assert!(
        logs_in(&user, old).await,
        "the old one works in the cut-over"
    );
    let (c, csrf) = sign_in(&srv, &admin).await;
    let base = format!("/ui/orgs/acme/rotations/{id}");
    // asked first: says what finishing now does
    let (s, ask) = get(&c, &srv, &format!("{base}/finish")).await;
    assert_eq!(s, 200);
    assert!(
        ask.contains("retires the previous credential at once"),
        "{ask}"
    );
    assert!(ask.contains("name=\"now\" value=\"true\""), "{ask}");
    // cancel is refused past the promotion, and names finish
    let r = post(&c, &srv, &format!("{base}/cancel"), &[("csrf", &csrf)]).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("finish"));
    assert_eq!(
        env.json(&["rotation", "show", &id])["status"],
        "waiting_cutover"
    );
    post_see_other(
        &c,
        &srv,
        &format!("{base}/finish"),
        &[("csrf", &csrf), ("now", "true")],
        &format!("{base}?notice=finished"),
    )
    .await;
    let v = env.json(&["rotation", "show", &id]);
    assert_eq!(v["status"], "completed", "{v}");
    // at the target: the old password is gone, the stored one works
    assert!(!logs_in(&user, old).await, "retired at Redis");
    let t = env.json(&["connection", "test", "--org", "acme", "--name", "cache"]);
    assert_eq!(t["last_test"]["outcome"], "ok", "{t}");
});

dual!(
    an_apps_secret_is_regenerated_and_rotated_through_forms,
    |env| {
        let admin = env.org_with_admin("acme");
        let app = crm_app(&env);
        let id = app["client_id"].as_str().unwrap().to_string();
        let first = app["client_secret"].as_str().unwrap().to_string();
        let srv = env.serve();
        assert!(app_secret_works(&srv, &id, &first).await);
        assert!(!app_secret_works(&srv, &id, "rk_cs_not-the-secret").await);
        let (c, csrf) = sign_in(&srv, &admin).await;
        let base = "/ui/orgs/acme/apps/crm";

        // asked first, with the overlap choice
        let (s, ask) = get(&c, &srv, &format!("{base}/regenerate-secret")).await;
        assert_eq!(s, 200);
        assert!(ask.contains("invalidates the old secret"), "{ask}");
        assert!(ask.contains("name=\"overlap\""), "{ask}");
        // with an overlap: both work, the new one shown once
        let r = post(
            &c,
            &srv,
            &format!("{base}/regenerate-secret"),
            &[("csrf", &csrf), ("overlap", "1h")],
        )
        .await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["cache-control"], "no-store");
        let html = r.text().await.unwrap();
        let second = token_in(&html, "rk_cs_").expect("the new secret is shown");
        assert_ne!(second, first);
        assert!(app_secret_works(&srv, &id, &second).await);
        assert!(
            app_secret_works(&srv, &id, &first).await,
            "the overlap keeps the old one"
        );
        let (_, again) = get(&c, &srv, base).await;
        assert!(!again.contains(&second), "never shown again");
        // a bad overlap is refused and changes nothing
        let r = post(
            &c,
            &srv,
            &format!("{base}/regenerate-secret"),
            &[("csrf", &csrf), ("overlap", "forever")],
        )
        .await;
        assert_eq!(r.status(), 400);
        assert!(app_secret_works(&srv, &id, &second).await);
        // without overlap: only the newest works
        let r = post(
            &c,
            &srv,
            &format!("{base}/regenerate-secret"),
            &[("csrf", &csrf), ("overlap", "0")],
        )
        .await;
        assert_eq!(r.status(), 200);
        let third = token_in(&r.text().await.unwrap(), "rk_cs_").unwrap();
        assert!(app_secret_works(&srv, &id, &third).await);
        assert!(!app_secret_works(&srv, &id, &second).await);
        assert!(!app_secret_works(&srv, &id, &first).await);

        // rotate: a rotation starts, the new secret is shown once, and the
        // old one keeps working through the cut-over
        let r = post(&c, &srv, &format!("{base}/rotate"), &[("csrf", &csrf)]).await;
        assert_eq!(r.status(), 201);
        assert_eq!(r.headers()["cache-control"], "no-store");
        let html = r.text().await.unwrap();
        let fourth = token_in(&html, "rk_cs_").expect("the rotated secret is shown");
        assert!(app_secret_works(&srv, &id, &fourth).await);
        assert!(
            app_secret_works(&srv, &id, &third).await,
            "the old one until the cut-over"
        );
        let rotations = env.json(&["rotation", "list", "--org", "acme"]);
        let r = rotations
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["target"]["type"] == "app")
            .unwrap_or_else(|| panic!("a rotation of the app: {rotations}"));
        assert_eq!(r["target"]["name"], "crm", "{r}");
        // a second rotate while it runs is refused and shows no secret
        let r = post(&c, &srv, &format!("{base}/rotate"), &[("csrf", &csrf)]).await;
        assert!(r.status().is_client_error(), "{}", r.status());
        assert!(!r.text().await.unwrap().contains("rk_cs_"));
    }
);

dual!(the_operator_creates_an_org_through_the_form, |env| {
    let srv = env.serve();
    let (c, csrf) = operator_sign_in(&env, &srv).await;
    let r = post(
        &c,
        &srv,
        "/ui/orgs",
        &[("csrf", &csrf), ("slug", "initech"), ("name", "Initech")],
    )
    .await;
    assert!(r.status().is_success(), "{}", r.status());
    let html = r.text().await.unwrap();
    assert!(html.contains("Org initech created."), "{html}");
    let orgs = env.json(&["org", "list"]);
    assert!(
        orgs.as_array()
            .unwrap()
            .iter()
            .any(|o| o["slug"] == "initech"),
        "{orgs}"
    );
    // a taken slug, or one that is no slug, is refused with the reason
    for bad in ["initech", "Not A Slug"] {
        let r = post(
            &c,
            &srv,
            "/ui/orgs",
            &[("csrf", &csrf), ("slug", bad), ("name", "")],
        )
        .await;
        assert!(r.status().is_client_error(), "{bad}: {}", r.status());
        assert!(r.text().await.unwrap().contains("role=\"alert\""), "{bad}");
    }
    let n = env.json(&["org", "list"]).as_array().unwrap().len();
    assert_eq!(n, 1, "nothing else was created");
    // an org admin may not
    let admin = env.org_with_admin("acme");
    let (ca, csrf_a) = sign_in(&srv, &admin).await;
    let r = post(
        &ca,
        &srv,
        "/ui/orgs",
        &[("csrf", &csrf_a), ("slug", "hooli"), ("name", "")],
    )
    .await;
    assert_eq!(r.status(), 403);
    assert!(!env
        .json(&["org", "list"])
        .as_array()
        .unwrap()
        .iter()
        .any(|o| o["slug"] == "hooli"));
});

dual!(
    an_expired_session_returns_the_person_and_sign_in_is_throttled,
    |env| {
        let admin = env.org_with_admin("acme");
        crm_app(&env);
        let srv = env.serve();
        let (c, csrf) = sign_in(&srv, &admin).await;
        assert_eq!(get(&c, &srv, "/ui/orgs/acme/apps/crm").await.0, 200);
        // the session ends (its lifetime is 12 h)
        env.advance(Duration::from_secs(13 * 3600));
        let r = c
            .get(srv.at("/ui/orgs/acme/apps/crm?tab=x"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303);
        assert_eq!(
            r.headers()["location"],
            "/ui/login?next=%2Fui%2Forgs%2Facme%2Fapps%2Fcrm%3Ftab%3Dx"
        );
        // a form posted on the page the session ended under is not carried
        // out; the person is sent to sign in, then back to that page
        let r = c
            .post(srv.at("/ui/orgs/acme/apps/crm/delete"))
            .header("Referer", srv.at("/ui/orgs/acme/apps/crm"))
            .form(&[("csrf", csrf.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303);
        assert_eq!(
            r.headers()["location"],
            "/ui/login?next=%2Fui%2Forgs%2Facme%2Fapps%2Fcrm"
        );
        assert_eq!(
            env.run(&["app", "show", "--org", "acme", "--name", "crm"])
                .status
                .code(),
            Some(0),
            "nothing was deleted"
        );
        // a Referer from elsewhere leads to the console's first page
        let r = c
            .post(srv.at("/ui/orgs/acme/apps/crm/delete"))
            .header("Referer", "https://evil.example/phish")
            .form(&[("csrf", csrf.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["location"], "/ui/login?next=%2Fui%2F");
        // signing in from there goes back to the page
        let (_, login) = get(&c, &srv, "/ui/login?next=%2Fui%2Forgs%2Facme%2Fapps%2Fcrm").await;
        post_see_other(
            &c,
            &srv,
            "/ui/login",
            &[
                ("csrf", &csrf_of(&login)),
                ("email", &admin),
                ("password", PASSWORD),
                ("next", "/ui/orgs/acme/apps/crm"),
            ],
            "/ui/orgs/acme/apps/crm",
        )
        .await;
        assert_eq!(get(&c, &srv, "/ui/orgs/acme/apps/crm").await.0, 200);

        // failed sign-ins through the console count against the same limit as
        // the API's: after it, even the right password opens nothing
        let other = client();
        let mut statuses = Vec::new();
        for i in 0..8 {
            let (_, login) = get(&other, &srv, "/ui/login").await;
            let r = post(
                &other,
                &srv,
                "/ui/login",
                &[
                    ("csrf", &csrf_of(&login)),
                    ("email", &admin),
                    ("password", &format!("wrong-guess-{i:04}")),
                    ("next", "/ui/"),
                ],
            )
            .await;
            statuses.push(r.status().as_u16());
            if r.status() == 429 {
                let body = r.text().await.unwrap();
                assert!(body.contains("Too many failed sign-ins"), "{body}");
            }
        }
        assert!(
            statuses.iter().all(|s| [401, 429].contains(s)),
            "{statuses:?}"
        );
        assert!(
            statuses.iter().filter(|s| **s == 401).count() <= 5,
            "{statuses:?}"
        );
        assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
        let (_, login) = get(&other, &srv, "/ui/login").await;
        let r = post(
            &other,
            &srv,
            "/ui/login",
            &[
                ("csrf", &csrf_of(&login)),
                ("email", &admin),
                ("password", PASSWORD),
                ("next", "/ui/"),
            ],
        )
        .await;
        assert_eq!(r.status(), 429);
        assert_eq!(get(&other, &srv, "/ui/").await.0, 303, "still signed out");
    }
);

/// The landing page's row about `what` (its `<tr>`), if listed.
fn row_of<'a>(html: &'a str, what: &str) -> Option<&'a str> {
    let at = html.find(what)?;
    let start = html[..at].rfind("<tr>")?;
    let end = at + html[at..].find("</tr>")?;
    Some(&html[start..end])
}

// What needs the person, each kind with the button that does it, acted on
// from there: a connection whose grant died (Authorize), a runbook
// rotation (Open the runbook), a rotation that failed (Retry) and one
// stalled on a reader that never moved (Finish now…, naming who breaks).
dual!(
    the_landing_page_lists_each_kind_of_waiting_work_with_its_button,
    |env| {
        if !require(redis_up(), "Redis") {
            return;
        }
        let p = crate::connections::pair(&env, "1h", &[("REKEY_JOBS_INTERVAL", "1s")]).await;
        let c = crate::connections::authorize(&env, &p, "authorize").await;
        assert_eq!(c["status"], "connected");
        crate::connections::revoke_at_provider(&p);
        let r = env.json(&[
            "connection",
            "refresh",
            "--org",
            "acme",
            "--name",
            "upstream",
        ]);
        assert_eq!(r["status"], "needs_reauth", "{r}");
        let srv = &p.csrv;
        // a runbook rotation
        let api = crate::attacker::Listener::start(200, &[], "{}").await;
        connection(
            &env,
            "custom_rest",
            "crm",
            &[&format!("base_url={}", api.url), "probe_path=/me"],
        );
        store_unprobed(&env, "crm", "api_key", "old-api-key-000000000077");
        let manual = env.json(&["rotate", "--org", "acme", "--connection", "crm"]);
        assert_eq!(manual["status"], "waiting_person", "{manual}");
        // a rotation that fails: nothing listens where the target should be
        connection(
            &env,
            "redis",
            "dead",
            &["host=127.0.0.1", "port=1", "username=svc"],
        );
        store_unprobed(&env, "dead", "password", "dead-redis-password-77");
        let failed = env.json(&["rotate", "--org", "acme", "--connection", "dead"]);
        let failed_id = failed["id"].as_str().unwrap().to_string();
        wait_for_status(&env, &failed_id, "failed").await;
        // a rotation stalled on a reader that read the old password and never
        // came back
        let old = "the-old-password-0077";
        let user = acl_user(old, true).await;
        redis_connection(&env, &user, old);
        let key = service_key(&env);
        assert_eq!(
            stored_credential(&env, srv, &key, "cache").await["password"],
            old
        );
        let stalled = env.json(&[
            "rotate",
            "--org",
            "acme",
            "--connection",
            "cache",
            "--cutover-window",
            "0s",
            "--deadline",
            "1m",
        ]);
        let stalled_id = stalled["id"].as_str().unwrap().to_string();
        wait_for_status(&env, &stalled_id, "waiting_cutover").await;
        env.advance(Duration::from_secs(61 * 60));
        wait_for_status(&env, &stalled_id, "stalled").await;

        let (c, _) = sign_in(srv, "admin@acme.test").await;
        let (s, home) = get(&c, srv, "/ui/").await;
        assert_eq!(s, 200);
        let csrf = csrf_of(&home);
        let reauth = row_of(&home, "Connection upstream").unwrap_or_else(|| panic!("{home}"));
        assert!(reauth.contains("needs_reauth"), "{reauth}");
        assert!(
            reauth.contains("action=\"/ui/orgs/acme/connections/upstream/authorize\"")
                && reauth.contains(">Authorize</button>"),
            "{reauth}"
        );
        let runbook =
            row_of(&home, "Rotation of connection crm").unwrap_or_else(|| panic!("{home}"));
        assert!(
            runbook.contains("waiting_person") && runbook.contains("Open the runbook"),
            "{runbook}"
        );
        let retry =
            row_of(&home, "Rotation of connection dead").unwrap_or_else(|| panic!("{home}"));
        assert!(
            retry.contains(&format!(
                "action=\"/ui/orgs/acme/rotations/{failed_id}/retry\""
            )),
            "{retry}"
        );
        let finish =
            row_of(&home, "Rotation of connection cache").unwrap_or_else(|| panic!("{home}"));
        assert!(
            finish.contains("stalled") && finish.contains("Finish now"),
            "{finish}"
        );
        // who has not moved, as an org admin may see the platform's reader
        assert!(finish.contains("a platform service key"), "{finish}");
        assert!(!finish.contains("service:platform"), "{finish}");
        // worst first: the broken before the person's turns
        let at = |what: &str| home.find(what).unwrap();
        assert!(
            at("Rotation of connection dead") < at("Rotation of connection crm"),
            "{home}"
        );

        // Retry from the landing page starts the rotation again
        let r = post(
            &c,
            srv,
            &format!("/ui/orgs/acme/rotations/{failed_id}/retry"),
            &[("csrf", &csrf)],
        )
        .await;
        assert_eq!(r.status(), 303);
        let to = r.headers()["location"].to_str().unwrap().to_string();
        assert!(
            !to.contains(&failed_id) && to.ends_with("?notice=retried"),
            "{to}"
        );
        // Finish now… asks first, naming who breaks, then retires at once
        let (s, ask) = get(
            &c,
            srv,
            &format!("/ui/orgs/acme/rotations/{stalled_id}/finish"),
        )
        .await;
        assert_eq!(s, 200);
        assert!(
            ask.contains("will break") && ask.contains("a platform service key"),
            "{ask}"
        );
        assert!(logs_in(&user, old).await, "asking changed nothing");
        let r = post(
            &c,
            srv,
            &format!("/ui/orgs/acme/rotations/{stalled_id}/finish"),
            &[("csrf", &csrf), ("now", "true")],
        )
        .await;
        assert_eq!(r.status(), 303);
        assert_eq!(
            env.json(&["rotation", "show", &stalled_id])["status"],
            "completed"
        );
        assert!(!logs_in(&user, old).await, "retired at Redis");
        let (_, home) = get(&c, srv, "/ui/").await;
        assert!(
            row_of(&home, "Rotation of connection cache").is_none(),
            "{home}"
        );
    }
);

/// The `<dd>` after `<dt>label</dt>` in `html`.
fn fact<'a>(html: &'a str, label: &str) -> Option<&'a str> {
    let at = html.find(&format!("<dt>{label}</dt><dd>"))? + label.len() + 13;
    Some(&html[at..at + html[at..].find("</dd>")?])
}

// A connection's page shows its last test (outcome and the target's own
// words), its credential's age and its rotation due date, as the CLI
// reads them.
dual!(
    a_connections_page_shows_its_last_test_age_and_due_date,
    |env| {
        if !require(redis_up(), "Redis") {
            return;
        }
        let admin = env.org_with_admin("acme");
        let old = "the-old-password-0078";
        let user = acl_user(old, false).await;
        redis_connection(&env, &user, old);
        env.json(&[
            "connection",
            "update",
            "--org",
            "acme",
            "--name",
            "cache",
            "--rotation-interval",
            "30d",
        ]);
        env.advance(Duration::from_secs(3 * 86_400));
        let t = env.json(&["connection", "test", "--org", "acme", "--name", "cache"]);
        assert_eq!(t["last_test"]["outcome"], "ok", "{t}");
        let show = env.json(&["connection", "show", "--org", "acme", "--name", "cache"]);
        let srv = env.serve();
        let (c, _) = sign_in(&srv, &admin).await;
        let (s, html) = get(&c, &srv, "/ui/orgs/acme/connections/cache").await;
        assert_eq!(s, 200);
        let tested = html.split("id=\"h-test\"").nth(1).unwrap_or_default();
        let tested = &tested[..tested.find("</section>").unwrap_or(0)];
        assert!(tested.contains(">ok</span>"), "{tested}");
        let message = show["last_test"]["message"].as_str().unwrap();
        assert!(!message.is_empty() && tested.contains(message), "{tested}");
        assert_eq!(fact(&html, "Credential age"), Some("3d 0h"), "{html}");
        let due = show["rotation_due_at"].as_str().expect("a due date");
        assert_eq!(fact(&html, "Rotation due"), Some(due), "{html}");
        // past it: said so (signed in again: a session lasts 12 h)
        env.advance(Duration::from_secs(28 * 86_400));
        let (c, _) = sign_in(&srv, &admin).await;
        let (_, html) = get(&c, &srv, "/ui/orgs/acme/connections/cache").await;
        assert_eq!(
            fact(&html, "Rotation due"),
            Some(format!("due since {due}").as_str()),
            "{html}"
        );
    }
);

// The operator sets a provider's OAuth client from the catalog page: the
// client id is listed, the secret sealed and never shown; a kind that
// takes none, or no secret, is refused and changes nothing.
dual!(
    the_operator_sets_a_providers_oauth_client_from_the_catalog,
    |env| {
        let srv = env.serve();
        let (o, csrf) = operator_sign_in(&env, &srv).await;
        let (s, html) = get(&o, &srv, "/ui/catalog").await;
        assert_eq!(s, 200);
        assert!(html.contains("not configured"), "{html}");
        let secret = "sf-client-secret-0000000042";
        let r = post(
            &o,
            &srv,
            "/ui/catalog",
            &[
                ("csrf", csrf.as_str()),
                ("kind", "salesforce"),
                ("client_id", "3MVG9-consumer-key"),
                ("client_secret", secret),
            ],
        )
        .await;
        assert_eq!(r.status(), 200);
        let html = r.text().await.unwrap();
        assert!(
            html.contains("The OAuth client of salesforce is set"),
            "{html}"
        );
        assert!(html.contains("<code>3MVG9-consumer-key</code>"), "{html}");
        assert!(!html.contains(secret), "the secret is never shown");
        let (_, again) = get(&o, &srv, "/ui/catalog").await;
        assert!(!again.contains(secret));
        // at the real target: stored, the secret sealed (no plaintext column)
        let n = query_i64(
        &env,
        "SELECT COUNT(*) FROM connector_clients WHERE kind = 'salesforce' AND client_id = '3MVG9-consumer-key'",
    )
    .await;
        assert_eq!(n, Some(1));
        let audit = env.json(&["audit", "list", "--action", "connector.configure"]);
        assert_eq!(audit.as_array().map(Vec::len), Some(1), "{audit}");
        assert!(!audit.to_string().contains(secret));
        // refused, nothing stored
        for (kind, sec) in [("redis", "x-secret-1"), ("salesforce", "")] {
            let r = post(
                &o,
                &srv,
                "/ui/catalog",
                &[
                    ("csrf", csrf.as_str()),
                    ("kind", kind),
                    ("client_id", "other-id"),
                    ("client_secret", sec),
                ],
            )
            .await;
            assert!(r.status().is_client_error(), "{kind}: {}", r.status());
            assert!(r.text().await.unwrap().contains("role=\"alert\""), "{kind}");
        }
        let n = query_i64(
            &env,
            "SELECT COUNT(*) FROM connector_clients WHERE client_id = 'other-id'",
        )
        .await;
        assert_eq!(n, Some(0));
        // an org admin may not
        let admin = env.org_with_admin("acme");
        let (c, csrf_a) = sign_in(&srv, &admin).await;
        let r = post(
            &c,
            &srv,
            "/ui/catalog",
            &[
                ("csrf", csrf_a.as_str()),
                ("kind", "salesforce"),
                ("client_id", "mine"),
                ("client_secret", "mine-secret-0001"),
            ],
        )
        .await;
        assert_eq!(r.status(), 403);
    }
);

// The status page's health per connector kind: connected, tested and
// succeeding over its window; operational, degraded, idle; no org named.
dual!(the_status_page_tells_each_kinds_health, |env| {
    if !require(redis_up(), "Redis") {
        return;
    }
    env.org_with_admin("acme");
    let old = "the-old-password-0079";
    let user = acl_user(old, false).await;
    redis_connection(&env, &user, old);
    env.json(&["connection", "test", "--org", "acme", "--name", "cache"]);
    let srv = env.serve();
    let status = || async {
        let v: serde_json::Value = client()
            .get(srv.at("/status.json"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["kinds"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kind"] == "redis")
            .cloned()
            .unwrap_or_else(|| panic!("redis in {v}"))
    };
    let redis = status().await;
    assert_eq!(redis["status"], "operational", "{redis}");
    assert_eq!(
        (redis["connections"].as_i64(), redis["tested_ok"].as_i64()),
        (Some(1), Some(1))
    );
    assert_eq!(redis["refreshing_share"], 1.0, "{redis}");
    // a second one, failing its test: degraded, half succeeding
    connection(
        &env,
        "redis",
        "dead",
        &["host=127.0.0.1", "port=1", "username=svc"],
    );
    store_unprobed(&env, "dead", "password", "dead-redis-password-79");
    let out = env.run(&[
        "connection",
        "test",
        "--org",
        "acme",
        "--name",
        "dead",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1), "a failed test exits 1");
    let t: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(t["last_test"]["outcome"], "failed", "{t}");
    let redis = status().await;
    assert_eq!(redis["status"], "degraded", "{redis}");
    assert_eq!(
        (redis["tested"].as_i64(), redis["tested_ok"].as_i64()),
        (Some(2), Some(1))
    );
    assert_eq!(redis["refreshing_share"], 0.5, "{redis}");
    let html = client()
        .get(srv.at("/status"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        html.contains("Redis") && html.contains("degraded"),
        "{html}"
    );
    assert!(!html.contains("acme"), "no org named: {html}");
    // past the window nothing was tested: idle, no share
    env.advance(Duration::from_secs(7 * 3600));
    let redis = status().await;
    assert_eq!(redis["status"], "idle", "{redis}");
    assert!(redis["refreshing_share"].is_null(), "{redis}");
});

// The Authorizations tab shows each status with its reason as it changes
// (Active → Expired → Invalid; Revoked is the browser test's), and the
// application's delete confirmation counts what dies with it.
dual!(
    the_authorizations_tab_shows_expired_and_invalid_with_why,
    |env| {
        let w = crate::oauth_support::world(env, &[], &[]).await;
        crate::oauth_support::tokens(&w, "read").await;
        crate::oauth_support::tokens(&w, "read_write").await;
        let tab = "/ui/orgs/acme/apps/portal/authorizations";
        let (c, _) = sign_in(&w.srv, "admin@acme.test").await;
        let (_, html) = get(&c, &w.srv, tab).await;
        assert_eq!(html.matches(">Active</span>").count(), 2, "{html}");
        let (s, ask) = get(&c, &w.srv, "/ui/orgs/acme/apps/portal/delete").await;
        assert_eq!(s, 200);
        assert!(
            ask.contains("2 authorizations"),
            "what dies is counted: {ask}"
        );
        // refresh tokens live an hour by default
        w.env.advance(Duration::from_secs(2 * 3600));
        let (_, html) = get(&c, &w.srv, tab).await;
        assert_eq!(html.matches(">Expired</span>").count(), 2, "{html}");
        assert!(
            html.contains("the refresh token was not used within its lifetime"),
            "{html}"
        );
        assert!(
            html.contains("Revoke…"),
            "an expired one may still be revoked"
        );
        // the user deactivated: Invalid, and why
        w.env.ok(&[
            "user",
            "deactivate",
            "--org",
            "acme",
            "--email",
            crate::oauth_support::USER,
        ]);
        let (_, html) = get(&c, &w.srv, tab).await;
        assert_eq!(html.matches(">Invalid</span>").count(), 2, "{html}");
        assert!(html.contains("the user was deactivated"), "{html}");
        assert!(!html.contains("Revoke…"), "nothing left to revoke");
    }
);
