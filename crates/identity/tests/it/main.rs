//! The integration tests of identity, run on SQLite, PostgreSQL and MariaDB.

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, SubsecRound, Utc};
use identity::{
    Ability, AccountId, AccountKind, AccountStatus, DisplayName, Email, Error, NewAccount,
    Password, PasswordCheck, PasswordPolicy, RoleName, SessionToken, TotpConfirmation,
};
use orchestration::testing::TestDatabase;
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};

orchestration::engine_tests! {
    boundaries: [migrations::identity()];
    an_account_is_created_once_per_normalised_email,
    the_lifecycle_is_enforced_and_an_account_that_cannot_log_in_loses_its_sessions,
    a_session_token_is_stored_only_as_its_hash_and_expires,
    sessions_are_listed_and_revoked_one_or_all_and_a_new_password_ends_them,
    a_password_is_stored_as_argon2id_and_checked,
    roles_grant_abilities,
    the_built_in_admin_role_grants_every_ability,
    totp_is_confirmed_by_a_first_code_and_each_code_is_accepted_once,
}

/// Cheap argon2id parameters, so that the tests stay fast; the code path is the same.
const CHEAP: PasswordPolicy = PasswordPolicy {
    memory_kib: 64,
    iterations: 1,
    parallelism: 1,
};

fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

fn new_account(email: &str, status: AccountStatus) -> NewAccount {
    NewAccount {
        email: Email::parse(email).unwrap(),
        display_name: DisplayName::parse("Alice").unwrap(),
        kind: AccountKind::Customer,
        status,
    }
}

async fn active(conn: &DatabaseConnection, email: &str) -> AccountId {
    identity::create_account(conn, &new_account(email, AccountStatus::Active), now())
        .await
        .unwrap()
        .id
}

async fn an_account_is_created_once_per_normalised_email(db: TestDatabase) {
    let conn = db.connection(identity::SCHEMA);
    let at = now();
    let created = identity::create_account(
        conn,
        &new_account("Alice@Example.com", AccountStatus::Pending),
        at,
    )
    .await
    .unwrap();
    assert_eq!(created.email.as_str(), "alice@example.com");
    assert_eq!(created.status, AccountStatus::Pending);
    assert_eq!(
        identity::get_account(conn, created.id).await.unwrap(),
        Some(created.clone())
    );
    let found = identity::find_account_by_email(conn, &Email::parse(" ALICE@example.COM").unwrap())
        .await
        .unwrap();
    assert_eq!(found, Some(created));
    let again = identity::create_account(
        conn,
        &new_account("alice@EXAMPLE.com", AccountStatus::Active),
        at,
    )
    .await;
    assert!(
        matches!(&again, Err(Error::DuplicateEmail { email }) if email.as_str() == "alice@example.com"),
        "{again:?}"
    );
    assert_eq!(
        identity::get_account(conn, AccountId::new()).await.unwrap(),
        None
    );
}

async fn the_lifecycle_is_enforced_and_an_account_that_cannot_log_in_loses_its_sessions(
    db: TestDatabase,
) {
    let conn = db.connection(identity::SCHEMA);
    let pending = identity::create_account(
        conn,
        &new_account("p@example.com", AccountStatus::Pending),
        now(),
    )
    .await
    .unwrap()
    .id;
    let refused = identity::set_status(conn, pending, AccountStatus::Suspended, now()).await;
    assert!(
        matches!(
            refused,
            Err(Error::InvalidTransition {
                from: AccountStatus::Pending,
                to: AccountStatus::Suspended
            })
        ),
        "{refused:?}"
    );
    identity::set_status(conn, pending, AccountStatus::Active, now())
        .await
        .unwrap();
    let (_, token) = identity::start_session(conn, pending, "test", now(), Duration::hours(1))
        .await
        .unwrap();
    assert!(
        identity::authenticate(conn, &token, now())
            .await
            .unwrap()
            .is_some()
    );

    // Suspended: the session stops working at once, and stays gone when reactivated.
    let before = identity::set_status(conn, pending, AccountStatus::Suspended, now())
        .await
        .unwrap();
    assert_eq!(before.status, AccountStatus::Active);
    assert_eq!(
        identity::authenticate(conn, &token, now()).await.unwrap(),
        None
    );
    assert!(
        identity::list_sessions(conn, pending)
            .await
            .unwrap()
            .is_empty()
    );
    identity::set_status(conn, pending, AccountStatus::Active, now())
        .await
        .unwrap();
    assert_eq!(
        identity::authenticate(conn, &token, now()).await.unwrap(),
        None
    );

    // Disabled is final.
    identity::set_status(conn, pending, AccountStatus::Disabled, now())
        .await
        .unwrap();
    assert!(matches!(
        identity::set_status(conn, pending, AccountStatus::Active, now()).await,
        Err(Error::InvalidTransition { .. })
    ));
    assert!(matches!(
        identity::set_status(conn, AccountId::new(), AccountStatus::Active, now()).await,
        Err(Error::UnknownAccount { .. })
    ));
}

