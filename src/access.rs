//! Whether a given account can read a file (config.php, a SQLite database,
//! a certificate or its key): every directory above it must let the
//! account in (search permission) and the file must let it read, by the
//! mode bits or a POSIX ACL. `check` usually runs as root, which reads
//! anything, while the service runs as `www-data`; a key in Let's Encrypt's
//! `archive/` (0700) then passes `check` and fails the service. A leaf
//! module: `check`, `forum` and `tls` all ask it.
//! Judging by the rules the kernel applies, for the service's account,
//! tells the admin before the service fails, and names what blocks it.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::unistd::{Gid, Group, Uid, User};

/// A user account, as the kernel sees it when checking permissions.
#[derive(Debug, Clone)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    /// The primary group and every supplementary one.
    pub groups: Vec<u32>,
    /// The primary group's name (its number when it has none), for `chgrp`.
    pub group: String,
}

/// The name of group `gid`, or its number.
fn group_name(gid: Gid) -> String {
    Group::from_gid(gid)
        .ok()
        .flatten()
        .map_or_else(|| gid.to_string(), |group| group.name)
}

impl Account {
    /// The account named `name` (from the system's user database).
    pub fn by_name(name: &str) -> Result<Self, String> {
        let user = User::from_name(name)
            .map_err(|e| format!("cannot look up the user {name}: {e}"))?
            .ok_or_else(|| format!("there is no user named {name} on this machine"))?;
        let c_name =
            std::ffi::CString::new(name).map_err(|_| format!("{name:?} is not a user name"))?;
        let mut groups: Vec<u32> = nix::unistd::getgrouplist(&c_name, user.gid)
            .map(|groups| groups.into_iter().map(Gid::as_raw).collect())
            .unwrap_or_default();
        if !groups.contains(&user.gid.as_raw()) {
            groups.push(user.gid.as_raw());
        }
        Ok(Self {
            name: name.to_owned(),
            uid: user.uid.as_raw(),
            groups,
            group: group_name(user.gid),
        })
    }

    /// The account this process runs as (its effective user and groups).
    pub fn current() -> Self {
        let uid = Uid::effective();
        let name = User::from_uid(uid)
            .ok()
            .flatten()
            .map(|user| user.name)
            .unwrap_or_else(|| format!("uid {uid}"));
        let mut groups: Vec<u32> = nix::unistd::getgroups()
            .map(|groups| groups.into_iter().map(Gid::as_raw).collect())
            .unwrap_or_default();
        let primary = Gid::effective().as_raw();
        if !groups.contains(&primary) {
            groups.push(primary);
        }
        Self {
            name,
            uid: uid.as_raw(),
            groups,
            group: group_name(Gid::effective()),
        }
    }
}

/// What keeps an account from reading a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Blocked {
    /// A directory on the way does not let the account in.
    Directory(PathBuf, String),
    /// The file itself does not let the account read.
    File(PathBuf, String),
    /// The file or a directory does not exist (or cannot be examined).
    Missing(PathBuf),
}

impl Blocked {
    /// One sentence for `account`: what blocks and how it is set.
    pub fn describe(&self, account: &Account) -> String {
        match self {
            Self::Directory(dir, how) => {
                format!("{} cannot enter {} ({how})", account.name, dir.display())
            }
            Self::File(file, how) => {
                format!("{} cannot read {} ({how})", account.name, file.display())
            }
            Self::Missing(path) => format!("{} does not exist", path.display()),
        }
    }

