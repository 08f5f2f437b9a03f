//! The login sequence: password → TOTP (when the account has it) → session, with a
//! short-lived challenge between the two steps. The decisions are identity's (does the
//! password match, may the account log in, is the code valid and unused, is the key
//! throttled); this workflow only sequences them, and every outcome is a value.
//!
//! Each attempt is recorded in one unit of work on the identity boundary (the failure
//! counts, the session or challenge) with a `LoginAttempted` event for the audit trail,
//! delivered through the outbox: an audit failure never changes or delays the outcome.
//! Throttling is per email (whether or not an account has it, so that it tells no one
//! which emails exist) and per client address, in the database, so it holds across
//! instances (two attempts that race may both pass the check before either is
//! counted: the limit holds to within the attempts in flight).

use chrono::{DateTime, Duration, Utc};
use identity::{
    Account, AccountStatus, ChallengeToken, Email, LoginAttempted, Password, PasswordCheck,
    PasswordPolicy, Session, SessionToken, ThrottlePolicy,
};
use orchestration::{Fabric, FabricError, UnitOfWork, UnitOfWorkError, outbox::EventType};

/// A login attempt was made (published by `identity`).
pub const LOGIN_ATTEMPTED: EventType<LoginAttempted> = EventType::new(LoginAttempted::NAME);

/// How logins are checked and what they start.
#[derive(Debug, Clone, Copy)]
pub struct LoginSettings {
    /// The cost of password hashes (a stored hash below it is renewed at login).
    pub password: PasswordPolicy,
    /// How long a session lasts.
    pub session_ttl: Duration,
    /// How long the TOTP step may take after the password step.
    pub challenge_ttl: Duration,
    /// Failures allowed per email (with or without an account) and window.
    pub per_email: ThrottlePolicy,
    /// Failures allowed per client address and window.
    pub per_client: ThrottlePolicy,
}

impl Default for LoginSettings {
    fn default() -> Self {
        Self {
            password: PasswordPolicy::default(),
            session_ttl: Duration::hours(12),
            challenge_ttl: Duration::minutes(5),
            per_email: ThrottlePolicy {
                max_failures: 5,
                window: Duration::minutes(15),
            },
            per_client: ThrottlePolicy {
                max_failures: 20,
                window: Duration::minutes(15),
            },
        }
    }
}

/// The first step: an email and a password.
#[derive(Debug, Clone, Copy)]
pub struct PasswordStep<'a> {
    /// As typed.
    pub email: &'a str,
    /// As typed (never logged: [`Password`] hides it).
    pub password: &'a str,
    /// The client's address.
    pub client: &'a str,
    /// The client's user agent, kept with the session.
    pub user_agent: &'a str,
}

/// The second step: the challenge from the first, and a TOTP or recovery code.
#[derive(Debug, Clone, Copy)]
pub struct TotpStep<'a> {
    /// As the first step returned it.
    pub challenge: &'a str,
    /// Six digits from the authenticator, or a recovery code.
    pub code: &'a str,
    /// The client's address.
    pub client: &'a str,
    /// The client's user agent, kept with the session.
    pub user_agent: &'a str,
}

/// How a step ended. Infrastructure failures are [`LoginError`]s instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginOutcome {
    /// Logged in: the token is shown once.
    SessionStarted {
        /// The session.
        session: Session,
        /// Its token.
        token: SessionToken,
    },
    /// The password was right; send a code with this challenge.
    TotpRequired {
        /// The challenge for the second step.
        challenge: ChallengeToken,
    },
    /// No account has this email, or the password is wrong (the same answer, in the
    /// same time).
    InvalidCredentials,
    /// The code is wrong, used already, or the challenge is unknown or over.
    InvalidCode,
    /// The password was right, but the account may not log in.
    AccountNotActive {
        /// Where the account is in its life.
        status: AccountStatus,
    },
    /// Too many failures: try again after this long.
    Throttled {
        /// How long to wait.
        retry_after: Duration,
    },
}

impl LoginOutcome {
    fn name(&self) -> &'static str {
        match self {
            Self::SessionStarted { .. } => "session_started",
            Self::TotpRequired { .. } => "totp_required",
            Self::InvalidCredentials => "invalid_credentials",
            Self::InvalidCode => "invalid_code",
            Self::AccountNotActive { .. } => "account_not_active",
            Self::Throttled { .. } => "throttled",
        }
    }
}

