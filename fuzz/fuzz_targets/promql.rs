//! Query text: PromQL (parsed, printed back and parsed again: the printed form must parse), and
//! the API's time and duration parameters.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(expr) = promql_parser::parser::parse(&text) {
        let printed = expr.to_string();
        let _ = promql_parser::parser::parse(&printed);
        let _ = expr.prettify();
    }
    let _ = amber_api::params::parse_duration_ms(&text);
    let _ = amber_api::params::parse_time(&text);
});
