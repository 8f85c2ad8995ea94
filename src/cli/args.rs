//! Argument definitions (clap derive), apart from what runs them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::Dur;

#[derive(Parser, Debug)]
#[command(
    name = "rekey",
    version,
    about = "OAuth authorization server, credential vault and rotation console"
)]
pub struct Cli {
    /// Configuration file (default ./rekey.toml when present).
    #[arg(long, global = true, env = "REKEY_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Database URL: sqlite:PATH or postgres://… [setting database_url, env REKEY_DATABASE_URL]
    #[arg(long = "database", global = true, value_name = "URL")]
    pub database: Option<String>,
    /// Data directory for the SQLite file and generated master key [setting data_dir, env REKEY_DATA_DIR; default ./rekey-data]
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Print exactly one JSON document on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the HTTP server.
    #[command(after_help = SETTINGS_HELP)]
    Serve(ServeArgs),
    /// Apply database migrations and exit.
    Migrate,
    /// Orgs (tenants).
    #[command(subcommand)]
    Org(OrgCmd),
    /// Users of an org.
    #[command(subcommand)]
    User(UserCmd),
    /// Platform operators (act across orgs).
    #[command(subcommand)]
    Operator(OperatorCmd),
    /// Master keys and re-encryption.
    #[command(subcommand)]
    Keyring(KeyringCmd),
    /// The audit log.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// OAuth applications of an org.
    #[command(subcommand)]
    App(AppCmd),
    /// Org access keys (the `Accesskey` header).
    #[command(subcommand)]
    Key(KeyCmd),
    /// Machine-to-machine clients (client credentials).
    #[command(subcommand)]
    M2m(M2mCmd),
    /// The catalog of connector kinds.
    #[command(subcommand)]
    Connector(ConnectorCmd),
    /// Connections to outside systems.
    #[command(subcommand)]
    Connection(ConnectionCmd),
    /// Signed webhooks: receivers of the events a person must act on.
    #[command(subcommand)]
    Webhook(WebhookCmd),
    /// Platform service keys (read connection credentials).
    #[command(subcommand)]
    ServiceKey(ServiceKeyCmd),
    /// Rotate a credential now (`--dry-run` shows the plan and changes nothing).
    Rotate(RotateArgs),
    /// Rotations: list, show, cancel, retry.
    #[command(subcommand)]
    Rotation(RotationCmd),
    /// Every credential rekey issues or holds.
    #[command(subcommand)]
    Credentials(CredentialsCmd),
    /// Incident response: campaigns that rotate or revoke everything in a
    /// scope, and what a leaked value unlocks.
    #[command(subcommand)]
    Incident(IncidentCmd),
    /// Deliveries: a connection that receives the org's People changes,
    /// pausing through a broken credential and catching up by itself.
    #[command(subcommand)]
    Delivery(DeliveryCmd),
    /// The outbox of People changes that deliveries carry.
    #[command(subcommand)]
    Outbox(OutboxCmd),
}

/// The connection a delivery verb acts on.
#[derive(Args, Debug)]
pub struct DeliveryOf {
    #[arg(long)]
    pub org: String,
    /// The connection's name.
    #[arg(long)]
    pub connection: String,
}

#[derive(Subcommand, Debug)]
pub enum DeliveryCmd {
    /// Deliver the org's People changes to a connection, from now on
    /// (history is a backfill). On a delivery that exists, changes its
    /// filter and batch and keeps its cursor.
    Enable {
        #[command(flatten)]
        of: DeliveryOf,
        /// Only records whose email is at this domain (repeatable).
        #[arg(long = "filter-domain")]
        filter_domain: Vec<String>,
        /// Records per batch (1 to 1000; default 500).
        #[arg(long)]
        batch: Option<i64>,
    },
    /// Stop delivering to the connection; its cursor is forgotten.
    Disable {
        #[command(flatten)]
        of: DeliveryOf,
    },
    /// Hold delivery until `resume`; records keep accumulating.
    Pause {
        #[command(flatten)]
        of: DeliveryOf,
    },
    /// Resume a paused delivery, or retry a parked batch or a failure now.
    Resume {
        #[command(flatten)]
        of: DeliveryOf,
    },
    /// State, cursor, lag, last error and backfill progress.
    Status {
        #[command(flatten)]
        of: DeliveryOf,
    },
    /// Every delivery of an org.
    List {
        #[arg(long)]
        org: String,
    },
    /// Replay a window of the outbox to the connection, in the background,
    /// with progress. Without --since or --from-seq, everything kept.
    Backfill {
        #[command(flatten)]
        of: DeliveryOf,
        /// RFC 3339 time, or a duration meaning "that long ago" (1h, 7d).
        #[arg(long, conflicts_with = "from_seq")]
        since: Option<String>,
        /// The first sequence to send.
        #[arg(long = "from-seq")]
        from_seq: Option<i64>,
        /// Count what would be sent; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Start it and return; `delivery status` shows its progress.
        #[arg(long)]
        detach: bool,
    },
    /// Stop the running backfill.
    CancelBackfill {
        #[command(flatten)]
        of: DeliveryOf,
    },
}

