//! flarum/realtime's restart request: `php flarum realtime:halt`, and saving
//! any of its settings, put the cache key `flarum.realtime.require-halt`;
//! its daemon polls the cache every 10 s, deletes the key and exits for its
//! supervisor to restart it. flarum-ws reads the same key from Flarum's file
//! cache (`storage/cache/`, laid out as Laravel's file store does: the
//! key's SHA-1 split into two folder levels, the file starting with a
//! ten-digit expiry time), or from the forum's Redis when it caches there
//! (fof/redis: `SET {prefix}{key}`), and reloads in place instead.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use sha1::{Digest, Sha1};

/// The cache keys that ask for a restart: Flarum 2's, and the one its betas
/// (the extension's "blomstra" days) used.
pub const HALT_KEYS: [&str; 2] = [
    "flarum.realtime.require-halt",
    "blomstra-realtime-require-halt",
];

/// Where Laravel's file store keeps `key` under `cache_dir`.
pub fn cache_file(cache_dir: &Path, key: &str) -> PathBuf {
    let hash = hex::encode(Sha1::digest(key.as_bytes()));
    cache_dir.join(&hash[0..2]).join(&hash[2..4]).join(&hash)
}

/// The first bytes of the cache entry at `path` (its expiry time), read
/// only from a regular file: a link is not followed (`O_NOFOLLOW`), a FIFO
/// or device does not block the open (`O_NONBLOCK`) and is refused, and no
/// more than the ten digits are read whatever the file's size. The forum's
/// cache folder is writable by the forum, so what sits there is not trusted.
fn read_expiry(path: &Path) -> Option<u64> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    if !file.metadata().ok()?.is_file() {
        tracing::warn!(
            "{} is not a regular file; ignored as a restart request",
            path.display()
        );
        return None;
    }
    let mut digits = [0u8; 10];
    file.take(10).read_exact(&mut digits).ok()?;
    std::str::from_utf8(&digits).ok()?.parse().ok()
}

/// Whether a halt was requested in the forum's file cache under `root`;
/// the request is taken (the file deleted) as the daemon does. An expired
/// entry is no request. Blocking file work: run it off the async runtime.
pub fn take_halt_request(root: &Path) -> bool {
    let cache_dir = root.join("storage/cache");
    let mut requested = false;
    for key in HALT_KEYS {
        let path = cache_file(&cache_dir, key);
        if std::fs::symlink_metadata(&path).is_err() {
            continue;
        }
        let expires = read_expiry(&path).unwrap_or(0);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if expires > now {
            requested = true;
        }
        if let Err(error) = std::fs::remove_file(&path) {
            tracing::warn!(
                "cannot delete the restart request {}: {error}; it will be seen again",
                path.display()
            );
        }
    }
    requested
}

/// Whether a halt was requested in the forum's Redis cache (fof/redis:
/// the key under `prefix`, in the database of `url`); taken by deleting it.
pub async fn take_redis_halt_request(url: &str, prefix: &str) -> Result<bool, String> {
    let client = redis::Client::open(url).map_err(|e| format!("invalid Redis URL: {e}"))?;
    let mut connection = tokio::time::timeout(
        std::time::Duration::from_secs(3),
        client.get_multiplexed_async_connection(),
    )
    .await
    .map_err(|_| "no answer within 3 s".to_owned())?
    .map_err(|e| e.to_string())?;
    let mut taken = false;
    for key in HALT_KEYS {
        let deleted: i64 = redis::cmd("DEL")
            .arg(format!("{prefix}{key}"))
            .query_async(&mut connection)
            .await
            .map_err(|e| e.to_string())?;
        taken |= deleted > 0;
    }
    Ok(taken)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_request_is_taken_once_and_an_expired_one_ignored() {
        let root = tempfile::tempdir().unwrap();
        let path = cache_file(&root.path().join("storage/cache"), HALT_KEYS[0]);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "9999999999s:0:\"\";").unwrap();
        assert!(take_halt_request(root.path()));
        assert!(!path.exists());
        assert!(!take_halt_request(root.path()));
        std::fs::write(&path, "0000000001s:0:\"\";").unwrap();
        assert!(!take_halt_request(root.path()));
    }

    /// `take_halt_request` on a thread, failing the test if it does not
    /// answer within 5 s (a blocked read would freeze the server).
    fn answers_promptly(root: &Path) -> bool {
        let root = root.to_owned();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(take_halt_request(&root)));
        rx.recv_timeout(std::time::Duration::from_secs(5))
            .expect("the restart request is read without blocking")
    }

    #[test]
    fn a_fifo_or_a_link_in_the_cache_is_no_request_and_never_blocks() {
        let root = tempfile::tempdir().unwrap();
        let path = cache_file(&root.path().join("storage/cache"), HALT_KEYS[0]);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let made = std::process::Command::new("mkfifo")
            .arg(&path)
            .status()
            .unwrap();
        assert!(made.success());
        assert!(!answers_promptly(root.path()), "a FIFO is no request");
        assert!(!path.exists(), "and it is taken away like any entry");

        // A link to an endless file is not followed.
        std::os::unix::fs::symlink("/dev/zero", &path).unwrap();
        assert!(!answers_promptly(root.path()));
        // A link to a fresh request is not followed either.
        let elsewhere = root.path().join("elsewhere");
        std::fs::write(&elsewhere, "9999999999s:0:\"\";").unwrap();
        std::os::unix::fs::symlink(&elsewhere, &path).unwrap();
        assert!(!answers_promptly(root.path()));
        assert!(elsewhere.exists(), "the link's target is left alone");

        // A huge file is not read whole: only its first ten bytes count.
        let mut big = b"9999999999s:0:".to_vec();
        big.resize(64 * 1024 * 1024, b'x');
        std::fs::write(&path, big).unwrap();
        assert!(answers_promptly(root.path()));
    }
}
