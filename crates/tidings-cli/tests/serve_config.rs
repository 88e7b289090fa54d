//! `tidings serve` settings: TLS without a reverse proxy, and flags over environment over
//! the TOML file.

mod common;

use common::push::{Agent, Sender, Service, TlsService};
use futures_util::SinkExt as _;
use tokio_tungstenite::tungstenite::protocol::Message as Frame;

#[tokio::test]
async fn tls_serves_websockets_and_the_push_api() {
    let tls = TlsService::start(&[]);
    // A wss:// user agent trusting the certificate, offering no ALPN (as tidings-agent).
    let mut agent = tls.agent(&[]).await;
    let sender = tls.sender();
    let sub = agent.register(Some(sender.key())).await;
    assert!(sub.endpoint.starts_with(&format!("{}/push/", tls.url())), "{}", sub.endpoint);
    assert_eq!(sender.push(&sub, "over TLS").await.status, 201);
    assert_eq!(sub.decrypt(&agent.notification().await), b"over TLS");

    // Frames sent one TLS record each, without waiting: the service reads several records
    // at once, and answers every frame in them.
    let channels: Vec<String> = (0..300).map(|_| common::push::uuid()).collect();
    for channel in &channels {
        let frame = serde_json::json!({"messageType": "register", "channelID": channel});
        agent.ws.send(Frame::text(frame.to_string())).await.unwrap();
    }
    for channel in &channels {
        let reply = agent.recv().await;
        assert_eq!(
            (reply["channelID"].as_str(), reply["status"].as_u64()),
            (Some(channel.as_str()), Some(200))
        );
    }
}

#[tokio::test]
async fn flags_win_over_environment_over_the_file() {
    let dir = std::env::temp_dir().join(format!("tidings-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("tidings.toml");
    std::fs::write(&file, "public_url = \"https://from-file.example\"\nmax_pending = 7\nmax_ttl = 50\n")
        .unwrap();
    let config = file.to_str().unwrap();

    // The file alone.
    let service = Service::start(&["--config", config]);
    let mut agent = Agent::hello(&service.ws_url(), None).await;
    let sub = agent.register(None).await;
    assert!(sub.endpoint.starts_with("https://from-file.example/push/"), "{}", sub.endpoint);
    drop(service);

    // The environment over the file, and a flag over both.
    let service = Service::start_with_env(
        &["--config", config, "--max-ttl", "40"],
        &[("TIDINGS_PUBLIC_URL", "https://from-env.example"), ("TIDINGS_MAX_TTL", "30")],
    );
    let mut agent = Agent::hello(&service.ws_url(), None).await;
    let mut sub = agent.register(None).await;
    assert!(sub.endpoint.starts_with("https://from-env.example/push/"), "{}", sub.endpoint);
    // The TTL cap: the flag's 40, not the environment's 30 or the file's 50. (Sent to the
    // real address, unsigned: the subscription is unrestricted.)
    sub.endpoint = sub.endpoint.replace("https://from-env.example", &service.url());
    let mut message = tidings_sender::Message::new(b"x".to_vec());
    message.ttl = 1000;
    let request = tidings_sender::prepare(&sub.subscription(), &message, None, common::push::now()).unwrap();
    let response = Sender::new().client.send(request).await.unwrap();
    assert_eq!((response.status.as_u16(), response.ttl), (201, Some(40)));
    drop(service);

    // Bad settings are refused with a message that says what to fix.
    for (args, message) in [
        (vec!["--max-body", "100"], "at least 4096"),
        (vec!["--listen", "0.0.0.0:0"], "needs --public-url"),
        (vec!["--public-url", "push.example.com"], "http:// or https://"),
        (vec!["--config", "/nonexistent.toml"], "cannot read"),
        (vec!["--tls-cert", "/nonexistent.pem"], "both --tls-cert and --tls-key"),
    ] {
        let out = common::tidings()
            .arg("serve")
            .args(&args)
            .arg("--data-dir")
            .arg(dir.join("unused"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {message:?} not in {stderr}");
    }
    std::fs::write(&file, "listen = 5\n").unwrap();
    let out = common::tidings().args(["serve", "--config", config]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a valid configuration"));
    std::fs::write(&file, "lisen = \"127.0.0.1:1\"\n").unwrap();
    let out = common::tidings().args(["serve", "--config", config]).output().unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unknown field"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