#[derive(Subcommand, Debug)]
pub enum OutboxCmd {
    /// Keep only the latest state of each record among those every
    /// delivery has passed and older than `outbox_retention`.
    Compact,
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("what").required(true).multiple(false)
    .args(["secret_stdin", "key", "app", "m2m", "connection"])))]
pub struct BlastArgs {
    /// Read the value from standard input (never from the command line).
    #[arg(long)]
    pub secret_stdin: bool,
    /// An org access key, by name (with --org).
    #[arg(long, requires = "org")]
    pub key: Option<String>,
    /// An application's client secret (with --org).
    #[arg(long, requires = "org")]
    pub app: Option<String>,
    /// A machine client's secret (with --org).
    #[arg(long, requires = "org")]
    pub m2m: Option<String>,
    /// A connection's credential (with --org).
    #[arg(long, requires = "org")]
    pub connection: Option<String>,
    #[arg(long)]
    pub org: Option<String>,
    /// Kill it now (audited): revoke, regenerate or rotate, as `kill` says.
    #[arg(long)]
    pub revoke: bool,
}

#[derive(Subcommand, Debug)]
pub enum IncidentCmd {
    /// Plan a campaign and start it (`--dry-run`: print the plan, change nothing).
    Start {
        /// Why: recorded with the campaign, its audit events and every
        /// revocation it makes.
        #[arg(long)]
        reason: String,
        /// `org:SLUG` or `all`.
        #[arg(long)]
        scope: String,
        /// Only connections of this kind; repeat for several.
        #[arg(long = "kind", value_name = "KIND")]
        kinds: Vec<String>,
        /// Also revoke the org's application tokens and regenerate its
        /// application, machine-client and access-key secrets.
        #[arg(long)]
        include_own: bool,
        /// How long old secrets keep working beside the new ones (default
        /// none). It is also the cut-over window of the campaign's
        /// connection rotations: the previous credential goes once the
        /// overlap has passed and every reader has moved; readers get one
        /// more hour (the rotation's deadline) before it stops `stalled`.
        #[arg(long, value_name = "DURATION")]
        overlap: Option<Dur>,
        /// At that deadline, retire the previous (leaked) credential even
        /// with readers still on it, naming who breaks, instead of stalling.
        #[arg(long)]
        force_cutover: bool,
        /// After each rotation retires the old credential, end the sessions
        /// the target keeps open with it (Redis: `CLIENT KILL USER`), so no
        /// session opened with the leaked credential outlives it.
        #[arg(long)]
        end_sessions: bool,
        #[arg(long)]
        dry_run: bool,
        /// Run the campaign from here until every item is settled or waits
        /// on a person (progress on stderr).
        #[arg(long)]
        wait: bool,
    },
    /// Counts per status, progress, and what waits on whom; every item,
    /// or one page of them with `--limit`, `--after` or `--item-status`.
    Status {
        id: String,
        /// One page of this many items (1 to 1000), by number, instead of
        /// every item; `--json` then carries `items_total` and `next_after`.
        #[arg(long, value_parser = clap::value_parser!(i64).range(1..=1000))]
        limit: Option<i64>,
        /// The page after this cursor (`next_after` of the page before).
        #[arg(long)]
        after: Option<String>,
        /// Only the items in this status (failed, waiting_person, pending,
        /// acting, done, verified, cancelled); a page, as `--limit` asks.
        #[arg(long, value_name = "STATUS")]
        item_status: Option<String>,
    },
    /// Campaigns, newest first: the newest 200 with every item, or with
    /// --limit or --after a page of them, their items counted, not listed.
    List {
        /// One page of this many campaigns (1 to 1000); `--json` then
        /// answers `{items, total, next_after}`.
        #[arg(long, value_parser = clap::value_parser!(i64).range(1..=1000))]
        limit: Option<i64>,
        /// The page after this cursor (`next_after` of the page before).
        #[arg(long)]
        after: Option<String>,
    },
    /// Stop what has not started.
    Cancel {
        id: String,
        /// Only this item (its rotation too, while it has not changed the
        /// target); `incident retry --item N` starts it again.
        #[arg(long)]
        item: Option<i64>,
    },
    /// Run failed items again (all, or `--item N`, failed or cancelled).
    Retry {
        id: String,
        #[arg(long)]
        item: Option<i64>,
    },
    /// What a leaked value is, whether it is live, what it unlocks, and
    /// the command that kills it (exit 1: not issued or held by this rekey).
    BlastRadius(BlastArgs),
    /// The record for the post-incident review.
    Report {
        id: String,
        #[arg(long, value_parser = ["json", "csv", "md"], default_value = "json")]
        format: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum CredentialsCmd {
    /// Each credential's age, last use, last verification, rotation mode
    /// and next due date, worst first.
    Age {
        /// Only this org's (default: every org's and the platform's own).
        #[arg(long)]
        org: Option<String>,
        /// Only those at least this old (e.g. 90d).
        #[arg(long, value_name = "DURATION")]
        older_than: Option<Dur>,
    },
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("target").required(true).multiple(false)
    .args(["connection", "key", "m2m", "app"])))]
