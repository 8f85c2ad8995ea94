//! An org's users in the console: the list (paged by email, with the exact
//! total and a search), create (a generated password shown once, on the
//! answer to the form), change permission, activate, and deactivate behind
//! a page that says first what it does to their authorizations. The same
//! domain functions as `/api/v1/orgs/{org}/users…` and `rekey user …`.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::connections::Confirm;
use super::page::{self, fail, seg, Chrome, Reveal};
use super::{Posted, Ui};
use crate::api::apps::org_for;
use crate::api::extract::AdminSession;
use crate::api::{ApiError, AppState};
use crate::clock::rfc3339;
use crate::crypto::password;
use crate::identity::orgs::Org;
use crate::identity::sessions::Principal;
use crate::identity::users::{self, NewUser, User};
use crate::identity::Permission;
use crate::oauth::authorizations;

fn notice(code: Option<&str>) -> Option<String> {
    Some(
        match code? {
            "deactivated" => "User deactivated: their authorizations are Invalid and they can no longer sign in.",
            "activated" => "User activated: they can sign in and authorize again (what they authorized before stays Invalid).",
            "permission" => "Permission changed: their authorizations confer at most this from now on.",
            _ => return None,
        }
        .to_string(),
    )
}

pub struct UserLine {
    pub email: String,
    pub permission: String,
    pub admin: bool,
    pub active: bool,
    pub created: String,
    pub you: bool,
}

#[derive(Template)]
#[template(path = "users.html")]
pub struct ListPage {
    pub chrome: Chrome,
    pub org: String,
    pub users: Vec<UserLine>,
    pub total: i64,
    pub q: String,
    pub first: bool,
    /// The link to the next page, when one follows.
    pub next: Option<String>,
    pub shown: Option<Reveal>,
    pub error: Option<String>,
}

#[derive(Deserialize, Default)]
pub struct ListQuery {
    notice: Option<String>,
    q: Option<String>,
    after: Option<String>,
}

/// The signed-in org admin's own user id (none for the operator).
fn own_id(admin: &AdminSession) -> Option<&str> {
    match &admin.session.principal {
        Principal::OrgAdmin { user, .. } => Some(&user.id),
        Principal::Operator(_) => None,
    }
}

/// What a list page shows besides the users.
#[derive(Default)]
struct Extras {
    notice: Option<String>,
    shown: Option<Reveal>,
    error: Option<String>,
}

async fn list_page(
    st: &AppState,
    admin: &AdminSession,
    o: &Org,
    status: StatusCode,
    q: &ListQuery,
    x: Extras,
) -> Response {
    let search = q.q.as_deref().map(str::trim).unwrap_or("");
    let after = q.after.as_deref().filter(|a| !a.is_empty());
    let pg = match users::page(
        &st.core.db,
        &o.id,
        Some(search),
        after,
        crate::api::users::PAGE,
    )
    .await
    {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    let base = format!("/ui/orgs/{}/users", seg(&o.slug));
    let next = pg.next.map(|a| {
        let qs: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("q", search)
            .append_pair("after", &a)
            .finish();
        format!("{base}?{qs}")
    });
    let me = own_id(admin);
    page::render(
        status,
        &ListPage {
            chrome: Chrome::of(admin, "Users", "users", Some(&o.slug)).notice(x.notice),
            org: o.slug.clone(),
            users: pg
                .items
                .into_iter()
                .map(|u| UserLine {
                    you: me == Some(u.id.as_str()),
                    email: u.email,
                    permission: u.permission,
                    admin: u.is_admin,
                    active: u.active,
                    created: rfc3339(u.created_at),
                })
                .collect(),
            total: pg.total,
            q: search.to_string(),
            first: after.is_none(),
            next,
            shown: x.shown,
            error: x.error,
        },
    )
}

pub async fn list(
    State(st): State<AppState>,
    Ui(admin): Ui,
    Path(org): Path<String>,
    Query(q): Query<ListQuery>,
) -> Response {
    let o = match org_for(&st, &admin, &org).await {
        Ok(o) => o,
        Err(e) => return fail(e),
    };
    let x = Extras {
        notice: notice(q.notice.as_deref()),
        ..Default::default()
    };
    list_page(&st, &admin, &o, StatusCode::OK, &q, x).await
}

#[derive(Deserialize)]
pub struct NewUserForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    permission: String,
    #[serde(default)]
    admin: Option<String>,
}

