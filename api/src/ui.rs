//! Amber's own web UI at `/`: query and graph with exemplars, trace lookup, exemplar diagnostics,
//! cardinality and status. The page is plain HTML, CSS and ES modules in `api/ui/` (with uPlot
//! vendored under its MIT licence), embedded here at compile time, so `cargo build` needs neither
//! npm nor the network, and the binary serves the UI wherever it runs. The page talks only to
//! Amber's own HTTP API, with relative URLs (so it works behind a reverse proxy's path prefix);
//! its Content-Security-Policy keeps it from loading or calling anything else.

use std::sync::LazyLock;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::AppState;

/// What the page needs to know of Amber's configuration.
#[derive(Debug, Clone, Default)]
pub struct UiSettings {
    /// Link from an exemplar to the user's trace UI: `{trace_id}` is replaced by the trace id
    /// (e.g. `http://tempo:3200/trace/{trace_id}`); empty for no link.
    pub trace_url_template: String,
    /// Exemplar labels that carry trace ids (the storage's `trace_id_labels`).
    pub trace_id_labels: Vec<String>,
}

struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $type:expr) => {
        Asset { path: $path, content_type: $type, body: include_bytes!(concat!("../ui/", $path)) }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

static ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("app.css", "text/css; charset=utf-8"),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("complete.js", JS),
    asset!("graph.js", JS),
    asset!("query.js", JS),
    asset!("trace.js", JS),
    asset!("exemplars.js", JS),
    asset!("status.js", JS),
    asset!("vendor/uplot/uPlot.iife.min.js", JS),
    asset!("vendor/uplot/uPlot.min.css", "text/css; charset=utf-8"),
    asset!("vendor/uplot/LICENSE", "text/plain; charset=utf-8"),
];

/// Each asset's entity tag: a hash of its bytes, so a browser revalidates cheaply and never keeps
/// a page older than the binary.
static ETAGS: LazyLock<Vec<HeaderValue>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|a| {
            let hash = crc32c::crc32c(a.body);
            HeaderValue::from_str(&format!("\"{hash:08x}-{}\"", a.body.len())).expect("an ASCII entity tag")
        })
        .collect()
});

/// Scripts, styles and requests only from Amber itself. Styles may be inline: uPlot positions
/// its legend and cursor with style attributes.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; connect-src 'self'; frame-ancestors 'self'; base-uri 'none'; form-action 'self'";

/// `GET /`: the page.
pub async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

/// `GET /ui/<path>`: the page's scripts, styles and vendored libraries.
pub async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    serve(&path, &headers)
}

fn serve(path: &str, headers: &HeaderMap) -> Response {
    let Some(i) = ASSETS.iter().position(|a| a.path == path) else {
        return (StatusCode::NOT_FOUND, format!("no UI asset {path:?}\n")).into_response();
    };
    let (asset, etag) = (&ASSETS[i], &ETAGS[i]);
    let fresh = headers.get(header::IF_NONE_MATCH).is_some_and(|v| v == etag);
    let common = [
        (header::ETAG, etag.clone()),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY)),
        (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
    ];
    if fresh {
        return (StatusCode::NOT_MODIFIED, common).into_response();
    }
    (common, [(header::CONTENT_TYPE, asset.content_type)], asset.body).into_response()
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SettingsJson<'a> {
    trace_url_template: &'a str,
    trace_id_labels: &'a [String],
}

/// `GET /ui/settings.json`: the settings the page reads at start.
pub async fn settings(State(state): State<AppState>) -> Response {
    let ui = &state.ui;
    let body = SettingsJson { trace_url_template: &ui.trace_url_template, trace_id_labels: &ui.trace_id_labels };
    axum::Json(body).into_response()
}

/// The "why exemplars go missing" checklist of `examples/flask-otel/README.md` (the section of
/// that name, up to the next heading of its level), as HTML, so the diagnostics page shows the
/// one text the example's readers see.
static CHECKLIST_HTML: LazyLock<String> = LazyLock::new(|| {
    const README: &str = include_str!("../../examples/flask-otel/README.md");
    const HEADING: &str = "## Why exemplars go missing";
    let section = README.find(HEADING).map_or("", |start| {
        let rest = &README[start..];
        let end = rest[HEADING.len()..].find("\n## ").map_or(rest.len(), |e| e + HEADING.len() + 1);
        &rest[..end]
    });
    let mut html = String::new();
    pulldown_cmark::html::push_html(&mut html, pulldown_cmark::Parser::new(section));
    html
});

/// `GET /ui/exemplar-checklist.html`: the checklist, an HTML fragment.
pub async fn checklist() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        CHECKLIST_HTML.as_str(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_module_the_page_imports_is_served() {
        let served: Vec<&str> = ASSETS.iter().map(|a| a.path).collect();
        for asset in ASSETS.iter().filter(|a| a.path.ends_with(".js") && !a.path.starts_with("vendor/")) {
            let text = std::str::from_utf8(asset.body).unwrap();
            for line in text.lines().filter(|l| l.starts_with("import ")) {
                let from = line.rsplit_once("from '").map(|(_, r)| r).unwrap_or(line);
                let module = from.trim_end_matches("';").trim_start_matches("./");
                assert!(served.contains(&module), "{} imports {module}, which is not served", asset.path);
            }
        }
        let index = std::str::from_utf8(ASSETS[0].body).unwrap();
        for src in index.split(['"', '\'']).filter(|s| s.starts_with("ui/")) {
            assert!(served.contains(&&src[3..]), "index.html loads {src}, which is not served");
        }
    }

    #[test]
    fn the_checklist_is_the_readme_section_and_ends_before_the_next_one() {
        let html = CHECKLIST_HTML.as_str();
        assert!(html.starts_with("<h2>Why exemplars go missing"), "{html}");
        assert!(html.contains("<li><strong>The exemplar filter.</strong>"), "{html}");
        assert!(html.contains("<code>send_exemplars: true</code>"), "{html}");
        assert!(!html[4..].contains("<h2>"), "the next section came along: {html}");
    }
}
