//! `amber_transfer::tsdb` against blocks real Prometheus tools wrote: `promtool tsdb
//! create-blocks-from openmetrics` builds them from generated data, `promtool tsdb dump` is the
//! reference reading, and a real `prometheus` deletes series through its admin API to write real
//! tombstones. Both binaries come with Debian's `prometheus` package (2.42), which
//! `scripts/install-deps` installs; the tests fail, rather than skip, without them.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use amber_transfer::tsdb::{Block, Series, blocks_in};

/// 2023-11-14T22:13:20Z, in milliseconds.
const T0: i64 = 1_700_000_000_000;

/// The sample of a series, as the comparisons see it: a NaN is any NaN (promtool prints them all
/// as `NaN`), any other value is its exact bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Value {
    NaN,
    Bits(u64),
}

impl From<f64> for Value {
    fn from(v: f64) -> Value {
        if v.is_nan() { Value::NaN } else { Value::Bits(v.to_bits()) }
    }
}

/// `(labels as Go prints them, timestamp, value)`: one line of `promtool tsdb dump`.
type Line = (String, i64, Value);

// --- Tools ---------------------------------------------------------------------------------

/// Finds a Prometheus binary on the PATH, failing with what to install when it is missing.
fn tool(name: &str) -> PathBuf {
    let found = std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|dir| dir.join(name)).find(|path| path.is_file()));
    found.unwrap_or_else(|| {
        panic!("`{name}` is not on the PATH: install Debian's `prometheus` package (scripts/install-deps does)")
    })
}

