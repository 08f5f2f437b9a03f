//! User registration, event-driven: registering creates a pending customer account and
//! emits `AccountRegistered`; a subscriber issues the verification token and queues
//! the mail that carries it; verifying activates the account and emits
//! `AccountVerified`, whose subscriber queues the welcome mail. Registering an email
//! that is pending sends a new token (the password stays the first one: whoever holds
//! the mailbox decides); one that is active or suspended changes nothing. All three
//! answer the same, in the same time (the password is hashed every time), so that
//! registration tells no one which emails have accounts.

use chrono::{DateTime, Duration, Utc};
use identity::{
    Account, AccountKind, AccountRegistered, AccountStatus, AccountVerified, DisplayName, Email,
    NewAccount, Password, PasswordPolicy, RoleName, ThrottlePolicy, VerificationToken,
};
use notifications::{NewNotification, Recipient};
use orchestration::{
    Fabric, FabricError, UnitOfWork, UnitOfWorkError,
    dispatch::{Handler, HandlerError},
    outbox::{Envelope, EventType},
};
use serde_json::json;

/// A customer registered (published by `identity`).
pub const ACCOUNT_REGISTERED: EventType<AccountRegistered> =
    EventType::new(AccountRegistered::NAME);
/// A registration was verified (published by `identity`).
pub const ACCOUNT_VERIFIED: EventType<AccountVerified> = EventType::new(AccountVerified::NAME);

/// How registrations are checked, throttled and verified.
#[derive(Debug, Clone, Copy)]
pub struct RegistrationSettings {
    /// The cost of the password hash.
    pub password: PasswordPolicy,
    /// Registrations allowed per client address and window (counted whatever their
    /// outcome).
    pub per_client: ThrottlePolicy,
}

impl Default for RegistrationSettings {
    fn default() -> Self {
        Self {
            password: PasswordPolicy::default(),
            per_client: ThrottlePolicy {
                max_failures: 10,
                window: Duration::hours(1),
            },
        }
    }
}

/// A registration, its fields checked.
#[derive(Debug)]
pub struct Registering {
    /// The email to verify.
    pub email: Email,
    /// What the account is called.
    pub display_name: DisplayName,
    /// Its password.
    pub password: Password,
}

/// How a registration ended. Infrastructure failures are [`RegistrationError`]s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistrationOutcome {
    /// A verification mail is on its way, if the email may register (the same answer
    /// whatever the email's account).
    Accepted,
    /// Too many registrations from this client: try again after this long.
    Throttled {
        /// How long to wait.
        retry_after: Duration,
    },
}

/// How a verification ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerificationOutcome {
    /// The account is active.
    Verified(Account),
    /// The token is unknown, used or expired.
    InvalidToken,
}

/// An infrastructure failure of a registration or verification.
#[derive(Debug, thiserror::Error)]
pub enum RegistrationError {
    /// Identity failed.
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

/// Registration and verification on a fabric. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Registration {
    fabric: Fabric,
    settings: RegistrationSettings,
}

impl Registration {
    /// Registration on `fabric` under `settings`.
    #[must_use]
    pub fn new(fabric: &Fabric, settings: RegistrationSettings) -> Self {
        Self {
            fabric: fabric.clone(),
            settings,
        }
    }

