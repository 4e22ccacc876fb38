//! App bits end to end on real temp directories: resolving params.path, gathering like `cf push`, and the package
//! zip read back with the zip crate.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io::Read;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;

use cf_blue_green_resource::bits::{AppBits, BitsError, Kind, PackageZip, Resource, gather, write_zip};
use cf_blue_green_resource::cf::FileResource;
use sha1::{Digest, Sha1};
use zip::CompressionMethod::Deflated;

use crate::util::archive;

fn write(root: &Path, rel: &str, content: &[u8]) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, content).unwrap();
}

fn chmod(root: &Path, rel: &str, mode: u32) {
    fs::set_permissions(root.join(rel), fs::Permissions::from_mode(mode)).unwrap();
}

fn sha1_hex(data: &[u8]) -> String {
    Sha1::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

fn which(tool: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn paths(resources: &[Resource]) -> Vec<&str> {
    resources.iter().map(|r| r.path.as_str()).collect()
}

fn find<'a>(resources: &'a [Resource], path: &str) -> &'a Resource {
    resources.iter().find(|r| r.path == path).unwrap_or_else(|| panic!("no resource {path}"))
}

fn bits_error(err: &anyhow::Error) -> &BitsError {
    err.downcast_ref::<BitsError>().unwrap_or_else(|| panic!("not a BitsError: {err:#}"))
}

/// Every entry of the package: name → (unix mode, contents).
fn unzip(package: &PackageZip) -> BTreeMap<String, (u32, Vec<u8>)> {
    let mut archive = zip::ZipArchive::new(package.reopen().unwrap()).unwrap();
    let mut entries = BTreeMap::new();
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).unwrap();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        entries.insert(entry.name().unwrap().to_string(), (entry.unix_mode().unwrap(), data));
    }
    entries
}

/// A typical app: code, an executable script, a nested directory, a big mixed file, plus things cf push leaves out.
fn sample_app(root: &Path) -> Vec<u8> {
    write(root, "app.js", b"console.log('hello');\n");
    write(root, "bin/start.sh", b"#!/bin/sh\nexec node app.js\n");
    chmod(root, "bin/start.sh", 0o755);
    write(root, "lib/util/strings.js", b"module.exports = {};\n");
    write(root, "lib/empty.txt", b"");
    write(root, "public/ünïcode.txt", "grüße\n".as_bytes());
    fs::create_dir_all(root.join("tmp/empty-dir")).unwrap();
    let mut big = Vec::new();
    let mut x = 7u32;
    while big.len() < 1_700_000 {
        if (big.len() / 100_000) % 3 == 0 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            big.extend_from_slice(&x.to_le_bytes());
        } else {
            big.extend_from_slice(format!("record {} ok\n", big.len() % 1000).as_bytes());
        }
    }
    write(root, "data/big.bin", &big);
    // Left out of every push.
    write(root, ".git/HEAD", b"ref: refs/heads/main\n");
    write(root, ".gitignore", b"node_modules\n");
    write(root, "manifest.yml", b"applications: []\n");
    write(root, "lib/.DS_Store", b"junk");
    write(root, ".svn/entries", b"x");
    big
}

#[test]
fn gathers_a_directory_like_cf_push() {
    let put = tempfile::tempdir().unwrap();
    sample_app(&put.path().join("app"));
    let bits = AppBits::resolve(put.path(), "app").unwrap();
    assert!(!bits.is_archive());
    let resources = gather(&bits).unwrap();
    assert_eq!(
        paths(&resources),
        [
            "app.js",
            "bin",
            "bin/start.sh",
            "data",
            "data/big.bin",
            "lib",
            "lib/empty.txt",
            "lib/util",
            "lib/util/strings.js",
            "public",
            "public/ünïcode.txt",
            "tmp",
            "tmp/empty-dir",
        ]
    );
    let app = find(&resources, "app.js");
    assert_eq!((app.kind, app.size, app.mode), (Kind::File, 22, 0o644));
    assert_eq!(app.sha1, sha1_hex(b"console.log('hello');\n"));
    assert_eq!(find(&resources, "bin/start.sh").mode, 0o755);
    let dir = find(&resources, "lib/util");
    assert_eq!((dir.kind, dir.size, dir.mode, dir.sha1.as_str()), (Kind::Dir, 0, 0o755, ""));
    let empty = find(&resources, "lib/empty.txt");
    assert_eq!((empty.size, empty.sha1.as_str()), (0, "da39a3ee5e6b4b0d3255bfef95601890afd80709"));
    assert!(!empty.is_match_candidate());
    let json = serde_json::to_value(FileResource::from(find(&resources, "bin/start.sh"))).unwrap();
    assert_eq!(json["mode"], "755");
    assert_eq!(json["size_in_bytes"], 27);
}

