//! Account administration shared by the HTTP API (`/api/accounts`, behind
//! `identity.admin`) and the command line (`switchyard accounts …`): each change is one
//! unit of work on the identity boundary.

use identity::{
    Account, AccountId, AccountKind, AccountStatus, DisplayName, Email, NewAccount, Password,
    PasswordPolicy, RoleName,
};
use orchestration::{Fabric, FabricError, UnitOfWorkError};

/// An account administration failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AdminError {
    /// Identity refused the change, or its database failed.
    #[error(transparent)]
    Identity(#[from] identity::Error),
    /// The unit of work failed.
    #[error(transparent)]
    UnitOfWork(#[from] UnitOfWorkError),
    /// The identity boundary is not composed.
    #[error(transparent)]
    Fabric(#[from] FabricError),
    /// The password hash on its blocking thread did not finish.
    #[error("the password hash did not finish: {0}")]
    Hashing(#[from] tokio::task::JoinError),
}

/// An active account to open, with its password and roles.
#[derive(Debug)]
pub(crate) struct Opening {
    pub(crate) email: Email,
    pub(crate) display_name: DisplayName,
    pub(crate) kind: AccountKind,
    pub(crate) password: Password,
    pub(crate) roles: Vec<RoleName>,
}

/// Opens an active account with its password and roles, all or nothing.
///
/// # Errors
/// [`identity::Error::DuplicateEmail`], [`identity::Error::UnknownRole`], or an
/// infrastructure failure.
pub(crate) async fn open(
    fabric: &Fabric,
    policy: PasswordPolicy,
    opening: Opening,
) -> Result<Account, AdminError> {
    let Opening {
        email,
        display_name,
        kind,
        password,
        roles,
    } = opening;
    let hash =
        tokio::task::spawn_blocking(move || identity::hash_password(&password, &policy)).await??;
    let now = fabric.clock().now();
    let new = NewAccount {
        email,
        display_name,
        kind,
        status: AccountStatus::Active,
    };
    let opened = fabric
        .unit_of_work("open_account")
        .run(async |uow| -> Result<_, AdminError> {
            uow.step(identity::SCHEMA, "open_account", async |tx| {
                let account = identity::create_account(tx, &new, now).await?;
                identity::set_password(tx, account.id, &hash, now).await?;
                for role in &roles {
                    identity::grant_role(tx, account.id, role).await?;
                }
                Ok::<_, identity::Error>(account)
            })
            .await
        })
        .await?;
    Ok(opened.value)
}

/// Moves account `id` to `status` (its sessions end if it can no longer log in);
/// returns it as it is now.
///
/// # Errors
/// [`identity::Error::UnknownAccount`], [`identity::Error::InvalidTransition`], or an
/// infrastructure failure.
pub(crate) async fn set_status(
    fabric: &Fabric,
    id: AccountId,
    status: AccountStatus,
) -> Result<Account, AdminError> {
    let now = fabric.clock().now();
    let changed = fabric
        .unit_of_work("set_account_status")
        .run(async |uow| -> Result<_, AdminError> {
            uow.step(identity::SCHEMA, "set_status", async |tx| {
                identity::set_status(tx, id, status, now).await
            })
            .await
        })
        .await?;
    let mut account = changed.value;
    if account.status != status {
        account.status = status;
        account.updated_at = now;
    }
    Ok(account)
}

/// Grants (`true`) or revokes role `role` of account `id`.
///
/// # Errors
/// [`identity::Error::UnknownAccount`], [`identity::Error::UnknownRole`], or an
/// infrastructure failure.
pub(crate) async fn set_role(
    fabric: &Fabric,
    id: AccountId,
    role: &RoleName,
    granted: bool,
) -> Result<(), AdminError> {
    fabric
        .unit_of_work(if granted { "grant_role" } else { "revoke_role" })
        .run(async |uow| -> Result<_, AdminError> {
            uow.step(identity::SCHEMA, "set_role", async |tx| {
                if identity::get_account(tx, id).await?.is_none() {
                    return Err(identity::Error::UnknownAccount { id });
                }
                if granted {
                    identity::grant_role(tx, id, role).await
                } else {
                    identity::revoke_role(tx, id, role).await.map(|_| ())
                }
            })
            .await
        })
        .await?;
    Ok(())
}