    /// Registers `registering` from `client`.
    ///
    /// # Errors
    /// An infrastructure failure.
    pub async fn register(
        &self,
        registering: Registering,
        client: &str,
    ) -> Result<RegistrationOutcome, RegistrationError> {
        let now = self.fabric.clock().now();
        let conn = self.fabric.connection(identity::SCHEMA)?;
        let key = format!("register:{client}");
        let policy = self.settings.per_client;
        if let Some(retry_after) = identity::throttled(conn, &key, &policy, now).await? {
            return Ok(RegistrationOutcome::Throttled { retry_after });
        }
        let Registering {
            email,
            display_name,
            password,
        } = registering;
        let hashing = self.settings.password;
        // Hashed whatever the email's account, so that every answer takes as long.
        let hash =
            tokio::task::spawn_blocking(move || identity::hash_password(&password, &hashing))
                .await??;
        // Twice at most: a registration of the same new email that commits first makes
        // this one a re-registration of its pending account, answered the same.
        let mut raced = false;
        loop {
            let existing = identity::find_account_by_email(conn, &email).await?;
            let registered = self
                .fabric
                .unit_of_work("register")
                .run(async |uow| -> Result<_, RegistrationError> {
                    uow.step(identity::SCHEMA, "count_registration", async |tx| {
                        identity::record_failure(tx, &key, &policy, now).await
                    })
                    .await?;
                    let pending = match existing {
                        None => Some(open_pending(uow, &email, &display_name, &hash, now).await?),
                        Some(account) if account.status == AccountStatus::Pending => Some(account),
                        // Active, suspended or disabled: nothing to send.
                        Some(_) => None,
                    };
                    if let Some(account) = pending {
                        let event = AccountRegistered {
                            account_id: account.id.to_string(),
                            email: account.email.as_str().to_owned(),
                            registered_at: now,
                        };
                        uow.emit(
                            identity::SCHEMA,
                            ACCOUNT_REGISTERED,
                            event.ordering_key(),
                            &event,
                        )?;
                    }
                    Ok(())
                })
                .await;
            match registered {
                Ok(_) => return Ok(RegistrationOutcome::Accepted),
                Err(RegistrationError::Identity(identity::Error::DuplicateEmail { .. }))
                    if !raced =>
                {
                    raced = true;
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// Verifies the email of the registration `token` was sent for.
    ///
    /// # Errors
    /// An infrastructure failure.
    pub async fn verify(&self, token: &str) -> Result<VerificationOutcome, RegistrationError> {
        let Some(token) = VerificationToken::parse(token) else {
            return Ok(VerificationOutcome::InvalidToken);
        };
        let now = self.fabric.clock().now();
        let verified = self
            .fabric
            .unit_of_work("verify_email")
            .run(async |uow| -> Result<_, RegistrationError> {
                let account = uow
                    .step(identity::SCHEMA, "verify_email", async |tx| {
                        identity::verify_email(tx, &token, now).await
                    })
                    .await?;
                if let Some(account) = &account {
                    let event = AccountVerified {
                        account_id: account.id.to_string(),
                        email: account.email.as_str().to_owned(),
                        display_name: account.display_name.as_str().to_owned(),
                        verified_at: now,
                    };
                    uow.emit(
                        identity::SCHEMA,
                        ACCOUNT_VERIFIED,
                        event.ordering_key(),
                        &event,
                    )?;
                }
                Ok(account)
            })
            .await?
            .value;
        Ok(verified.map_or(
            VerificationOutcome::InvalidToken,
            VerificationOutcome::Verified,
        ))
    }
}

/// Creates the pending customer account with its password and the `customer` role.
async fn open_pending(
    uow: &mut UnitOfWork<RegistrationError>,
    email: &Email,
    display_name: &DisplayName,
    hash: &identity::PasswordHash,
    now: DateTime<Utc>,
) -> Result<Account, RegistrationError> {
    let new = NewAccount {
        email: email.clone(),
        display_name: display_name.clone(),
        kind: AccountKind::Customer,
        status: AccountStatus::Pending,
    };
    uow.step(identity::SCHEMA, "open_pending_account", async |tx| {
        let account = identity::create_account(tx, &new, now).await?;
        identity::set_password(tx, account.id, hash, now).await?;
        let customer = RoleName::parse("customer").expect("a role name");
        identity::grant_role(tx, account.id, &customer).await?;
        Ok::<_, identity::Error>(account)
    })
    .await
}

/// What the registration mails say and how long a verification token lasts.
#[derive(Debug, Clone)]
pub struct MailSettings {
    /// Where the API is reached, for the links in mails.
    pub public_url: String,
    /// How long a verification token works.
    pub verification_ttl: Duration,
}

impl Default for MailSettings {
    fn default() -> Self {
        Self {
            public_url: "http://localhost:8080".to_owned(),
            verification_ttl: Duration::hours(24),
        }
    }
}

/// Issues the verification token of a pending registration and queues the mail that
/// carries it (`verify_email`). The token exists raw only in that notification (until
/// it is sent) and in the mail.
#[derive(Debug, Clone)]
pub struct SendVerification(pub MailSettings);

impl SendVerification {
    /// The subscriber's name.
    pub const NAME: &'static str = "send_verification";
}

impl Handler<AccountRegistered> for SendVerification {
    async fn handle(
        &self,
        event: AccountRegistered,
        envelope: &Envelope,
        uow: &mut UnitOfWork<HandlerError>,
    ) -> Result<(), HandlerError> {
        let id = uuid::Uuid::parse_str(&event.account_id).map_err(HandlerError::permanent)?;
        let now = envelope.occurred_at;
        let ttl = self.0.verification_ttl;
        let issued = uow
            .step(identity::SCHEMA, "issue_verification", async |tx| {
                let account = identity::get_account(tx, identity::AccountId(id)).await?;
                match account {
                    Some(account) if account.status == AccountStatus::Pending => {
                        let token = identity::issue_verification(tx, account.id, now, ttl).await?;
                        Ok::<_, identity::Error>(Some((account, token)))
                    }
                    // Verified or removed meanwhile.
                    _ => Ok(None),
                }
            })
            .await?;
        let Some((account, token)) = issued else {
            return Ok(());
        };
        let notification = NewNotification {
            cause: envelope.event_id.to_string(),
            recipient: Recipient::parse(account.email.as_str()).map_err(HandlerError::permanent)?,
            template: "verify_email".to_owned(),
            data: json!({
                "display_name": account.display_name.as_str(),
                "token": token.as_str(),
                "verify_url": format!("{}/api/registrations/verify", self.0.public_url),
                "hours": ttl.num_hours(),
            }),
        };
        uow.step(notifications::SCHEMA, "queue_notification", async |tx| {
            notifications::enqueue(tx, &notification, now).await
        })
        .await?;
        Ok(())
    }
}

/// Queues the `welcome` mail of a verified account.
#[derive(Debug, Clone, Copy)]
pub struct SendWelcome;

impl SendWelcome {
    /// The subscriber's name.
    pub const NAME: &'static str = "send_welcome";
}

impl Handler<AccountVerified> for SendWelcome {
    async fn handle(
        &self,
        event: AccountVerified,
        envelope: &Envelope,
        uow: &mut UnitOfWork<HandlerError>,
    ) -> Result<(), HandlerError> {
        let notification = NewNotification {
            cause: envelope.event_id.to_string(),
            recipient: Recipient::parse(&event.email).map_err(HandlerError::permanent)?,
            template: "welcome".to_owned(),
            data: json!({ "display_name": event.display_name }),
        };
        let now = envelope.occurred_at;
        uow.step(notifications::SCHEMA, "queue_notification", async |tx| {
            notifications::enqueue(tx, &notification, now).await
        })
        .await?;
        Ok(())
    }
}

/// Removes registrations never verified: pending accounts older than the verification
/// time whose tokens all expired, up to `batch` per tick.
#[derive(Debug, Clone)]
pub struct ExpireRegistrations {
    fabric: Fabric,
    verification_ttl: Duration,
    batch: u64,
}

impl ExpireRegistrations {
    /// The job's name.
    pub const NAME: &'static str = "expire_registrations";

    /// The job removing up to `batch` registrations per tick whose tokens, lasting
    /// `verification_ttl`, expired.
    #[must_use]
    pub fn new(fabric: &Fabric, verification_ttl: Duration, batch: u64) -> Self {
        Self {
            fabric: fabric.clone(),
            verification_ttl,
            batch,
        }
    }
}

impl orchestration::host::Job for ExpireRegistrations {
    fn name(&self) -> &str {
        Self::NAME
    }

    async fn run(
        &self,
        _tick: orchestration::host::Tick,
        context: &orchestration::host::WorkerContext,
    ) -> Result<(), orchestration::host::WorkerError> {
        let now = context.clock().now();
        let cutoff = now - self.verification_ttl;
        let removed = self
            .fabric
            .unit_of_work("expire_registrations")
            .run(async |uow| -> Result<_, RegistrationError> {
                uow.step(identity::SCHEMA, "expire_registrations", async |tx| {
                    identity::expire_registrations(tx, cutoff, now, self.batch).await
                })
                .await
            })
            .await?
            .value;
        if removed > 0 {
            tracing::info!(removed, "removed registrations never verified");
        }
        Ok(())
    }
}
