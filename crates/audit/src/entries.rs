//! Recording entries and reading them back by subject.

use chrono::{DateTime, Datelike, SubsecRound, Utc};
use sea_orm::{
    ActiveValue::NotSet, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter,
    QueryOrder, QuerySelect,
};
use serde::Serialize;
use serde_json::Value;

use crate::entities::entries;
use crate::error::{Error, Invalid, Result};
use crate::types::{Action, Actor, Subject};

/// The most bytes an entry's data may take as JSON text: what MySQL's `TEXT` holds, so
/// that an entry fits on every backend.
pub const MAX_DATA_BYTES: usize = 65_535;

/// An entry to record.
#[derive(Debug, Clone)]
pub struct NewEntry {
    /// Who acted.
    pub actor: Actor,
    /// What they did.
    pub action: Action,
    /// What they did it to.
    pub subject: Subject,
    /// When it happened. Stored to the microsecond (finer digits are dropped), between
    /// the years 1000 and 9999.
    pub occurred_at: DateTime<Utc>,
    /// Whatever else is worth keeping, as JSON (at most [`MAX_DATA_BYTES`] as text).
    pub data: Value,
}

/// A recorded entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// Its id. Ids grow in the order entries were recorded.
    pub id: i64,
    /// Who acted.
    pub actor: Actor,
    /// What they did.
    pub action: Action,
    /// What they did it to.
    pub subject: Subject,
    /// When it happened, to the microsecond.
    pub occurred_at: DateTime<Utc>,
    /// The data recorded with it.
    pub data: Value,
}

/// Appends `entry` to the log and returns it as stored, with its id.
///
/// # Errors
/// [`Error::Invalid`] if `occurred_at` is outside the years 1000–9999 or `data` is
/// larger than [`MAX_DATA_BYTES`] as JSON; [`Error::Database`] otherwise.
pub async fn record(db: &impl ConnectionTrait, entry: &NewEntry) -> Result<Entry> {
    let data = entry.data.to_string();
    if data.len() > MAX_DATA_BYTES {
        return Err(Invalid("data must be at most 65535 bytes as JSON").into());
    }
    let mut row = entries::Model {
        id: 0,
        actor: entry.actor.as_str().to_owned(),
        action: entry.action.as_str().to_owned(),
        subject: entry.subject.as_str().to_owned(),
        occurred_at: storable_instant(entry.occurred_at)?,
        data,
    };
    let mut insert = row.clone().into_active_model();
    insert.id = NotSet;
    row.id = entries::Entity::insert(insert)
        .exec(db)
        .await?
        .last_insert_id;
    // Built from the row as stored, so it equals what `entries_for` reads back.
    to_entry(row)
}

/// The first `limit` entries about `subject` with an id above `after` (the cursor of
/// the page before), oldest first.
///
/// # Errors
/// [`Error::Database`], or [`Error::Corrupt`] for a row that breaks invariants.
pub async fn entries_for(
    db: &impl ConnectionTrait,
    subject: &Subject,
    after: Option<i64>,
    limit: u64,
) -> Result<Vec<Entry>> {
    // PostgreSQL's LIMIT is a signed 64-bit integer.
    let limit = limit.min(i64::MAX.unsigned_abs());
    let mut query = entries::Entity::find().filter(entries::Column::Subject.eq(subject.as_str()));
    if let Some(after) = after {
        query = query.filter(entries::Column::Id.gt(after));
    }
    query
        .order_by_asc(entries::Column::Id)
        .limit(limit)
        .all(db)
        .await?
        .into_iter()
        .map(to_entry)
        .collect()
}

/// `at` as every backend stores it: to the microsecond, within MySQL's `DATETIME` range.
fn storable_instant(at: DateTime<Utc>) -> Result<DateTime<Utc>, Invalid> {
    if !(1000..=9999).contains(&at.year()) {
        return Err(Invalid(
            "occurred_at must be between the years 1000 and 9999",
        ));
    }
    Ok(at.trunc_subsecs(6))
}

fn to_entry(row: entries::Model) -> Result<Entry> {
    let corrupt = |what: &str| Error::Corrupt(format!("entry {}: {what}", row.id));
    Ok(Entry {
        id: row.id,
        actor: Actor::parse(&row.actor).map_err(|_| corrupt("bad actor"))?,
        action: Action::parse(&row.action).map_err(|_| corrupt("bad action"))?,
        subject: Subject::parse(&row.subject).map_err(|_| corrupt("bad subject"))?,
        occurred_at: row.occurred_at,
        data: serde_json::from_str(&row.data).map_err(|_| corrupt("data is not JSON"))?,
    })
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn instants_are_kept_to_the_microsecond_within_mysqls_range() {
        let at = Utc.with_ymd_and_hms(2026, 11, 22, 10, 11, 12).unwrap()
            + chrono::Duration::nanoseconds(123_456_789);
        assert_eq!(
            storable_instant(at).unwrap().timestamp_subsec_nanos(),
            123_456_000
        );
        let first = Utc.with_ymd_and_hms(1000, 1, 1, 0, 0, 0).unwrap();
        let last = Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap();
        assert!(storable_instant(first).is_ok());
        assert!(storable_instant(last).is_ok());
        for bad in [
            first - chrono::Duration::seconds(1),
            last + chrono::Duration::seconds(1),
        ] {
            assert!(storable_instant(bad).is_err(), "{bad}");
        }
    }
}
