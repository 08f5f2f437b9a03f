//! The HTTP server's connection limits: a client that sends its headers slowly, or a
//! keep-alive connection that sits idle, is cut off after `http.header_read_timeout`;
//! past `http.max_connections` a new connection waits for a free one.

use std::time::{Duration, Instant};

use switchyard::{Application, Config, ServeOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads until the server closes the connection; how long that took, and what was
/// read.
async fn until_closed(stream: &mut TcpStream) -> (Duration, String) {
    let started = Instant::now();
    let mut read = Vec::new();
    let mut buffer = [0_u8; 1024];
    loop {
        match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buffer)).await {
            Ok(Ok(0) | Err(_)) => break,
            Ok(Ok(n)) => read.extend_from_slice(&buffer[..n]),
            Err(_) => panic!("the server kept the connection open for 10 s"),
        }
    }
    (
        started.elapsed(),
        String::from_utf8_lossy(&read).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_clients_are_cut_off_and_connections_are_limited() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.database.url = format!("sqlite://{}", dir.path().display());
    config.http.addr = "127.0.0.1:0".parse().unwrap();
    config.http.header_read_timeout = Duration::from_secs(1);
    config.http.max_connections = 2;
    let app = Application::build(&config, ServeOptions::default())
        .await
        .unwrap();
    let addr = app.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));

    // Headers one line at a time, never finished: cut off after the timeout.
    let started = Instant::now();
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let trickle = tokio::spawn(async move {
        for i in 0..20 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if slow
                .write_all(format!("X-Slow-{i}: y\r\n").as_bytes())
                .await
                .is_err()
            {
                break;
            }
        }
        slow
    });
    let mut slow = trickle.await.unwrap();
    until_closed(&mut slow).await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "a client still sending headers after {took:?} was kept"
    );

    // One request answered, then idle on a keep-alive connection: closed after the
    // timeout.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (took, answered) = until_closed(&mut idle).await;
    assert!(answered.starts_with("HTTP/1.1 200"), "{answered}");
    assert!(
        took >= Duration::from_millis(800) && took < Duration::from_secs(3),
        "an idle connection was closed after {took:?}"
    );

    // Two connections that say nothing take both slots: a third is served only once
    // the timeout has closed them.
    let _first = TcpStream::connect(addr).await.unwrap();
    let _second = TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let mut third = TcpStream::connect(addr).await.unwrap();
    third
        .write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let (_, answered) = until_closed(&mut third).await;
    let waited = started.elapsed();
    assert!(answered.starts_with("HTTP/1.1 200"), "{answered}");
    assert!(
        waited >= Duration::from_millis(700),
        "served at once although both slots were taken ({waited:?})"
    );

    let _ = stop.send(());
    server.await.unwrap().unwrap();
}
