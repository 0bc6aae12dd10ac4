//! The host's files as the operations see them: every path is joined to `job.worker.host_root` (default `/`), so
//! tests point a worker at a fixture tree and never read or write the machine's own /proc or /etc.
//! OS errors are classified here, once: those that may pass (EAGAIN, EINTR, timeouts) are transient.

use super::{OpContext, OpError};
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

/// Largest host file an operation reads (/proc and /etc files are a few KiB; a mount table can be long).
const HOST_FILE_BYTES_MAX: u64 = 4 * 1024 * 1024;
/// Symlinks followed inside host_root before giving up (a loop).
const SYMLINK_HOPS_MAX: usize = 8;

/// `path` (absolute, as on the host) under the worker's host_root.
pub fn host_path(ctx: &OpContext, path: &str) -> PathBuf {
    ctx.host_root.join(path.trim_start_matches('/'))
}

/// True when host_root is `/`: the worker runs on the host it describes (commands such as `resolvectl` and
/// `shutdown` act on this machine, so they run only then).
pub fn is_real_root(ctx: &OpContext) -> bool {
    ctx.host_root == Path::new("/")
}

/// An OS error as an operation's error: EAGAIN, EINTR and timeouts are transient, the others permanent.
pub fn io_error(what: &str, err: &io::Error) -> OpError {
    let message = format!("{what}: {err}");
    match err.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted | io::ErrorKind::TimedOut => {
            OpError::transient(message)
        }
        _ => OpError::permanent(message),
    }
}

/// Reads the host file `path` (e.g. `/proc/meminfo`) as text, at most [`HOST_FILE_BYTES_MAX`] bytes.
pub fn read_host_file(ctx: &OpContext, path: &str) -> Result<String, OpError> {
    let full = host_path(ctx, path);
    read_text(&full).map_err(|e| io_error(&format!("reading {}", full.display()), &e))
}

/// Reads a text file, at most [`HOST_FILE_BYTES_MAX`] bytes.
pub fn read_text(path: &Path) -> io::Result<String> {
    let file = std::fs::File::open(path)?;
    let mut text = String::new();
    file.take(HOST_FILE_BYTES_MAX).read_to_string(&mut text)?;
    Ok(text)
}

/// Follows symlinks at `path` (absolute, as on the host) without leaving host_root: an absolute link target
/// is taken relative to host_root, as the host would read it. Returns the host path of the final file
/// (which may not exist).
pub fn resolve_in_root(ctx: &OpContext, path: &str) -> Result<String, OpError> {
    let mut current = normalize(Path::new(path));
    for _ in 0..SYMLINK_HOPS_MAX {
        let full = host_path(ctx, &current);
        let target = match std::fs::symlink_metadata(&full) {
            Ok(meta) if meta.file_type().is_symlink() => std::fs::read_link(&full)
                .map_err(|e| io_error(&format!("reading link {}", full.display()), &e))?,
            _ => return Ok(current),
        };
        let parent = Path::new(&current).parent().unwrap_or(Path::new("/"));
        current = normalize(&parent.join(target));
    }
    Err(OpError::permanent(format!(
        "{path}: more than {SYMLINK_HOPS_MAX} symlinks (a loop?)"
    )))
}

/// An absolute path with `.` and `..` resolved lexically, never above `/`.
fn normalize(path: &Path) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => parts.push(part.to_str().unwrap_or("")),
            Component::ParentDir => {
                parts.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    format!("/{}", parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::tests_support::{ctx_at, TempRoot};

    #[test]
    fn paths_stay_under_host_root() {
        let ctx = ctx_at(Path::new("/srv/fixture"));
        assert_eq!(
            host_path(&ctx, "/proc/meminfo"),
            Path::new("/srv/fixture/proc/meminfo")
        );
        assert_eq!(normalize(Path::new("/etc/../../run/./x")), "/run/x");
    }

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let root = TempRoot::new("host-links");
        root.write(
            "run/systemd/resolve/stub-resolv.conf",
            "nameserver 127.0.0.53\n",
        );
        root.symlink("/run/systemd/resolve/stub-resolv.conf", "etc/resolv.conf");
        root.symlink(
            "../run/systemd/resolve/stub-resolv.conf",
            "etc/relative.conf",
        );
        root.symlink("loop-b", "etc/loop-a");
        root.symlink("loop-a", "etc/loop-b");
        let ctx = root.ctx();
        let stub = Ok("/run/systemd/resolve/stub-resolv.conf".to_string());
        assert_eq!(resolve_in_root(&ctx, "/etc/resolv.conf"), stub);
        assert_eq!(resolve_in_root(&ctx, "/etc/relative.conf"), stub);
        assert_eq!(
            resolve_in_root(&ctx, "/etc/hosts"),
            Ok("/etc/hosts".to_string())
        );
        assert!(resolve_in_root(&ctx, "/etc/loop-a").is_err());
    }

    #[test]
    fn os_errors_are_classified() {
        let cases = [
            (io::ErrorKind::WouldBlock, true),
            (io::ErrorKind::Interrupted, true),
            (io::ErrorKind::TimedOut, true),
            (io::ErrorKind::NotFound, false),
            (io::ErrorKind::PermissionDenied, false),
        ];
        for (kind, transient) in cases {
            let err = io_error("x", &io::Error::from(kind));
            assert_eq!(
                err.kind == crate::ops::ErrorKind::Transient,
                transient,
                "{kind:?}"
            );
        }
        let missing = read_host_file(&ctx_at(Path::new("/nonexistent-root")), "/proc/uptime");
        assert!(missing.is_err_and(|e| e.message.contains("/nonexistent-root/proc/uptime")));
    }
}