fn run(command: &mut Command) -> String {
    let output = command.output().unwrap_or_else(|e| panic!("running {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Writes `openmetrics` to a file and has promtool turn it into blocks in `dir` (which then
/// looks like a Prometheus data directory: blocks beside an empty `wal/`, which `promtool tsdb
/// dump` needs).
fn create_blocks(openmetrics: &str, dir: &Path) {
    let input = dir.join("input.om");
    std::fs::write(&input, openmetrics).unwrap();
    let data = dir.join("data");
    run(Command::new(tool("promtool")).args(["tsdb", "create-blocks-from", "openmetrics"]).arg(&input).arg(&data));
    std::fs::create_dir_all(data.join("wal")).unwrap();
}

/// `promtool tsdb dump` of `[min_time, max_time]` (inclusive) of the data directory `dir`.
fn dump(dir: &Path, min_time: i64, max_time: i64) -> Vec<Line> {
    let out = run(Command::new(tool("promtool"))
        .args(["tsdb", "dump", &format!("--min-time={min_time}"), &format!("--max-time={max_time}")])
        .arg(dir));
    out.lines()
        .map(|line| {
            // `{__name__="x", a="b"} <value> <ts>`: labels may hold spaces, the rest cannot.
            let mut fields = line.rsplitn(3, ' ');
            let (ts, value, labels) = (fields.next().unwrap(), fields.next().unwrap(), fields.next().unwrap());
            let value = match value {
                "NaN" => f64::NAN,
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v.parse().unwrap_or_else(|e| panic!("value {v:?} in {line:?}: {e}")),
            };
            (labels.to_string(), ts.parse().unwrap(), value.into())
        })
        .collect()
}

// --- Reading with amber_transfer -------------------------------------------------------------

/// Every series of `block`, read with the reader under test.
fn read_block(block: &Block) -> anyhow::Result<Vec<Series>> {
    block.series().collect()
}

fn lines(series: &[Series]) -> Vec<Line> {
    series
        .iter()
        .flat_map(|s| {
            let labels = go_labels(&s.labels);
            s.samples.iter().map(move |&(t, v)| (labels.clone(), t, v.into()))
        })
        .collect()
}

/// Labels as Go's `labels.Labels.String` prints them: `{a="b", c="d"}`, values `strconv.Quote`d
/// (for the characters these tests use).
fn go_labels(labels: &[(String, String)]) -> String {
    let quote = |v: &str| {
        let mut out = String::from('"');
        for c in v.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out + "\""
    };
    let pairs: Vec<String> = labels.iter().map(|(n, v)| format!("{n}={}", quote(v))).collect();
    format!("{{{}}}", pairs.join(", "))
}

/// Whether two readings are the same, values compared bit for bit (NaN == NaN).
fn same(a: &[Series], b: &[Series]) -> bool {
    let bits = |s: &Series| s.samples.iter().map(|&(t, v)| (t, v.to_bits())).collect::<Vec<_>>();
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.labels == y.labels && x.skipped_chunks == y.skipped_chunks && bits(x) == bits(y))
}

/// Asserts the reader's lines equal promtool's, pointing at the first difference.
fn assert_same(ours: &[Line], reference: &[Line], what: &str) {
    if let Some(i) = (0..ours.len().max(reference.len())).find(|&i| ours.get(i) != reference.get(i)) {
        panic!(
            "{what}: line {i} differs (ours {} lines, promtool {}):\n  ours:     {:?}\n  promtool: {:?}",
            ours.len(),
            reference.len(),
            ours.get(i),
            reference.get(i)
        );
    }
}

// --- Generated data ----------------------------------------------------------------------------

/// A xorshift generator: the data is the same on every run, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Uniform in [0, 1), with all 53 bits of precision: values whose XORs are wide.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// How a generated series' values go.
#[derive(Clone, Copy)]
enum Kind {
    /// A random walk with two decimals.
    Decimal,
    /// An integer counter with resets and big jumps.
    Counter,
    /// Negative decimals that sometimes change sign.
    Negative,
    /// NaN, ±Inf, ±0, the extremes of f64, repeats.
    Specials,
    /// Mostly the same value, on timestamps with irregular milliseconds.
    Constant,
    /// Full-precision random values with gaps of hours between some samples.
    Sparse,
}

/// A generated series: metric name, other labels, kind.
type Spec = (&'static str, Vec<(&'static str, &'static str)>, Kind);

fn specs() -> Vec<Spec> {
    vec![
        ("room_temperature_celsius", vec![("room", "kitchen"), ("sensor", "a b")], Kind::Decimal),
        ("http_requests", vec![("code", "200"), ("method", "GET")], Kind::Counter),
        ("http_requests", vec![("code", "500"), ("method", "GET")], Kind::Counter),
        ("account_balance", vec![("account", "ü-42")], Kind::Negative),
        ("special_values", vec![("kind", "edge")], Kind::Specials),
        ("label_escapes", vec![("path", "C:\\dir \"quoted\"\nline two")], Kind::Constant),
        ("sparse_random", vec![("job", "batch")], Kind::Sparse),
    ]
}

/// Generated data as OpenMetrics text, and what promtool should store from it: per series (its
/// labels as Go prints them), the samples in order. `regular` data is scraped every 15 s (give
/// or take a few milliseconds); otherwise intervals vary from a millisecond to hours, about 50 s
/// on average.
fn generate(samples_per_series: usize, seed: u64, regular: bool) -> (String, BTreeMap<String, Vec<(i64, f64)>>) {
    let mut text = String::new();
    let mut expected = BTreeMap::new();
    let mut last_family = "";
    for (i, (name, labels, kind)) in specs().into_iter().enumerate() {
        let mut rng = Rng(seed ^ (0x9e37_79b9_7f4a_7c15u64.wrapping_mul(i as u64 + 1)));
        if name != last_family {
            text += &format!("# TYPE {name} gauge\n# HELP {name} Generated for the TSDB reader tests.\n");
            last_family = name;
        }
        let om_labels: Vec<String> = labels
            .iter()
            .map(|(n, v)| format!("{n}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")))
            .collect();
        let mut sorted: Vec<(String, String)> = labels.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
        sorted.push(("__name__".into(), name.into()));
        sorted.sort();
        let mut samples = Vec::new();

        let mut t = T0 + rng.below(60_000) as i64;
        let mut stored_last = i64::MIN;
        let mut value = 0.0f64;
        // Sparse samples are far apart: fewer of them keep the data's span to that of the others.
        let count = if matches!(kind, Kind::Sparse) { samples_per_series / 5 } else { samples_per_series };
        while samples.len() < count {
            t += match (regular, kind, rng.below(1000)) {
                (true, _, 0..=99) => 15_000 + rng.below(5) as i64,
                (true, _, _) => 15_000,
                (_, Kind::Sparse, 0..=9) => 2 * 3_600_000 + rng.below(3 * 3_600_000) as i64, // Skips blocks.
                (_, Kind::Sparse, _) => 30_000,
                (_, _, 0..=749) => 15_000,
                (_, _, 750..=879) => 14_500 + rng.below(1_000) as i64,
                (_, _, 880..=929) => 1 + rng.below(10) as i64,
                (_, _, 930..=969) => 1_000 + rng.below(4_000) as i64,
                (_, _, 970..=994) => 60_000 + rng.below(540_000) as i64,
                _ => 3_600_000 + rng.below(3_600_000) as i64,
            };
            value = match kind {
                Kind::Decimal => (((value + rng.unit() - 0.5) * 100.0).round() / 100.0).clamp(-40.0, 60.0),
                Kind::Counter => match rng.below(200) {
                    0 => 0.0,
                    1 => value + 1e6,
                    _ => value + rng.below(10) as f64,
                },
                Kind::Negative => {
                    let v = -((rng.below(1_000_000) as f64) / 1000.0);
                    if rng.below(20) == 0 { -v } else { v }
                }
                Kind::Specials => [
                    f64::NAN,
                    f64::INFINITY,
                    f64::NEG_INFINITY,
                    0.0,
                    -0.0,
                    1e300,
                    -1e-300,
                    5e-324,
                    f64::MAX,
                    f64::MIN,
                    1.0,
                    1.0,
                    123_456_789.123,
                    -2.5,
                ][rng.below(14) as usize],
                Kind::Constant => {
                    if rng.below(50) == 0 {
                        rng.below(100) as f64
                    } else {
                        value
                    }
                }
                Kind::Sparse => rng.unit() * 1e6,
            };
            // OpenMetrics timestamps are seconds; promtool stores `int64(seconds * 1000)`, which
            // truncates. Compute the stored timestamp the same way, and skip a sample that would
            // not be later than the one before.
            let seconds = format!("{}.{:03}", t / 1000, t % 1000);
            let stored = (seconds.parse::<f64>().unwrap() * 1000.0) as i64;
            if stored <= stored_last {
                continue;
            }
            stored_last = stored;
            let om_value = match value {
                v if v.is_nan() => "NaN".to_string(),
                f64::INFINITY => "+Inf".to_string(),
                f64::NEG_INFINITY => "-Inf".to_string(),
                v => format!("{v:e}"),
            };
            text += &format!("{name}{{{}}} {om_value} {seconds}\n", om_labels.join(","));
            samples.push((stored, value));
        }
        expected.insert(go_labels(&sorted), samples);
    }
    text += "# EOF\n";
    (text, expected)
}

/// Every block's series, merged per series in block order: what should equal the generated data.
fn merged(blocks: &[Block]) -> BTreeMap<String, Vec<(i64, Value)>> {
    let mut out: BTreeMap<String, Vec<(i64, Value)>> = BTreeMap::new();
    for block in blocks {
        for series in read_block(block).unwrap() {
            out.entry(go_labels(&series.labels))
                .or_default()
                .extend(series.samples.iter().map(|&(t, v)| (t, v.into())));
        }
    }
    out
}

fn as_values(expected: &BTreeMap<String, Vec<(i64, f64)>>) -> BTreeMap<String, Vec<(i64, Value)>> {
    expected.iter().map(|(k, v)| (k.clone(), v.iter().map(|&(t, v)| (t, v.into())).collect())).collect()
}

// --- Tests ---------------------------------------------------------------------------------

/// Every sample of blocks promtool built is read back exactly as `promtool tsdb dump` reads it,
/// block by block, and as it was generated.
#[test]
fn blocks_read_as_promtool_dumps_them() {
    let dir = tempfile::tempdir().unwrap();
    let (openmetrics, expected) = generate(2_500, 1, false);
    create_blocks(&openmetrics, dir.path());
    let data = dir.path().join("data");

    let blocks = blocks_in(&data).unwrap();
    assert!(blocks.len() >= 10, "the data spans more than a day: {} blocks", blocks.len());
    assert!(blocks.windows(2).all(|w| w[0].meta().max_time <= w[1].meta().min_time), "sorted by time, disjoint");

    let mut chunks_read = 0;
    for block in &blocks {
        let meta = block.meta();
        let series = read_block(block).unwrap();
        assert_eq!(series.len() as u64, meta.num_series, "{}", meta.ulid);
        assert_eq!(series.iter().map(|s| s.samples.len() as u64).sum::<u64>(), meta.num_samples, "{}", meta.ulid);
        assert!(series.iter().all(|s| s.skipped_chunks == 0));
        assert!(series.iter().all(|s| s.samples.is_sorted_by(|a, b| a.0 < b.0)));
        assert!(series.iter().all(|s| s.labels.is_sorted()), "labels sorted by name");
        assert!(series.windows(2).all(|w| w[0].labels < w[1].labels), "series sorted by labels");
        chunks_read += series.iter().map(|s| s.samples.len().div_ceil(120)).sum::<usize>();

        let reference = dump(&data, meta.min_time, meta.max_time - 1);
        assert!(!reference.is_empty());
        assert_same(&lines(&series), &reference, &format!("block {}", meta.ulid));
    }
    assert!(chunks_read > 150, "many chunks of many sizes: {chunks_read}");
    assert_eq!(merged(&blocks), as_values(&expected), "the blocks hold what was generated");

    // A block directory on its own is one block; a missing directory is an error.
    let one = blocks_in(blocks[3].dir()).unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].meta(), blocks[3].meta());
    assert!(blocks_in(&dir.path().join("nope")).is_err());
}

