//! A nats-server in operator mode (decentralized auth, what `nats.auth.type: creds` is for) for one test: an
//! operator, a system account and an application account with JetStream, their NKeys made here and their
//! JWTs signed by hand, trusted by the server through `resolver: MEMORY`; users as `.creds` files.
//!
//! A JWT is `base64url(header).base64url(claims).base64url(signature)` (no padding), the header
//! `{"typ":"JWT","alg":"ed25519-nkey"}` and the signature the issuer's NKey over `header.claims`. The
//! operator signs itself and the accounts; an account signs its users. The claims are JWT v2 (`nats.version:
//! 2`); every limit is set to -1 (unlimited), since a missing one reads as 0, which for `conn` refuses
//! every connection and for `mem_storage`/`disk_storage` leaves JetStream off for the account.

use std::path::{Path, PathBuf};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use nkeys::KeyPair;
use osapi_common::nats_permissions::Permissions;
use serde_json::{json, Value};

use crate::nats::NatsServer;
use crate::wait::{keep_failed_dirs, temp_dir};

/// The JOSE header of every NATS JWT.
const HEADER: &str = r#"{"typ":"JWT","alg":"ed25519-nkey"}"#;

/// An operator with its system account and one application account (`app`), and the dir where its server
/// config, its users' `.creds` files and the server's store live. Drop removes the dir (kept when a test
/// panics and `OSAPI_TEST_KEEP` is set).
pub struct Operator {
    operator: KeyPair,
    system: KeyPair,
    app: KeyPair,
    dir: PathBuf,
}

impl Default for Operator {
    fn default() -> Self {
        Operator::new()
    }
}

impl Operator {
    /// New keys for the operator, the system account and the application account.
    pub fn new() -> Operator {
        Operator {
            operator: KeyPair::new_operator(),
            system: KeyPair::new_account(),
            app: KeyPair::new_account(),
            dir: temp_dir(),
        }
    }

    /// The application account's public key (`A...`): the issuer of its users.
    pub fn app_account(&self) -> String {
        self.app.public_key()
    }

    /// The dir holding the server config, the `.creds` files and the server's store (`nats/`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// nats-server's config: the operator JWT, the system account, and both account JWTs preloaded in the
    /// MEMORY resolver (the only accounts it knows); JetStream's store is the harness's `-sd`.
    pub fn server_config(&self) -> String {
        let operator_pub = self.operator.public_key();
        let operator_jwt = encode_jwt(
            &self.operator,
            &claims(
                "osapi-test-operator",
                &operator_pub,
                &operator_pub,
                json!({"type": "operator", "version": 2, "system_account": self.system.public_key()}),
            ),
        );
        let system_jwt = self.account_jwt(&self.system, "SYS", false);
        let app_jwt = self.account_jwt(&self.app, "osapi", true);
        format!(
            "operator: \"{operator_jwt}\"\n\
             system_account: \"{system}\"\n\
             resolver: MEMORY\n\
             resolver_preload: {{\n  \"{system}\": \"{system_jwt}\"\n  \"{app}\": \"{app_jwt}\"\n}}\n\
             # JetStream and its store_dir: the harness's -js -sd (a store_dir here too is refused as a duplicate)\n",
            system = self.system.public_key(),
            app = self.app.public_key(),
        )
    }

    /// Writes [`server_config`](Self::server_config) to `DIR/nats-server.conf` and starts a server on it.
    pub fn start(&self) -> NatsServer {
        let conf = self.dir.join("nats-server.conf");
        std::fs::write(&conf, self.server_config()).expect("write nats-server.conf");
        NatsServer::start_with_config(&conf, self.dir.join("nats"))
    }

    /// The account JWT of `account`, signed by the operator: unlimited connections, subscriptions and data,
    /// and unlimited JetStream when `jetstream` (else none, the default).
    fn account_jwt(&self, account: &KeyPair, name: &str, jetstream: bool) -> String {
        let js = if jetstream { -1 } else { 0 };
        let limits = json!({
            "subs": -1, "data": -1, "payload": -1,
            "imports": -1, "exports": -1, "wildcards": true, "conn": -1, "leaf": -1,
            "mem_storage": js, "disk_storage": js, "streams": js, "consumer": js,
        });
        encode_jwt(
            &self.operator,
            &claims(
                name,
                &self.operator.public_key(),
                &account.public_key(),
                json!({"type": "account", "version": 2, "limits": limits}),
            ),
        )
    }

