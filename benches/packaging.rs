//! Packaging benchmark: our packer (gather + write_zip, nothing cached) against Info-ZIP `zip -r` and `sha1sum`
//! over the same generated ~200 MB tree, in one run.
//!
//! `cargo bench --bench packaging`. The packer runs in a child process (this binary re-executed with `--pack DIR`)
//! so its peak RSS can be read alone from `wait4`. Each tool runs three times, interleaved; medians are reported.

use std::collections::HashSet;
use std::fs;
use std::io::{BufWriter, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use cf_blue_green_resource::bits::{AppBits, gather, write_zip};

#[path = "measure.rs"]
mod measure;

const ROUNDS: usize = 3;
const RSS_LIMIT_MB: f64 = 64.0;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--pack") {
        pack(Path::new(&args[i + 1]));
        return;
    }

    let work = tempfile::tempdir().expect("temp dir");
    let tree = work.path().join("app");
    let started = Instant::now();
    let shape = generate(&tree);
    println!(
        "tree: {} files in {} directories, {:.1} MB ({} large files of {}), generated in {:.1} s",
        shape.files,
        shape.dirs,
        mb(shape.bytes),
        shape.large.len(),
        shape.large.iter().map(|b| format!("{:.0} MB", mb(*b))).collect::<Vec<_>>().join(", "),
        started.elapsed().as_secs_f64()
    );
    println!("machine: {} cores, {}", cores(), cpu_model());

    let have_zip = tool_exists("zip");
    if !have_zip {
        println!("zip is not installed: skipping the zip -r comparison (CI installs it)");
    }
    let mut zip_times = Vec::new();
    let mut zip_size = 0;
    let mut sha_times = Vec::new();
    let mut ours = Vec::new();
    for _ in 0..ROUNDS {
        if have_zip {
            let out = work.path().join("info-zip.zip");
            let _ = fs::remove_file(&out);
            let t = Instant::now();
            let status = Command::new("zip").args(["-r", "-q"]).arg(&out).arg(".").current_dir(&tree).status();
            assert!(status.expect("run zip").success(), "zip -r failed");
            zip_times.push(t.elapsed());
            zip_size = fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
            fs::remove_file(&out).ok();
        }
        let t = Instant::now();
        let status = Command::new("sh")
            .arg("-c")
            .arg("find . -type f -print0 | xargs -0 sha1sum > /dev/null")
            .current_dir(&tree)
            .status();
        assert!(status.expect("run sha1sum").success(), "sha1sum failed");
        sha_times.push(t.elapsed());
        ours.push(run_packer(&tree));
    }

    let zip_t = median(&zip_times);
    let sha_t = median(&sha_times);
    let ours_t = median(&ours.iter().map(|r| r.wall).collect::<Vec<_>>());
    let gather_t = median(&ours.iter().map(|r| r.gather).collect::<Vec<_>>());
    let write_t = median(&ours.iter().map(|r| r.write).collect::<Vec<_>>());
    let rss = ours.iter().map(|r| r.max_rss_kb).max().unwrap_or(0) as f64 / 1024.0;
    let rate = |d: Duration| mb(shape.bytes) / d.as_secs_f64().max(1e-9);

    println!();
    println!("{:<34} {:>9} {:>9} {:>10}", "median of 3", "seconds", "MB/s", "output MB");
    if have_zip {
        println!("{:<34} {:>9.2} {:>9.1} {:>10.1}", "zip -r -q", zip_t.as_secs_f64(), rate(zip_t), mb(zip_size));
    }
    println!("{:<34} {:>9.2} {:>9.1} {:>10}", "sha1sum (every file)", sha_t.as_secs_f64(), rate(sha_t), "-");
    println!(
        "{:<34} {:>9.2} {:>9.1} {:>10.1}",
        "ours: gather + write_zip (process)",
        ours_t.as_secs_f64(),
        rate(ours_t),
        mb(ours[0].zip_bytes)
    );
    println!("{:<34} {:>9.2} {:>9.1}", "  of which gather (hash all)", gather_t.as_secs_f64(), rate(gather_t));
    println!("{:<34} {:>9.2} {:>9.1}", "  of which write_zip", write_t.as_secs_f64(), rate(write_t));
    println!("{:<34} {:>9.1} MB", "ours: peak RSS (max of runs)", rss);
    println!();
    println!("ratio ours/sha1sum: {:.2}", ours_t.as_secs_f64() / sha_t.as_secs_f64());
    if have_zip {
        let ratio = ours_t.as_secs_f64() / zip_t.as_secs_f64();
        println!("ratio ours/zip:     {ratio:.2}");
        let verdict = if ours_t <= zip_t { "PASS" } else { "FAIL" };
        println!(
            "{verdict}: packer (hashing + zipping) {:.2} s <= zip -r alone {:.2} s",
            ours_t.as_secs_f64(),
            zip_t.as_secs_f64()
        );
    } else {
        println!("SKIP: packer vs zip -r (zip not installed)");
    }
    let verdict = if rss < RSS_LIMIT_MB { "PASS" } else { "FAIL" };
    println!("{verdict}: packer peak RSS {rss:.1} MB < {RSS_LIMIT_MB} MB");
}

