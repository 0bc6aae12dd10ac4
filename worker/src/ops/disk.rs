//! `system.disk.get`'s work: the real filesystems in host_root's mount table and their statvfs(3) figures in bytes.
//!
//! Like `df`: pseudo filesystems (proc, sysfs, tmpfs, cgroup, ...) are skipped, a mount point mounted over keeps
//! only its top mount, a block device mounted at several places is listed once (at its shortest mount path), and
//! a mount whose statvfs fails or that has no blocks is left out. `free` is what an unprivileged user may still
//! use (`f_bavail`, df's "Avail"); `used` is `total - f_bfree`, so used + free can be below total (root's reserve).
//!
//! statvfs on a network filesystem whose server is gone can block for ever, so it runs on a helper thread
//! with a deadline. At most one such probe per mount is outstanding: while one has not returned, the mount is
//! reported as `{mount, error}` at once and not probed again, so a hung server costs one thread, not one per
//! call.

use super::host::{host_path, read_host_file};
use super::{OpContext, OpError};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

/// Filesystem types that hold no disk space of their own.
const PSEUDO_TYPES: &[&str] = &[
    "autofs",
    "binfmt_misc",
    "bpf",
    "cgroup",
    "cgroup2",
    "configfs",
    "debugfs",
    "devpts",
    "devtmpfs",
    "efivarfs",
    "fusectl",
    "fuse.gvfsd-fuse",
    "fuse.lxcfs",
    "fuse.portal",
    "hugetlbfs",
    "mqueue",
    "nsfs",
    "proc",
    "pstore",
    "ramfs",
    "rpc_pipefs",
    "securityfs",
    "selinuxfs",
    "squashfs",
    "sysfs",
    "tmpfs",
    "tracefs",
    "nfsd",
    "rootfs",
    "zramfs",
];
/// Network filesystems: statvfs on a dead server can hang, so it runs on a helper thread with a deadline.
const NETWORK_TYPES: &[&str] = &[
    "nfs",
    "nfs4",
    "cifs",
    "smb3",
    "smbfs",
    "ceph",
    "glusterfs",
    "fuse.sshfs",
    "9p",
];
/// How long a network filesystem may take to answer statvfs before it is reported as not answering.
const NETWORK_STATVFS_DEADLINE: Duration = Duration::from_secs(2);

/// Network mounts whose statvfs probe has not returned yet, and since when: one probe per mount at most.
static PROBES: Mutex<BTreeMap<PathBuf, Instant>> = Mutex::new(BTreeMap::new());

/// One line of a mount table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub source: String,
    pub mount: String,
    pub fstype: String,
}

/// Space on one filesystem, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Space {
    total: u64,
    used: u64,
    free: u64,
}

/// `[{mount, total, used, free}]`, sorted by mount path.
pub fn disks(ctx: &OpContext) -> Result<Value, OpError> {
    let text = read_host_file(ctx, "/proc/self/mounts")
        .or_else(|_| read_host_file(ctx, "/proc/mounts"))?;
    let mut entries = Vec::new();
    for m in real_mounts(&parse_mounts(&text)) {
        let path = host_path(ctx, &m.mount);
        if NETWORK_TYPES.contains(&m.fstype.as_str()) {
            match probe(&path, NETWORK_STATVFS_DEADLINE, statvfs) {
                Ok(s) => entries.push(figures(&m.mount, s)),
                Err(e) => {
                    log::warn!("system.disk.get: {} ({}): {e}", m.mount, m.fstype);
                    entries.push(json!({ "mount": m.mount, "error": e }));
                }
            }
            continue;
        }
        match statvfs(&path) {
            Ok(s) if s.total > 0 => entries.push(figures(&m.mount, s)),
            Ok(_) => {}
            Err(e) => log::debug!("system.disk.get: skipping {}: {e}", m.mount),
        }
    }
    Ok(Value::Array(entries))
}

fn figures(mount: &str, s: Space) -> Value {
    json!({ "mount": mount, "total": s.total, "used": s.used, "free": s.free })
}

/// The lines of /proc/self/mounts: `SOURCE MOUNT TYPE OPTIONS 0 0`, with spaces and such in paths written
/// as octal escapes (`\040`).
pub fn parse_mounts(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let source = unescape_octal(fields.next()?);
            let mount = unescape_octal(fields.next()?);
            let fstype = fields.next()?.to_string();
            Some(Mount {
                source,
                mount,
                fstype,
            })
        })
        .collect()
}