    /// The commands that grant `account` access, least access first, in
    /// a form that outlives certbot's renewals: certbot gives each renewed
    /// key the group and mode of the one before, while an ACL set with
    /// setfacl stays on the old file.
    pub fn fix(&self, account: &Account) -> String {
        let (user, group) = (&account.name, &account.group);
        match self {
            Self::Directory(dir, _) if letsencrypt_base(dir).is_some() => {
                let base = letsencrypt_base(dir).unwrap_or(dir).display();
                format!(
                    "let {user} read the key in a way certbot's renewals keep: chmod 0755 {base}/live {base}/archive && chgrp {group} {base}/archive/*/privkey*.pem && chmod 0640 {base}/archive/*/privkey*.pem (each renewed key gets the group and mode of the one before; an ACL from setfacl stays on the old key)"
                )
            }
            Self::Directory(dir, _) => format!(
                "let {user} into {}: chmod o+x {} (or, with the acl package installed: setfacl -m u:{user}:x {})",
                dir.display(),
                dir.display(),
                dir.display()
            ),
            Self::File(file, _) => format!(
                "let {user} read it: chgrp {group} {} && chmod 0640 {} (or, with the acl package installed: setfacl -m u:{user}:r {})",
                file.display(),
                file.display(),
                file.display()
            ),
            Self::Missing(path) => format!("check the path {}", path.display()),
        }
    }
}

/// The folder holding Let's Encrypt's `live/` and `archive/`, when `dir`
/// is one of them or inside one.
fn letsencrypt_base(dir: &Path) -> Option<&Path> {
    dir.ancestors()
        .find(|base| base.join("live").is_dir() && base.join("archive").is_dir())
        .filter(|base| *base != dir)
}

/// `r` = 4, `x` = 1, as in the mode bits.
const READ: u32 = 4;
const SEARCH: u32 = 1;

/// POSIX ACL entry tags (as stored in `system.posix_acl_access`).
const ACL_USER_OBJ: u16 = 0x01;
const ACL_USER: u16 = 0x02;
const ACL_GROUP_OBJ: u16 = 0x04;
const ACL_GROUP: u16 = 0x08;
const ACL_MASK: u16 = 0x10;
const ACL_OTHER: u16 = 0x20;
const ACL_VERSION: u32 = 2;

/// One ACL entry: tag, permission bits, user or group id.
type AclEntry = (u16, u32, u32);

/// The entries of an extended ACL, or `None` when the file has none.
fn read_acl(path: &Path) -> Option<Vec<AclEntry>> {
    let bytes = xattr::get(path, "system.posix_acl_access").ok()??;
    parse_acl(&bytes)
}

fn parse_acl(bytes: &[u8]) -> Option<Vec<AclEntry>> {
    let (version, entries) = bytes.split_first_chunk::<4>()?;
    if u32::from_le_bytes(*version) != ACL_VERSION || entries.len() % 8 != 0 {
        return None;
    }
    Some(
        entries
            .chunks_exact(8)
            .map(|entry| {
                let tag = u16::from_le_bytes([entry[0], entry[1]]);
                let perm = u32::from(u16::from_le_bytes([entry[2], entry[3]]));
                let id = u32::from_le_bytes([entry[4], entry[5], entry[6], entry[7]]);
                (tag, perm, id)
            })
            .collect(),
    )
}

/// Whether `account` has `wanted` on a file with `meta`, by the kernel's
/// rules (owner, then named users, then groups, then others; an ACL's mask
/// limits named entries and groups).
fn permitted(
    account: &Account,
    meta: &std::fs::Metadata,
    acl: Option<&[AclEntry]>,
    wanted: u32,
) -> bool {
    if account.uid == 0 {
        // Root reads anything and enters any directory.
        return true;
    }
    let mode = meta.mode();
    let (owner, group, other) = ((mode >> 6) & 7, (mode >> 3) & 7, mode & 7);
    if account.uid == meta.uid() {
        let owner = acl
            .and_then(|acl| acl.iter().find(|(tag, _, _)| *tag == ACL_USER_OBJ))
            .map_or(owner, |(_, perm, _)| *perm);
        return owner & wanted == wanted;
    }
    let Some(acl) = acl else {
        if account.groups.contains(&meta.gid()) {
            return group & wanted == wanted;
        }
        return other & wanted == wanted;
    };
    let mask = acl
        .iter()
        .find(|(tag, _, _)| *tag == ACL_MASK)
        .map_or(7, |(_, perm, _)| *perm);
    if let Some((_, perm, _)) = acl
        .iter()
        .find(|(tag, _, id)| *tag == ACL_USER && *id == account.uid)
    {
        return perm & mask & wanted == wanted;
    }
    let group_entries: Vec<u32> = acl
        .iter()
        .filter(|(tag, _, id)| {
            (*tag == ACL_GROUP_OBJ && account.groups.contains(&meta.gid()))
                || (*tag == ACL_GROUP && account.groups.contains(id))
        })
        .map(|(_, perm, _)| *perm)
        .collect();
    if !group_entries.is_empty() {
        return group_entries
            .iter()
            .any(|perm| perm & mask & wanted == wanted);
    }
    acl.iter()
        .find(|(tag, _, _)| *tag == ACL_OTHER)
        .map_or(other, |(_, perm, _)| *perm)
        & wanted
        == wanted
}

