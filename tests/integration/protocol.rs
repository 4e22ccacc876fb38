//! The protocol contract of the real binaries where the proof suite's bad input table cannot reach it: a panic
//! inside any of them still ends in one clean error line. (Every bad request, for each binary, is in that
//! table: `tests/proof/bad_inputs.rs`.)

use crate::util::run_resource;

#[test]
fn forced_panic_is_one_clean_line() {
    if std::env::var_os("RESOURCE_BIN_DIR").is_some() {
        return; // release binaries in the image have no forced-panic switch
    }
    let dir = tempfile::tempdir().unwrap();
    for (name, args) in
        [("check", vec![]), ("in", vec![dir.path().to_str().unwrap()]), ("out", vec![dir.path().to_str().unwrap()])]
    {
        let run = run_resource(name, &args, "", &[("CF_BG_FORCE_PANIC", name)]);
        run.assert_clean_failure("internal error: forced panic");
        assert_eq!(run.stderr.trim().lines().count(), 1, "exactly one line: {}", run.stderr);
    }
}
