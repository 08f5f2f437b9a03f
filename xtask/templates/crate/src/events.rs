//! The events the {{name}} boundary publishes: plain serde structs, stable on the wire.
//! A workflow emits them in the unit of work that made the change
//! (`uow.emit({{name}}::SCHEMA, EventType::new(ItemAdded::NAME), key, &event)`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::Item;

/// An item was added.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemAdded {
    /// The item.
    pub item_id: i64,
    /// Its name.
    pub name: String,
    /// When it was added.
    pub added_at: DateTime<Utc>,
}

impl ItemAdded {
    /// The event type's name on the wire.
    pub const NAME: &'static str = "{{name}}.item_added";

    /// The event for a just-added `item`.
    #[must_use]
    pub fn of(item: &Item) -> Self {
        Self {
            item_id: item.id,
            name: item.name.as_str().to_owned(),
            added_at: item.created_at,
        }
    }

    /// The key that orders this item's events.
    #[must_use]
    pub fn ordering_key(&self) -> String {
        format!("item:{}", self.item_id)
    }
}
