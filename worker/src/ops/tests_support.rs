//! Unit-test helpers for the operations: a throwaway host_root tree in the temp dir, and contexts pointing at it.

use super::OpContext;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

static NEXT_ROOT: AtomicUsize = AtomicUsize::new(0);

/// A context whose host_root is `root`, hostname `web1`, nothing allowed.
pub fn ctx_at(root: &Path) -> OpContext {
    OpContext {
        hostname: "web1".into(),
        host_root: root.to_path_buf(),
        allow_operations: vec![],
    }
}

/// A fixture file shipped in `src/ops/fixtures/`.
pub fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/ops/fixtures")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

/// A fresh directory under the temp dir, removed when dropped.
pub struct TempRoot {
    pub path: PathBuf,
}

impl TempRoot {
    pub fn new(name: &str) -> TempRoot {
        let n = NEXT_ROOT.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("osapi-worker-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp root");
        TempRoot { path }
    }

    /// Writes `text` at `rel` (creating its directories).
    pub fn write(&self, rel: &str, text: &str) {
        let path = self.path.join(rel);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("create fixture dir");
        }
        std::fs::write(&path, text).expect("write fixture file");
    }

    /// A symlink at `rel` pointing at `target` (taken as is).
    pub fn symlink(&self, target: &str, rel: &str) {
        let path = self.path.join(rel);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("create fixture dir");
        }
        std::os::unix::fs::symlink(target, &path).expect("create fixture symlink");
    }

    /// The text of the file at `rel`.
    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path.join(rel)).unwrap_or_default()
    }

    pub fn ctx(&self) -> OpContext {
        ctx_at(&self.path)
    }
}

impl Drop for TempRoot {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