/// What `blocks_in` treats as a block: subdirectories with a meta.json, not Prometheus's
/// temporary ones; the WAL, head chunks and files beside them are ignored.
#[test]
fn blocks_in_skips_what_is_not_a_block() {
    let dir = tempfile::tempdir().unwrap();
    let (openmetrics, _) = generate(300, 2, false);
    create_blocks(&openmetrics, dir.path());
    let data = dir.path().join("data");
    let blocks = blocks_in(&data).unwrap();
    let ulids: Vec<String> = blocks.iter().map(|b| b.meta().ulid.clone()).collect();

    // What a live Prometheus directory has beside its blocks.
    std::fs::create_dir_all(data.join("chunks_head")).unwrap();
    std::fs::write(data.join("wal/00000000"), b"").unwrap();
    std::fs::write(data.join("lock"), b"").unwrap();
    std::fs::write(data.join("queries.active"), b"").unwrap();
    // A block being deleted: whole, meta.json and all, but not data.
    copy_dir(blocks[0].dir(), &data.join(format!("{}.tmp-for-deletion", ulids[0])));
    std::fs::create_dir_all(data.join("empty")).unwrap();
    let again: Vec<String> = blocks_in(&data).unwrap().iter().map(|b| b.meta().ulid.clone()).collect();
    assert_eq!(again, ulids);
}

