//! A connection's activity log and the org's webhooks in the console, as a
//! browser without script uses them: the activity page filtered by type and
//! time and paged; the webhook form (its secret shown once), Send test,
//! Replay and Delete… behind its confirm page. What the console did is read
//! back through the CLI (the real database) and at a real receiver, and bad
//! input must leave everything as it was.

use std::time::Duration;

use serde_json::Value;

use crate::connections::{authorize, pair};
use crate::console::{get, post, sign_in};
use crate::dual;
use crate::harness::*;
use crate::webhooks::receiver;

const LOG: &str = "/ui/orgs/acme/connections/upstream/activity";
const HOOKS: &str = "/ui/orgs/acme/webhooks";

/// The types of the entries a page of the activity log shows, in order.
fn shown_types(html: &str) -> Vec<String> {
    html.split("<td data-label=\"Type\"><span class=\"badge ")
        .skip(1)
        .filter_map(|s| s.split_once("\">")?.1.split('<').next())
        .map(str::to_string)
        .collect()
}

fn hooks(env: &Env) -> Vec<Value> {
    env.json(&["webhook", "list", "--org", "acme"])
        .as_array()
        .unwrap()
        .clone()
}

fn deliveries(env: &Env) -> Vec<Value> {
    env.json(&["webhook", "deliveries", "--org", "acme"])["items"]
        .as_array()
        .unwrap()
        .clone()
}

