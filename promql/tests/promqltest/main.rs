//! Prometheus's PromQL conformance suite, run against Amber's engine on in-memory data.
//!
//! Every `*.test` file in `testdata/` (vendored from Prometheus; `$AMBER_PROMQLTEST_DIR` overrides
//! it) is executed the way Prometheus's own runner does it (`testdata/FORMAT.md`): loads, instant
//! evals with their `@` variants and range-mode cross-checks, range evals, expected failures and
//! annotations. The report lists per-file pass counts, the evals Amber does not support yet and why,
//! and ends with `promqltest: P/T evals passed`. The test fails when P drops below the floor checked
//! in at `promql/tests/promqltest-floor.txt`: raise the floor as the engine gets better, never lower
//! it.
//!
//! Set `AMBER_PROMQLTEST_VERBOSE=1` to print every failing eval with its reason.

mod run;
mod script;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use run::Outcome;

/// Files that test experimental features (behind feature flags in Prometheus).
const EXPERIMENTAL_FILES: [&str; 7] = [
    "duration_expression.test",
    "extended_vectors.test",
    "fill-modifier.test",
    "info.test",
    "native_histograms.test",
    "start_timestamps.test",
    "type_and_unit.test",
];

fn suite_dir() -> PathBuf {
    match std::env::var_os("AMBER_PROMQLTEST_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/promqltest/testdata"),
    }
}

/// Writes past the test harness's output capture, so the report shows in CI logs on success too.
fn report(text: &str) {
    let mut err = std::io::stderr().lock();
    err.write_all(text.as_bytes()).expect("stderr is writable");
}

#[test]
fn promqltest_conformance() {
    let dir = suite_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading the conformance suite at {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "test"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .test files in {}", dir.display());
    let verbose = std::env::var_os("AMBER_PROMQLTEST_VERBOSE").is_some();

    let (mut passed, mut total) = (0, 0);
    // Evals outside the experimental files that need no native histograms: the stable core.
    let (mut core_passed, mut core_total) = (0, 0);
    let mut out = String::new();
    // Why evals are not supported yet → file → lines.
    let mut unsupported: BTreeMap<String, BTreeMap<String, Vec<usize>>> = BTreeMap::new();
    for path in &files {
        let name = path.file_name().expect("file name").to_string_lossy().into_owned();
        let text = std::fs::read_to_string(path).expect("readable test file");
        let outcomes = run::file(&text);
        let file_passed = outcomes.iter().filter(|(_, o)| matches!(o, Outcome::Passed)).count();
        passed += file_passed;
        total += outcomes.len();
        out.push_str(&format!("{name:32} {file_passed:4}/{:<4}\n", outcomes.len()));
        for (line, outcome) in &outcomes {
            let native = matches!(outcome, Outcome::Unsupported(why) if why == "native histograms");
            if !EXPERIMENTAL_FILES.contains(&name.as_str()) && !native {
                core_total += 1;
                core_passed += usize::from(matches!(outcome, Outcome::Passed));
            }
            match outcome {
                Outcome::Passed => {}
                Outcome::Unsupported(why) => {
                    unsupported.entry(why.clone()).or_default().entry(name.clone()).or_default().push(*line)
                }
                Outcome::Failed(why) if verbose => out.push_str(&format!("  FAIL {name}:{line}: {why}\n")),
                Outcome::Failed(_) => {}
            }
        }
    }
    if !unsupported.is_empty() {
        out.push_str("not supported yet (these count as failed):\n");
        for (why, files) in &unsupported {
            let count: usize = files.values().map(Vec::len).sum();
            out.push_str(&format!("  {count} evals: {why}\n"));
            for (file, lines) in files {
                let lines: Vec<String> = lines.iter().map(usize::to_string).collect();
                out.push_str(&format!("    {file} lines {}\n", lines.join(" ")));
            }
        }
    }
    out.push_str(&format!(
        "promqltest without native histograms and experimental features: {core_passed}/{core_total} evals passed ({:.1}%)\n",
        100.0 * core_passed as f64 / core_total.max(1) as f64
    ));
    out.push_str(&format!("promqltest: {passed}/{total} evals passed\n"));
    report(&out);

    let floor_path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/promqltest-floor.txt");
    let floor: usize = std::fs::read_to_string(&floor_path)
        .expect("promqltest-floor.txt")
        .trim()
        .parse()
        .expect("the floor is a number");
    assert!(passed >= floor, "promqltest: {passed} evals passed, below the floor of {floor}");
    if passed > floor {
        report(&format!("promqltest: {passed} is above the floor of {floor}: raise {}\n", floor_path.display()));
    }
}
