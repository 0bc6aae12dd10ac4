//! Who a connection is: an NKey user (its seed read from a file and used to sign the server's nonce)
//! or a `.creds` file, and the TLS files (CA, client certificate and key). A file that is missing or
//! holds no seed (or, for creds, no user JWT) is a config mistake (`Protocol`, not retried), named by its
//! setting and path.

use crate::BusError;
use std::path::PathBuf;

/// File-based credentials: at most one of the two auth files, and the TLS files (all optional).
#[derive(Debug, Clone, Default)]
pub struct Identity {
    /// A file holding an NKey user seed (`SU...`).
    pub nkey_seed_file: Option<PathBuf>,
    /// A NATS `.creds` file (user JWT and seed).
    pub creds_file: Option<PathBuf>,
    /// PEM CA the server's certificate must chain to.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate and key.
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

impl Identity {
    /// The crate's options for this identity (credentials over `base`, then TLS).
    pub(crate) fn options(&self, base: nats::Options) -> Result<nats::Options, BusError> {
        let mut opts = match (&self.nkey_seed_file, &self.creds_file) {
            (Some(path), _) => {
                let seed = std::fs::read_to_string(path).map_err(|e| {
                    BusError::Protocol(format!("nats.auth.nkey_seed_file {}: {e}", path.display()))
                })?;
                let pair = nkeys::KeyPair::from_seed(seed.trim()).map_err(|e| {
                    BusError::Protocol(format!(
                        "nats.auth.nkey_seed_file {}: not an NKey seed: {e}",
                        path.display()
                    ))
                })?;
                let public = pair.public_key();
                nats::Options::with_nkey(&public, move |nonce| pair.sign(nonce).unwrap_or_default())
            }
            (None, Some(path)) => {
                // The crate reads the file only when it connects, and its error then looks like a
                // network one (retried for ever): check it here, as the seed file above.
                let text = std::fs::read_to_string(path).map_err(|e| {
                    BusError::Protocol(format!("nats.auth.creds_file {}: {e}", path.display()))
                })?;
                if !text.contains("BEGIN NATS USER JWT") || !text.contains("NKEY SEED-----") {
                    return Err(BusError::Protocol(format!(
                        "nats.auth.creds_file {}: not a .creds file (no user JWT and NKey seed blocks)",
                        path.display()
                    )));
                }
                nats::Options::with_credentials(path)
            }
            (None, None) => base,
        };
        if let Some(ca) = &self.ca_file {
            opts = opts.add_root_certificate(ca).tls_required(true);
        }
        if let Some((cert, key)) = &self.client_cert {
            opts = opts.client_cert(cert, key).tls_required(true);
        }
        Ok(opts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_seed_file_is_a_mistake_naming_the_file() {
        let dir = std::env::temp_dir().join(format!("osapi-bus-seed-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let garbage = dir.join("garbage.nk");
        let _ = std::fs::write(&garbage, "not a seed");
        for (path, want) in [
            (dir.join("missing.nk"), "missing.nk: "),
            (garbage, "garbage.nk: not an NKey seed"),
        ] {
            let identity = Identity {
                nkey_seed_file: Some(path),
                ..Identity::default()
            };
            match identity.options(nats::Options::new()) {
                Err(BusError::Protocol(m)) => {
                    assert!(
                        m.starts_with("nats.auth.nkey_seed_file ") && m.contains(want),
                        "{m}"
                    )
                }
                Err(e) => panic!("{e}"),
                Ok(_) => panic!("accepted {want}"),
            }
        }
        let seed = dir.join("good.nk");
        let pair = nkeys::KeyPair::new_user();
        let _ = std::fs::write(&seed, pair.seed().unwrap_or_default());
        let good = Identity {
            nkey_seed_file: Some(seed),
            ..Identity::default()
        };
        assert!(good.options(nats::Options::new()).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_missing_or_garbled_creds_file_is_a_mistake_naming_the_file() {
        let dir = std::env::temp_dir().join(format!("osapi-bus-creds-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let garbage = dir.join("garbage.creds");
        let _ = std::fs::write(&garbage, "not a creds file");
        for (path, want) in [
            (dir.join("missing.creds"), "missing.creds: "),
            (garbage, "garbage.creds: not a .creds file"),
        ] {
            let identity = Identity {
                creds_file: Some(path),
                ..Identity::default()
            };
            match identity.options(nats::Options::new()) {
                Err(BusError::Protocol(m)) => {
                    assert!(
                        m.starts_with("nats.auth.creds_file ") && m.contains(want),
                        "{m}"
                    )
                }
                Err(e) => panic!("{e}"),
                Ok(_) => panic!("accepted {want}"),
            }
        }
        let creds = dir.join("good.creds");
        let _ = std::fs::write(
            &creds,
            "-----BEGIN NATS USER JWT-----\nx.y.z\n------END NATS USER JWT------\n\n\
             -----BEGIN USER NKEY SEED-----\nSU\n------END USER NKEY SEED------\n",
        );
        let good = Identity {
            creds_file: Some(creds),
            ..Identity::default()
        };
        assert!(good.options(nats::Options::new()).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
