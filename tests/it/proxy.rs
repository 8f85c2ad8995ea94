//! A TCP proxy in front of a real server (MariaDB, PostgreSQL, Redis) that a
//! test steers: pass traffic, drop new connections, or hold them open
//! without an answer (a stalled network, a tarpit) until told what to do.

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum Mode {
    /// Forward both ways.
    Pass = 0,
    /// Accept and close at once (the server went away).
    Drop = 1,
    /// Accept and answer nothing until [`Proxy::release_held`].
    Hold = 2,
}

impl Mode {
    fn of(v: u8) -> Mode {
        match v {
            0 => Mode::Pass,
            1 => Mode::Drop,
            _ => Mode::Hold,
        }
    }
}

pub struct Proxy {
    pub port: u16,
    mode: Arc<AtomicU8>,
    /// What held connections become once released.
    fate: Arc<AtomicU8>,
    held: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Listens on 127.0.0.1 (a free port) in front of `upstream`.
    pub async fn start(upstream: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mode = Arc::new(AtomicU8::new(Mode::Pass as u8));
        let fate = Arc::new(AtomicU8::new(Mode::Hold as u8));
        let held = Arc::new(AtomicUsize::new(0));
        let upstream = upstream.to_string();
        let (m, f, h) = (mode.clone(), fate.clone(), held.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let (m, f, h, up) = (m.clone(), f.clone(), h.clone(), upstream.clone());
                tokio::spawn(async move {
                    let mut mode = Mode::of(m.load(Ordering::SeqCst));
                    if mode == Mode::Hold {
                        h.fetch_add(1, Ordering::SeqCst);
                        loop {
                            mode = Mode::of(f.load(Ordering::SeqCst));
                            if mode != Mode::Hold {
                                break;
                            }
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                    if mode == Mode::Drop {
                        drop(client);
                        return;
                    }
                    forward(client, &up).await;
                });
            }
        });
        Proxy {
            port,
            mode,
            fate,
            held,
            task,
        }
    }

    /// What connections accepted from now on get.
    pub fn set(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
    }

    /// Connections accepted in [`Mode::Hold`] so far.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::SeqCst)
    }

    /// Lets the held connections go on as `fate` (`Pass` or `Drop`).
    pub fn release_held(&self, fate: Mode) {
        self.fate.store(fate as u8, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn forward(mut client: TcpStream, upstream: &str) {
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
}
