//! The protocol contract of the real binaries where the proof suite's bad input table cannot reach it: a panic
//! inside any of them still ends in one clean error line. (Every bad request, for each binary, is in that
//! table: `tests/proof/bad_inputs.rs`.) And the image's promise to smoke tests: the tools the README lists are
//! installed by the Dockerfile and, inside the image, run.

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

#[test]
fn the_smoke_test_tools_the_readme_lists_are_in_the_image() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let line = readme.lines().find_map(|l| l.strip_prefix("- smoke-test tools: ")).expect("the README lists them");
    let tools: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(tools, ["bash", "curl", "jq"]);
    let dockerfile = std::fs::read_to_string(root.join("Dockerfile")).unwrap();
    let install = dockerfile.lines().find(|l| l.contains("apt-get install")).expect("the Dockerfile installs packages");
    for tool in &tools {
        assert!(install.split_whitespace().any(|word| word == *tool), "the image does not install {tool}: {install}");
    }
    // Inside the image (the Dockerfile's tests stage), each one runs.
    if std::env::var_os("RESOURCE_BIN_DIR").is_some_and(|dir| dir == "/opt/resource") {
        for tool in tools {
            let ran = std::process::Command::new(tool).arg("--version").output();
            assert!(ran.is_ok_and(|out| out.status.success()), "{tool} --version does not run in the image");
        }
    }
}