#[test]
fn cfignore_patterns_apply_and_only_the_top_level_cfignore_counts() {
    let put = tempfile::tempdir().unwrap();
    let app = put.path();
    write(
        app,
        ".cfignore",
        b"# build output\n*.log\n!important.log\nbuild/\n/config.local\n**/cache/**\nnode_modules\n",
    );
    for rel in [
        "a.log",
        "sub/b.log",
        "important.log",
        "sub/important.log",
        "build/out.o",
        "sub/build/out.o",
        "config.local",
        "sub/config.local",
        "x/cache/y/z.bin",
        "node_modules/left-pad/index.js",
        "src/main.rs",
    ] {
        write(app, rel, rel.as_bytes());
    }
    // A file named like a dir-only pattern is kept.
    write(app, "other/build", b"a file called build");
    // A nested .cfignore is not read (and not uploaded).
    write(app, "src/.cfignore", b"main.rs\n");
    let resources = gather(&AppBits::resolve(app, ".").unwrap()).unwrap();
    let files: Vec<&str> = resources.iter().filter(|r| r.kind == Kind::File).map(|r| r.path.as_str()).collect();
    assert_eq!(
        files,
        ["important.log", "other/build", "src/main.rs", "sub/config.local", "sub/important.log"],
        "all: {:?}",
        paths(&resources)
    );
    // The cache directory itself stays (only its contents match `**/cache/**`), node_modules and build do not.
    let all = paths(&resources);
    assert!(all.contains(&"x/cache"));
    assert!(!all.iter().any(|p| p.starts_with("node_modules") || p.starts_with("build") || p.starts_with("sub/build")));
}

#[test]
fn a_negation_brings_back_a_file_inside_an_ignored_directory() {
    let put = tempfile::tempdir().unwrap();
    let app = put.path();
    write(app, ".cfignore", b"logs/\n!logs/keep.txt\n");
    write(app, "logs/keep.txt", b"keep");
    write(app, "logs/drop.txt", b"drop");
    write(app, "index.html", b"<html>");
    let resources = gather(&AppBits::resolve(app, ".").unwrap()).unwrap();
    assert_eq!(paths(&resources), ["index.html", "logs/keep.txt"]);
}

#[test]
fn symlinks_are_kept_as_links_and_a_symlinked_root_is_resolved() {
    let put = tempfile::tempdir().unwrap();
    let real = put.path().join("real-app");
    write(&real, "index.js", b"x");
    write(&real, "lib/a.js", b"a");
    symlink("lib/a.js", real.join("alias.js")).unwrap();
    symlink("lib", real.join("lib-link")).unwrap();
    symlink("real-app", put.path().join("current")).unwrap();

    let bits = AppBits::resolve(put.path(), "current").unwrap();
    assert_eq!(bits.path(), fs::canonicalize(&real).unwrap());
    let resources = gather(&bits).unwrap();
    // Sorted bytewise, so "lib-link" comes before "lib/a.js".
    assert_eq!(paths(&resources), ["alias.js", "index.js", "lib", "lib-link", "lib/a.js"]);
    let link = find(&resources, "lib-link");
    assert_eq!((link.kind, link.size, link.sha1.as_str()), (Kind::Symlink, 0, ""));

    let package = write_zip(&bits, &resources, &HashSet::new()).unwrap();
    let entries = unzip(&package);
    let (mode, target) = &entries["lib-link"];
    assert_eq!(mode & 0o170000, 0o120000, "stored as a symlink");
    assert_eq!(target, b"lib");
    assert_eq!(entries["alias.js"].1, b"lib/a.js");
    assert!(!entries.contains_key("lib-link/a.js"), "links are not followed");
}

