//! Throttling of failed logins, per key (an account, a client address), stored in the
//! database so that it holds across instances: at most `max_failures` failures in a
//! window; then the key is refused until the window ends.

use chrono::{DateTime, Duration, Utc};
use sea_orm::{ActiveModelTrait, ConnectionTrait, EntityTrait, QuerySelect, Set};

use crate::Result;
use crate::entities::login_failures;

/// How many failures a key may have in a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottlePolicy {
    /// Failures allowed in one window; the next attempt is refused.
    pub max_failures: u32,
    /// How long a window lasts from its first failure.
    pub window: Duration,
}

/// The most characters of a key kept (longer keys are cut: an address or an id fits).
const KEY_CHARS: usize = 128;

fn key_of(key: &str) -> String {
    key.chars().take(KEY_CHARS).collect()
}

/// How long `key` must wait before its next attempt at `now`, if it is throttled.
///
/// # Errors
/// The database failed.
pub async fn throttled(
    conn: &impl ConnectionTrait,
    key: &str,
    policy: &ThrottlePolicy,
    now: DateTime<Utc>,
) -> Result<Option<Duration>> {
    let Some(row) = login_failures::Entity::find_by_id(key_of(key))
        .one(conn)
        .await?
    else {
        return Ok(None);
    };
    let ends = row.window_started_at + policy.window;
    let failures = u32::try_from(row.failures).unwrap_or(u32::MAX);
    Ok((failures >= policy.max_failures && ends > now).then(|| ends - now))
}

/// Counts a failure of `key` at `now` (starting a new window if the last one is over).
///
/// # Errors
/// The database failed.
pub async fn record_failure(
    conn: &impl ConnectionTrait,
    key: &str,
    policy: &ThrottlePolicy,
    now: DateTime<Utc>,
) -> Result<()> {
    let key = key_of(key);
    login_failures::Entity::insert(login_failures::ActiveModel {
        key: Set(key.clone()),
        failures: Set(0),
        window_started_at: Set(now),
    })
    .on_conflict_do_nothing_on([login_failures::Column::Key])
    .exec(conn)
    .await?;
    let row = login_failures::Entity::find_by_id(key.clone())
        .lock_exclusive()
        .one(conn)
        .await?
        .ok_or_else(|| crate::Error::Corrupt(format!("login failures of `{key}` vanished")))?;
    let over = row.window_started_at + policy.window <= now;
    let failures = if over {
        1
    } else {
        row.failures.saturating_add(1)
    };
    let mut row: login_failures::ActiveModel = row.into();
    row.failures = Set(failures);
    if over {
        row.window_started_at = Set(now);
    }
    row.update(conn).await?;
    Ok(())
}

/// Forgets `key`'s failures (after a successful login).
///
/// # Errors
/// The database failed.
pub async fn clear_failures(conn: &impl ConnectionTrait, key: &str) -> Result<()> {
    login_failures::Entity::delete_by_id(key_of(key))
        .exec(conn)
        .await?;
    Ok(())
}
