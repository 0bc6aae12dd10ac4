//! `system.*` operations: facts about the host.

use super::{parse, OpContext, OpError};
use serde::Deserialize;
use serde_json::{json, Value};

/// Operations that take no data accept only `{}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoData {}

/// `system.hostname.get {}` -> `{hostname}`: the name this worker answers to.
pub fn hostname_get(data: &Value, ctx: &OpContext) -> Result<Value, OpError> {
    let NoData {} = parse("system.hostname.get", data)?;
    Ok(json!({ "hostname": ctx.hostname }))
}
