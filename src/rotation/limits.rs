//! The one home of the rotation engine's limits and defaults: every place
//! that needs one names it from here, so a change is made once.

/// Default cut-over window: how long both credentials work after the new
/// one is promoted before the old one may be retired. Ten minutes covers a
/// consumer that re-reads its credential every few minutes (connection
/// pools, cron jobs) without keeping a leaked value alive for long.
pub const CUTOVER_WINDOW_MS: i64 = 10 * 60_000;
pub const CUTOVER_WINDOW: &str = "10m";

/// Default time a consumer may cache a credential it read (the answer's
/// `refresh_after_s`, set per connection with `--refresh-after`). A
/// previous version is retired only once every `refresh_after` handed out
/// for it has passed, so this is also the least a cut-over waits after the
/// last read of the old version: five minutes spares the endpoint a read
/// per use (a pool, a hot loop) while keeping a leaked value alive only
/// minutes past its rotation.
pub const REFRESH_AFTER_MS: i64 = 5 * 60_000;
/// Longest `refresh_after` a connection may set: every cached copy holds
/// the previous credential alive that long after a rotation.
pub const MAX_REFRESH_AFTER_MS: i64 = 3_600_000;

/// How often a waiting cut-over asks the target again who is still on the
/// old credential (AWS last-used): the target tells rekey nothing when that
/// changes, unlike a reader, whose re-read wakes the cut-over at once.
pub const TARGET_LOOK_MS: i64 = 30_000;

/// Default deadline of a rotation: at it, a cut-over still waiting on a
/// reader stops as `stalled` (breaking no one) and a person decides. A day
/// lets a nightly consumer move on its own.
pub const DEADLINE_MS: i64 = 24 * 3_600_000;
pub const DEADLINE: &str = "24h";

/// An incident's rotations stop waiting much sooner: the old credential is
/// presumed leaked, so after the overlap the campaign gives readers one
/// hour to move before it stops `stalled` (or, with `--force-cutover`,
/// retires the old credential and names who breaks).
pub const INCIDENT_GRACE_MS: i64 = 3_600_000;

/// How late a use of one of rekey's own secrets may reach the database:
/// each instance writes the uses it noted every `oauth::usage::FLUSH`, and
/// twice that allows for a slow write. The cut-over of an access key or a
/// client secret counts the previous secret unused only once no use has
/// been reported for the window plus this.
pub const USE_REPORT_LAG_MS: i64 = 2 * crate::oauth::usage::FLUSH.as_millis() as i64;

/// Longest overlap (and cut-over window) a person may choose: beyond a
/// month a "rotated" secret is not really rotated.
pub const MAX_OVERLAP_MS: i64 = 30 * 86_400_000;

/// How long a rotation step may run before another instance may take the
/// job over, unless its holder renews it (it does, every third of it, while
/// the step runs — `crate::jobs::lease`).
pub const LEASE_MS: i64 = 60_000;

/// Longest one step may take, whatever the target does (a tarpit that
/// accepts and never answers, a slow server): past it the step is retried
/// with backoff and its slot freed for other rotations. AWS `settle` polls
/// STS for up to two minutes, so the budget is above that.
pub const STEP_BUDGET: std::time::Duration = std::time::Duration::from_secs(180);

/// Rotations one instance runs at once: as many as one host may take
/// ([`PER_HOST`]). Most of a rotation's time is waiting (on the target,
/// on a commit), and the group-commit writer's batches grow with the
/// rotations in flight: 64 left PostgreSQL committing 3.2 small
/// transactions a rotation and capped a burst at 170-200/s; 128 takes
/// 245-260/s (`cargo bench --bench rotation`).
pub const PARALLEL: usize = 128;

/// Rotations acting at once on one provider host (an API, a Redis server),
/// across every rotation, campaign and instance: each holds a connection
/// to the target while it acts.
pub const PER_HOST: i64 = 128;
/// The same for database servers, whose connection limits are small
/// (PostgreSQL's `max_connections` is 100 by default): rotations must not
/// take a database's last connections from the applications that use it.
pub const PER_DATABASE_HOST: i64 = 16;

/// The cap of a host named `kind:host` (`incident::plan::host_of`).
pub fn per_host(host: &str) -> i64 {
    match host.split(':').next() {
        Some("postgres" | "mysql" | "redshift" | "snowflake") => PER_DATABASE_HOST,
        _ => PER_HOST,
    }
}

/// Due scheduled rotations one pass of the scheduler looks at: the earliest
/// due, taken in turn across orgs (`rotation::schedule`).
pub const SCHEDULE_BATCH: i64 = 500;
/// Scheduled rotations one pass starts for one org: the rest wait for the
/// next pass, so one org's backlog does not fill the pass.
pub const SCHEDULE_PER_ORG: i64 = 32;
/// Scheduled rotations one pass starts against one target host.
pub const SCHEDULE_PER_HOST: usize = 4;
