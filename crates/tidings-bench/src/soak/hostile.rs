//! A hostile client, on raw sockets: malformed WebSocket frames after a valid upgrade, a
//! POST announcing a body far over the limit, and POST bodies trickled a byte at a time.
//! The run only needs the nodes to survive it and keep serving everyone else; what each
//! attempt was answered is counted for the report.

use std::collections::BTreeMap;
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// Frames no client may send: unmasked, a reserved opcode, a length of 2^63 - 1, text that
/// is not UTF-8, a fragmented control frame, binary after hello, and a huge text frame.
fn bad_frames() -> Vec<Vec<u8>> {
    let masked = |opcode: u8, payload: &[u8]| {
        let mut frame = vec![0x80 | opcode, 0x80 | payload.len() as u8, 1, 2, 3, 4];
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ [1, 2, 3, 4][i % 4]));
        frame
    };
    let hello = br#"{"messageType":"hello","use_webpush":true}"#;
    vec![
        vec![0x81, 0x02, b'{', b'}'],
        masked(0x03, b"x"),
        [vec![0x81, 0xff], vec![0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], vec![0; 4]].concat(),
        masked(0x01, &[0xff, 0xfe, 0xfd]),
        {
            let mut ping = masked(0x09, b"p");
            ping[0] = 0x09;
            ping
        },
        [masked(0x01, hello), masked(0x02, b"bin")].concat(),
        [vec![0x81, 0xfe, 0xff, 0xff, 1, 2, 3, 4], vec![b'a'; 1000]].concat(),
    ]
}

async fn exchange(port: u16, request: &[u8], then: &[u8], wait: Duration) -> String {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)).await else { return "refused".into() };
    if stream.write_all(request).await.is_err() || stream.write_all(then).await.is_err() {
        return "reset".into();
    }
    let mut answer = Vec::new();
    match tokio::time::timeout(wait, stream.read_to_end(&mut answer)).await {
        Err(_) => "held open".into(),
        Ok(_) if answer.starts_with(b"HTTP/1.1 101") => "upgraded, then closed".into(),
        Ok(_) => String::from_utf8_lossy(answer.get(..12).unwrap_or(&answer)).trim().to_owned(),
    }
}

/// Attacks the node on `port` through `endpoint_path` (a real endpoint's path); what each
/// kind of attempt was answered, counted.
pub async fn attack(port: u16, endpoint_path: &str, trickled: usize) -> BTreeMap<String, usize> {
    let mut outcomes = BTreeMap::new();
    let upgrade = format!(
        "GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    for frame in bad_frames() {
        let answer = exchange(port, upgrade.as_bytes(), &frame, Duration::from_secs(15)).await;
        *outcomes.entry(format!("bad frame: {answer}")).or_default() += 1;
    }
    let post = |length: usize| {
        format!(
            "POST {endpoint_path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nTTL: 60\r\n\
             Content-Encoding: aes128gcm\r\nContent-Length: {length}\r\n\r\n"
        )
    };
    let answer = exchange(port, post(1 << 30).as_bytes(), &[0; 65536], Duration::from_secs(15)).await;
    *outcomes.entry(format!("1 GiB body: {answer}")).or_default() += 1;
    let trickles = (0..trickled).map(|_| {
        let request = post(4096);
        async move {
            let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)).await else {
                return "refused".to_owned();
            };
            if stream.write_all(request.as_bytes()).await.is_err() {
                return "reset".into();
            }
            let mut answer = [0u8; 12];
            for _ in 0..150 {
                tokio::select! {
                    read = stream.read(&mut answer) => {
                        return match read {
                            Ok(n) if n > 0 => String::from_utf8_lossy(&answer[..n]).trim().to_owned(),
                            _ => "closed".into(),
                        };
                    }
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {
                        if stream.write_all(b"x").await.is_err() {
                            return "reset".into();
                        }
                    }
                }
            }
            "held open".into()
        }
    });
    for answer in futures_join(trickles).await {
        *outcomes.entry(format!("trickled body: {answer}")).or_default() += 1;
    }
    outcomes
}

async fn futures_join<F: std::future::Future<Output = String> + Send + 'static>(
    futures: impl Iterator<Item = F>,
) -> Vec<String> {
    let mut set = tokio::task::JoinSet::new();
    for future in futures {
        set.spawn(future);
    }
    let mut all = Vec::new();
    while let Some(done) = set.join_next().await {
        all.push(done.unwrap_or_else(|e| e.to_string()));
    }
    all
}
