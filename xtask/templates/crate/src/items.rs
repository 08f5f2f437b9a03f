//! Items: add one, read one, list them.

use chrono::{DateTime, Utc};
use sea_orm::{ActiveModelTrait, ConnectionTrait, EntityTrait, QueryOrder, QuerySelect, Set};

use crate::entities::items;
use crate::{Error, Invalid, Result};

/// An item's name: 1 to 200 characters, not blank, no control characters, surrounding
/// whitespace removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemName(String);

impl ItemName {
    /// The most characters a name may have.
    pub const MAX_CHARS: usize = 200;

    /// Checks and trims `name`.
    ///
    /// # Errors
    /// The name is blank, too long or holds a control character.
    pub fn parse(name: &str) -> Result<Self, Invalid> {
        let name = name.trim();
        if name.is_empty() {
            return Err(Invalid("must not be blank"));
        }
        if name.chars().count() > Self::MAX_CHARS {
            return Err(Invalid("must be at most 200 characters"));
        }
        if name.chars().any(char::is_control) {
            return Err(Invalid("must not contain control characters"));
        }
        Ok(Self(name.to_owned()))
    }

    /// The name as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A stored item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// Ids grow in the order items were added.
    pub id: i64,
    /// Its name.
    pub name: ItemName,
    /// When it was added.
    pub created_at: DateTime<Utc>,
}

impl TryFrom<items::Model> for Item {
    type Error = Error;

    fn try_from(row: items::Model) -> Result<Self> {
        let name = ItemName::parse(&row.name)
            .map_err(|err| Error::Corrupt(format!("item {}: name {err}", row.id)))?;
        Ok(Self {
            id: row.id,
            name,
            created_at: row.created_at,
        })
    }
}

/// Adds an item named `name`, created at `now`.
///
/// # Errors
/// The database failed.
pub async fn add_item(conn: &impl ConnectionTrait, name: &ItemName, now: DateTime<Utc>) -> Result<Item> {
    let row = items::ActiveModel {
        name: Set(name.as_str().to_owned()),
        created_at: Set(now),
        ..Default::default()
    }
    .insert(conn)
    .await?;
    row.try_into()
}

/// The item with id `id`, if there is one.
///
/// # Errors
/// The database failed, or the stored row is corrupt.
pub async fn get_item(conn: &impl ConnectionTrait, id: i64) -> Result<Option<Item>> {
    items::Entity::find_by_id(id)
        .one(conn)
        .await?
        .map(Item::try_from)
        .transpose()
}

/// At most `limit` items, oldest first.
///
/// # Errors
/// The database failed, or a stored row is corrupt.
pub async fn list_items(conn: &impl ConnectionTrait, limit: u64) -> Result<Vec<Item>> {
    items::Entity::find()
        .order_by_asc(items::Column::Id)
        .limit(limit)
        .all(conn)
        .await?
        .into_iter()
        .map(Item::try_from)
        .collect()
}