pub struct RotateArgs {
    #[arg(long)]
    pub org: String,
    /// A connection to an outside system.
    #[arg(long)]
    pub connection: Option<String>,
    /// An org access key.
    #[arg(long)]
    pub key: Option<String>,
    /// A machine client's secret.
    #[arg(long)]
    pub m2m: Option<String>,
    /// An application's client secret.
    #[arg(long)]
    pub app: Option<String>,
    /// Print the plan (steps, statements with secrets masked); change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Who reads the credential, and who has not moved to the current
    /// version yet; change nothing.
    #[arg(long)]
    pub preflight: bool,
    /// Run the rotation here and return when it is completed, failed,
    /// stalled, cancelled or waiting for a person (progress on stderr).
    #[arg(long)]
    pub wait: bool,
    /// How long both credentials work before the old one is retired.
    #[arg(long, value_name = "DURATION", default_value = crate::rotation::limits::CUTOVER_WINDOW)]
    pub cutover_window: Dur,
    /// When to stop as `stalled` if the old credential is still in use.
    #[arg(long, value_name = "DURATION", default_value = crate::rotation::limits::DEADLINE)]
    pub deadline: Dur,
    /// Make the change through this connection (same kind, an admin
    /// credential) instead of as the rotated account itself.
    #[arg(long, value_name = "CONN")]
    pub rotate_with: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum RotationCmd {
    /// Rotations of an org, newest first.
    List {
        #[arg(long)]
        org: String,
        #[arg(long)]
        status: Option<String>,
    },
    /// One rotation with its steps.
    Show { id: String },
    /// Stop a rotation that has not finished.
    Cancel { id: String },
    /// Start a failed, stalled or cancelled rotation again.
    Retry { id: String },
    /// End a rotation's cut-over (one past its promotion, or stalled):
    /// retire the previous credential once no reader is left on it.
    Finish {
        id: String,
        /// Retire the previous credential at once, even with readers still
        /// on it (they break; the answer names them).
        #[arg(long)]
        now: bool,
    },
    /// Mark a step of a manual rotation's runbook done.
    Step {
        id: String,
        /// The runbook step's number (1, 2, …).
        #[arg(long, value_name = "N")]
        done: u64,
    },
}

#[derive(Subcommand, Debug)]
pub enum ConnectorCmd {
    /// List connector kinds.
    List,
    /// Show one kind: settings, auth methods, fields, rotation and runbooks.
    Show { kind: String },
    /// Set the OAuth client rekey presents to this kind's provider.
    Configure {
        kind: String,
        #[arg(long)]
        client_id: String,
        /// Read the client secret from standard input.
        #[arg(long, required = true)]
        client_secret_stdin: bool,
    },
}

/// `K=V`.
pub fn key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.to_string()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("expected KEY=VALUE, got {s:?}"))
}

