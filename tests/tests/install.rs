//! `make install` and `make uninstall` into a temp `DESTDIR`: the three binaries, the sample config (never
//! overwritten, kept by uninstall), and the systemd units with their paths filled in and their hardening;
//! `systemd-analyze verify` on the units where it exists. The binaries come from the profile dir the tests
//! run from (`INSTALL_FROM=debug`), so nothing is rebuilt.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use osapi_tests::binary;

const BINARIES: [&str; 3] = ["osapi-api", "osapi-worker", "osapi"];
const UNITS: [&str; 2] = ["osapi-api.service", "osapi-worker.service"];

/// `[Service]` settings each unit must have, as (unit, key, value).
const HARDENING: &[(&str, &str, &str)] = &[
    ("osapi-api.service", "DynamicUser", "yes"),
    ("osapi-api.service", "User", "osapi"),
    ("osapi-api.service", "NoNewPrivileges", "yes"),
    ("osapi-api.service", "ProtectSystem", "strict"),
    ("osapi-api.service", "ProtectHome", "yes"),
    ("osapi-api.service", "PrivateTmp", "yes"),
    ("osapi-api.service", "PrivateDevices", "yes"),
    ("osapi-api.service", "ProtectKernelTunables", "yes"),
    ("osapi-api.service", "ProtectKernelModules", "yes"),
    ("osapi-api.service", "ProtectControlGroups", "yes"),
    (
        "osapi-api.service",
        "RestrictAddressFamilies",
        "AF_INET AF_INET6 AF_UNIX",
    ),
    ("osapi-api.service", "RestrictNamespaces", "yes"),
    ("osapi-api.service", "LockPersonality", "yes"),
    ("osapi-api.service", "MemoryDenyWriteExecute", "yes"),
    ("osapi-api.service", "SystemCallFilter", "@system-service"),
    ("osapi-api.service", "CapabilityBoundingSet", ""),
    ("osapi-api.service", "Restart", "on-failure"),
    ("osapi-api.service", "LimitNOFILE", "8192"),
    ("osapi-api.service", "TasksMax", "1536"),
    ("osapi-api.service", "MemoryMax", "512M"),
    ("osapi-worker.service", "LimitNOFILE", "4096"),
    ("osapi-worker.service", "TasksMax", "512"),
    ("osapi-worker.service", "MemoryMax", "256M"),
    ("osapi-worker.service", "User", "root"),
    ("osapi-worker.service", "NoNewPrivileges", "yes"),
    ("osapi-worker.service", "ProtectSystem", "full"),
    ("osapi-worker.service", "ReadWritePaths", "/etc"),
    ("osapi-worker.service", "ProtectHome", "read-only"),
    ("osapi-worker.service", "PrivateTmp", "yes"),
    (
        "osapi-worker.service",
        "CapabilityBoundingSet",
        "CAP_SYS_BOOT CAP_NET_RAW",
    ),
    ("osapi-worker.service", "Restart", "on-failure"),
];

/// A temp dir removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let name = format!("osapi-install-test-{}", uuid::Uuid::new_v4());
        let dir = std::env::temp_dir().join(name);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    /// `DIR/relative` (`relative` may start with `/`, as a DESTDIR path does).
    fn at(&self, relative: &str) -> PathBuf {
        self.0.join(relative.trim_start_matches('/'))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace")
        .to_path_buf()
}

/// Runs `make TARGET VARS...` in the workspace root with the binaries of this test's profile dir; asserts
/// success and returns what make printed.
fn make(target: &str, vars: &[(&str, &str)]) -> String {
    let profile_dir = binary("osapi")
        .parent()
        .expect("a binary has a dir")
        .to_path_buf();
    let target_dir = profile_dir.parent().expect("the profile dir has a parent");
    let profile = profile_dir.file_name().expect("profile dir name");
    let mut command = Command::new("make");
    command
        .current_dir(workspace_root())
        .env_remove("MAKEFLAGS")
        .env_remove("MFLAGS")
        .env_remove("MAKELEVEL")
        .arg(target)
        .arg(format!("TARGET_DIR={}", target_dir.display()))
        .arg(format!("INSTALL_FROM={}", profile.to_string_lossy()));
    for (key, value) in vars {
        command.arg(format!("{key}={value}"));
    }
    let output = command
        .output()
        .unwrap_or_else(|err| panic!("cannot run make: {err}"));
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "make {target} {vars:?} failed:\n{printed}"
    );
    printed
}

/// The `Key=value` lines of a unit file; a key given twice keeps its values joined by a space.
fn settings(unit_text: &str) -> BTreeMap<String, String> {
    let mut settings: BTreeMap<String, String> = BTreeMap::new();
    for line in unit_text.lines() {
        if line.starts_with('#') || line.starts_with('[') {
            continue;
        }
        if let Some((key, value)) = line.split_once('=') {
            let entry = settings.entry(key.trim().to_string()).or_default();
            if !entry.is_empty() {
                entry.push(' ');
            }
            entry.push_str(value.trim());
        }
    }
    settings
}

fn mode(path: &Path) -> u32 {
    let meta = std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    meta.permissions().mode() & 0o777
}