#[test]
fn package_zip_keeps_contents_modes_and_directory_entries() {
    let put = tempfile::tempdir().unwrap();
    let big = sample_app(&put.path().join("app"));
    let bits = AppBits::resolve(put.path(), "app").unwrap();
    let resources = gather(&bits).unwrap();
    let package = write_zip(&bits, &resources, &HashSet::new()).unwrap();

    let entries = unzip(&package);
    let names: Vec<&str> = entries.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "app.js",
            "bin/",
            "bin/start.sh",
            "data/",
            "data/big.bin",
            "lib/",
            "lib/empty.txt",
            "lib/util/",
            "lib/util/strings.js",
            "public/",
            "public/ünïcode.txt",
            "tmp/",
            "tmp/empty-dir/",
        ]
    );
    assert_eq!(entries["bin/start.sh"].0, 0o100755, "the executable bit survives");
    assert_eq!(entries["app.js"].0, 0o100644);
    assert_eq!(entries["tmp/empty-dir/"].0 & 0o170777, 0o040755);
    assert_eq!(entries["bin/start.sh"].1, b"#!/bin/sh\nexec node app.js\n");
    assert_eq!(entries["data/big.bin"].1, big, "a file compressed in several pieces comes back whole");
    assert_eq!(entries["public/ünïcode.txt"].1, "grüße\n".as_bytes());
    assert_eq!(entries["lib/empty.txt"].1, b"");

    let stats = package.stats();
    assert_eq!((stats.entries, stats.files), (13, 6));
    assert_eq!(stats.bytes_in, resources.iter().map(|r| r.size).sum::<u64>());
    assert_eq!(stats.zip_bytes, fs::metadata(package.path()).unwrap().len());
    assert_eq!(package.len(), stats.zip_bytes);
    assert!(stats.zip_bytes < stats.bytes_in, "deflated");
    assert!(!package.is_empty());

    // Info-ZIP unzip, which CC extracts packages with, accepts it and restores the modes.
    if which("unzip") {
        let out_dir = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("unzip")
            .args(["-q", "-o"])
            .arg(package.path())
            .arg("-d")
            .arg(out_dir.path())
            .status()
            .unwrap();
        assert!(status.success());
        let script = fs::metadata(out_dir.path().join("bin/start.sh")).unwrap();
        assert_eq!(script.permissions().mode() & 0o777, 0o755);
        assert_eq!(fs::read(out_dir.path().join("data/big.bin")).unwrap(), big);
        assert!(out_dir.path().join("tmp/empty-dir").is_dir());
    } else {
        eprintln!("unzip is not installed: skipping the Info-ZIP cross-check");
    }

    let path = package.path().to_path_buf();
    drop(package);
    assert!(!path.exists(), "the temp zip goes away with the PackageZip");
}

#[test]
fn cached_files_stay_in_the_resource_list_but_not_in_the_zip() {
    let put = tempfile::tempdir().unwrap();
    let app = put.path();
    write(app, "vendor/huge.jar", &vec![42u8; 200_000]);
    write(app, "vendor/copy-of-huge.jar", &vec![42u8; 200_000]);
    write(app, "app.rb", b"puts 1");
    let bits = AppBits::resolve(app, ".").unwrap();
    let resources = gather(&bits).unwrap();
    let cached: HashSet<String> = [find(&resources, "vendor/huge.jar").sha1.clone()].into();

    let uploaded_as_cached: Vec<&str> =
        resources.iter().filter(|r| r.is_cached(&cached)).map(|r| r.path.as_str()).collect();
    assert_eq!(uploaded_as_cached, ["vendor/copy-of-huge.jar", "vendor/huge.jar"]);

    let package = write_zip(&bits, &resources, &cached).unwrap();
    let entries = unzip(&package);
    assert_eq!(entries.keys().map(String::as_str).collect::<Vec<_>>(), ["app.rb", "vendor/"]);
    assert_eq!(package.stats().files, 1);
    assert_eq!(resources.len(), 4, "the resource list is unchanged");

    // Everything cached and no directories: an empty zip, which the upload may leave out.
    let flat = tempfile::tempdir().unwrap();
    write(flat.path(), "only.bin", b"cached");
    let bits = AppBits::resolve(flat.path(), ".").unwrap();
    let resources = gather(&bits).unwrap();
    let all: HashSet<String> = resources.iter().map(|r| r.sha1.clone()).collect();
    let package = write_zip(&bits, &resources, &all).unwrap();
    assert!(package.is_empty());
    assert_eq!(zip::ZipArchive::new(package.reopen().unwrap()).unwrap().len(), 0);
}