/// Every text value in the `identity` schema's `table`, as one string.
async fn table_text(conn: &DatabaseConnection, table: &str, columns: &[&str]) -> String {
    let sql = format!("SELECT {} FROM identity.{table}", columns.join(", "));
    let rows = conn
        .query_all_raw(Statement::from_string(conn.get_database_backend(), sql))
        .await
        .unwrap();
    let mut text = String::new();
    for row in rows {
        for column in columns {
            text.push_str(&row.try_get::<String>("", column).unwrap());
            text.push('\n');
        }
    }
    text
}

async fn a_session_token_is_stored_only_as_its_hash_and_expires(db: TestDatabase) {
    let conn = db.connection(identity::SCHEMA);
    let account = active(conn, "s@example.com").await;
    let began = now();
    let (session, token) = identity::start_session(
        conn,
        account,
        "curl/8.5\u{0}\n",
        began,
        Duration::minutes(30),
    )
    .await
    .unwrap();
    assert_eq!(session.user_agent, "curl/8.5", "control characters dropped");
    assert_eq!(token.as_str().len(), 64);
    assert_eq!(format!("{token:?}"), "SessionToken(…)");
    let stored = table_text(
        conn,
        "sessions",
        &["id", "account_id", "token_hash", "user_agent"],
    )
    .await;
    assert!(
        !stored.contains(token.as_str()),
        "the raw token is stored: {stored}"
    );
    assert!(stored.contains(&session.id.to_string()));

    // A token of the right shape that opens nothing; one of the wrong shape is refused.
    let other = SessionToken::parse(&"0".repeat(64)).unwrap();
    assert_eq!(
        identity::authenticate(conn, &other, began).await.unwrap(),
        None
    );
    assert_eq!(SessionToken::parse("not a token"), None);

    let later = began + Duration::minutes(10);
    let opened = identity::authenticate(conn, &token, later)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(opened.account.id, account);
    assert_eq!(opened.session.last_used_at, later);
    assert_eq!(
        identity::list_sessions(conn, account).await.unwrap()[0].last_used_at,
        later
    );
    // A use within a minute of the last one recorded is not written again.
    let soon = later + identity::LAST_USE_PRECISION - Duration::seconds(1);
    let again = identity::authenticate(conn, &token, soon)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.session.last_used_at, later);
    assert_eq!(
        identity::list_sessions(conn, account).await.unwrap()[0].last_used_at,
        later
    );
    // Expired: refused, and gone.
    let expired = began + Duration::minutes(30);
    assert_eq!(
        identity::authenticate(conn, &token, expired).await.unwrap(),
        None
    );
    assert!(
        identity::list_sessions(conn, account)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn sessions_are_listed_and_revoked_one_or_all_and_a_new_password_ends_them(db: TestDatabase) {
    let conn = db.connection(identity::SCHEMA);
    let account = active(conn, "r@example.com").await;
    let other = active(conn, "o@example.com").await;
    let mut tokens = Vec::new();
    for agent in ["a", "b", "c"] {
        let (session, token) =
            identity::start_session(conn, account, agent, now(), Duration::hours(1))
                .await
                .unwrap();
        tokens.push((session, token));
    }
    let (_, others) = identity::start_session(conn, other, "x", now(), Duration::hours(1))
        .await
        .unwrap();
    let listed: Vec<String> = identity::list_sessions(conn, account)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.user_agent)
        .collect();
    assert_eq!(listed, ["a", "b", "c"]);
    // Another account cannot revoke this one's session.
    assert!(
        !identity::revoke_session(conn, other, tokens[0].0.id)
            .await
            .unwrap()
    );
    assert!(
        identity::revoke_session(conn, account, tokens[0].0.id)
            .await
            .unwrap()
    );
    assert_eq!(
        identity::authenticate(conn, &tokens[0].1, now())
            .await
            .unwrap(),
        None
    );
    assert!(
        identity::authenticate(conn, &tokens[1].1, now())
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        identity::revoke_all_sessions(conn, account).await.unwrap(),
        2
    );
    assert_eq!(
        identity::authenticate(conn, &tokens[2].1, now())
            .await
            .unwrap(),
        None
    );
    // A new password ends the account's sessions, not other accounts'.
    let (_, fresh) = identity::start_session(conn, account, "d", now(), Duration::hours(1))
        .await
        .unwrap();
    let hash =
        identity::hash_password(&Password::new("a new password, long").unwrap(), &CHEAP).unwrap();
    identity::set_password(conn, account, &hash, now())
        .await
        .unwrap();
    assert_eq!(
        identity::authenticate(conn, &fresh, now()).await.unwrap(),
        None
    );
    assert!(
        identity::authenticate(conn, &others, now())
            .await
            .unwrap()
            .is_some()
    );
}