/// A flipped byte anywhere in the index or a chunk file gives an error or, where the byte is
/// one no reader uses, the very same samples: never a panic, never different samples. So does
/// a truncated file.
#[test]
fn corruption_is_an_error_not_wrong_samples() {
    let dir = tempfile::tempdir().unwrap();
    // A single block, small enough to corrupt byte by byte in a few seconds: three series of
    // 150 samples (two chunks each) 15 s apart, 38 minutes within one two-hour block range.
    let (mut openmetrics, _) = generate(150, 3, true);
    openmetrics = openmetrics
        .lines()
        .filter(|l| {
            l.starts_with('#') || l.starts_with("room_") || l.starts_with("special_") || l.starts_with("account_")
        })
        .map(|l| l.to_string() + "\n")
        .collect();
    create_blocks(&openmetrics, dir.path());
    let blocks = blocks_in(&dir.path().join("data")).unwrap();
    assert_eq!(blocks.len(), 1);
    let block_dir = blocks[0].dir().to_owned();
    let good = read_block(&blocks[0]).unwrap();
    assert_eq!(good.iter().map(|s| s.samples.len()).sum::<usize>(), 450);

    let read = || Block::open(&block_dir).and_then(|b| read_block(&b));
    let flip_each = |file: &Path, check: &mut dyn FnMut(usize, anyhow::Result<Vec<Series>>)| {
        let original = std::fs::read(file).unwrap();
        for i in 0..original.len() {
            let mut bad = original.clone();
            bad[i] ^= 0xff;
            std::fs::write(file, &bad).unwrap();
            check(i, read());
        }
        for len in 0..original.len() {
            std::fs::write(file, &original[..len]).unwrap();
            assert!(read().is_err(), "{} truncated to {len} bytes", file.display());
        }
        std::fs::write(file, &original).unwrap();
        original
    };

    // The chunk file: every byte after the 8-byte header is in a chunk, all of which are read
    // and checksummed; of the header, only the 3 bytes of padding go unread.
    let chunks = block_dir.join("chunks/000001");
    let mut unread = Vec::new();
    flip_each(&chunks, &mut |i, result| match result {
        Ok(series) => {
            assert!(same(&series, &good), "flipping chunk file byte {i} changed the samples");
            unread.push(i);
        }
        Err(e) => assert!(format!("{e:#}").contains("chunks/000001"), "errors name the file: {e:#}"),
    });
    assert_eq!(unread, [5, 6, 7]);

    // The index: the sections read (symbols, series, the list of all series, the postings
    // offset table, the table of contents) are checksummed; padding and the sections no longer
    // used may go unread.
    let index = block_dir.join("index");
    let mut errors = Vec::new();
    let bytes = flip_each(&index, &mut |i, result| match result {
        Ok(series) => assert!(same(&series, &good), "flipping index byte {i} changed the samples"),
        Err(e) => errors.push((i, format!("{e:#}"))),
    });
    let toc: Vec<u64> = (0..6)
        .map(|k| {
            let at = bytes.len() - 52 + 8 * k;
            u64::from_be_bytes(bytes[at..at + 8].try_into().unwrap())
        })
        .collect();
    let section_len = |at: u64| 4 + u64::from(u32::from_be_bytes(bytes[at as usize..][..4].try_into().unwrap())) + 4;
    let failed = |i: u64| errors.iter().any(|(at, _)| *at as u64 == i);
    let (symbols, series, postings_table) = (toc[0], toc[1], toc[5]);
    for i in (0..5).chain(symbols..symbols + section_len(symbols)).chain(postings_table..bytes.len() as u64) {
        assert!(failed(i), "flipping index byte {i} went unnoticed");
    }
    // The section starts where the writer was; its first entry, like every other, at the next
    // multiple of 16.
    assert!(failed(series.div_ceil(16) * 16), "the first series entry's length");
    let messages: Vec<&String> = errors.iter().map(|(_, m)| m).collect();
    for needle in ["symbol table", "postings offset table", "postings list", "table of contents", "magic", "series "] {
        assert!(messages.iter().any(|m| m.contains(needle)), "no error mentions {needle:?}");
    }
    assert!(messages.iter().all(|m| m.contains("index")), "errors name the file");
}

