//! Amber's web UI in a real browser: Debian's headless Chromium, driven over WebDriver by
//! Debian's chromedriver, loads the UI from a real Amber holding series with exemplars and a
//! family without them. It completes a metric name in the editor, graphs the range query and finds
//! every series and exemplar drawn, clicks an exemplar and reads its trace id and trace link,
//! looks the trace up and follows it back to a graph, finds the flagged family on the diagnostics
//! page and the top metric on the status page, and checks the phone-width and dark layouts.
//! Screenshots go to `<target dir>/ui-screenshots/` (kept as CI artefacts); the graph's is
//! checked for being more than a blank page.

mod common;

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Amber, eventually, free_port, now_ms, request, series};
use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

/// How long the browser may take for any one step (a debug Amber, two shared cores).
const WAIT: Duration = Duration::from_secs(30);

const TRACE_TEMPLATE: &str = "http://tempo.invalid:3200/trace/{trace_id}";

/// chromedriver in a process group of its own, killed with the whole group when dropped: a
/// test that panics never quits its session, and killing chromedriver alone left its Chromium
/// processes running (a dozen after one failed run, slowing whatever ran next).
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let group = format!("-{}", self.0.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.0.wait();
    }
}

fn screenshots_dir() -> PathBuf {
    // <target>/debug/amber → <target>/ui-screenshots
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_amber"));
    let dir = bin.parent().and_then(|p| p.parent()).unwrap().join("ui-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The data: two latency series with an exemplar a minute (each its own trace), scraped every
/// 15 s over the last half hour, and a counter family with samples only.
fn write_data(amber: &Amber) -> (i64, Vec<String>) {
    let end = now_ms() - 60_000;
    let start = end - 30 * 60_000;
    let mut traces = Vec::new();
    let mut all = Vec::new();
    for (h, handler) in ["/checkout", "/cart"].into_iter().enumerate() {
        let value = |ts: i64| 0.1 * (h as f64 + 1.0) + ((ts - start) / 15_000) as f64 * 0.001;
        let samples: Vec<(i64, f64)> = (start..=end).step_by(15_000).map(|ts| (ts, value(ts))).collect();
        let ids: Vec<(i64, String)> =
            (start..=end).step_by(60_000).map(|ts| (ts, format!("{:032x}", ((h as i64 + 1) << 48) | ts))).collect();
        let labels: Vec<[(&str, &str); 1]> = ids.iter().map(|(_, id)| [("trace_id", id.as_str())]).collect();
        let exemplars: Vec<common::ExemplarSpec<'_>> =
            ids.iter().zip(&labels).map(|((ts, _), l)| (*ts, value(*ts), &l[..])).collect();
        all.push(series(&[("__name__", "checkout_latency_seconds"), ("handler", handler)], &samples, &exemplars));
        traces.extend(ids.into_iter().map(|(_, id)| id));
    }
    let counts: Vec<(i64, f64)> =
        (start..=end).step_by(15_000).map(|ts| (ts, ((ts - start) / 15_000) as f64)).collect();
    all.push(series(&[("__name__", "orders_total"), ("shop", "eu")], &counts, &[]));
    let (status, body) = amber.write(&request(all));
    assert_eq!(status, 204, "{body}");
    (end, traces)
}

fn start_driver() -> (Driver, String) {
    let port = free_port();
    let child = Command::new("chromedriver")
        .process_group(0)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting chromedriver (Debian's chromium-driver; scripts/install-deps installs it)");
    let url = format!("http://127.0.0.1:{port}");
    let status = format!("{url}/status");
    eventually("chromedriver to answer", WAIT, || {
        let r = reqwest::blocking::get(&status).ok()?;
        let v: Value = serde_json::from_str(&r.text().ok()?).ok()?;
        v["value"]["ready"].as_bool().filter(|&ready| ready)
    });
    (Driver(child), url)
}

async fn browser(driver_url: &str, profile: &std::path::Path) -> Client {
    // The flags keep Chromium from reaching for the network on its own (this machine has none).
    let args = [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,900",
        &format!("--user-data-dir={}", profile.display()),
    ];
    let caps = json!({"goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args}});
    let serde_json::Value::Object(caps) = caps else { unreachable!() };
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector).capabilities(caps).connect(driver_url).await.expect("a Chromium session")
}

/// Polls `f` until it gives a value, for at most [`WAIT`].
async fn until<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {WAIT:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn count(c: &Client, css: &str) -> usize {
    c.find_all(Locator::Css(css)).await.map(|v| v.len()).unwrap_or(0)
}

/// The elements matching `css` once there are exactly `n`.
async fn exactly(c: &Client, css: &str, n: usize) -> Vec<Element> {
    until(&format!("{n} × {css}"), || async {
        let found = c.find_all(Locator::Css(css)).await.ok()?;
        (found.len() == n).then_some(found)
    })
    .await
}

async fn text_of(c: &Client, css: &str) -> String {
    let e = c.wait().at_most(WAIT).for_element(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css}: {e}"));
    e.text().await.unwrap()
}

async fn screenshot(c: &Client, name: &str) -> Vec<u8> {
    let png = c.screenshot().await.unwrap();
    std::fs::write(screenshots_dir().join(format!("{name}.png")), &png).unwrap();
    png
}

/// Distinct colours in a PNG screenshot: a blank or single-colour page has one or two.
fn distinct_colours(png_bytes: &[u8]) -> usize {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let frame = reader.next_frame(&mut buf).unwrap();
    let channels = frame.color_type.samples();
    let colours: std::collections::HashSet<&[u8]> = buf[..frame.buffer_size()].chunks(channels).collect();
    colours.len()
}

#[test]
fn the_ui_graphs_exemplars_finds_traces_and_flags_families_in_a_real_browser() {
    let dir = tempfile::tempdir().unwrap();
    let amber = Amber::start(dir.path(), &["--trace-url-template", TRACE_TEMPLATE]);
    let (end_ms, traces) = write_data(&amber);
    let (status, bad) = amber.get("/api/v1/query_range?query=sum%28rate%28x%5B5m%5D%29&start=0&end=60&step=15");
    assert_eq!(status, 400);
    let bad_query_error = format!("{}: {}", bad["errorType"].as_str().unwrap(), bad["error"].as_str().unwrap());
    let (_driver, driver_url) = start_driver();
    let base = amber.url("/");
    let profile = dir.path().join("chromium-profile");

    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
        let c = browser(&driver_url, &profile).await;
        // A fixed end, so the test does not depend on when it runs.
        c.goto(&format!("{base}#/query?range=1h&end={}", end_ms / 1000 + 60)).await.unwrap();

        // Completion of a metric name from Amber's own API.
        let editor = c.wait().at_most(WAIT).for_element(Locator::Id("expr")).await.unwrap();
        editor.send_keys("checkout_lat").await.unwrap();
        exactly(&c, "#completions li[data-value='checkout_latency_seconds']", 1).await;
        editor.send_keys("\u{E004}").await.unwrap(); // Tab accepts the completion.
        assert_eq!(editor.prop("value").await.unwrap().as_deref(), Some("checkout_latency_seconds"));
        c.find(Locator::Id("run")).await.unwrap().click().await.unwrap();

        // The graph: both series in the legend, every exemplar drawn.
        let legend = exactly(&c, "#graph .u-legend .u-series", 3).await; // time + 2 series
        let mut names = Vec::new();
        for row in &legend[1..] {
            names.push(row.text().await.unwrap());
        }
        assert!(names[0].contains(r#"checkout_latency_seconds{handler="/cart"}"#), "{names:?}");
        assert!(names[1].contains(r#"checkout_latency_seconds{handler="/checkout"}"#), "{names:?}");
        exactly(&c, "#graph .exemplar", traces.len()).await;
        assert_eq!(count(&c, "#graph .exemplar[hidden]").await, 0, "every exemplar is inside the plot");
        assert_eq!(text_of(&c, "#summary").await, format!("2 series, {} exemplars, step 14s", traces.len()));
        let graph_png = screenshot(&c, "query-graph").await;
        let colours = distinct_colours(&graph_png);
        assert!(colours > 20, "the graph screenshot has {colours} colours: blank?");

        // Click an exemplar: its trace id and the link to the trace UI.
        let trace = &traces[5];
        let marker = c.find(Locator::Css(&format!("#graph .exemplar[data-trace-id='{trace}']"))).await.unwrap();
        marker.click().await.unwrap();
        assert_eq!(&text_of(&c, "#exemplar-trace-id").await, trace);
        let link = c.find(Locator::Id("exemplar-trace-link")).await.unwrap();
        assert_eq!(link.attr("href").await.unwrap().unwrap(), TRACE_TEMPLATE.replace("{trace_id}", trace));
        screenshot(&c, "query-exemplar").await;

        // Look the trace up, then follow the hit back to its series' graph.
        c.find(Locator::Id("exemplar-lookup")).await.unwrap().click().await.unwrap();
        let hits = exactly(&c, "#trace-table tr.hit", 1).await;
        let hit = hits[0].text().await.unwrap();
        assert!(hit.contains(r#"checkout_latency_seconds{handler="/checkout"}"#), "{hit}");
        assert_eq!(text_of(&c, "#trace-summary").await, "1 exemplars in 1 series");
        screenshot(&c, "trace-lookup").await;
        c.find(Locator::Css("#trace-table .graph-link")).await.unwrap().click().await.unwrap();
        exactly(&c, "#graph .u-legend .u-series", 2).await;
        let highlighted = exactly(&c, "#graph .exemplar.highlight", 1).await;
        assert_eq!(highlighted[0].attr("data-trace-id").await.unwrap().as_deref(), Some(trace.as_str()));
        let expr = c.find(Locator::Id("expr")).await.unwrap().prop("value").await.unwrap().unwrap();
        assert_eq!(expr, r#"checkout_latency_seconds{handler="/checkout"}"#);

        // An error as the API words it.
        c.goto(&format!("{base}#/query?expr=sum%28rate%28x%5B5m%5D%29&range=1h")).await.unwrap();
        assert_eq!(text_of(&c, "#messages .error").await, bad_query_error);
        assert_eq!(count(&c, "#graph").await, 0);

        // A trace nobody sent.
        c.goto(&format!("{base}#/trace/{}", "f".repeat(32))).await.unwrap();
        assert_eq!(text_of(&c, "#trace-empty").await, format!("No exemplar carries trace id {}.", "f".repeat(32)));

        // Label values complete inside a matcher's quotes; the table shows the instant query.
        c.goto(&format!("{base}#/query?tab=table&end={}", end_ms / 1000 + 60)).await.unwrap();
        let editor = c.wait().at_most(WAIT).for_element(Locator::Id("expr")).await.unwrap();
        editor.send_keys(r#"checkout_latency_seconds{handler="/c"#).await.unwrap();
        exactly(&c, "#completions li", 2).await;
        exactly(&c, "#completions li[data-value='/checkout']", 1).await;
        editor.send_keys("\u{E015}\u{E004}").await.unwrap(); // Down, then Tab: the second value.
        editor.send_keys("\"}\u{E007}").await.unwrap(); // Enter runs it.
        let rows = exactly(&c, "#result-table tr", 2).await;
        let row = rows[1].text().await.unwrap();
        // The last sample of /checkout: 0.1 + 120 scrapes × 0.001.
        assert_eq!(row, format!(r#"checkout_latency_seconds{{handler="/checkout"}} {}"#, 0.1 + 120.0 * 0.001));
        let expr = editor.prop("value").await.unwrap().unwrap();
        assert_eq!(expr, r#"checkout_latency_seconds{handler="/checkout"}"#);

        // Diagnostics: the family with samples and no exemplars is flagged, the other is not.
        c.goto(&format!("{base}#/exemplars")).await.unwrap();
        exactly(&c, "#families-table tr.flagged[data-family='orders_total']", 1).await;
        exactly(&c, "#families-table tr[data-family='checkout_latency_seconds']:not(.flagged)", 1).await;
        let checklist = text_of(&c, "#checklist").await;
        assert!(checklist.contains("The exemplar filter."), "{checklist}");
        screenshot(&c, "exemplar-diagnostics").await;

        // Status: the top metric by series, and the head's figures.
        c.goto(&format!("{base}#/status")).await.unwrap();
        let top = exactly(&c, "#top-metrics tr", 3).await; // header + 2 metrics
        assert_eq!(top[1].text().await.unwrap(), "checkout_latency_seconds 2");
        exactly(&c, "#figures .card[title='amber_wal_bytes']", 1).await;
        screenshot(&c, "status").await;

        // A phone: nothing wider than the screen. Dark mode: a dark page.
        c.set_window_size(390, 844).await.unwrap();
        c.goto(&format!("{base}#/query?expr=checkout_latency_seconds&range=1h&end={}", end_ms / 1000 + 60))
            .await
            .unwrap();
        exactly(&c, "#graph .exemplar", traces.len()).await;
        let overflow = c
            .execute("return document.documentElement.scrollWidth - document.documentElement.clientWidth", vec![])
            .await
            .unwrap();
        // The graph holds its plot and legend: a legend wider than its box pushed the page sideways
        // by a few pixels only where the fonts ran wider, so the box is checked, not only the page.
        let graph_overflow = c
            .execute("const g = document.getElementById('graph'); return g.scrollWidth - g.clientWidth", vec![])
            .await
            .unwrap();
        assert_eq!(graph_overflow, json!(0), "the graph's legend is wider than the graph at phone width");
        assert_eq!(overflow, json!(0), "the page scrolls sideways at phone width");
        c.find(Locator::Id("theme")).await.unwrap().click().await.unwrap();
        let background = until("a dark background", || async {
            let v = c.execute("return getComputedStyle(document.body).backgroundColor", vec![]).await.ok()?;
            (v == json!("rgb(21, 23, 27)")).then_some(v)
        })
        .await;
        assert_eq!(background, json!("rgb(21, 23, 27)"));
        exactly(&c, "#graph .exemplar", traces.len()).await;
        screenshot(&c, "query-phone-dark").await;

        // The range picker: the next longer range, its step, the same data.
        c.find(Locator::Css("[aria-label='Longer range']")).await.unwrap().click().await.unwrap();
        let summary = format!("2 series, {} exemplars, step 28s", traces.len());
        until(&summary, || async { (text_of(&c, "#summary").await == summary).then_some(()) }).await;
        assert_eq!(c.find(Locator::Id("range")).await.unwrap().prop("value").await.unwrap().as_deref(), Some("2h"));

        // Nothing was asked of any host but Amber.
        let hosts = c
            .execute(
                "return [...new Set(performance.getEntriesByType('resource').map(e => new URL(e.name).host))]",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(hosts, json!([format!("127.0.0.1:{}", amber.port)]));
        c.close().await.unwrap();
    });
}

#[test]
fn the_ui_is_served_from_the_binary_with_its_policy_and_entity_tags() {
    let dir = tempfile::tempdir().unwrap();
    let amber = Amber::start(dir.path(), &[]);
    let http = reqwest::blocking::Client::new();
    let index = http.get(amber.url("/")).send().unwrap();
    assert_eq!(index.status(), 200);
    assert_eq!(index.headers()["content-type"], "text/html; charset=utf-8");
    let policy = index.headers()["content-security-policy"].to_str().unwrap().to_string();
    assert!(policy.starts_with("default-src 'self'; script-src 'self';"), "{policy}");
    let etag = index.headers()["etag"].clone();
    assert!(index.text().unwrap().contains(r#"<script type="module" src="ui/app.js"></script>"#));

    let again = http.get(amber.url("/")).header("If-None-Match", etag).send().unwrap();
    assert_eq!(again.status(), 304);
    assert_eq!(again.text().unwrap(), "");

    let script = http.get(amber.url("/ui/app.js")).send().unwrap();
    assert_eq!(script.status(), 200);
    assert_eq!(script.headers()["content-type"], "text/javascript; charset=utf-8");
    let missing = http.get(amber.url("/ui/nope.js")).send().unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(missing.text().unwrap(), "no UI asset \"nope.js\"\n");

    let settings: Value =
        serde_json::from_str(&http.get(amber.url("/ui/settings.json")).send().unwrap().text().unwrap()).unwrap();
    assert_eq!(settings, json!({"traceUrlTemplate": "", "traceIdLabels": ["trace_id", "traceID"]}));
}
