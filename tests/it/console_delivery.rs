//! Deliveries in the console, as a browser without script uses it: the
//! Delivery section of a connection's page (enable, change filter and batch
//! keeping the cursor, pause, resume, disable behind its confirm page), the
//! backfill form with its dry run, the org's deliveries list, a paused
//! delivery on "What needs you", and the public status page's share of
//! connections delivering. What the console did is read back through the
//! CLI (the real database), and bad input must leave it as it was.

use std::time::Duration;

use serde_json::Value;

use crate::connections::{authorize, pair};
use crate::console::{get, post, post_see_other, sign_in};
use crate::delivery::{acme_key, status, wait_state, write_people, FAST};
use crate::dual;
use crate::harness::*;

const PAGE: &str = "/ui/orgs/acme/connections/upstream";

/// Whether connection `upstream` of acme has a delivery (the CLI's answer).
fn has_delivery(env: &Env) -> bool {
    env.run(&[
        "delivery",
        "status",
        "--org",
        "acme",
        "--connection",
        "upstream",
    ])
    .status
    .success()
}

dual!(
    delivery_is_enabled_paused_backfilled_and_disabled_through_forms,
    |env| {
        let p = pair(&env, "1h", FAST).await;
        authorize(&env, &p, "authorize").await;
        let srv = &p.csrv;
        let (c, csrf) = sign_in(srv, "admin@acme.test").await;
        let act = |a: &str| format!("{PAGE}/delivery/{a}");

        // off: the section offers to enable it
        let (s, html) = get(&c, srv, PAGE).await;
        assert_eq!(s, 200);
        assert!(html.contains("id=\"h-delivery\""), "{html}");
        assert!(html.contains("Enable delivery"));

        // a filter that is not a domain: the console's error, nothing written
        let r = post(
            &c,
            srv,
            &act("enable"),
            &[
                ("csrf", &csrf),
                ("filter_domains", "example.com\nnodot"),
                ("batch", "100"),
            ],
        )
        .await;
        assert_eq!(r.status(), 400);
        let body = r.text().await.unwrap();
        assert!(body.contains("role=\"alert\""), "{body}");
        assert!(body.contains("is not a domain name"), "{body}");
        assert!(!has_delivery(&env), "a refused form enables nothing");
        // a batch that is not a number, or out of range: the same
        for batch in ["many", "0", "5000"] {
            let r = post(
                &c,
                srv,
                &act("enable"),
                &[("csrf", &csrf), ("filter_domains", ""), ("batch", batch)],
            )
            .await;
            assert_eq!(r.status(), 400, "batch {batch}");
            assert!(!has_delivery(&env));
        }

        // enabled through the form
        post_see_other(
            &c,
            srv,
            &act("enable"),
            &[
                ("csrf", &csrf),
                ("filter_domains", "example.com, other.org"),
                ("batch", "200"),
            ],
            &format!("{PAGE}?notice=delivery-enabled#delivery"),
        )
        .await;
        let s = status(&env);
        assert_eq!(
            s["filter_domains"],
            serde_json::json!(["example.com", "other.org"])
        );
        assert_eq!(s["batch"], 200);
        assert_eq!(s["state"], "caught_up", "{s}");
        let (_, html) = get(&c, srv, &format!("{PAGE}?notice=delivery-enabled")).await;
        assert!(html.contains("Delivery enabled."), "{html}");
        assert!(html.contains(">caught_up</span>"), "{html}");
        assert!(
            !html.contains("Signing secret"),
            "only custom_rest signs, so no secret is shown"
        );

        // records flow; the section shows the cursor and no lag
        let key = acme_key(&env);
        write_people(srv, &key, "c", 20).await;
        let ok = wait_until(
            || {
                let s = status(&env);
                s["lag_records"] == 0 && s["last_delivered_seq"] == 20
            },
            Duration::from_secs(30),
        )
        .await;
        assert!(ok, "{}", status(&env));
        let s = wait_state(&env, "caught_up", Duration::from_secs(20)).await;
        let (_, html) = get(&c, srv, PAGE).await;
        assert!(html.contains("sequence 20 of 20"), "{html}");
        assert!(html.contains("<dt>Lag</dt><dd>none</dd>"), "{html}");
        assert!(
            !html.contains("data-live"),
            "caught up, nothing moves: the page does not poll"
        );

        // the edit form changes filter and batch and keeps the cursor
        let r = post(
            &c,
            srv,
            &act("enable"),
            &[
                ("csrf", &csrf),
                ("filter_domains", "example.com"),
                ("batch", "50"),
            ],
        )
        .await;
        assert_eq!(r.status(), 303);
        let after = status(&env);
        assert_eq!(after["filter_domains"], serde_json::json!(["example.com"]));
        assert_eq!(after["batch"], 50);
        assert_eq!(after["last_delivered_seq"], s["last_delivered_seq"]);

        // pause and resume
        let r = post(&c, srv, &act("pause"), &[("csrf", &csrf)]).await;
        assert_eq!(r.status(), 303);
        assert_eq!(status(&env)["state"], "paused_by_user");
        let (_, html) = get(&c, srv, PAGE).await;
        assert!(html.contains(">paused_by_user</span>"), "{html}");
        assert!(html.contains(&format!("action=\"{}\"", act("resume"))));
        let r = post(&c, srv, &act("resume"), &[("csrf", &csrf)]).await;
        assert_eq!(r.status(), 303);
        wait_state(&env, "caught_up", Duration::from_secs(20)).await;

        // a backfill's dry run shows the count and starts nothing
        let r = post(
            &c,
            srv,
            &act("backfill"),
            &[("csrf", &csrf), ("since", "7d"), ("dry_run", "true")],
        )
        .await;
        assert_eq!(r.status(), 200);
        let body = r.text().await.unwrap();
        // 20 records, every tenth at other.org, now filtered out
        assert!(body.contains("would send 18 records"), "{body}");
        assert!(body.contains("Start backfill"), "{body}");
        assert!(body.contains("name=\"since\" value=\"7d\""), "{body}");
        let s = status(&env);
        assert!(s["backfill"].is_null(), "{s}");
        assert_eq!(s["state"], "caught_up");

        // bad windows: the console's error, nothing started
        for (field, value, says) in [
            ("since", "2999-01-01T00:00:00Z", "in the future"),
            (
                "since",
                "yesterday-ish",
                "neither an RFC 3339 time nor a duration",
            ),
            ("from_seq", "abc", "whole number"),
            ("from_seq", "99999", "is after the outbox"),
        ] {
            let r = post(
                &c,
                srv,
                &act("backfill"),
                &[("csrf", &csrf), (field, value)],
            )
            .await;
            assert_eq!(r.status(), 400, "{field}={value}");
            let body = r.text().await.unwrap();
            assert!(body.contains(says), "{field}={value}: {body}");
            assert!(status(&env)["backfill"].is_null());
        }

        // while a person holds delivery, a backfill waits: its progress is
        // in the live region, with Cancel
        let r = post(&c, srv, &act("pause"), &[("csrf", &csrf)]).await;
        assert_eq!(r.status(), 303);
        let r = post(
            &c,
            srv,
            &act("backfill"),
            &[("csrf", &csrf), ("since", "7d")],
        )
        .await;
        assert_eq!(r.status(), 303);
        let s = status(&env);
        assert_eq!(s["backfill"]["state"], "running", "{s}");
        let (_, html) = get(&c, srv, PAGE).await;
        let live = &html[html.find("id=\"live\"").expect("a live region")..];
        assert!(live.starts_with("id=\"live\" data-live="), "{html}");
        assert!(live.contains("Backfill in progress"), "{html}");
        assert!(live.contains("0 of 18 records"), "{html}");
        assert!(live.contains("records/s"), "{html}");
        assert!(live.contains(&format!("action=\"{}\"", act("cancel-backfill"))));
        post_see_other(
            &c,
            srv,
            &act("cancel-backfill"),
            &[("csrf", &csrf)],
            &format!("{PAGE}?notice=backfill-cancelled#delivery"),
        )
        .await;
        assert_eq!(status(&env)["backfill"]["state"], "cancelled");
        let r = post(&c, srv, &act("resume"), &[("csrf", &csrf)]).await;
        assert_eq!(r.status(), 303);
        wait_state(&env, "caught_up", Duration::from_secs(20)).await;

        // the real one, from the dry run's confirm form, to the end
        post_see_other(
            &c,
            srv,
            &act("backfill"),
            &[("csrf", &csrf), ("since", "7d")],
            &format!("{PAGE}?notice=backfill-started#delivery"),
        )
        .await;
        let ok = wait_until(
            || status(&env)["backfill"]["state"] == "done",
            Duration::from_secs(30),
        )
        .await;
        assert!(ok, "{}", status(&env));
        // the backfill's end puts the delivery back to running, and its
        // next pass (a moment later on a busy machine) finds it caught up
        wait_state(&env, "caught_up", Duration::from_secs(20)).await;
        let (_, html) = get(&c, srv, PAGE).await;
        assert!(html.contains("Last backfill"), "{html}");
        assert!(html.contains("18 of 18 records"), "{html}");

        // the org's list
        let (s, html) = get(&c, srv, "/ui/orgs/acme/deliveries").await;
        assert_eq!(s, 200);
        assert!(
            html.contains(&format!("href=\"{PAGE}#delivery\"")),
            "{html}"
        );
        assert!(html.contains("aria-current=\"page\">Deliveries"), "{html}");

        // the status page: the share delivering beside the share refreshing
        let st: Value = client()
            .get(srv.at("/status.json"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(st["window_s"], 21_600, "{st}");
        assert!(st.get("window_hours").is_none(), "{st}");
        let rekey = st["kinds"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kind"] == "rekey")
            .unwrap();
        assert_eq!(rekey["deliveries"], 1, "{rekey}");
        assert_eq!(rekey["delivering"], 1, "{rekey}");
        assert_eq!(rekey["delivering_share"], 1.0, "{rekey}");
        assert!(rekey.get("refreshing_share").is_some(), "{rekey}");
        let (_, html) = get(&client(), srv, "/status").await;
        assert!(html.contains("Delivering"), "{html}");

        // another org's admin: acme's delivery is not found, and untouched
        env.org_with_admin("other");
        let (oc, ocsrf) = sign_in(srv, "admin@other.test").await;
        assert_eq!(get(&oc, srv, "/ui/orgs/acme/deliveries").await.0, 404);
        assert_eq!(get(&oc, srv, &act("disable")).await.0, 404);
        let r = post(&oc, srv, &act("pause"), &[("csrf", &ocsrf)]).await;
        assert_eq!(r.status(), 404);
        assert_eq!(status(&env)["state"], "caught_up");

        // the grant revoked: paused_auth, the way back offered, and on
        // "What needs you"
        let r = post(
            &c,
            srv,
            &format!("{PAGE}/revoke-authorization"),
            &[("csrf", &csrf)],
        )
        .await;
        assert_eq!(r.status(), 303);
        assert_eq!(status(&env)["state"], "paused_auth");
        let (_, html) = get(&c, srv, PAGE).await;
        assert!(html.contains("waiting for re-authorization"), "{html}");
        assert!(
            html.contains(&format!("action=\"{PAGE}/reauthenticate\"")),
            "{html}"
        );
        let (_, home) = get(&c, srv, "/ui/").await;
        assert!(home.contains("Delivery to upstream (rekey)"), "{home}");
        assert!(home.contains(">paused_auth</span>"), "{home}");

        // disabling asks first and says the cursor is forgotten
        let (s, html) = get(&c, srv, &act("disable")).await;
        assert_eq!(s, 200);
        assert!(html.contains("cursor"), "{html}");
        assert!(html.contains("forgotten"), "{html}");
        assert!(has_delivery(&env), "asking changes nothing");
        let r = post(&c, srv, &act("disable"), &[("csrf", &csrf)]).await;
        assert_eq!(r.status(), 303);
        assert!(!has_delivery(&env));
        let (_, html) = get(&c, srv, PAGE).await;
        assert!(html.contains("Enable delivery"), "{html}");
    }
);

dual!(a_kind_that_cannot_receive_has_no_delivery_section, |env| {
    let admin = env.org_with_admin("acme");
    env.json(&[
        "connection",
        "create",
        "--org",
        "acme",
        "--kind",
        "redis",
        "--name",
        "cache",
        "--setting",
        "host=127.0.0.1",
    ]);
    let srv = env.serve();
    let (c, csrf) = sign_in(&srv, &admin).await;
    let (s, html) = get(&c, &srv, "/ui/orgs/acme/connections/cache").await;
    assert_eq!(s, 200);
    assert!(!html.contains("id=\"h-delivery\""), "{html}");
    // the form posted anyway is refused with the reason, nothing written
    let r = post(
        &c,
        &srv,
        "/ui/orgs/acme/connections/cache/delivery/enable",
        &[("csrf", &csrf), ("filter_domains", ""), ("batch", "")],
    )
    .await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("cannot receive"));
    let list = env.json(&["delivery", "list", "--org", "acme"]);
    assert_eq!(list["items"].as_array().unwrap().len(), 0);
    let (s, html) = get(&c, &srv, "/ui/orgs/acme/deliveries").await;
    assert_eq!(s, 200);
    assert!(html.contains("No delivery yet"), "{html}");
});