async fn a_password_is_stored_as_argon2id_and_checked(db: TestDatabase) {
    let conn = db.connection(identity::SCHEMA);
    let account = active(conn, "pw@example.com").await;
    assert_eq!(
        identity::stored_password(conn, account).await.unwrap(),
        None
    );
    let password = Password::new("correct horse battery").unwrap();
    let first = identity::hash_password(&password, &CHEAP).unwrap();
    identity::set_password(conn, account, &first, now())
        .await
        .unwrap();
    let second_password = Password::new("correct horse battery staple").unwrap();
    let second = identity::hash_password(&second_password, &CHEAP).unwrap();
    identity::set_password(conn, account, &second, now())
        .await
        .unwrap();
    let stored = identity::stored_password(conn, account)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored, second, "the last password set");
    assert!(stored.as_str().starts_with("$argon2id$v=19$m=64,t=1,p=1$"));
    let text = table_text(conn, "credentials", &["password_hash"]).await;
    assert!(!text.contains("correct horse"), "{text}");
    assert_eq!(
        identity::verify_password(&second_password, Some(&stored), &CHEAP).unwrap(),
        PasswordCheck::Matches { rehash: false }
    );
    assert_eq!(
        identity::verify_password(&password, Some(&stored), &CHEAP).unwrap(),
        PasswordCheck::Mismatch
    );
}

fn abilities(names: &[&str]) -> BTreeSet<Ability> {
    names.iter().map(|n| Ability::parse(n).unwrap()).collect()
}

async fn the_built_in_admin_role_grants_every_ability(db: TestDatabase) {
    let conn = db.connection(identity::SCHEMA);
    let account = active(conn, "root@example.com").await;
    let customer = active(conn, "c@example.com").await;
    identity::grant_role(conn, account, &RoleName::parse("admin").unwrap())
        .await
        .unwrap();
    identity::grant_role(conn, customer, &RoleName::parse("customer").unwrap())
        .await
        .unwrap();
    let held = identity::abilities_of(conn, account).await.unwrap();
    assert_eq!(held, abilities(&[identity::EVERY_ABILITY]));
    for ability in identity::ABILITIES.iter().chain(&["loyalty.write"]) {
        assert!(held.iter().any(|a| a.grants(ability)), "{ability}");
    }
    assert_eq!(
        identity::abilities_of(conn, customer).await.unwrap(),
        abilities(&["orders.place"])
    );
}

async fn roles_grant_abilities(db: TestDatabase) {
    let conn = db.connection(identity::SCHEMA);
    let account = active(conn, "admin@example.com").await;
    let admin = RoleName::parse("admin").unwrap();
    let clerk = RoleName::parse("clerk").unwrap();
    identity::define_role(conn, &admin, &abilities(&["identity.admin", "ops.read"]))
        .await
        .unwrap();
    identity::define_role(conn, &clerk, &abilities(&["catalog.write"]))
        .await
        .unwrap();
    assert!(
        identity::abilities_of(conn, account)
            .await
            .unwrap()
            .is_empty()
    );
    identity::grant_role(conn, account, &admin).await.unwrap();
    identity::grant_role(conn, account, &admin).await.unwrap();
    identity::grant_role(conn, account, &clerk).await.unwrap();
    assert_eq!(
        identity::abilities_of(conn, account).await.unwrap(),
        abilities(&["catalog.write", "identity.admin", "ops.read"])
    );
    // Redefined, a role grants what it grants now.
    identity::define_role(conn, &clerk, &abilities(&["stock.write"]))
        .await
        .unwrap();
    assert_eq!(
        identity::abilities_of(conn, account).await.unwrap(),
        abilities(&["identity.admin", "ops.read", "stock.write"])
    );
    assert!(identity::revoke_role(conn, account, &admin).await.unwrap());
    assert!(!identity::revoke_role(conn, account, &admin).await.unwrap());
    assert_eq!(
        identity::roles_of(conn, account).await.unwrap(),
        BTreeSet::from([clerk])
    );
    let unknown = identity::grant_role(conn, account, &RoleName::parse("nobody").unwrap()).await;
    assert!(
        matches!(unknown, Err(Error::UnknownRole { .. })),
        "{unknown:?}"
    );
}