#[derive(Subcommand, Debug)]
pub enum ConnectionCmd {
    /// Create a connection (no credentials yet).
    Create {
        #[arg(long)]
        org: String,
        #[arg(long)]
        kind: String,
        #[arg(long)]
        name: String,
        /// Auth method (default: the kind's first).
        #[arg(long)]
        auth: Option<String>,
        /// A setting, KEY=VALUE; repeat.
        #[arg(long = "setting", value_parser = key_value)]
        settings: Vec<(String, String)>,
        /// Override a provider endpoint (authorize_url, token_url, revoke_url, probe_url, s3_url, iam_url, sts_url, api_url), KEY=URL; repeat.
        #[arg(long = "endpoint", value_parser = key_value)]
        endpoints: Vec<(String, String)>,
    },
    /// List an org's connections.
    List {
        #[arg(long)]
        org: String,
        /// Only this status (connected, needs_reauth, error, rotating, disconnected).
        #[arg(long)]
        status: Option<String>,
        /// Only connections whose scheduled rotation is due.
        #[arg(long)]
        rotation_due: bool,
    },
    /// Show a connection (never a secret).
    Show(NamedRef),
    /// Change settings or endpoint overrides; credentials are untouched.
    Update {
        #[command(flatten)]
        conn: NamedRef,
        #[arg(long = "setting", value_parser = key_value)]
        settings: Vec<(String, String)>,
        #[arg(long = "endpoint", value_parser = key_value)]
        endpoints: Vec<(String, String)>,
        /// Rotate the credential every DURATION (automatic rotations start by
        /// themselves; others are listed as due); 0 turns the schedule off.
        #[arg(long, value_name = "DURATION")]
        rotation_interval: Option<Dur>,
        /// How long a consumer may cache a credential it read (answered
        /// as `refresh_after_s` on every read; 0: read before each use).
        /// A rotation retires the previous credential only after every
        /// such time handed out for it has passed.
        #[arg(long, value_name = "DURATION")]
        refresh_after: Option<Dur>,
    },
    /// Delete a connection and its credentials.
    Delete(NamedRef),
    /// Run the connection's probe and record the outcome.
    Test(NamedRef),
    /// Start the OAuth flow: prints the provider URL to open.
    Authorize(NamedRef),
    /// The OAuth flow again; settings stay as they are.
    Reauthenticate(NamedRef),
    /// Revoke at the provider (when it can), destroy the tokens, mark disconnected.
    RevokeAuthorization(NamedRef),
    /// Store a credential field (read from stdin), shape-checked and probed first.
    SetCredential {
        #[command(flatten)]
        conn: NamedRef,
        /// The field (e.g. password, api_key, private_key); repeat for several, one stdin line each.
        #[arg(long = "field", required = true)]
        fields: Vec<String>,
        /// Read the value(s) from standard input.
        #[arg(long, required = true)]
        value_stdin: bool,
        /// Store even if the probe fails.
        #[arg(long)]
        force: bool,
    },
    /// Use this connection's own OAuth client at the provider.
    SetClient {
        #[command(flatten)]
        conn: NamedRef,
        #[arg(long)]
        client_id: String,
        #[arg(long, required = true)]
        client_secret_stdin: bool,
    },
    /// Refresh an OAuth connection's tokens now.
    Refresh(NamedRef),
    /// The connection's activity log, newest first: authorizations,
    /// refreshes, probes, rotations, status changes, deliveries.
    Activity {
        #[command(flatten)]
        conn: NamedRef,
        /// RFC 3339 time, or a duration meaning "that long ago" (2h, 7d).
        #[arg(long)]
        since: Option<String>,
        /// Only this type (authorization, refresh, probe, rotation, delivery,
        /// pause, resume, backfill, error, settings, credential, status); repeat.
        #[arg(long = "type")]
        types: Vec<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// The page after this cursor (`next` of the page before).
        #[arg(long)]
        after: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum WebhookCmd {
    /// Add a receiver of signed events; prints its signing secret once.
    Create {
        #[arg(long)]
        org: String,
        /// Where events are POSTed (http or https).
        #[arg(long)]
        url: String,
        /// An event to send (connection.needs_reauth, connection.recovered,
        /// delivery.paused, delivery.caught_up, rotation.due, rotation.failed,
        /// rotation.stalled, incident.item_waiting, credential.expiring); repeat.
        #[arg(long = "event")]
        events: Vec<String>,
    },
    /// List an org's webhooks (never a secret).
    List {
        #[arg(long)]
        org: String,
    },
    /// Delete a webhook, its secret and its deliveries.
    Delete {
        #[arg(long)]
        org: String,
        #[arg(long)]
        id: String,
    },
    /// Deliveries, newest first: state, attempts, the receiver's last answer.
    Deliveries {
        #[arg(long)]
        org: String,
        /// Only this webhook's.
        #[arg(long)]
        webhook: Option<String>,
        /// Only this state (queued, retrying, delivered, dead).
        #[arg(long)]
        state: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
    /// Send a delivery again (dead, delivered or waiting), as a new attempt.
    Replay {
        #[arg(long)]
        org: String,
        #[arg(long)]
        delivery: String,
    },
    /// Send a `ping` event to a webhook now and show how it answered.
    Test {
        #[arg(long)]
        org: String,
        #[arg(long)]
        id: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum ServiceKeyCmd {
    /// Create a service key; prints it once.
    Create {
        #[arg(long)]
        name: String,
    },
    /// List service keys.
    List,
    /// Revoke a service key.
    Revoke {
        #[arg(long)]
        name: String,
    },
}

/// Names a key or machine client: `--org SLUG --name NAME`.
#[derive(Args, Debug)]
pub struct NamedRef {
    #[arg(long)]
    pub org: String,
    #[arg(long)]
    pub name: String,
}

#[derive(Subcommand, Debug)]
pub enum KeyCmd {
    /// Create an access key; prints it once.
    Create {
        #[arg(long)]
        org: String,
        #[arg(long)]
        name: String,
        #[arg(long, value_parser = ["read", "read_write"])]
        scope: String,
        /// The key stops working after this long (e.g. 90d).
        #[arg(long, value_name = "DURATION")]
        expires: Option<Dur>,
    },
    /// List keys (never the keys themselves).
    List {
        #[arg(long)]
        org: String,
    },
    /// A new key under the same name; the old one dies at once unless --overlap.
    Reset {
        #[command(flatten)]
        key: NamedRef,
        /// Keep the old key valid this long so callers can switch.
        #[arg(long, value_name = "DURATION")]
        overlap: Option<Dur>,
    },
    /// Revoke a key (and any overlapping previous key) at once.
    Revoke(NamedRef),
    /// End a reset's overlap now: the previous key stops working, the
    /// current one goes on (a leaked previous key).
    EndOverlap(NamedRef),
    /// Set when the key is due for rotation (`credentials age` flags it).
    Update {
        #[command(flatten)]
        key: NamedRef,
        /// Due this long after the key was set (e.g. 90d; 0 turns it off).
        #[arg(long, value_name = "DURATION")]
        rotation_interval: Dur,
    },
}

#[derive(Subcommand, Debug)]
pub enum M2mCmd {
    /// Create a machine client; prints the client id and secret once.
    Create {
        #[arg(long)]
        org: String,
        #[arg(long)]
        name: String,
        #[arg(long, value_parser = ["read", "read_write"])]
        scope: String,
        /// Act capped by this user's permission; stop when the user is deactivated.
        #[arg(long)]
        user: Option<String>,
        /// Access token lifetime (default 1h).
        #[arg(long, value_name = "DURATION")]
        access_token_ttl: Option<Dur>,
        /// May introspect the org's other clients' tokens (a resource server);
        /// without it a client introspects only its own tokens.
        #[arg(long)]
        introspect: bool,
    },
    /// List machine clients.
    List {
        #[arg(long)]
        org: String,
    },
    /// A new secret; regenerating immediately invalidates the old secret unless --overlap.
    RegenerateSecret {
        #[command(flatten)]
        client: NamedRef,
        #[arg(long, value_name = "DURATION")]
        overlap: Option<Dur>,
        /// Also invalidate every access token issued so far (after a leak).
        #[arg(long)]
        revoke_tokens: bool,
    },
    /// End a regenerated secret's overlap now: the previous secret stops
    /// working, the current one goes on.
    EndOverlap(NamedRef),
    /// Delete a machine client and its tokens.
    Delete(NamedRef),
    /// Refuse the client and its tokens until activated.
    Deactivate(NamedRef),
    /// Accept the client again.
    Activate(NamedRef),
    /// Set when the secret is due for rotation (`credentials age` flags it).
    Update {
        #[command(flatten)]
        client: NamedRef,
        /// Due this long after the secret was set (e.g. 90d; 0 turns it off).
        #[arg(long, value_name = "DURATION")]
        rotation_interval: Dur,
    },
}

/// Names an application: `--org SLUG --name NAME`.
#[derive(Args, Debug)]
pub struct AppRef {
    #[arg(long)]
    pub org: String,
    /// The application's name (its id or client id are accepted too).
    #[arg(long)]
    pub name: String,
}

#[derive(Args, Debug, Default)]
pub struct LifetimeArgs {
    /// Access token lifetime (default 1h).
    #[arg(long, value_name = "DURATION")]
    pub access_token_ttl: Option<Dur>,
    /// Refresh token lifetime (default 1h).
    #[arg(long, value_name = "DURATION")]
    pub refresh_token_ttl: Option<Dur>,
    /// How long a rotated refresh token may be presented again and get the
    /// same successor back (default 0: any reuse revokes the authorization).
    #[arg(long, value_name = "DURATION")]
    pub refresh_grace: Option<Dur>,
}

#[derive(Subcommand, Debug)]
pub enum AppCmd {
    /// Create an application; prints the client id and secret once.
    Create {
        #[arg(long)]
        org: String,
        #[arg(long)]
        name: String,
        #[arg(long, value_parser = ["read", "read_write"])]
        scope: String,
        /// Exact callback URL (https, or http on loopback); repeat for several.
        #[arg(long = "callback", required = true)]
        callbacks: Vec<String>,
        #[command(flatten)]
        lifetimes: LifetimeArgs,
    },
    /// List an org's applications.
    List {
        #[arg(long)]
        org: String,
    },
    /// Show one application.
    Show(AppRef),
    /// Change name, scope, callbacks or lifetimes.
    Update {
        #[command(flatten)]
        app: AppRef,
        /// New name.
        #[arg(long)]
        rename: Option<String>,
        #[arg(long, value_parser = ["read", "read_write"])]
        scope: Option<String>,
        /// Replaces the callbacks; repeat for several.
        #[arg(long = "callback")]
        callbacks: Vec<String>,
        #[command(flatten)]
        lifetimes: LifetimeArgs,
        /// The client secret is due this long after it was set (e.g. 90d;
        /// 0 turns it off); `credentials age` flags it.
        #[arg(long, value_name = "DURATION")]
        rotation_interval: Option<Dur>,
    },
    /// Refuse the application's tokens until activated again (nothing is destroyed).
    Deactivate(AppRef),
    /// Accept the application's tokens again.
    Activate(AppRef),
    /// Delete the application with every code, token and authorization.
    Delete(AppRef),
    /// List authorizations with their refresh-token status.
    Authorizations(AppRef),
    /// Revoke one authorization (its refresh token and access tokens).
    RevokeAuthorization {
        #[command(flatten)]
        app: AppRef,
        /// The authorization id (from `app authorizations`).
        #[arg(long)]
        id: String,
    },
    /// A new client secret; the old one stops at once unless --overlap.
    RegenerateSecret {
        #[command(flatten)]
        app: AppRef,
        /// Keep the old secret valid this long (e.g. 1h) so clients can switch.
        #[arg(long, value_name = "DURATION")]
        overlap: Option<Dur>,
    },
    /// End a regenerated secret's overlap now: the previous secret stops
    /// working, the current one goes on.
    EndOverlap(AppRef),
}

/// Every setting, as `rekey.toml` key / environment variable (flags above
/// where there is one). Durations: 30s, 15m, 1h, 90d or seconds.
const SETTINGS_HELP: &str = "Settings (rekey.toml key / environment variable; flags override both):
  listen / REKEY_LISTEN                      address to bind [127.0.0.1:8080]
  database_url / REKEY_DATABASE_URL          sqlite:PATH or postgres://… [sqlite:{data_dir}/rekey.db]
  public_url / REKEY_PUBLIC_URL              where clients reach rekey; the OAuth issuer [http://{listen}]
  data_dir / REKEY_DATA_DIR                  SQLite file and generated key file [./rekey-data]
  master_key / REKEY_MASTER_KEY              base64 32-byte keys, comma-separated, newest first
  master_key_file / REKEY_MASTER_KEY_FILE    key file used without master_key [{data_dir}/master.key]
  log / REKEY_LOG                            log filter [info]
  log_format / REKEY_LOG_FORMAT              text or json [text]
  body_limit / REKEY_BODY_LIMIT              largest request body, bytes [1048576]
  argon2_memory_kib, argon2_iterations, argon2_parallelism / REKEY_ARGON2_…  password hashing cost [19456, 2, 1]
  session_ttl / REKEY_SESSION_TTL            admin session lifetime [12h]
  login_max_failures_per_account / REKEY_LOGIN_MAX_FAILURES_PER_ACCOUNT  [5]
  login_max_failures_per_ip / REKEY_LOGIN_MAX_FAILURES_PER_IP            [50]
  login_window / REKEY_LOGIN_WINDOW          failed-login window [15m]
  trust_forwarded_for / REKEY_TRUST_FORWARDED_FOR  client IP from X-Forwarded-For [false]
  trusted_proxies / REKEY_TRUSTED_PROXIES    proxies whose X-Forwarded-For is believed [127.0.0.0/8,::1]
  password_hash_concurrency / REKEY_PASSWORD_HASH_CONCURRENCY  hashes at once [cores]
  password_hash_queue / REKEY_PASSWORD_HASH_QUEUE  waiting checks, then 503 [2 x concurrency]
  header_read_timeout / REKEY_HEADER_READ_TIMEOUT  time to send headers; keep-alive idle [10s]
  idle_timeout / REKEY_IDLE_TIMEOUT          nothing read or written: close [60s]
  request_timeout / REKEY_REQUEST_TIMEOUT    longest request, then 408 [60s]
  max_connections / REKEY_MAX_CONNECTIONS    connections served at once [1024]
  authorization_code_ttl / REKEY_AUTHORIZATION_CODE_TTL  at most 60s [60s]
  keeper_interval / REKEY_KEEPER_INTERVAL    refresh keeper period; 0 turns it off [10s]
  jobs_interval / REKEY_JOBS_INTERVAL        how often due jobs (rotations) are run; 0 turns it off [10s]
  egress_deny / REKEY_EGRESS_DENY            private, loopback: refused outbound [none]
  egress_allow / REKEY_EGRESS_ALLOW          CIDRs exempt from egress_deny [none]
  m2m_token_ttl_max / REKEY_M2M_TOKEN_TTL_MAX  longest machine access token [1h]
  target_connect_timeout / REKEY_TARGET_CONNECT_TIMEOUT  login to a database or Redis target [10s]
  target_statement_timeout / REKEY_TARGET_STATEMENT_TIMEOUT  each statement or command there [30s]
Durations: 30s, 15m, 1h, 90d, or a bare number of seconds.";

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on [setting listen, env REKEY_LISTEN; default 127.0.0.1:8080]
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<String>,
    /// URL clients reach rekey at; the OAuth issuer [setting public_url, env REKEY_PUBLIC_URL; default http://LISTEN]
    #[arg(long, value_name = "URL")]
    pub public_url: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum OrgCmd {
    /// Create an org.
    Create {
        slug: String,
        #[arg(long)]
        name: Option<String>,
    },
    /// List orgs.
    List,
}

#[derive(Subcommand, Debug)]
pub enum UserCmd {
    /// Create a user (a strong password is generated and printed once unless --password-stdin).
    Create {
        #[arg(long)]
        org: String,
        #[arg(long)]
        email: String,
        #[arg(long, value_parser = ["read", "read_write"])]
        permission: String,
        /// May log in to the admin API and console.
        #[arg(long)]
        admin: bool,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List an org's users.
    List {
        #[arg(long)]
        org: String,
    },
    /// Deactivate a user: their authorizations become Invalid at once.
    Deactivate(UserRef),
    /// Activate a user again.
    Activate(UserRef),
    /// Change a user's permission (takes effect on every token at once).
    SetPermission {
        #[command(flatten)]
        user: UserRef,
        #[arg(long, value_parser = ["read", "read_write"])]
        permission: String,
    },
}

#[derive(Args, Debug)]
pub struct UserRef {
    #[arg(long)]
    pub org: String,
    #[arg(long)]
    pub email: String,
}

#[derive(Subcommand, Debug)]
pub enum OperatorCmd {
    /// Create a platform operator.
    Create {
        #[arg(long)]
        email: String,
        #[arg(long)]
        password_stdin: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum KeyringCmd {
    /// Count ciphertexts per master key.
    Status,
    /// Re-encrypt every ciphertext under the newest key (resumable).
    Rotate {
        /// First generate a new key at the front of the key file (key-file setups only).
        #[arg(long)]
        generate: bool,
        /// Ciphertexts per transaction.
        #[arg(long, default_value_t = 500)]
        batch_size: i64,
        /// Pause between batches, to spare a busy database (e.g. 100ms).
        #[arg(long, value_name = "DURATION")]
        pause: Option<Dur>,
        /// When done, remove the keys no ciphertext uses from the key file.
        #[arg(long)]
        remove_old: bool,
    },
    /// Decrypt every ciphertext and report any that do not open.
    Verify,
    /// Print a fresh random master key (base64), for REKEY_MASTER_KEY.
    Generate,
}

#[derive(Subcommand, Debug)]
pub enum AuditCmd {
    /// List events, newest first.
    List {
        #[arg(long)]
        org: Option<String>,
        /// RFC 3339 time, or a duration meaning "that long ago" (1h, 7d).
        #[arg(long)]
        since: Option<String>,
        /// Only actions starting with this (e.g. `user.`).
        #[arg(long)]
        action: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
    /// Check the hash chain; exits 1 naming the first broken event.
    Verify,
}

#[cfg(test)]
mod readme {
    use clap::error::ErrorKind;
    use clap::Parser;

    /// Every `rekey …` line of the README's `sh` blocks parses as the CLI
    /// reads it: the blocks are meant to be pasted, so a synopsis
    /// (`[--overlap 1h]`), a flag that was renamed, or `a | b` alternatives
    /// fail here, not in a new user's shell. (Parsed, not run: the lines
    /// act on a live store; `"$ID"` stands for an id the reader has.)
    #[test]
    fn the_readmes_commands_parse() {
        let text = include_str!("../../README.md");
        let mut in_sh = false;
        let (mut checked, mut bad) = (0, Vec::new());
        let mut joined = String::new();
        for (i, line) in text.lines().enumerate() {
            if line.starts_with("```") {
                in_sh = line.trim() == "```sh";
                continue;
            }
            if !in_sh {
                continue;
            }
            // A continued line is read with the next.
            if let Some(head) = line.strip_suffix('\\') {
                joined.push_str(head);
                continue;
            }
            let full = std::mem::take(&mut joined) + line;
            let Some(words) = shlex::split(&full) else {
                bad.push(format!("line {}: unbalanced quotes: {full}", i + 1));
                continue;
            };
            // The command is what follows `rekey` (after any VAR=value),
            // up to a comment, a redirection or a pipe.
            let Some(at) = words.iter().position(|w| w == "rekey") else {
                continue;
            };
            if words[..at].iter().any(|w| !w.contains('=')) {
                continue;
            }
            let args: Vec<&str> = words[at..]
                .iter()
                .map(String::as_str)
                .take_while(|w| {
                    !w.starts_with('#') && !["<", ">", "|", "&", "&&", ";", "2>&1"].contains(w)
                })
                .collect();
            checked += 1;
            if let Err(e) = super::Cli::try_parse_from(&args) {
                if !matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                    bad.push(format!("line {}: {full}\n  {}", i + 1, e.kind()));
                }
            }
        }
        assert!(checked > 50, "only {checked} commands found in the README");
        assert!(
            bad.is_empty(),
            "README commands the CLI refuses:\n{}",
            bad.join("\n")
        );
    }
}