/// `POST /ui/orgs/{org}/users`: the user is made with a generated
/// password, shown on this answer only.
pub async fn create(
    State(st): State<AppState>,
    Path(org): Path<String>,
    p: Posted<NewUserForm>,
) -> Response {
    let o = match org_for(&st, &p.ui, &org).await {
        Ok(o) => o,
        Err(e) => return fail(e),
    };
    let q = ListQuery::default();
    let failed = |e: ApiError| {
        let (st, ui, o) = (st.clone(), p.ui.clone(), o.clone());
        async move {
            let x = Extras {
                error: Some(e.message),
                ..Default::default()
            };
            list_page(&st, &ui, &o, e.status, &ListQuery::default(), x).await
        }
    };
    let permission: Permission = match p.form.permission.parse() {
        Ok(p) => p,
        Err(e) => return failed(e.into()).await,
    };
    let pw = password::generate();
    let made = users::create(
        &st.core,
        &p.ui.actor(),
        NewUser {
            org_id: &o.id,
            email: &p.form.email,
            permission,
            is_admin: p.form.admin.as_deref() == Some("true"),
            password: &pw,
        },
    )
    .await;
    match made {
        Ok(u) => {
            let shown = Reveal {
                heading: format!("User {} created", u.email),
                note: "Give them this password now: it is stored only as a hash and is never shown again — not on reload or in the list.".into(),
                fields: vec![("Email".into(), u.email.clone()), ("Password".into(), pw)],
            };
            let x = Extras {
                shown: Some(shown),
                ..Default::default()
            };
            list_page(&st, &p.ui, &o, StatusCode::CREATED, &q, x).await
        }
        Err(e) => failed(e.into()).await,
    }
}

async fn find(st: &AppState, o: &Org, user: &str) -> Result<User, ApiError> {
    Ok(users::find(&st.core.db, &o.id, user).await?)
}

/// `GET …/users/{user}/deactivate`: what deactivating does, counted,
/// before the button that does it.
pub async fn confirm(
    State(st): State<AppState>,
    Ui(admin): Ui,
    Path((org, user, action)): Path<(String, String, String)>,
) -> Response {
    let o = match org_for(&st, &admin, &org).await {
        Ok(o) => o,
        Err(e) => return fail(e),
    };
    let u = match find(&st, &o, &user).await {
        Ok(u) => u,
        Err(e) => return fail(e),
    };
    if action != "deactivate" {
        return page::error(StatusCode::NOT_FOUND, "There is no such page for a user.");
    }
    let back = format!("/ui/orgs/{}/users", seg(&o.slug));
    if !u.active {
        return page::ok(&Confirm {
            chrome: Chrome::of(&admin, "Confirm", "users", Some(&o.slug)),
            heading: format!("{} is already deactivated", u.email),
            lines: vec![],
            action: String::new(),
            button: String::new(),
            danger: false,
            back,
            inputs: vec![],
            hidden: vec![],
        });
    }
    let n = match authorizations::of_user(&st.core.db, &o.id, &u.id, st.core.now()).await {
        Ok(n) => n,
        Err(e) => return fail(e),
    };
    let mut lines = vec![
        format!(
            "Their OAuth refresh tokens become Invalid at once: {} active {} stop working, with every access token issued from them ({} in all, counting expired ones, will read Invalid). They stay Invalid even if {} is activated again; the user must authorize those applications anew.",
            n.active,
            if n.active == 1 { "authorization" } else { "authorizations" },
            n.listed,
            u.email
        ),
        format!(
            "{} can no longer sign in, to the console or to authorize an application.",
            u.email
        ),
    ];
    if n.machine_clients > 0 {
        lines.push(format!(
            "{} machine {} act as this user: their tokens are refused while the user is deactivated.",
            n.machine_clients,
            if n.machine_clients == 1 { "client" } else { "clients" }
        ));
    }
    if own_id(&admin) == Some(u.id.as_str()) {
        lines.push("This is you: your session ends with it.".into());
    }
    page::ok(&Confirm {
        chrome: Chrome::of(&admin, "Confirm", "users", Some(&o.slug)),
        heading: format!("Deactivate {}?", u.email),
        lines,
        action: format!("{back}/{}/deactivate", seg(&u.email)),
        button: "Deactivate user".into(),
        danger: true,
        back,
        inputs: vec![],
        hidden: vec![],
    })
}

/// `POST …/users/{user}/{action}`: deactivate, activate, permission.
pub async fn act(
    State(st): State<AppState>,
    Path((org, user, action)): Path<(String, String, String)>,
    p: Posted<HashMap<String, String>>,
) -> Response {
    let o = match org_for(&st, &p.ui, &org).await {
        Ok(o) => o,
        Err(e) => return fail(e),
    };
    let u = match find(&st, &o, &user).await {
        Ok(u) => u,
        Err(e) => return fail(e),
    };
    let actor = p.ui.actor();
    let back = format!("/ui/orgs/{}/users", seg(&o.slug));
    let done = match action.as_str() {
        "deactivate" | "activate" => {
            users::set_active(&st.core, &actor, &o.id, &u.email, action == "activate").await
        }
        "permission" => {
            let wanted = p.form.get("permission").map(String::as_str).unwrap_or("");
            match wanted.parse::<Permission>() {
                Ok(perm) => users::set_permission(&st.core, &actor, &o.id, &u.email, perm).await,
                Err(e) => Err(e),
            }
        }
        _ => return page::no_such_action("a user"),
    };
    match done {
        Ok(_) => {
            let code = match action.as_str() {
                "deactivate" => "deactivated",
                "activate" => "activated",
                _ => "permission",
            };
            page::see_other(&format!("{back}?notice={code}"))
        }
        Err(e) => {
            let e = ApiError::from(e);
            let x = Extras {
                error: Some(e.message),
                ..Default::default()
            };
            list_page(&st, &p.ui, &o, e.status, &ListQuery::default(), x).await
        }
    }
}