/// How a file's permissions read, for messages: `0700 root:root`.
fn shown(meta: &std::fs::Metadata, acl: bool) -> String {
    let name_of_user = User::from_uid(Uid::from_raw(meta.uid()))
        .ok()
        .flatten()
        .map_or_else(|| meta.uid().to_string(), |u| u.name);
    let name_of_group = Group::from_gid(Gid::from_raw(meta.gid()))
        .ok()
        .flatten()
        .map_or_else(|| meta.gid().to_string(), |g| g.name);
    format!(
        "{:04o} {name_of_user}:{name_of_group}{}",
        meta.mode() & 0o7777,
        if acl { " with an ACL" } else { "" }
    )
}

/// Whether `account` can read `path`: each directory from the root down,
/// then the file. A symbolic link on the way is followed (as `open` does)
/// and the walk goes on from where it leads, so Let's Encrypt's `live/`
/// links are judged by the `archive/` files behind them.
pub fn can_read(account: &Account, path: &Path) -> Result<(), Blocked> {
    let absolute = std::path::absolute(path).map_err(|_| Blocked::Missing(path.to_owned()))?;
    let components: Vec<_> = absolute.components().collect();
    let mut walked = PathBuf::new();
    for (i, component) in components.iter().enumerate() {
        walked.push(component);
        if std::fs::symlink_metadata(&walked).is_ok_and(|m| m.file_type().is_symlink()) {
            let target =
                std::fs::canonicalize(&walked).map_err(|_| Blocked::Missing(walked.clone()))?;
            let rest: PathBuf = components[i + 1..].iter().collect();
            return can_read(account, &target.join(rest));
        }
        let last = i + 1 == components.len();
        let meta = std::fs::metadata(&walked).map_err(|_| Blocked::Missing(walked.clone()))?;
        let acl = read_acl(&walked);
        let wanted = if last { READ } else { SEARCH };
        if !permitted(account, &meta, acl.as_deref(), wanted) {
            let how = shown(&meta, acl.is_some());
            return Err(if last {
                Blocked::File(walked, how)
            } else {
                Blocked::Directory(walked, how)
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acl_bytes_are_read_as_the_kernel_writes_them() {
        let mut bytes = ACL_VERSION.to_le_bytes().to_vec();
        for (tag, perm, id) in [
            (ACL_USER_OBJ, 6u16, u32::MAX),
            (ACL_USER, 4, 33),
            (ACL_GROUP_OBJ, 0, u32::MAX),
            (ACL_MASK, 4, u32::MAX),
            (ACL_OTHER, 0, u32::MAX),
        ] {
            bytes.extend(tag.to_le_bytes());
            bytes.extend(perm.to_le_bytes());
            bytes.extend(id.to_le_bytes());
        }
        let entries = parse_acl(&bytes).unwrap();
        assert_eq!(entries[1], (ACL_USER, 4, 33));
        assert!(parse_acl(&bytes[..7]).is_none());
    }
}