/// Child mode: package `dir` and report timings on stdout.
fn pack(dir: &Path) {
    let t = Instant::now();
    let bits = AppBits::resolve(dir, ".").expect("resolve");
    let resources = gather(&bits).expect("gather");
    let gathered = t.elapsed();
    let package = write_zip(&bits, &resources, &HashSet::new()).expect("write_zip");
    let stats = package.stats();
    println!("{} {} {} {}", gathered.as_secs_f64(), stats.elapsed.as_secs_f64(), stats.zip_bytes, stats.files);
}

struct PackRun {
    wall: Duration,
    gather: Duration,
    write: Duration,
    zip_bytes: u64,
    max_rss_kb: i64,
}

fn run_packer(tree: &Path) -> PackRun {
    let exe = std::env::current_exe().expect("current exe");
    let child = measure::run(Command::new(exe).arg("--pack").arg(tree), "");
    assert_eq!(child.exit_code, 0, "packer failed: {}{}", child.stdout, child.stderr);
    let fields: Vec<f64> = child.stdout.split_whitespace().map(|f| f.parse().expect("number")).collect();
    PackRun {
        wall: child.wall,
        gather: Duration::from_secs_f64(fields[0]),
        write: Duration::from_secs_f64(fields[1]),
        zip_bytes: fields[2] as u64,
        max_rss_kb: child.max_rss_kb,
    }
}

struct Shape {
    files: usize,
    dirs: usize,
    bytes: u64,
    large: Vec<u64>,
}

/// A deterministic app tree of about 200 MB: thousands of source-like text files of varied size, a few hundred
/// binary assets (some incompressible like images, some semi-structured like class files), executables, and three
/// large archive-like files mixing compressible and incompressible stretches.
fn generate(root: &Path) -> Shape {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let words: Vec<String> = (0..600).map(|_| rng.word()).collect();
    let mut shape = Shape { files: 0, dirs: 0, bytes: 0, large: Vec::new() };
    let mut dirs = Vec::new();
    for top in ["src", "lib", "app", "config", "test"] {
        for a in 0..8 {
            for b in 0..6 {
                dirs.push(format!("{top}/{}/{}", words[a * 7], words[a * 31 + b]));
            }
        }
    }
    for d in ["assets/img", "assets/fonts", "vendor/classes", "bin", "lib/jars"] {
        dirs.push(d.to_string());
    }
    for d in &dirs {
        fs::create_dir_all(root.join(d)).expect("mkdir");
    }
    shape.dirs = count_dirs(root);

    let exts = ["js", "rb", "py", "java", "css", "html", "json", "yml", "md", "ts"];
    let mut i = 0;
    // ~75 MB of text files, 100 B to 64 KB, log-uniform.
    let mut text_bytes = 0u64;
    while text_bytes < 75_000_000 {
        let size = rng.log_uniform(100, 64_000);
        let dir = &dirs[rng.below(dirs.len() - 5)];
        let name = format!("{dir}/{}_{i}.{}", words[rng.below(words.len())], exts[rng.below(exts.len())]);
        let data = rng.text(size, &words);
        write_file(root, &name, &data, 0o644, &mut shape);
        text_bytes += size as u64;
        i += 1;
    }
    // ~25 MB of binary assets: images and fonts are noise, class files are skewed bytes that compress about 2x.
    let mut bin_bytes = 0u64;
    while bin_bytes < 25_000_000 {
        let size = rng.log_uniform(1_000, 200_000);
        let (dir, ext, data) = match rng.below(3) {
            0 => ("assets/img", "png", rng.noise(size)),
            1 => ("assets/fonts", "woff2", rng.noise(size)),
            _ => ("vendor/classes", "class", rng.skewed(size)),
        };
        write_file(root, &format!("{dir}/asset_{i}.{ext}"), &data, 0o644, &mut shape);
        bin_bytes += size as u64;
        i += 1;
    }
    for n in 0..12 {
        let script = format!("#!/bin/sh\nset -e\nexec ./server --port \"$PORT\" --worker {n}\n");
        write_file(root, &format!("bin/run-{n}.sh"), script.as_bytes(), 0o755, &mut shape);
    }
    // Three large files (100 MB together) in 1 MiB stretches: text, noise, skewed binary.
    for (n, megabytes) in [40usize, 34, 26].into_iter().enumerate() {
        let path = root.join(format!("lib/jars/bundle-{n}.jar"));
        let mut out = BufWriter::new(fs::File::create(&path).expect("create"));
        for block in 0..megabytes {
            let data = match (block + n) % 3 {
                0 => rng.text(1 << 20, &words),
                1 => rng.noise(1 << 20),
                _ => rng.skewed(1 << 20),
            };
            out.write_all(&data).expect("write");
        }
        out.flush().expect("flush");
        let len = (megabytes as u64) << 20;
        shape.files += 1;
        shape.bytes += len;
        shape.large.push(len);
    }
    shape
}