    /// A new user of the application account, `DIR/NAME.creds`, with `permissions` on its JWT (`None`:
    /// unrestricted).
    pub fn user_creds(&self, name: &str, permissions: Option<&Permissions>) -> PathBuf {
        let user = KeyPair::new_user();
        let jwt = self.app_user_jwt(&user, name, permissions);
        self.write_creds(name, &jwt, &user)
    }

    /// A genuine user JWT for `user`, issued and signed by the application account.
    pub fn app_user_jwt(
        &self,
        user: &KeyPair,
        name: &str,
        permissions: Option<&Permissions>,
    ) -> String {
        user_jwt(&self.app, &self.app.public_key(), user, name, permissions)
    }

    /// Writes a `.creds` file `DIR/NAME.creds` holding `jwt` and `user`'s seed (which need not be the
    /// JWT's subject: a test may pair them wrongly on purpose).
    pub fn write_creds(&self, name: &str, jwt: &str, user: &KeyPair) -> PathBuf {
        let path = self.dir.join(format!("{name}.creds"));
        std::fs::write(&path, creds_text(jwt, &user.seed().expect("a user seed")))
            .expect("write .creds file");
        path
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if std::thread::panicking() && keep_failed_dirs() {
            return; // OSAPI_TEST_KEEP: keep the config and the creds for a post-mortem
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The claims every NATS JWT carries, with `nats` (its type, version and what the type holds).
fn claims(name: &str, issuer: &str, subject: &str, nats: Value) -> Value {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    json!({
        // The nats-io tools put a hash of the claims here; the server only needs it unique.
        "jti": uuid::Uuid::new_v4().simple().to_string().to_uppercase(),
        "iat": now,
        "iss": issuer,
        "sub": subject,
        "name": name,
        "nats": nats,
    })
}

/// A user JWT for `user` claiming `issuer` (an account's public key) as its issuer, signed by `signer`:
/// the two differ only in a forgery. Its `pub`/`sub` lists are `permissions` (`None`: unrestricted).
pub fn user_jwt(
    signer: &KeyPair,
    issuer: &str,
    user: &KeyPair,
    name: &str,
    permissions: Option<&Permissions>,
) -> String {
    let mut nats = json!({"type": "user", "version": 2, "subs": -1, "data": -1, "payload": -1});
    if let Some(p) = permissions {
        let mut publish = json!({"allow": p.publish_allow});
        if !p.publish_deny.is_empty() {
            publish["deny"] = json!(p.publish_deny);
        }
        nats["pub"] = publish;
        nats["sub"] = json!({"allow": p.subscribe_allow});
    }
    encode_jwt(signer, &claims(name, issuer, &user.public_key(), nats))
}

/// `claims` as a JWT signed by `signer`.
pub fn encode_jwt(signer: &KeyPair, claims: &Value) -> String {
    let signed = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(HEADER),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = signer.sign(signed.as_bytes()).expect("an NKey signs");
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// A `.creds` file's text, as `nsc` writes it: the user JWT, then the seed, each between its markers.
pub fn creds_text(jwt: &str, seed: &str) -> String {
    format!(
        "-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n\
         ************************* IMPORTANT *************************\n\
         NKEY Seed printed below can be used to sign and prove identity.\n\
         NKEYs are sensitive and should be treated as secrets.\n\n\
         -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n\n\
         *************************************************************\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jwt_is_three_base64url_parts_signed_by_its_issuer() {
        let account = KeyPair::new_account();
        let user = KeyPair::new_user();
        let jwt = user_jwt(&account, &account.public_key(), &user, "u", None);
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3, "{jwt}");
        let header = URL_SAFE_NO_PAD.decode(parts[0]).expect("header");
        assert_eq!(header, HEADER.as_bytes());
        let body: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).expect("claims"))
                .expect("claims JSON");
        assert_eq!(body["iss"], account.public_key());
        assert_eq!(body["sub"], user.public_key());
        assert_eq!(body["nats"]["type"], "user");
        let signature = URL_SAFE_NO_PAD.decode(parts[2]).expect("signature");
        let signed = format!("{}.{}", parts[0], parts[1]);
        assert!(account.verify(signed.as_bytes(), &signature).is_ok());
        assert!(user.verify(signed.as_bytes(), &signature).is_err());
    }
}
