//! Roles: named sets of abilities, and which accounts hold them.

use std::collections::BTreeSet;

use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set, sea_query::OnConflict};

use crate::entities::{account_roles, roles};
use crate::{Ability, AccountId, Error, Result, RoleName};

/// Defines role `name` as granting `abilities` (replacing what it granted before).
///
/// # Errors
/// The database failed.
pub async fn define_role(
    conn: &impl ConnectionTrait,
    name: &RoleName,
    abilities: &BTreeSet<Ability>,
) -> Result<()> {
    let joined = abilities
        .iter()
        .map(Ability::as_str)
        .collect::<Vec<_>>()
        .join(" ");
    roles::Entity::insert(roles::ActiveModel {
        name: Set(name.as_str().to_owned()),
        abilities: Set(joined),
    })
    .on_conflict(
        OnConflict::column(roles::Column::Name)
            .update_column(roles::Column::Abilities)
            .to_owned(),
    )
    .exec_without_returning(conn)
    .await?;
    Ok(())
}

/// Gives account `account` role `role` (holding it already changes nothing).
///
/// # Errors
/// [`Error::UnknownRole`] if no such role is defined; the database failed.
pub async fn grant_role(
    conn: &impl ConnectionTrait,
    account: AccountId,
    role: &RoleName,
) -> Result<()> {
    if roles::Entity::find_by_id(role.as_str())
        .one(conn)
        .await?
        .is_none()
    {
        return Err(Error::UnknownRole {
            name: role.as_str().to_owned(),
        });
    }
    account_roles::Entity::insert(account_roles::ActiveModel {
        account_id: Set(account.to_string()),
        role: Set(role.as_str().to_owned()),
    })
    .on_conflict_do_nothing_on([
        account_roles::Column::AccountId,
        account_roles::Column::Role,
    ])
    .exec(conn)
    .await?;
    Ok(())
}

/// Takes role `role` from account `account`; `false` if it did not hold it.
///
/// # Errors
/// The database failed.
pub async fn revoke_role(
    conn: &impl ConnectionTrait,
    account: AccountId,
    role: &RoleName,
) -> Result<bool> {
    let deleted = account_roles::Entity::delete_many()
        .filter(account_roles::Column::AccountId.eq(account.to_string()))
        .filter(account_roles::Column::Role.eq(role.as_str()))
        .exec(conn)
        .await?;
    Ok(deleted.rows_affected > 0)
}

/// The roles account `account` holds, sorted.
///
/// # Errors
/// The database failed, or a row is corrupt.
pub async fn roles_of(
    conn: &impl ConnectionTrait,
    account: AccountId,
) -> Result<BTreeSet<RoleName>> {
    account_roles::Entity::find()
        .filter(account_roles::Column::AccountId.eq(account.to_string()))
        .all(conn)
        .await?
        .into_iter()
        .map(|row| {
            RoleName::parse(&row.role)
                .map_err(|_| Error::Corrupt(format!("account {account}: role `{}`", row.role)))
        })
        .collect()
}

/// Every ability the roles of account `account` grant.
///
/// # Errors
/// The database failed, or a row is corrupt.
pub async fn abilities_of(
    conn: &impl ConnectionTrait,
    account: AccountId,
) -> Result<BTreeSet<Ability>> {
    let held: Vec<String> = roles_of(conn, account)
        .await?
        .into_iter()
        .map(|role| role.as_str().to_owned())
        .collect();
    if held.is_empty() {
        return Ok(BTreeSet::new());
    }
    let mut abilities = BTreeSet::new();
    for role in roles::Entity::find()
        .filter(roles::Column::Name.is_in(held))
        .all(conn)
        .await?
    {
        for name in role.abilities.split_whitespace() {
            abilities.insert(
                Ability::parse(name).map_err(|_| {
                    Error::Corrupt(format!("role `{}`: ability `{name}`", role.name))
                })?,
            );
        }
    }
    Ok(abilities)
}
