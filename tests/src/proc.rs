//! Running external commands with a deadline, capturing their output.

use anyhow::{Context, Result, bail};
use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// What a finished (or timed-out) command produced.
#[derive(Debug, Clone)]
pub struct Output {
    /// Exit status; `None` when it was killed at the deadline.
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// True when the command exited with status 0 before the deadline.
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }
}

/// Runs `cmd` (stdin closed), killing it if it runs longer than `timeout`.
/// Only the child this function started is killed.
pub fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> Result<Output> {
    use std::os::unix::process::CommandExt;
    // Own process group, so that on timeout the whole group we started (the
    // child and anything it forked, e.g. under `ip netns exec`) can be killed.
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = cmd.spawn().with_context(|| format!("spawning {cmd:?}"))?;
    // Drain the pipes in threads so a chatty child cannot block on a full pipe.
    let out_t = drain(child.stdout.take());
    let err_t = drain(child.stderr.take());
    let status = wait_deadline(&mut child, timeout)?;
    let stdout = out_t.join().unwrap_or_default();
    let stderr = err_t.join().unwrap_or_default();
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

fn drain<R: Read + Send + 'static>(r: Option<R>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = Vec::new();
        if let Some(mut r) = r {
            let _ = r.read_to_end(&mut s);
        }
        String::from_utf8_lossy(&s).into_owned()
    })
}

/// Waits for `child` until `timeout`; on expiry kills it by its own pid (and,
/// when it leads its own process group, that group) and returns `None`.
pub fn wait_deadline(child: &mut Child, timeout: Duration) -> Result<Option<ExitStatus>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(st) = child.try_wait()? {
            return Ok(Some(st));
        }
        if Instant::now() >= deadline {
            kill_group_if_leader(child.id());
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends SIGKILL to the process group led by `pid`, only if `pid` really is
/// a group leader (a group we created with `process_group(0)`).
fn kill_group_if_leader(pid: u32) {
    let pgid = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            // pid (comm) state ppid pgrp ...; comm may contain spaces/parens.
            let after = s.rsplit_once(')')?.1;
            after.split_whitespace().nth(2)?.parse::<u32>().ok()
        });
    if pgid == Some(pid) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pid}")])
            .stderr(Stdio::null())
            .status();
    }
}

/// Runs `cmd` with a deadline and returns its stdout; any failure (spawn
/// error, non-zero exit, timeout) is an error carrying stderr.
pub fn run_ok(cmd: &mut Command, timeout: Duration) -> Result<String> {
    let desc = format!("{cmd:?}");
    let out = run_with_timeout(cmd, timeout)?;
    match out.status {
        None => bail!("{desc}: timed out after {timeout:?}\n{}", out.stderr),
        Some(s) if !s.success() => bail!("{desc}: {s}\n{}{}", out.stderr, out.stdout),
        Some(_) => Ok(out.stdout),
    }
}

/// Stops a child this process started: SIGTERM to its PID, wait up to
/// `grace` for it to exit, then SIGKILL; always reaped.
pub fn terminate(c: &mut Child, grace: Duration) {
    let _ = Command::new("kill").arg(c.id().to_string()).status();
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = c.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = c.kill();
    let _ = c.wait();
}

/// Polls `cond` every 50 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeout_kills_the_child() {
        let t0 = Instant::now();
        let out = run_with_timeout(
            Command::new("sh").args(["-c", "echo hi; sleep 30"]),
            Duration::from_millis(300),
        )
        .unwrap();
        assert!(out.status.is_none());
        assert_eq!(out.stdout, "hi\n");
        assert!(t0.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn run_ok_reports_failure_with_stderr() {
        let e = run_ok(
            Command::new("sh").args(["-c", "echo boom >&2; exit 3"]),
            Duration::from_secs(5),
        )
        .unwrap_err();
        assert!(format!("{e:#}").contains("boom"), "{e:#}");
        assert_eq!(
            run_ok(Command::new("echo").arg("x"), Duration::from_secs(5)).unwrap(),
            "x\n"
        );
    }
}
