//! `amber export`: `GET /api/v1/export` of a running Amber, streamed to a writer as it arrives.

use std::io::Write;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::sink::Target;

/// Copies the export of `selectors` between `start` and `end` (anything `/api/v1/export`
/// accepts: RFC 3339 or Unix seconds) into `out`; returns the bytes written.
pub fn export(
    from: &Target,
    selectors: &[String],
    start: Option<&str>,
    end: Option<&str>,
    out: &mut impl Write,
) -> anyhow::Result<u64> {
    let client = reqwest::blocking::Client::builder().timeout(None::<Duration>).build()?;
    let url = format!("{}/api/v1/export", from.url.trim_end_matches('/'));
    let mut params: Vec<(&str, &str)> = selectors.iter().map(|s| ("match[]", s.as_str())).collect();
    params.extend(start.map(|s| ("start", s)));
    params.extend(end.map(|e| ("end", e)));
    let mut get = client.get(&url).query(&params);
    if let Some(tenant) = &from.tenant {
        get = get.header("X-Scope-OrgID", tenant);
    }
    if let Some(token) = &from.bearer_token {
        get = get.bearer_auth(token);
    }
    let mut answer = get.send().with_context(|| format!("GET {url}"))?;
    if !answer.status().is_success() {
        let status = answer.status();
        bail!("GET {url} answered {status}: {}", answer.text().unwrap_or_default().trim());
    }
    let bytes = answer.copy_to(out).with_context(|| format!("GET {url}: copying the export"))?;
    out.flush()?;
    Ok(bytes)
}
