//! Does the login's timing tell whether an email has an account? Times the password
//! step through `workflows::Login` (argon2id at the default, OWASP, cost) for an email
//! no account has, for an account with a wrong password (the baseline: the two must
//! not be told apart), and for the right password, interleaved attempt by attempt so
//! that drift hits each case alike. Prints mean, p50 and p99 per case and the ratio of
//! each to the wrong-password baseline.
//!
//! `cargo run --release -p benches --bin login-timing [ATTEMPTS_PER_CASE] [sqlite|postgres]`

use std::time::{Duration, Instant};

use identity::{AccountKind, AccountStatus, DisplayName, Email, NewAccount, Password};
use orchestration::testing::{Engine, TestDatabase};
use workflows::{Login, LoginOutcome, LoginSettings, PasswordStep};

const PASSWORD: &str = "correct horse battery staple";

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

#[tokio::main]
#[allow(clippy::print_stdout)] // The table is the output.
async fn main() {
    let mut args = std::env::args().skip(1);
    let attempts: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(200);
    let engine = match args.next().as_deref() {
        Some("postgres") => Engine::Postgres,
        _ => Engine::Sqlite,
    };
    let db = TestDatabase::create(engine, migrations::all())
        .await
        .expect("the database is reachable");
    let fabric = db.fabric();
    let settings = LoginSettings {
        per_email: identity::ThrottlePolicy {
            max_failures: u32::MAX,
            ..LoginSettings::default().per_email
        },
        per_client: identity::ThrottlePolicy {
            max_failures: u32::MAX,
            ..LoginSettings::default().per_client
        },
        ..LoginSettings::default()
    };
    let conn = fabric.connection(identity::SCHEMA).expect("identity");
    let now = fabric.clock().now();
    let account = identity::create_account(
        conn,
        &NewAccount {
            email: Email::parse("known@example.com").expect("an email"),
            display_name: DisplayName::parse("Known").expect("a name"),
            kind: AccountKind::Customer,
            status: AccountStatus::Active,
        },
        now,
    )
    .await
    .expect("an account");
    let hash = identity::hash_password(
        &Password::new(PASSWORD).expect("a password"),
        &settings.password,
    )
    .expect("a hash");
    identity::set_password(conn, account.id, &hash, now)
        .await
        .expect("its password");
    let login = Login::new(fabric, settings);

    let cases: [(&str, &str, &str); 3] = [
        ("unknown email", "nobody@example.com", PASSWORD),
        ("wrong password", "known@example.com", "not the password"),
        ("right password", "known@example.com", PASSWORD),
    ];
    let mut timings: Vec<Vec<Duration>> = vec![Vec::with_capacity(attempts); cases.len()];
    // One warm-up round, not counted.
    for round in 0..=attempts {
        for (i, (_, email, password)) in cases.iter().enumerate() {
            let started = Instant::now();
            let outcome = login
                .password(&PasswordStep {
                    email,
                    password,
                    client: "bench",
                    user_agent: "login-timing",
                })
                .await
                .expect("a login");
            let took = started.elapsed();
            let expected_session = i == 2;
            assert_eq!(
                matches!(outcome, LoginOutcome::SessionStarted { .. }),
                expected_session,
                "{outcome:?}"
            );
            if !expected_session {
                assert_eq!(outcome, LoginOutcome::InvalidCredentials);
            }
            if round > 0 {
                timings[i].push(took);
            }
        }
    }
    let mean = |t: &[Duration]| t.iter().sum::<Duration>() / u32::try_from(t.len()).unwrap_or(1);
    let baseline = {
        let mut sorted = timings[1].clone();
        sorted.sort();
        (mean(&sorted), percentile(&sorted, 0.5))
    };
    println!(
        "login timing, {engine:?}, {attempts} attempts per case (argon2id {} KiB, t={}, p={})",
        settings.password.memory_kib, settings.password.iterations, settings.password.parallelism
    );
    println!("| case | mean ms | p50 ms | p99 ms | mean / wrong password | p50 / wrong password |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (i, (name, _, _)) in cases.iter().enumerate() {
        let mut sorted = timings[i].clone();
        sorted.sort();
        let (m, p50, p99) = (
            mean(&sorted),
            percentile(&sorted, 0.5),
            percentile(&sorted, 0.99),
        );
        println!(
            "| {name} | {:.2} | {:.2} | {:.2} | {:.3} | {:.3} |",
            m.as_secs_f64() * 1e3,
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3,
            m.as_secs_f64() / baseline.0.as_secs_f64(),
            p50.as_secs_f64() / baseline.1.as_secs_f64(),
        );
    }
    fabric.close().await;
}
