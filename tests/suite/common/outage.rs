//! A TCP forwarder on loopback that can cut a real server off and bring it
//! back: while down it resets every forwarded connection and refuses new
//! ones by closing them at once, which is what a client sees when the
//! server behind it restarts or the network between them fails.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct Outage {
    pub port: u16,
    down: Arc<AtomicBool>,
    cut: watch::Sender<u64>,
}

impl Outage {
    /// Forwards a fresh loopback port to `127.0.0.1:target`.
    pub async fn forward_to(target: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let down = Arc::new(AtomicBool::new(false));
        let (cut, _) = watch::channel(0u64);
        let (accept_down, accept_cut) = (down.clone(), cut.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if accept_down.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let mut cut = accept_cut.subscribe();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", target)).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Self { port, down, cut }
    }

    /// Cuts every forwarded connection and refuses new ones.
    pub fn go_down(&self) {
        self.down.store(true, Ordering::SeqCst);
        self.cut.send_modify(|n| *n += 1);
    }

    pub fn come_back(&self) {
        self.down.store(false, Ordering::SeqCst);
    }
}