/// A chunk of an encoding the reader does not decode (here a native histogram chunk, made by
/// rewriting an XOR chunk's encoding byte) is counted in `skipped_chunks`, and the rest of its
/// series is read.
#[test]
fn histogram_chunks_are_counted_not_decoded() {
    let dir = tempfile::tempdir().unwrap();
    let (openmetrics, _) = generate(300, 4, false);
    create_blocks(&openmetrics, dir.path());
    let blocks = blocks_in(&dir.path().join("data")).unwrap();
    let block = blocks.iter().max_by_key(|b| b.meta().num_samples).unwrap();
    let good = read_block(block).unwrap();
    let block_dir = block.dir().to_owned();

    // The first chunk of the file, which holds the first samples of the first series.
    let path = block_dir.join("chunks/000001");
    let mut bytes = std::fs::read(&path).unwrap();
    let (mut len, mut at) = (0usize, 8);
    for shift in (0..).step_by(7) {
        len |= usize::from(bytes[at] & 0x7f) << shift;
        at += 1;
        if bytes[at - 1] < 0x80 {
            break;
        }
    }
    assert_eq!(bytes[at], 1, "an XOR chunk");
    bytes[at] = 2;
    let crc = crc32c(&bytes[at..at + 1 + len]);
    bytes[at + 1 + len..at + 1 + len + 4].copy_from_slice(&crc.to_be_bytes());
    std::fs::write(&path, &bytes).unwrap();

    let series = read_block(&Block::open(&block_dir).unwrap()).unwrap();
    assert_eq!(series.len(), good.len());
    assert_eq!(series[0].skipped_chunks, 1);
    let samples_in_chunk = u16::from_be_bytes([bytes[at + 1], bytes[at + 2]]) as usize;
    let mut rest = good[0].clone();
    rest.samples.drain(..samples_in_chunk);
    rest.skipped_chunks = 1;
    assert!(same(&series[..1], &[rest]), "the first series less its first chunk");
    assert!(same(&series[1..], &good[1..]), "the other series unchanged");
}