/// An infrastructure failure during a login.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// Identity failed (its database, or a corrupt row).
    #[error(transparent)]
    Identity(#[from] identity::Error),
    /// The unit of work recording the attempt failed.
    #[error(transparent)]
    UnitOfWork(#[from] UnitOfWorkError),
    /// The identity boundary is not composed.
    #[error(transparent)]
    Fabric(#[from] FabricError),
    /// The password check on its blocking thread did not finish.
    #[error("the password check did not finish: {0}")]
    Hashing(#[from] tokio::task::JoinError),
}

/// The login sequence on a fabric. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Login {
    fabric: Fabric,
    settings: LoginSettings,
}

/// A throttling key and the policy it is counted under.
type Key = (String, ThrottlePolicy);

/// What one attempt writes, besides its event.
enum Record {
    /// Count a failure against these keys; the outcome is this.
    Failure(Vec<Key>, LoginOutcome),
    /// Forget these keys' failures, then start a session (or issue a challenge). With
    /// `answered`, the challenge and code of a TOTP step, the code is checked (and used
    /// up) first, in the same transaction: a wrong one is a failure of these keys.
    Success {
        keys: Vec<Key>,
        account: Account,
        challenge: bool,
        upgraded: Option<identity::PasswordHash>,
        answered: Option<(ChallengeToken, String)>,
    },
    /// Nothing but the event of this outcome.
    Nothing(LoginOutcome),
}

impl Login {
    fn client_key(&self, client: &str) -> Key {
        (format!("client:{client}"), self.settings.per_client)
    }

    /// Failures count per email, whether or not an account has it: a key per account
    /// would throttle only existing accounts, and so tell which emails exist.
    fn email_key(&self, email: &Email) -> Key {
        (format!("email:{email}"), self.settings.per_email)
    }

    /// The login sequence on `fabric` under `settings`.
    #[must_use]
    pub fn new(fabric: &Fabric, settings: LoginSettings) -> Self {
        Self {
            fabric: fabric.clone(),
            settings,
        }
    }

    /// The settings it runs with.
    #[must_use]
    pub fn settings(&self) -> &LoginSettings {
        &self.settings
    }

    /// The first step.
    ///
    /// # Errors
    /// An infrastructure failure; the attempt is then not recorded.
    pub async fn password(&self, step: &PasswordStep<'_>) -> Result<LoginOutcome, LoginError> {
        let now = self.fabric.clock().now();
        let conn = self.fabric.connection(identity::SCHEMA)?;
        let email = Email::parse(step.email).ok();
        let account = match &email {
            Some(email) => identity::find_account_by_email(conn, email).await?,
            None => None,
        };
        let event = |outcome: &LoginOutcome| LoginAttempted {
            account_id: account.as_ref().map(|a| a.id.to_string()),
            email: email.as_ref().map(|e| e.as_str().to_owned()),
            client: step.client.to_owned(),
            outcome: outcome.name().to_owned(),
            attempted_at: now,
        };
        if let Some(retry_after) = self.throttled(step.client, email.as_ref(), now).await? {
            let outcome = LoginOutcome::Throttled { retry_after };
            return self
                .write(Record::Nothing(outcome), step.user_agent, now, event)
                .await;
        }
        // Read for an unknown email too (an id no account has), so that both cost the
        // same queries.
        let id = account
            .as_ref()
            .map_or(identity::AccountId(uuid::Uuid::nil()), |a| a.id);
        let stored = identity::stored_password(conn, id).await?;
        // A password that cannot be one is checked too (against the decoy), so that
        // every failure costs the same.
        let password = Password::attempt(step.password)
            .unwrap_or_else(|_| Password::attempt("-").expect("one character"));
        let policy = self.settings.password;
        let (check, password) = tokio::task::spawn_blocking(move || {
            (
                identity::verify_password(&password, stored.as_ref(), &policy),
                password,
            )
        })
        .await?;
        let mut keys = vec![self.client_key(step.client)];
        match (account.clone(), check?) {
            (Some(account), PasswordCheck::Matches { .. }) if !account.status.can_log_in() => {
                let outcome = LoginOutcome::AccountNotActive {
                    status: account.status,
                };
                self.write(Record::Nothing(outcome), step.user_agent, now, event)
                    .await
            }
            (Some(account), PasswordCheck::Matches { rehash }) => {
                let upgraded = if rehash {
                    Some(
                        tokio::task::spawn_blocking(move || {
                            identity::hash_password(&password, &policy)
                        })
                        .await??,
                    )
                } else {
                    None
                };
                let challenge = identity::totp_enabled(conn, account.id).await?;
                keys.push(self.email_key(&account.email));
                let record = Record::Success {
                    keys,
                    account,
                    challenge,
                    upgraded,
                    answered: None,
                };
                // The outcome (session or challenge) is made in the unit of work.
                self.write(record, step.user_agent, now, event).await
            }
            _ => {
                keys.extend(email.as_ref().map(|email| self.email_key(email)));
                let outcome = LoginOutcome::InvalidCredentials;
                self.write(Record::Failure(keys, outcome), step.user_agent, now, event)
                    .await
            }
        }
    }

    /// The second step.
    ///
    /// # Errors
    /// An infrastructure failure; the attempt is then not recorded.
    pub async fn totp(&self, step: &TotpStep<'_>) -> Result<LoginOutcome, LoginError> {
        let now = self.fabric.clock().now();
        let conn = self.fabric.connection(identity::SCHEMA)?;
        let challenge = ChallengeToken::parse(step.challenge);
        let account_id = match &challenge {
            Some(challenge) => identity::challenge_account(conn, challenge, now).await?,
            None => None,
        };
        let account = match account_id {
            Some(id) => identity::get_account(conn, id).await?,
            None => None,
        };
        let event = |outcome: &LoginOutcome| LoginAttempted {
            account_id: account.as_ref().map(|a| a.id.to_string()),
            email: account.as_ref().map(|a| a.email.as_str().to_owned()),
            client: step.client.to_owned(),
            outcome: outcome.name().to_owned(),
            attempted_at: now,
        };
        let (Some(challenge), Some(account)) = (challenge, account.clone()) else {
            let keys = vec![self.client_key(step.client)];
            let record = Record::Failure(keys, LoginOutcome::InvalidCode);
            return self.write(record, step.user_agent, now, event).await;
        };
        if let Some(retry_after) = self
            .throttled(step.client, Some(&account.email), now)
            .await?
        {
            let outcome = LoginOutcome::Throttled { retry_after };
            return self
                .write(Record::Nothing(outcome), step.user_agent, now, event)
                .await;
        }
        if !account.status.can_log_in() {
            let outcome = LoginOutcome::AccountNotActive {
                status: account.status,
            };
            return self
                .write(Record::Nothing(outcome), step.user_agent, now, event)
                .await;
        }
        let keys = vec![self.client_key(step.client), self.email_key(&account.email)];
        let record = Record::Success {
            keys,
            account,
            challenge: false,
            upgraded: None,
            answered: Some((challenge, step.code.to_owned())),
        };
        self.write(record, step.user_agent, now, event).await
    }

    async fn throttled(
        &self,
        client: &str,
        email: Option<&Email>,
        now: DateTime<Utc>,
    ) -> Result<Option<Duration>, LoginError> {
        let conn = self.fabric.connection(identity::SCHEMA)?;
        let mut longest = None;
        let keys = std::iter::once(self.client_key(client)).chain(email.map(|e| self.email_key(e)));
        for (key, policy) in keys {
            if let Some(wait) = identity::throttled(conn, &key, &policy, now).await? {
                longest = longest.max(Some(wait));
            }
        }
        Ok(longest)
    }

    /// Writes `record` and the attempt's event (made by `event` from the outcome) in
    /// one unit of work; returns the outcome (a success's is the session or challenge
    /// it made).
    async fn write(
        &self,
        record: Record,
        user_agent: &str,
        now: DateTime<Utc>,
        event: impl Fn(&LoginOutcome) -> LoginAttempted,
    ) -> Result<LoginOutcome, LoginError> {
        let settings = self.settings;
        self.fabric
            .unit_of_work("login")
            .run(async |uow: &mut UnitOfWork<LoginError>| {
                let outcome = match &record {
                    Record::Nothing(outcome) => outcome.clone(),
                    Record::Failure(keys, outcome) => {
                        uow.step(identity::SCHEMA, "record_failure", async |tx| {
                            record_failures(tx, keys, now).await
                        })
                        .await?;
                        outcome.clone()
                    }
                    Record::Success {
                        keys,
                        account,
                        challenge,
                        upgraded,
                        answered,
                    } => {
                        uow.step(identity::SCHEMA, "succeed", async |tx| {
                            if let Some((used, code)) = answered {
                                let accepted = identity::verify_totp(tx, account.id, code, now)
                                    .await?
                                    || identity::use_recovery_code(tx, account.id, code).await?;
                                if !accepted {
                                    record_failures(tx, keys, now).await?;
                                    return Ok(LoginOutcome::InvalidCode);
                                }
                                identity::end_challenge(tx, used).await?;
                            }
                            for (key, _) in keys {
                                identity::clear_failures(tx, key).await?;
                            }
                            if let Some(hash) = upgraded {
                                identity::upgrade_password_hash(tx, account.id, hash).await?;
                            }
                            if *challenge {
                                let challenge = identity::issue_challenge(
                                    tx,
                                    account.id,
                                    now,
                                    settings.challenge_ttl,
                                )
                                .await?;
                                return Ok(LoginOutcome::TotpRequired { challenge });
                            }
                            let (session, token) = identity::start_session(
                                tx,
                                account.id,
                                user_agent,
                                now,
                                settings.session_ttl,
                            )
                            .await?;
                            Ok::<_, identity::Error>(LoginOutcome::SessionStarted {
                                session,
                                token,
                            })
                        })
                        .await?
                    }
                };
                let attempted = event(&outcome);
                uow.emit(
                    identity::SCHEMA,
                    LOGIN_ATTEMPTED,
                    attempted.ordering_key(),
                    &attempted,
                )?;
                Ok(outcome)
            })
            .await
            .map(|done| done.value)
    }
}

async fn record_failures(
    tx: &impl sea_orm::ConnectionTrait,
    keys: &[Key],
    now: DateTime<Utc>,
) -> Result<(), identity::Error> {
    for (key, policy) in keys {
        identity::record_failure(tx, key, policy, now).await?;
    }
    Ok(())
}
