//! The control socket: a unix stream socket per daemon, one request per
//! connection.
//!
//! Wire format: the client sends the request's words, each followed by a
//! NUL byte, then shuts down its write side; the server answers `OK\n` or
//! `ERROR\n` followed by the text and closes. Requests are capped at
//! [`MAX_REQUEST`] bytes.
//!
//! Paths: `--ctl PATH`, or `<rundir>/plexus-vswitchd.<pid>.ctl` plus the
//! stable name `<rundir>/plexus-vswitchd.ctl` (a symlink to the newest
//! daemon's socket), where `<rundir>` is `$PLEXUS_RUNDIR` or
//! `/var/run/plexus`.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

use super::{Reply, parse};
use crate::datapath::{Ctl, CtlSender};

/// Largest request accepted.
pub const MAX_REQUEST: usize = 64 * 1024;
/// How long the server waits for the datapath's answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// The daemon's name in socket paths.
pub const DAEMON: &str = "plexus-vswitchd";

/// `$PLEXUS_RUNDIR` or `/var/run/plexus`.
pub fn rundir() -> PathBuf {
    std::env::var_os("PLEXUS_RUNDIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/run/plexus"))
}

/// Where `plexus-appctl -t TARGET` connects: a path (contains `/` or ends
/// in `.ctl`), a daemon pid (`<rundir>/plexus-vswitchd.<pid>.ctl`), or a
/// name (`<rundir>/NAME.ctl`); no target is `plexus-vswitchd`.
pub fn resolve_target(target: Option<&str>) -> PathBuf {
    let t = target.unwrap_or(DAEMON);
    if t.contains('/') || t.ends_with(".ctl") {
        PathBuf::from(t)
    } else if t.bytes().all(|b| b.is_ascii_digit()) {
        rundir().join(format!("{DAEMON}.{t}.ctl"))
    } else {
        rundir().join(format!("{t}.ctl"))
    }
}

/// The bound socket; removes its files when dropped.
#[derive(Debug)]
pub struct CtlSocket {
    path: PathBuf,
    link: Option<PathBuf>,
}

impl CtlSocket {
    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for CtlSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        if let Some(l) = &self.link
            && std::fs::read_link(l).is_ok_and(|t| t == self.path)
        {
            let _ = std::fs::remove_file(l);
        }
    }
}

/// Binds the control socket (`path`, or the default per-pid path plus the
/// stable symlink) and serves it in the background on the current tokio
/// runtime, passing each parsed request to the datapath over `ctl`.
pub async fn start(path: Option<PathBuf>, ctl: CtlSender) -> std::io::Result<CtlSocket> {
    let (path, link) = match path {
        Some(p) => (p, None),
        None => {
            let dir = rundir();
            (
                dir.join(format!("{DAEMON}.{}.ctl", std::process::id())),
                Some(dir.join(format!("{DAEMON}.ctl"))),
            )
        }
    };
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)?;
    }
    // A socket file left by a dead daemon: refuse only if someone answers.
    if path.exists() {
        if StdUnixStream::connect(&path).is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("{}: another daemon is listening", path.display()),
            ));
        }
        std::fs::remove_file(&path)?;
    }
    let listener = UnixListener::bind(&path)?;
    let link = link.and_then(|l| {
        let _ = std::fs::remove_file(&l);
        std::os::unix::fs::symlink(&path, &l).ok().map(|()| l)
    });
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    tokio::spawn(serve(stream, ctl.clone()));
                }
                Err(e) => {
                    eprintln!("control socket: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
    Ok(CtlSocket { path, link })
}

async fn serve(mut stream: UnixStream, ctl: CtlSender) {
    let reply = match read_request(&mut stream).await {
        Err(e) => Reply::err(e),
        Ok(words) => answer(&words, &ctl).await,
    };
    let mut out = Vec::with_capacity(reply.text.len() + 8);
    out.extend_from_slice(if reply.ok { b"OK\n" } else { b"ERROR\n" });
    out.extend_from_slice(reply.text.as_bytes());
    let _ = stream.write_all(&out).await;
    let _ = stream.shutdown().await;
}

async fn read_request(stream: &mut UnixStream) -> Result<Vec<String>, String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let read = async {
        loop {
            let n = stream.read(&mut chunk).await.map_err(|e| e.to_string())?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
            if buf.len() > MAX_REQUEST {
                return Err(format!("request longer than {MAX_REQUEST} bytes"));
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .map_err(|_| "timed out reading the request".to_string())??;
    decode_words(&buf)
}

/// Splits a request into its NUL-terminated words.
pub fn decode_words(buf: &[u8]) -> Result<Vec<String>, String> {
    let Some(body) = buf.strip_suffix(b"\0") else {
        return Err(if buf.is_empty() {
            "empty request".into()
        } else {
            "malformed request (words must end in NUL)".into()
        });
    };
    body.split(|&b| b == 0)
        .map(|w| String::from_utf8(w.to_vec()).map_err(|_| "request is not UTF-8".to_string()))
        .collect()
}

/// Encodes a request's words.
pub fn encode_words(words: &[String]) -> Vec<u8> {
    let mut v = Vec::new();
    for w in words {
        v.extend_from_slice(w.as_bytes());
        v.push(0);
    }
    v
}

async fn answer(words: &[String], ctl: &CtlSender) -> Reply {
    let cmd = match parse(words) {
        Ok(c) => c,
        Err(e) => return Reply::err(e),
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    if !ctl.send(Ctl::Appctl { cmd, reply: tx }) {
        return Reply::err("the datapath is not running");
    }
    match tokio::time::timeout(ANSWER_TIMEOUT, rx).await {
        Ok(Ok(r)) => r,
        Ok(Err(_)) => Reply::err("the datapath dropped the request"),
        Err(_) => Reply::err("the datapath did not answer in time"),
    }
}

/// The client side (blocking): sends `words` to the socket at `path` and
/// returns the answer.
pub fn call(path: &Path, words: &[String]) -> std::io::Result<Reply> {
    let mut s = StdUnixStream::connect(path)?;
    s.set_read_timeout(Some(ANSWER_TIMEOUT + Duration::from_secs(5)))?;
    s.write_all(&encode_words(words))?;
    s.shutdown(std::net::Shutdown::Write)?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    if let Some(t) = out.strip_prefix("OK\n") {
        Ok(Reply::ok(t))
    } else if let Some(t) = out.strip_prefix("ERROR\n") {
        Ok(Reply::err(t))
    } else {
        Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "malformed answer from the control socket",
        ))
    }
}