#[test]
fn a_file_changed_after_gathering_fails_the_package() {
    let put = tempfile::tempdir().unwrap();
    let app = put.path();
    write(app, "a.txt", b"original");
    write(app, "b.txt", b"stable");
    let big: Vec<u8> = (0..2_000_000u32).map(|i| (i % 251) as u8).collect();
    write(app, "big.bin", &big);
    let bits = AppBits::resolve(app, ".").unwrap();
    let resources = gather(&bits).unwrap();

    // Same size, different bytes.
    write(app, "a.txt", b"ORIGINAL");
    let err = write_zip(&bits, &resources, &HashSet::new()).unwrap_err();
    assert_eq!(bits_error(&err), &BitsError::FileChanged { path: "a.txt".into() });
    assert!(err.to_string().contains("file 'a.txt' changed"), "{err}");
    write(app, "a.txt", b"original");

    // A large file that grew, and one that shrank.
    let mut grown = big.clone();
    grown.extend_from_slice(b"more");
    write(app, "big.bin", &grown);
    let err = write_zip(&bits, &resources, &HashSet::new()).unwrap_err();
    assert_eq!(bits_error(&err), &BitsError::FileChanged { path: "big.bin".into() });
    write(app, "big.bin", &big[..1000]);
    let err = write_zip(&bits, &resources, &HashSet::new()).unwrap_err();
    assert_eq!(bits_error(&err), &BitsError::FileChanged { path: "big.bin".into() });

    // Put back, it packages again.
    write(app, "big.bin", &big);
    assert_eq!(write_zip(&bits, &resources, &HashSet::new()).unwrap().stats().files, 3);
}

#[test]
fn archives_are_read_from_inside_with_their_cfignore_and_modes() {
    let put = tempfile::tempdir().unwrap();
    let jar = put.path().join("build/app-1.0.jar");
    fs::create_dir_all(jar.parent().unwrap()).unwrap();
    archive::zip(
        &jar,
        Deflated,
        &[
            (".cfignore", b"*.md\n", Some(0o644)),
            ("META-INF/", b"", Some(0o755)),
            ("META-INF/MANIFEST.MF", b"Main-Class: App\n", Some(0o644)),
            ("bin/run", b"#!/bin/sh\n", Some(0o755)),
            ("README.md", b"# docs", Some(0o644)),
            ("manifest.yml", b"applications: []", Some(0o644)),
            ("App.class", b"\xca\xfe\xba\xbe", None),
            // Not the root .cfignore: not read, and not pushed.
            ("META-INF/.cfignore", b"*.MF\n", Some(0o644)),
        ],
    );
    let bits = AppBits::resolve(put.path(), "build/*.jar").unwrap();
    assert!(bits.is_archive());
    let resources = gather(&bits).unwrap();
    assert_eq!(paths(&resources), ["App.class", "META-INF", "META-INF/MANIFEST.MF", "bin/run"]);
    assert_eq!(find(&resources, "App.class").mode, 0o744, "no unix mode in the archive");
    assert_eq!(find(&resources, "bin/run").mode, 0o755);
    assert_eq!(find(&resources, "META-INF/MANIFEST.MF").sha1, sha1_hex(b"Main-Class: App\n"));
    assert_eq!(find(&resources, "META-INF").kind, Kind::Dir);

    let package = write_zip(&bits, &resources, &HashSet::new()).unwrap();
    let entries = unzip(&package);
    assert_eq!(
        entries.keys().map(String::as_str).collect::<Vec<_>>(),
        ["App.class", "META-INF/", "META-INF/MANIFEST.MF", "bin/run"]
    );
    assert_eq!(entries["bin/run"], (0o100755, b"#!/bin/sh\n".to_vec()));
    assert_eq!(entries["App.class"], (0o100744, b"\xca\xfe\xba\xbe".to_vec()));

    // Without a .cfignore, only the default ignores apply.
    let zip_path = put.path().join("plain.zip");
    archive::zip(&zip_path, Deflated, &[("index.php", b"<?php", Some(0o644)), ("README.md", b"# docs", Some(0o644))]);
    let resources = gather(&AppBits::resolve(put.path(), "plain.zip").unwrap()).unwrap();
    assert_eq!(paths(&resources), ["README.md", "index.php"]);
}

