//! Running a child process and reading its wall time and peak RSS (from `wait4`, so only that child counts),
//! for the benchmarks.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What a measured child did.
pub struct Measured {
    pub wall: Duration,
    pub max_rss_kb: i64,
    pub exit_code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `command` with `stdin` as its input, capturing stdout and stderr.
#[expect(clippy::zombie_processes, reason = "the child is reaped with wait4, which also yields its rusage")]
pub fn run(command: &mut Command, stdin: &str) -> Measured {
    let started = Instant::now();
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the measured process");
    let pid = child.id() as libc::pid_t;
    let input = stdin.to_owned();
    let mut child_stdin = child.stdin.take().expect("piped stdin");
    let writer = std::thread::spawn(move || {
        let _ = std::io::Write::write_all(&mut child_stdin, input.as_bytes());
    });
    let read_all = |mut stream: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stream.read_to_string(&mut text);
            text
        })
    };
    let stdout = read_all(Box::new(child.stdout.take().expect("piped stdout")));
    let stderr = read_all(Box::new(child.stderr.take().expect("piped stderr")));
    let mut status = 0;
    // SAFETY: rusage is plain old data, and wait4 fills it for the child we spawned and have not reaped.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = started.elapsed();
    assert_eq!(reaped, pid, "wait4 failed");
    writer.join().expect("stdin writer");
    Measured {
        wall,
        max_rss_kb: usage.ru_maxrss,
        exit_code: if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { -1 },
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}