/// `code` with its first digit changed: not the code of this step.
fn wrong(code: &str) -> String {
    let first = code.chars().next().unwrap().to_digit(10).unwrap();
    format!("{}{}", (first + 1) % 10, &code[1..])
}

async fn totp_is_confirmed_by_a_first_code_and_each_code_is_accepted_once(db: TestDatabase) {
    let conn = db.connection(identity::SCHEMA);
    let account = active(conn, "t@example.com").await;
    let at = now();
    assert!(!identity::totp_enabled(conn, account).await.unwrap());
    let enrolment = identity::enroll_totp(conn, account, "t@example.com", at)
        .await
        .unwrap();
    assert_eq!(format!("{enrolment:?}"), "TotpEnrolment(…)");
    assert!(
        enrolment
            .otpauth_uri
            .starts_with("otpauth://totp/Switchyard:t%40example.com?"),
        "{}",
        enrolment.otpauth_uri
    );
    assert!(
        enrolment
            .otpauth_uri
            .contains(&format!("secret={}", enrolment.secret_base32))
    );
    let code = identity::totp_code(&enrolment.secret_base32, at).unwrap();

    // Not on until confirmed; a wrong code does not confirm.
    assert!(
        !identity::verify_totp(conn, account, &code, at)
            .await
            .unwrap()
    );
    assert_eq!(
        identity::confirm_totp(conn, account, &wrong(&code), at)
            .await
            .unwrap(),
        TotpConfirmation::InvalidCode
    );
    let TotpConfirmation::Confirmed { recovery_codes } =
        identity::confirm_totp(conn, account, &code, at)
            .await
            .unwrap()
    else {
        panic!("a valid first code confirms");
    };
    assert_eq!(recovery_codes.len(), identity::RECOVERY_CODES);
    assert!(identity::totp_enabled(conn, account).await.unwrap());
    assert!(matches!(
        identity::enroll_totp(conn, account, "t@example.com", at).await,
        Err(Error::TotpAlreadyEnabled)
    ));

    // The confirming code is not accepted again within its window; the next step's
    // code is accepted once; a wrong one never.
    let step = Duration::seconds(30);
    assert!(
        !identity::verify_totp(conn, account, &code, at + Duration::seconds(10))
            .await
            .unwrap()
    );
    let next = identity::totp_code(&enrolment.secret_base32, at + step).unwrap();
    assert!(
        !identity::verify_totp(conn, account, &wrong(&next), at + step)
            .await
            .unwrap()
    );
    assert!(
        identity::verify_totp(conn, account, &next, at + step)
            .await
            .unwrap()
    );
    assert!(
        !identity::verify_totp(conn, account, &next, at + step)
            .await
            .unwrap()
    );
    // A code three steps old is outside the window.
    let later = at + step * 5;
    let old = identity::totp_code(&enrolment.secret_base32, at + step * 2).unwrap();
    assert!(
        !identity::verify_totp(conn, account, &old, later)
            .await
            .unwrap()
    );

    // Recovery codes are stored as hashes and work once each.
    let stored = table_text(conn, "recovery_codes", &["code_hash"]).await;
    for code in &recovery_codes {
        assert!(
            !stored.contains(code.as_str()),
            "a raw recovery code is stored"
        );
    }
    let secrets = table_text(conn, "totp_secrets", &["secret_base32"]).await;
    assert!(secrets.contains(&enrolment.secret_base32));
    let first = recovery_codes[0].as_str();
    assert!(
        identity::use_recovery_code(conn, account, &first.to_uppercase())
            .await
            .unwrap()
    );
    assert!(
        !identity::use_recovery_code(conn, account, first)
            .await
            .unwrap()
    );
    let other = active(conn, "u@example.com").await;
    assert!(
        !identity::use_recovery_code(conn, other, recovery_codes[1].as_str())
            .await
            .unwrap()
    );
}