dual!(the_activity_page_shows_filters_and_pages_the_log, |env| {
    let p = pair(&env, "1h", &[]).await;
    authorize(&env, &p, "authorize").await;
    for _ in 0..2 {
        env.ok(&["connection", "test", "--org", "acme", "--name", "upstream"]);
    }
    let srv = &p.csrv;
    let (c, _) = sign_in(srv, "admin@acme.test").await;
    let cli: Value = env.json(&[
        "connection",
        "activity",
        "--org",
        "acme",
        "--name",
        "upstream",
    ]);
    let all: Vec<String> = cli["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_string())
        .collect();
    assert!(all.len() >= 4, "{cli}");

    // linked from the connection's page
    let (_, html) = get(&c, srv, "/ui/orgs/acme/connections/upstream").await;
    assert!(html.contains(&format!("href=\"{LOG}\"")), "{html}");

    // every entry, newest first, as the CLI reads them; detail folded away
    let (s, html) = get(&c, srv, LOG).await;
    assert_eq!(s, 200, "{html}");
    assert_eq!(shown_types(&html), all, "{html}");
    assert!(
        html.contains("<details><summary>Details</summary>"),
        "{html}"
    );
    let first = &cli["items"][0];
    assert!(
        html.contains(first["at"].as_str().unwrap()),
        "the time of each entry: {html}"
    );
    assert!(!html.contains("rk_at_") && !html.contains("rk_rt_"));
    assert!(!html.contains("Older →"), "one page holds them all");

    // by type: the checkboxes' repeated `type`, kept checked
    let (s, html) = get(&c, srv, &format!("{LOG}?type=probe")).await;
    assert_eq!(s, 200);
    let probes = shown_types(&html);
    assert!(
        probes.len() >= 2 && probes.iter().all(|t| t == "probe"),
        "{html}"
    );
    assert!(html.contains("value=\"probe\" checked"), "{html}");
    let (_, html) = get(&c, srv, &format!("{LOG}?type=probe&type=authorization")).await;
    assert_eq!(shown_types(&html).len(), probes.len() + 1, "{html}");
    // by time
    let (_, html) = get(&c, srv, &format!("{LOG}?since=1h")).await;
    assert_eq!(shown_types(&html), all);
    let (_, html) = get(&c, srv, &format!("{LOG}?since=2999-01-01T00:00:00Z")).await;
    assert!(shown_types(&html).is_empty(), "{html}");
    assert!(html.contains("No activity"), "{html}");

    // bad filters: the console's error notice, the form as typed
    let (s, html) = get(&c, srv, &format!("{LOG}?since=yesterday-ish")).await;
    assert_eq!(s, 400);
    assert!(html.contains("role=\"alert\""), "{html}");
    assert!(
        html.contains("neither an RFC 3339 time nor a duration"),
        "{html}"
    );
    assert!(html.contains("value=\"yesterday-ish\""), "{html}");
    assert!(shown_types(&html).is_empty());
    let (s, html) = get(&c, srv, &format!("{LOG}?type=bogus")).await;
    assert_eq!(s, 400);
    assert!(html.contains("unknown activity type"), "{html}");

    // paged: 50 a page, "Older →" follows the cursor, nothing repeated or
    // skipped (more tests make more than one page)
    for _ in 0..50 {
        env.ok(&["connection", "test", "--org", "acme", "--name", "upstream"]);
    }
    let total = env.json(&[
        "connection",
        "activity",
        "--org",
        "acme",
        "--name",
        "upstream",
        "--limit",
        "1000",
    ])["items"]
        .as_array()
        .unwrap()
        .len();
    let (_, html) = get(&c, srv, LOG).await;
    assert_eq!(shown_types(&html).len(), 50);
    assert!(
        html.contains(&format!("{total} entries")),
        "the exact total: {html}"
    );
    let at = html.find("rel=\"next\"").expect("an Older link");
    let href = html[..at].rsplit("href=\"").next().unwrap();
    let href = href.split('"').next().unwrap().replace("&amp;", "&");
    assert!(href.starts_with(&format!("{LOG}?after=")), "{href}");
    let (s, older) = get(&c, srv, &href).await;
    assert_eq!(s, 200);
    assert_eq!(shown_types(&older).len(), total - 50, "{older}");
    assert!(older.contains(&format!("{total} entries")), "{older}");
    assert!(older.contains(">Newest</a>"), "{older}");
    let (s, _) = get(&c, srv, &format!("{LOG}?after=garbage")).await;
    assert_eq!(s, 400);

    // another org's admin: not found
    env.org_with_admin("other");
    let (oc, _) = sign_in(srv, "admin@other.test").await;
    assert_eq!(get(&oc, srv, LOG).await.0, 404);
    assert_eq!(
        get(&oc, srv, "/ui/orgs/other/connections/upstream/activity")
            .await
            .0,
        404
    );
});

dual!(
    webhooks_are_created_tested_replayed_and_deleted_through_forms,
    |env| {
        let (r, url) = receiver(&env).await;
        env.org_with_admin("acme");
        let srv = env.serve_with(&[("REKEY_JOBS_INTERVAL", "1s")]);
        let (c, csrf) = sign_in(&srv, "admin@acme.test").await;

        // in the org's navigation
        let (s, html) = get(&c, &srv, HOOKS).await;
        assert_eq!(s, 200);
        assert!(
            html.contains("href=\"/ui/orgs/acme/webhooks\" aria-current=\"page\""),
            "{html}"
        );
        assert!(html.contains("value=\"connection.needs_reauth\""), "{html}");
        assert!(html.contains("value=\"credential.expiring\""), "{html}");

        // bad input: the console's error, nothing written, the form as typed
        for (u, events, says) in [
            (
                "ftp://hooks.example.com/x",
                vec!["rotation.failed"],
                "http(s)",
            ),
            (url.as_str(), vec![], "at least one event"),
            (url.as_str(), vec!["rotation.bogus"], "unknown event"),
        ] {
            let mut form = vec![("csrf", csrf.as_str()), ("url", u)];
            form.extend(events.iter().map(|e| ("events", *e)));
            let resp = post(&c, &srv, HOOKS, &form).await;
            assert_eq!(resp.status(), 400, "{u} {events:?}");
            let body = resp.text().await.unwrap();
            assert!(body.contains("role=\"alert\""), "{body}");
            assert!(body.contains(says), "{says}: {body}");
            assert!(!body.contains("rk_whsec_"), "{body}");
            assert!(hooks(&env).is_empty(), "a refused form writes nothing");
        }
        let resp = post(
            &c,
            &srv,
            HOOKS,
            &[
                ("csrf", &csrf),
                ("url", "ftp://x.example.com/"),
                ("events", "rotation.failed"),
            ],
        )
        .await;
        let body = resp.text().await.unwrap();
        assert!(
            body.contains("value=\"rotation.failed\" checked"),
            "the events as ticked: {body}"
        );

        // created through the form: the secret on this answer only
        let resp = post(
            &c,
            &srv,
            HOOKS,
            &[
                ("csrf", &csrf),
                ("url", &url),
                ("events", "connection.needs_reauth"),
                ("events", "delivery.paused"),
            ],
        )
        .await;
        assert_eq!(resp.status(), 201);
        let body = resp.text().await.unwrap();
        let at = body
            .find("rk_whsec_")
            .expect("the signing secret, shown once");
        let secret = body[at..].split('<').next().unwrap().to_string();
        assert!(body.contains("Shown once"), "{body}");
        *r.secret.lock().unwrap() = secret.clone();
        let made = hooks(&env);
        assert_eq!(made.len(), 1);
        assert_eq!(
            made[0]["events"],
            serde_json::json!(["connection.needs_reauth", "delivery.paused"])
        );
        let id = made[0]["id"].as_str().unwrap().to_string();
        let (_, html) = get(&c, &srv, HOOKS).await;
        assert!(!html.contains(&secret), "never shown again");
        assert!(!html.contains("rk_whsec_"));
        assert!(html.contains(&url), "{html}");
        assert!(
            html.contains("connection.needs_reauth, delivery.paused"),
            "{html}"
        );

        // Send test: a signed ping, accepted
        let act = |a: &str| format!("{HOOKS}/{id}/{a}");
        let resp = post(&c, &srv, &act("test"), &[("csrf", &csrf)]).await;
        assert_eq!(resp.status(), 303);
        let to = resp.headers()["location"].to_str().unwrap().to_string();
        assert_eq!(to, format!("{HOOKS}?notice=test-delivered#deliveries"));
        let got = r.got();
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].event.as_str(), &got[0].verified), ("ping", &Ok(())));
        let (_, html) = get(&c, &srv, &to).await;
        assert!(html.contains("the receiver accepted the ping"), "{html}");
        assert!(html.contains(">delivered</span>"), "{html}");
        let d = deliveries(&env);
        let did = d[0]["id"].as_str().unwrap().to_string();
        assert!(
            html.contains(&format!("/ui/orgs/acme/webhook-deliveries/{did}/replay")),
            "{html}"
        );

        // Replay: queued again, and sent again as a new attempt
        let replay = format!("/ui/orgs/acme/webhook-deliveries/{did}/replay");
        let resp = post(&c, &srv, &replay, &[("csrf", &csrf)]).await;
        assert_eq!(resp.status(), 303);
        assert_eq!(
            resp.headers()["location"],
            format!("{HOOKS}?notice=replayed#deliveries")
        );
        let d = deliveries(&env);
        assert!(
            d[0]["state"] == "queued" || r.got().len() == 2,
            "re-queued: {d:?}"
        );
        let r2 = r.clone();
        assert!(wait_until(move || r2.got().len() >= 2, Duration::from_secs(30)).await);
        assert_eq!(r.got()[1].delivery, did);

        // another org's admin: acme's pages and objects are not found, untouched
        env.org_with_admin("other");
        let (oc, ocsrf) = sign_in(&srv, "admin@other.test").await;
        assert_eq!(get(&oc, &srv, HOOKS).await.0, 404);
        let theirs = format!("/ui/orgs/other/webhooks/{id}/delete");
        assert_eq!(get(&oc, &srv, &theirs).await.0, 404);
        let resp = post(&oc, &srv, &theirs, &[("csrf", &ocsrf)]).await;
        assert_eq!(resp.status(), 404);
        let resp = post(
            &oc,
            &srv,
            &format!("/ui/orgs/other/webhook-deliveries/{did}/replay"),
            &[("csrf", &ocsrf)],
        )
        .await;
        assert_eq!(resp.status(), 404);
        assert_eq!(hooks(&env).len(), 1);

        // Delete… asks first; the form deletes it
        let (s, html) = get(&c, &srv, &act("delete")).await;
        assert_eq!(s, 200);
        assert!(
            html.contains(&format!("Delete the webhook to {url}?")),
            "{html}"
        );
        assert_eq!(hooks(&env).len(), 1, "asking changes nothing");
        let resp = post(&c, &srv, &act("delete"), &[("csrf", &csrf)]).await;
        assert_eq!(resp.status(), 303);
        assert_eq!(
            resp.headers()["location"],
            format!("{HOOKS}?notice=deleted")
        );
        assert!(hooks(&env).is_empty());
        assert!(deliveries(&env).is_empty());
    }
);
