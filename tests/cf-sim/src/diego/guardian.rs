//! The guardian: a tiny `awk` process, in its own process group, that learns the process group of every app
//! instance and kills the ones still alive when its stdin closes. Its stdin is a pipe from the sim, so it closes
//! however the sim ends (even SIGKILL), and no instance outlives the sim.

use std::io::Write;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;

use std::os::unix::process::CommandExt;

const SCRIPT: &str = r#"$1 == "add" { groups[$2] = 1 }
$1 == "del" { delete groups[$2] }
END { for (g in groups) system("kill -9 -" g " 2>/dev/null") }"#;

pub struct Guardian {
    inner: Mutex<Option<(Child, ChildStdin)>>,
}

impl Guardian {
    pub fn start() -> std::io::Result<Self> {
        let mut child = Command::new("awk")
            .arg(SCRIPT)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own group, so a Ctrl-C aimed at the sim's group does not kill it before it cleans up.
            .process_group(0)
            .spawn()?;
        let stdin = child.stdin.take().expect("stdin is piped");
        Ok(Guardian { inner: Mutex::new(Some((child, stdin))) })
    }

    fn send(&self, line: String) {
        if let Some((_, stdin)) = self.inner.lock().unwrap().as_mut() {
            let _ = stdin.write_all(line.as_bytes());
            let _ = stdin.flush();
        }
    }

    /// Kill this process group if the sim dies.
    pub fn watch(&self, pgid: u32) {
        self.send(format!("add {pgid}\n"));
    }

    /// The group is gone; never kill it (its id may be reused).
    pub fn forget(&self, pgid: u32) {
        self.send(format!("del {pgid}\n"));
    }

    /// Closes the pipe (the guardian then kills what is left) and waits for the guardian to exit.
    pub fn shutdown(&self) {
        if let Some((mut child, stdin)) = self.inner.lock().unwrap().take() {
            drop(stdin);
            let _ = child.wait();
        }
    }
}

impl Drop for Guardian {
    fn drop(&mut self) {
        self.shutdown();
    }
}