/// The mounts worth reporting, in mount path order (see the module doc for the rules).
pub fn real_mounts(all: &[Mount]) -> Vec<Mount> {
    let mut top: BTreeMap<&str, &Mount> = BTreeMap::new();
    for m in all {
        if m.mount.starts_with('/') {
            top.insert(&m.mount, m); // later lines are mounted over earlier ones
        }
    }
    let mut by_device: BTreeMap<&str, &Mount> = BTreeMap::new();
    let mut kept = Vec::new();
    for m in top.into_values() {
        if PSEUDO_TYPES.contains(&m.fstype.as_str()) {
            continue;
        }
        if !m.source.starts_with("/dev/") {
            kept.push(m);
            continue;
        }
        let shorter = by_device
            .get(m.source.as_str())
            .is_none_or(|seen| m.mount.len() < seen.mount.len());
        if shorter {
            by_device.insert(&m.source, m);
        }
    }
    kept.extend(by_device.into_values());
    let mut kept: Vec<Mount> = kept.into_iter().cloned().collect();
    kept.sort_by(|a, b| a.mount.cmp(&b.mount));
    kept
}

fn unescape_octal(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let digits = bytes.get(i + 1..i + 4);
        let code = digits
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)))
            .map(|d| d.iter().fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0')));
        match code.and_then(|c| u8::try_from(c).ok()) {
            Some(byte) => {
                out.push(byte);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `statvfs` of a network mount on a helper thread, waited for at most `deadline`. While an earlier probe of
/// the same path has not returned, none is started: the mount is reported as hung at once.
fn probe(
    path: &Path,
    deadline: Duration,
    statvfs: fn(&Path) -> Result<Space, String>,
) -> Result<Space, String> {
    {
        let mut probes = PROBES.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(since) = probes.get(path) {
            return Err(format!(
                "statvfs has not answered for {}s (hung server?); not probed again until it does",
                since.elapsed().as_secs()
            ));
        }
        probes.insert(path.to_path_buf(), Instant::now());
    }
    let (tx, rx) = mpsc::channel();
    let owned = path.to_path_buf();
    let spawned = std::thread::Builder::new()
        .name("statvfs".into())
        .spawn(move || {
            let result = statvfs(&owned);
            PROBES
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&owned);
            let _ = tx.send(result);
        });
    if let Err(e) = spawned {
        PROBES
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(path);
        return Err(format!("cannot start a statvfs thread: {e}"));
    }
    rx.recv_timeout(deadline).unwrap_or_else(|_| {
        Err(format!(
            "statvfs did not answer within {}s (hung server?)",
            deadline.as_secs_f64()
        ))
    })
}

#[allow(
    clippy::useless_conversion,
    reason = "statvfs counts are u64 on 64-bit Linux but u32 on some 32-bit targets"
)]
fn statvfs(path: &Path) -> Result<Space, String> {
    let c_path = CString::new(path.as_os_str().as_bytes()).map_err(|e| e.to_string())?;
    // SAFETY: statvfs is plain C data; all zeroes is a valid value.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: c_path is NUL-terminated and st is a struct we own; statvfs(3) only writes into it.
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error().to_string());
    }
    let fragment = match u64::from(st.f_frsize) {
        0 => u64::from(st.f_bsize),
        size => size,
    };
    let blocks = u64::from(st.f_blocks);
    let bytes = |count: u64| count.saturating_mul(fragment);
    Ok(Space {
        total: bytes(blocks),
        used: bytes(blocks.saturating_sub(u64::from(st.f_bfree))),
        free: bytes(u64::from(st.f_bavail)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::tests_support::{fixture, TempRoot};

    fn mount(source: &str, mount: &str, fstype: &str) -> Mount {
        Mount {
            source: source.into(),
            mount: mount.into(),
            fstype: fstype.into(),
        }
    }

    #[test]
    fn a_host_mount_table_keeps_the_real_filesystems() {
        let mounts = parse_mounts(&fixture("mounts-host"));
        assert!(mounts.len() > 20, "{mounts:?}");
        let kept: Vec<(String, String)> = real_mounts(&mounts)
            .into_iter()
            .map(|m| (m.mount, m.fstype))
            .collect();
        let want = [
            ("/", "ext4"),
            ("/boot", "ext4"),
            ("/boot/efi", "vfat"),
            ("/home/ann/My Files", "xfs"),
            ("/mnt/backup", "nfs4"),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(m, t)| (m.to_string(), t.to_string()))
            .collect();
        assert_eq!(kept, want);
    }

    #[test]
    fn a_container_mount_table_keeps_its_overlay_root() {
        let kept: Vec<String> = real_mounts(&parse_mounts(&fixture("mounts-container")))
            .into_iter()
            .map(|m| m.mount)
            .collect();
        // /etc/hosts and friends are bind mounts of /dev/vda1: listed once, at the shortest path.
        assert_eq!(kept, ["/", "/data"]);
    }

    #[test]
    fn over_mounts_and_escapes() {
        let table = "/dev/sda1 /srv ext4 rw 0 0\ntmpfs /srv tmpfs rw 0 0\n/dev/sdb1 /a\\040b\\134c xfs rw 0 0\n";
        let mounts = parse_mounts(table);
        assert_eq!(mounts[2], mount("/dev/sdb1", "/a b\\c", "xfs"));
        // /srv is now a tmpfs over the disk: nothing to report there.
        assert_eq!(real_mounts(&mounts), [mount("/dev/sdb1", "/a b\\c", "xfs")]);
        assert_eq!(unescape_octal("x\\04"), "x\\04");
    }

    /// The fake hung mount's switch: statvfs blocks until it is set.
    static RELEASED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

    fn hanging_statvfs(_: &Path) -> Result<Space, String> {
        use std::sync::atomic::Ordering;
        CALLS.fetch_add(1, Ordering::SeqCst);
        let give_up = Instant::now() + Duration::from_secs(30);
        while !RELEASED.load(Ordering::SeqCst) && Instant::now() < give_up {
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(Space {
            total: 1,
            used: 0,
            free: 1,
        })
    }

    #[test]
    fn a_hung_mount_is_probed_once_and_reported() {
        use std::sync::atomic::Ordering;
        let path = Path::new("/osapi-test/hung-nfs");
        let deadline = Duration::from_millis(50);
        let first = probe(path, deadline, hanging_statvfs).expect_err("no answer");
        assert!(first.contains("did not answer"), "{first}");
        for _ in 0..20 {
            let again = probe(path, deadline, hanging_statvfs).expect_err("still hung");
            assert!(again.contains("not probed again"), "{again}");
        }
        assert_eq!(
            CALLS.load(Ordering::SeqCst),
            1,
            "one probe outstanding at most"
        );
        // Once the server answers, the probe returns and the mount is probed afresh.
        RELEASED.store(true, Ordering::SeqCst);
        let give_up = Instant::now() + Duration::from_secs(10);
        loop {
            match probe(path, deadline, hanging_statvfs) {
                Ok(space) => break assert_eq!(space.total, 1),
                Err(e) => assert!(Instant::now() < give_up, "still not probed: {e}"),
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(CALLS.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn figures_come_from_statvfs_under_host_root() {
        let root = TempRoot::new("disk");
        root.write("proc/self/mounts", "/dev/sda1 / ext4 rw 0 0\n/dev/sdb1 /data xfs rw 0 0\nproc /proc proc rw 0 0\n/dev/sdc1 /gone ext4 rw 0 0\n");
        root.write("data/.keep", "");
        let value = disks(&root.ctx()).expect("disks");
        let list = value.as_array().expect("a list");
        let mounts: Vec<&str> = list.iter().filter_map(|d| d["mount"].as_str()).collect();
        assert_eq!(mounts, ["/", "/data"], "{value}");
        for d in list {
            let total = d["total"].as_u64().unwrap_or(0);
            let used = d["used"].as_u64().unwrap_or(u64::MAX);
            let free = d["free"].as_u64().unwrap_or(u64::MAX);
            assert!(total > 0 && used <= total && free <= total, "{d}");
        }
        let missing = disks(&TempRoot::new("disk-none").ctx());
        assert!(missing.is_err_and(|e| e.message.contains("proc/mounts")));
    }
}
