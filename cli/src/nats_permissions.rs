//! `osapi nats-permissions`: one identity's entry for nats-server's config, from the names in the osapi
//! config (namespace, stream, buckets). The subjects themselves are `osapi_common::nats_permissions`'s.

use crate::command::NatsPermissions;
use crate::error::CliError;
use crate::output::Output;
use osapi_common::config::Config;
use osapi_common::names::Names;
use osapi_common::nats_permissions::{api, user_block, worker};
use std::collections::BTreeMap;

pub fn execute(cmd: &NatsPermissions, cfg: &Config) -> Result<Output, CliError> {
    let names = Names::new(
        &cfg.nats.namespace,
        &cfg.nats.stream.name,
        &cfg.nats.kv.bucket,
        &cfg.nats.kv.response_bucket,
        &cfg.job.worker.consumer.name,
    )
    .with_workers_bucket(&cfg.nats.kv.workers_bucket);
    let workers_bucket = names.workers_bucket.clone();
    let who = cmd.hostname.as_deref().unwrap_or("api");
    let identity = match &cmd.nkey {
        Some(key) if key.starts_with('U') && key.len() == 56 => format!("nkey: {key:?}"),
        Some(key) => {
            return Err(CliError::Usage(format!(
                "--nkey '{key}' is not a public user NKey (56 characters starting with U)"
            )))
        }
        None => format!("nkey: \"REPLACE-WITH-THE-PUBLIC-NKEY-OF-{who}\""),
    };
    let block = match &cmd.hostname {
        None => user_block(
            "osapi-api: lays out streams and buckets, writes jobs; never a host's records",
            &identity,
            &api(&names, &workers_bucket),
        ),
        Some(host) => {
            let labels: BTreeMap<String, String> = cmd.labels.iter().cloned().collect();
            let shown: Vec<String> = cmd.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            user_block(
                &format!("osapi-worker {host} (labels: {})", shown.join(", ")),
                &identity,
                &worker(&names, &workers_bucket, host, &labels),
            )
        }
    };
    Ok(Output::text(block))
}