#[test]
fn install_then_uninstall_into_a_destdir() {
    let dest = TempDir::new();
    let destdir = dest.0.to_string_lossy().into_owned();
    let vars = [
        ("DESTDIR", destdir.as_str()),
        ("PREFIX", "/usr/local"),
        ("SYSCONFDIR", "/etc"),
        ("SYSTEMD_UNIT_DIR", "/etc/systemd/system"),
    ];
    make("install", &vars);

    for name in BINARIES {
        let installed = dest.at(&format!("/usr/local/bin/{name}"));
        assert!(installed.is_file(), "{} installed", installed.display());
        assert_eq!(mode(&installed), 0o755, "{}", installed.display());
        let built = std::fs::metadata(binary(name)).expect("built binary").len();
        let copied = std::fs::metadata(&installed).expect("installed").len();
        assert_eq!(
            copied,
            built,
            "{} is a copy of the build",
            installed.display()
        );
    }

    let config = dest.at("/etc/osapi/osapi.yaml");
    let sample = std::fs::read_to_string(workspace_root().join("config/osapi.yaml"))
        .expect("read config/osapi.yaml");
    let installed = std::fs::read_to_string(&config).expect("installed config");
    assert_eq!(installed, sample, "the sample config is installed as is");
    assert_eq!(mode(&config), 0o600, "the config holds the signing key");

    let api = std::fs::read_to_string(dest.at("/etc/systemd/system/osapi-api.service"))
        .expect("osapi-api.service installed");
    let worker = std::fs::read_to_string(dest.at("/etc/systemd/system/osapi-worker.service"))
        .expect("osapi-worker.service installed");
    for text in [&api, &worker] {
        for placeholder in ["@PREFIX@", "@SYSCONFDIR@"] {
            assert!(!text.contains(placeholder), "{placeholder} left:\n{text}");
        }
    }
    let api_settings = settings(&api);
    let worker_settings = settings(&worker);
    assert_eq!(
        api_settings["ExecStart"],
        "/usr/local/bin/osapi-api --config %d/osapi.yaml"
    );
    assert_eq!(
        api_settings["LoadCredential"],
        "osapi.yaml:/etc/osapi/osapi.yaml job.key:/etc/osapi/job.key"
    );
    assert!(
        api_settings["Environment"]
            .contains("OSAPI_API_SERVER_SECURITY_JOB_SIGNING_KEY_FILE=%d/job.key"),
        "{api_settings:?}"
    );
    assert_eq!(
        worker_settings["ExecStart"],
        "/usr/local/bin/osapi-worker --config /etc/osapi/osapi.yaml"
    );
    for (unit, key, want) in HARDENING {
        let settings = match *unit {
            "osapi-api.service" => &api_settings,
            _ => &worker_settings,
        };
        assert_eq!(
            settings.get(*key).map(String::as_str),
            Some(*want),
            "{unit}: {key}"
        );
    }

    // A second install keeps a config the admin has changed.
    std::fs::write(&config, "# mine\n").expect("edit the config");
    let printed = make("install", &vars);
    assert!(printed.contains("kept"), "{printed}");
    let kept = std::fs::read_to_string(&config).expect("config");
    assert_eq!(kept, "# mine\n", "install never overwrites the config");

    make("uninstall", &vars);
    for name in BINARIES {
        let path = dest.at(&format!("/usr/local/bin/{name}"));
        assert!(!path.exists(), "{} removed", path.display());
    }
    for unit in UNITS {
        let path = dest.at(&format!("/etc/systemd/system/{unit}"));
        assert!(!path.exists(), "{} removed", path.display());
    }
    let kept = std::fs::read_to_string(&config).expect("uninstall keeps the config");
    assert_eq!(kept, "# mine\n");
}

#[test]
fn units_pass_systemd_analyze_verify() {
    let available = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|output| output.status.success());
    if !available {
        eprintln!("systemd-analyze not found: skipping the verification of the units");
        return;
    }
    // No DESTDIR here: verify checks that ExecStart's binary exists, so everything goes under the temp
    // dir through the path variables themselves.
    let root = TempDir::new();
    let prefix = root.at("/usr").to_string_lossy().into_owned();
    let sysconfdir = root.at("/etc").to_string_lossy().into_owned();
    let unit_dir = root.at("/units").to_string_lossy().into_owned();
    make(
        "install",
        &[
            ("DESTDIR", ""),
            ("PREFIX", &prefix),
            ("SYSCONFDIR", &sysconfdir),
            ("SYSTEMD_UNIT_DIR", &unit_dir),
        ],
    );
    let units: Vec<PathBuf> = UNITS
        .iter()
        .map(|unit| root.at("/units").join(unit))
        .collect();
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .args(&units)
        .output()
        .unwrap_or_else(|err| panic!("cannot run systemd-analyze: {err}"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "systemd-analyze verify failed:\n{stderr}"
    );
    // verify only warns about unknown keys and bad values: any line about our units is a failure.
    let ours: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("osapi-"))
        .collect();
    assert!(
        ours.is_empty(),
        "systemd-analyze verify:\n{}",
        ours.join("\n")
    );
}
