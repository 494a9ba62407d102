//! Running the real `flarum-ws` binary as an admin would.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `flarum-ws` in `dir` with a clean environment (only PATH kept).
pub fn flarum_ws(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_flarum-ws"));
    command
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap());
    command
}

/// A running `flarum-ws serve` and the address it printed.
pub struct Running {
    pub child: Child,
    pub port: u16,
    log: std::sync::mpsc::Receiver<String>,
}

pub fn start(command: &mut Command) -> Running {
    if command.get_args().next().is_none() {
        command.arg("serve");
    }
    let mut child = command.stderr(Stdio::piped()).spawn().expect("spawn");
    let stderr = child.stderr.take().unwrap();
    let (tx, log) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        if let Ok(line) = log.recv_timeout(Duration::from_millis(100)) {
            if let Some(rest) = line.split("Listening on ").nth(1) {
                let address = rest.split_whitespace().next().unwrap();
                let port = address.rsplit(':').next().unwrap().parse().unwrap();
                return Running { child, port, log };
            }
            seen.push(line);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("server did not start; log: {seen:?}");
}

impl Running {
    pub fn lines_until_exit(&mut self) -> (i32, Vec<String>) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                std::thread::sleep(Duration::from_millis(100));
                return (status.code().unwrap_or(-1), self.log.try_iter().collect());
            }
            assert!(Instant::now() < deadline, "server did not exit");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
