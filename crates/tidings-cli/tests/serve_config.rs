//! `tidings serve` settings: TLS without a reverse proxy, and flags over environment over
//! the TOML file.

mod common;

use common::push::{Agent, Sender, Service};
use std::sync::Arc;
use tidings_sender::{ClientConfig, PushClient};

#[tokio::test]
async fn tls_serves_websockets_and_the_push_api() {
    let dir = std::env::temp_dir().join(format!("tidings-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    std::fs::write(dir.join("cert.pem"), cert.cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), cert.signing_key.serialize_pem()).unwrap();
    let port = common::free_port();
    let public_url = format!("https://127.0.0.1:{port}");
    let service = Service::start_on(
        port,
        &[
            "--tls-cert",
            dir.join("cert.pem").to_str().unwrap(),
            "--tls-key",
            dir.join("key.pem").to_str().unwrap(),
            "--public-url",
            &public_url,
        ],
    );

    // A wss:// user agent trusting the certificate.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .unwrap();
    let mut request = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        format!("wss://127.0.0.1:{port}/"),
    )
    .unwrap();
    request.headers_mut().insert("sec-websocket-protocol", "push-notification".parse().unwrap());
    let (ws, _) = tokio_tungstenite::client_async(request, tls).await.unwrap();
    let mut agent = Agent::over(ws, None).await;

    let mut sender = Sender::new();
    sender.client =
        PushClient::new(ClientConfig { extra_roots: vec![cert.cert.der().clone()], ..Default::default() });
    let sub = agent.register(Some(sender.key())).await;
    assert!(sub.endpoint.starts_with(&format!("{public_url}/push/")), "{}", sub.endpoint);
    assert_eq!(sender.push(&sub, "over TLS").await.status, 201);
    assert_eq!(sub.decrypt(&agent.notification().await), b"over TLS");
    drop(service);
    let _ = std::fs::remove_dir_all(&dir);
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
