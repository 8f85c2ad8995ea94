//! A local listener standing in for an attacker's host (or a misbehaving
//! provider): it records every request it receives and answers each with a
//! fixed response.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub struct Listener {
    pub url: String,
    pub port: u16,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Listener {
    /// Answers every request with `status`, extra `headers` and a JSON `body`.
    pub async fn start(status: u16, headers: &[(&str, &str)], body: &str) -> Listener {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<String>>> = Default::default();
        let mut head = format!("HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n");
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        let resp = format!(
            "{head}content-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let seen2 = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = l.accept().await else {
                    return;
                };
                let (seen, resp) = (seen2.clone(), resp.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    // Read the head, then as much body as Content-Length says.
                    loop {
                        let Ok(n) = s.read(&mut chunk).await else {
                            return;
                        };
                        if n == 0 {
                            break;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        let text = String::from_utf8_lossy(&buf).to_string();
                        if let Some(i) = text.find("\r\n\r\n") {
                            let len = text[..i]
                                .lines()
                                .find_map(|l| {
                                    let (k, v) = l.split_once(':')?;
                                    k.eq_ignore_ascii_case("content-length")
                                        .then(|| v.trim().parse::<usize>().ok())?
                                })
                                .unwrap_or(0);
                            if buf.len() >= i + 4 + len {
                                break;
                            }
                        }
                    }
                    seen.lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&buf).to_string());
                    let _ = s.write_all(resp.as_bytes()).await;
                });
            }
        });
        Listener {
            url: format!("http://{addr}"),
            port: addr.port(),
            seen,
        }
    }

    /// Every request received so far, raw.
    pub fn requests(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }

    /// Did any request carry `needle` (case-insensitive)?
    pub fn saw(&self, needle: &str) -> bool {
        let n = needle.to_lowercase();
        self.requests()
            .iter()
            .any(|r| r.to_lowercase().contains(&n))
    }
}

/// A token endpoint in front of a real provider: it relays requests until
/// told to fail, so a test can make a provider's answers pass or fail
/// without changing where a connection's tokens go.
pub struct Relay {
    pub url: String,
    /// 0: relay; 1: drop the connection unanswered; else answer this status.
    mode: Arc<std::sync::atomic::AtomicU16>,
}

impl Relay {
    pub async fn start(upstream: &str) -> Relay {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let mode: Arc<std::sync::atomic::AtomicU16> = Default::default();
        let (mode2, upstream) = (mode.clone(), upstream.trim_end_matches('/').to_string());
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            while let Ok((mut s, _)) = l.accept().await {
                let (mode, upstream, client) = (mode2.clone(), upstream.clone(), client.clone());
                tokio::spawn(async move {
                    let m = mode.load(std::sync::atomic::Ordering::SeqCst);
                    let req = read_request(&mut s).await;
                    let (status, body) = match m {
                        1 => return,
                        0 => {
                            let (path, headers, body) = req;
                            let mut r = client.post(format!("{upstream}{path}")).body(body);
                            for (k, v) in headers {
                                if k == "authorization" || k == "content-type" || k == "accept" {
                                    r = r.header(k, v);
                                }
                            }
                            match r.send().await {
                                Ok(resp) => (
                                    resp.status().as_u16(),
                                    resp.text().await.unwrap_or_default(),
                                ),
                                Err(_) => (502, "{}".to_string()),
                            }
                        }
                        s => (s, "{\"error\":\"temporarily_unavailable\"}".to_string()),
                    };
                    let resp = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\nretry-after: 120\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = s.write_all(resp.as_bytes()).await;
                });
            }
        });
        Relay {
            url: format!("http://{addr}"),
            mode,
        }
    }

    pub fn relay(&self) {
        self.mode.store(0, std::sync::atomic::Ordering::SeqCst);
    }
    pub fn fail_with(&self, status: u16) {
        self.mode.store(status, std::sync::atomic::Ordering::SeqCst);
    }
    pub fn go_down(&self) {
        self.mode.store(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// (path, lower-cased headers, body) of one HTTP/1.1 request.
async fn read_request(s: &mut tokio::net::TcpStream) -> (String, Vec<(String, String)>, Vec<u8>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).await.unwrap_or(0);
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..i]).to_string();
        let mut lines = head.lines();
        let path = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .unwrap_or("/")
            .to_string();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_string()))
            .collect();
        let len = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .and_then(|(_, v)| v.parse::<usize>().ok())
            .unwrap_or(0);
        while buf.len() < i + 4 + len {
            let n = s.read(&mut chunk).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let body = buf[i + 4..].to_vec();
        return (path, headers, body);
    }
    ("/".into(), Vec::new(), Vec::new())
}