/// Series deleted through a real Prometheus's admin API (which writes each block's
/// `tombstones`) read as `promtool tsdb dump` reads them: without the deleted ranges, and
/// without the series deleted whole.
#[test]
fn tombstones_written_by_prometheus_are_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let (openmetrics, mut expected) = generate(800, 5, false);
    create_blocks(&openmetrics, dir.path());
    let data = dir.path().join("data");
    let before = blocks_in(&data).unwrap();
    assert!(before.len() >= 4);
    let (b1, b2) = (before[1].meta().clone(), before[2].meta().clone());
    drop(before);

    // Whole seconds, which the API takes exactly.
    let sec_up = |ms: i64| (ms + 999).div_euclid(1000) * 1000;
    let sec_down = |ms: i64| ms.div_euclid(1000) * 1000;
    let inside = (
        sec_up(b1.min_time + (b1.max_time - b1.min_time) / 3),
        sec_down(b1.min_time + (b1.max_time - b1.min_time) * 2 / 3),
    );
    let across = (
        sec_up(b1.min_time + (b1.max_time - b1.min_time) / 2),
        sec_down(b2.min_time + (b2.max_time - b2.min_time) / 2),
    );
    let deletions = [
        (r#"{__name__="room_temperature_celsius"}"#, Some(inside)),
        (r#"{__name__="http_requests",code="500"}"#, Some(across)),
        (r#"{__name__="account_balance"}"#, None),
    ];

    let prometheus = Prometheus::start(dir.path(), &data);
    for (selector, range) in deletions {
        let mut query = format!("match[]={}", percent_encode(selector));
        if let Some((start, end)) = range {
            query += &format!("&start={}&end={}", start / 1000, end / 1000);
        }
        let status = http(prometheus.port, "POST", &format!("/api/v1/admin/tsdb/delete_series?{query}"));
        assert_eq!(status, Some(204), "deleting {selector}");
    }
    drop(prometheus);

    // What should be left: the generated data less the deletions.
    for (labels, samples) in expected.iter_mut() {
        if labels.contains("account_balance") {
            samples.clear();
        }
        let range = if labels.contains("room_temperature_celsius") {
            inside
        } else if labels.contains("code=\"500\"") {
            across
        } else {
            continue;
        };
        let count = samples.len();
        samples.retain(|&(t, _)| t < range.0 || t > range.1);
        assert!(samples.len() < count, "the deletion of {labels} removes samples");
    }
    expected.retain(|_, samples| !samples.is_empty());

    let blocks = blocks_in(&data).unwrap();
    let with_tombstones =
        blocks.iter().filter(|b| std::fs::metadata(b.dir().join("tombstones")).unwrap().len() > 9).count();
    assert!(with_tombstones >= 3, "prometheus wrote tombstones into {with_tombstones} blocks");
    for block in &blocks {
        let meta = block.meta();
        let reference = dump(&data, meta.min_time, meta.max_time - 1);
        assert_same(&lines(&read_block(block).unwrap()), &reference, &format!("block {}", meta.ulid));
    }
    assert_eq!(merged(&blocks), as_values(&expected));
}

// --- Helpers -------------------------------------------------------------------------------

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &to.join(entry.file_name()));
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

/// CRC32-Castagnoli, bit by bit: the test's own, independent of the reader's.
fn crc32c(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0x82f6_3b78 } else { crc >> 1 };
        }
    }
    !crc
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            b => format!("%{b:02X}"),
        })
        .collect()
}

/// One HTTP/1.1 request without a body; the response's status, or `None` when there is no
/// answer (yet).
fn http(port: u16, method: &str, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    let request =
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.split(' ').nth(1)?.parse().ok()
}

/// A `prometheus` serving the TSDB in `data`, with the admin API on; killed on drop.
struct Prometheus {
    child: Child,
    port: u16,
}

impl Prometheus {
    fn start(dir: &Path, data: &Path) -> Prometheus {
        let config = dir.join("prometheus.yml");
        std::fs::write(&config, "global:\n  scrape_interval: 1h\n").unwrap();
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = Command::new(tool("prometheus"))
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", data.display()))
            // The generated data is from 2023: the default 15 days would delete it on start.
            .arg("--storage.tsdb.retention.time=100y")
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--web.enable-admin-api")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting prometheus");
        let prometheus = Prometheus { child, port };
        let deadline = Instant::now() + Duration::from_secs(30);
        while http(port, "GET", "/-/ready") != Some(200) {
            let log = std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default();
            assert!(Instant::now() < deadline, "prometheus did not become ready:\n{log}");
            std::thread::sleep(Duration::from_millis(100));
        }
        prometheus
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
