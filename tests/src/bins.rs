//! Where the daemons under test live: `$OSAPI_BIN_DIR`, else the cargo target dir this test binary runs from.

use std::path::PathBuf;

/// Path of a workspace binary such as `osapi-api`.
///
/// Looks in `$OSAPI_BIN_DIR`, else in the profile dir derived from the running test binary
/// (`target/debug/deps/routing-1a2b` -> `target/debug`). Panics when the binary has not been built.
pub fn binary(name: &str) -> PathBuf {
    let dir = match std::env::var_os("OSAPI_BIN_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => profile_dir(),
    };
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} not found: run `cargo build --workspace --bins` first (or set OSAPI_BIN_DIR)",
        path.display()
    );
    path
}

fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the path of the running test binary");
    let mut dir = exe
        .parent()
        .expect("test binary has a parent dir")
        .to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir
}

/// A [`Command`](std::process::Command) for workspace binary `name` that does not see the caller's
/// `OSAPI_*` variables (they would override its config: `OSAPI_NATS_SERVER` is `nats.server` to it).
pub fn command(name: &str) -> std::process::Command {
    let mut command = std::process::Command::new(binary(name));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("OSAPI_") {
            command.env_remove(key);
        }
    }
    command
}