fn count_dirs(root: &Path) -> usize {
    let mut n = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                n += 1;
                stack.push(e.path());
            }
        }
    }
    n
}

fn write_file(root: &Path, rel: &str, data: &[u8], mode: u32, shape: &mut Shape) {
    let path = root.join(rel);
    fs::write(&path, data).expect("write");
    fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod");
    shape.files += 1;
    shape.bytes += data.len() as u64;
}

/// xorshift64*: fast and deterministic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn log_uniform(&mut self, lo: usize, hi: usize) -> usize {
        let u = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        ((lo as f64).ln() + u * ((hi as f64).ln() - (lo as f64).ln())).exp() as usize
    }

    fn word(&mut self) -> String {
        const SYLLABLES: [&str; 24] = [
            "get", "set", "user", "id", "name", "data", "on", "load", "item", "list", "map", "value", "config", "http",
            "req", "res", "view", "model", "count", "index", "str", "num", "handle", "event",
        ];
        let parts = 1 + self.below(3);
        let mut w = String::new();
        for p in 0..parts {
            let s = SYLLABLES[self.below(SYLLABLES.len())];
            if p == 0 {
                w.push_str(s);
            } else {
                w.push_str(&s[..1].to_uppercase());
                w.push_str(&s[1..]);
            }
        }
        w
    }

    /// Source-like text: indented lines of identifiers, keywords, numbers and punctuation.
    fn text(&mut self, size: usize, words: &[String]) -> Vec<u8> {
        const KEYWORDS: [&str; 12] =
            ["if", "return", "const", "let", "function", "for", "else", "import", "def", "class", "end", "new"];
        const PUNCT: [&str; 10] = [" = ", "(", ")", ", ", ";", " { ", " }", ".", " + ", " == "];
        let mut out = Vec::with_capacity(size + 64);
        while out.len() < size {
            let indent = 2 * self.below(5);
            out.extend(std::iter::repeat_n(b' ', indent));
            for t in 0..3 + self.below(9) {
                match self.below(10) {
                    0..=1 => out.extend_from_slice(KEYWORDS[self.below(KEYWORDS.len())].as_bytes()),
                    2 => out.extend_from_slice(self.below(100_000).to_string().as_bytes()),
                    _ => out.extend_from_slice(words[self.below(words.len())].as_bytes()),
                }
                if t % 2 == 0 {
                    out.extend_from_slice(PUNCT[self.below(PUNCT.len())].as_bytes());
                } else {
                    out.push(b' ');
                }
            }
            out.push(b'\n');
        }
        out.truncate(size);
        out
    }

    fn noise(&mut self, size: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(size + 8);
        while out.len() < size {
            out.extend_from_slice(&self.next().to_le_bytes());
        }
        out.truncate(size);
        out
    }

    /// Binary with structure: many zeros and small values, like compiled code or tables.
    fn skewed(&mut self, size: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(size + 8);
        while out.len() < size {
            let r = self.next();
            for k in 0..8 {
                let b = (r >> (k * 8)) as u8;
                out.push(match b % 4 {
                    0 => 0,
                    1 => b & 0x0f,
                    _ => b,
                });
            }
        }
        out.truncate(size);
        out
    }
}

fn median(times: &[Duration]) -> Duration {
    if times.is_empty() {
        return Duration::ZERO;
    }
    let mut sorted = times.to_vec();
    sorted.sort();
    sorted[sorted.len() / 2]
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

fn tool_exists(tool: &str) -> bool {
    Command::new("sh").args(["-c", &format!("command -v {tool}")]).output().is_ok_and(|o| o.status.success())
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn cpu_model() -> String {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split(':').nth(1));
    model.map_or_else(|| "unknown CPU".to_string(), |m| m.trim().to_string())
}