#[test]
fn glob_must_match_exactly_one_entry() {
    let put = tempfile::tempdir().unwrap();
    let root = put.path();
    let err = AppBits::resolve(root, "build/*.jar").unwrap_err();
    assert_eq!(err.to_string(), format!("params.path 'build/*.jar' matched no files in {}", root.display()));

    fs::create_dir_all(root.join("build")).unwrap();
    archive::zip(&root.join("build/a.jar"), Deflated, &[("x", b"1", None), ("y", b"2", None)]);
    let bits = AppBits::resolve(root, "build/*.jar").unwrap();
    assert_eq!(bits.path(), fs::canonicalize(root.join("build/a.jar")).unwrap());
    assert_eq!(bits.param(), "build/*.jar");

    archive::zip(&root.join("build/b.jar"), Deflated, &[("x", b"1", None), ("y", b"2", None)]);
    let err = AppBits::resolve(root, "build/*.jar").unwrap_err();
    assert_eq!(
        err.to_string(),
        "params.path 'build/*.jar' matched 2 entries (build/a.jar, build/b.jar); it must match exactly one"
    );
    assert!(matches!(bits_error(&err), BitsError::GlobManyMatches { .. }));

    // ?, [..] and ** work too, and directories count as entries.
    assert!(AppBits::resolve(root, "build/[a].jar").is_ok());
    assert!(AppBits::resolve(root, "build/?.jar").is_err());
    fs::create_dir_all(root.join("out/dist-1.2")).unwrap();
    write(root, "out/dist-1.2/index.html", b"x");
    let bits = AppBits::resolve(root, "**/dist-*").unwrap();
    assert!(!bits.is_archive());
    assert!(bits.path().ends_with("out/dist-1.2"));
}

#[test]
fn paths_that_cannot_be_pushed_fail_with_one_clear_line() {
    let put = tempfile::tempdir().unwrap();
    let root = put.path();

    let err = AppBits::resolve(root, "missing-dir").unwrap_err();
    assert_eq!(err.to_string(), format!("params.path 'missing-dir' does not exist in {}", root.display()));
    assert!(AppBits::resolve(root, "/etc").unwrap_err().to_string().contains("must be relative"));

    write(root, "notes.txt", b"plain text");
    let err = AppBits::resolve(root, "notes.txt").unwrap_err();
    assert!(matches!(bits_error(&err), BitsError::NotAnArchive { .. }), "{err}");

    fs::create_dir_all(root.join("empty")).unwrap();
    let err = gather(&AppBits::resolve(root, "empty").unwrap()).unwrap_err();
    assert!(matches!(bits_error(&err), BitsError::EmptyDirectory { .. }), "{err}");
    assert!(err.to_string().starts_with("params.path 'empty': directory "), "{err}");

    // Only ignored things inside is empty too.
    write(root, "ignored-only/.git/HEAD", b"x");
    write(root, "ignored-only/manifest.yml", b"x");
    let err = gather(&AppBits::resolve(root, "ignored-only").unwrap()).unwrap_err();
    assert!(matches!(bits_error(&err), BitsError::EmptyDirectory { .. }), "{err}");

    archive::zip(&root.join("one.zip"), Deflated, &[("only.txt", b"1", Some(0o644))]);
    let err = gather(&AppBits::resolve(root, "one.zip").unwrap()).unwrap_err();
    assert!(matches!(bits_error(&err), BitsError::EmptyArchive { .. }), "{err}");
    assert!(!err.to_string().contains('\n'));

    // Two entries, but one of them ignored: still empty.
    archive::zip(
        &root.join("two.zip"),
        Deflated,
        &[("only.txt", b"1", Some(0o644)), ("manifest.yml", b"x", Some(0o644))],
    );
    let err = gather(&AppBits::resolve(root, "two.zip").unwrap()).unwrap_err();
    assert!(matches!(bits_error(&err), BitsError::EmptyArchive { .. }), "{err}");
}
