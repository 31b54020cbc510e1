//! The per-node daemon (`plexus-cni daemon --socket PATH`) and the plugin's
//! side of it.
//!
//! With `"daemon_socket": PATH` in the network configuration the exec'd
//! plugin does no work itself: it forwards its CNI_* environment and stdin
//! over the unix socket and prints what the daemon answers (Cilium's
//! `cilium-cni` → agent and Multus' thick plugin work the same way). The
//! daemon runs each call with the same verb code as a one-shot plugin
//! ([`crate::plugin::run_with`]), but keeps what a plugin process would set
//! up and tear down on every call: one OVSDB connection per database,
//! shared by concurrent calls, and keep-alive HTTP connections to the
//! controller. On a busy node that is most of a call's cost besides the
//! kernel's link work, and 100 concurrent ADDs no longer mean 100
//! processes, each with its threads and runtimes, contending for the CPU.
//!
//! Calls for the same attachment (container id + ifname) are serialised, so
//! a runtime retrying an ADD whose plugin it killed never races the first
//! one. If the daemon is unreachable or dies during a call, the plugin
//! fails with code 11 ("try again later"; STATUS: 50), and a later ADD
//! cleans up what a killed call left behind, as a one-shot plugin's does.
//! At most `--max-calls` ADD/DEL/CHECK calls (default 12) are at work at
//! once; the others wait their turn in arrival order ([`Admission`]).
//!
//! Wire format (one call per connection), plugin → daemon: a 4-byte
//! big-endian length, that many bytes of JSON object with the CNI_*
//! variables, then stdin up to the end of the stream (the plugin shuts down
//! its sending side). Daemon → plugin: one byte exit code, then stdout up to
//! the end of the stream. Only root reaches the socket (mode 0600): the
//! daemon acts on any netns path it is given, as the plugin would.

use crate::config::{Command, Env};
use crate::error::*;
use crate::http::Pool;
use crate::ovs::{self, Ovs};
use crate::plugin::{self, Ctx};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, mpsc};
use std::time::{Duration, Instant};

/// Default socket path of `plexus-cni daemon`.
pub const DEFAULT_SOCKET: &str = "/run/plexus/cni.sock";
/// Largest CNI_* environment a request may carry.
const MAX_ENV: usize = 64 << 10;
/// Largest stdin (network configuration with prevResult) a request may carry.
const MAX_STDIN: u64 = 16 << 20;
/// Call threads kept parked for the next calls.
const MAX_IDLE_THREADS: usize = 128;
/// How long the plugin keeps retrying while the daemon's backlog is full.
const CONNECT_WINDOW: Duration = Duration::from_secs(10);
/// Default of `--max-calls`: ADD/DEL/CHECK calls at work at once.
pub const DEFAULT_MAX_CALLS: usize = 12;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Per-attachment (container id, ifname) locks.
type AttachmentLocks = Mutex<HashMap<(String, String), Arc<Mutex<()>>>>;

/// (controller, token, subnet id).
type SubnetKey = (String, String, String);

/// Subnet key → when it was read, the subnet.
type SubnetCache = HashMap<SubnetKey, (Instant, plexus_api::Subnet)>;

/// At most `slots` holders at once; the others wait and get in in the order
/// they came (a ticket queue), so a burst of calls finishes in arrival order.
///
/// Why the daemon bounds its ADD/DEL/CHECK calls: each takes the kernel's
/// RTNL lock several times (veth, host side's alias, pod side's MAC/up,
/// address, route), and the lock's waiters are served about first come,
/// first served. With every call of a burst at work at once, a call's later
/// requests queue behind the first requests of every call that came after
/// it, so the burst's first calls finish with its last (100 concurrent ADDs
/// on 2 vCPUs: p99 median 99.9 ms over 20 runs). With a dozen at work, calls
/// finish about in arrival order (median 77.9 over 21). Fewer than about
/// eight costs more: ovs-vswitchd, which reconfigures on every link
/// notification it gets to see on its own, then sees them one by one
/// (BENCHMARKS.md, session 12).
#[derive(Debug)]
pub struct Admission {
    /// 0: no bound.
    slots: usize,
    state: Mutex<AdmissionState>,
    turn: Condvar,
}

#[derive(Debug, Default)]
struct AdmissionState {
    running: usize,
    next_ticket: u64,
    waiting: VecDeque<u64>,
}

impl Admission {
    pub fn new(slots: usize) -> Self {
        Self {
            slots,
            state: Mutex::default(),
            turn: Condvar::new(),
        }
    }

    /// Runs `f` once admitted.
    pub fn run<T>(&self, f: impl FnOnce() -> T) -> T {
        if self.slots == 0 {
            return f();
        }
        {
            let mut st = lock(&self.state);
            let ticket = st.next_ticket;
            st.next_ticket += 1;
            st.waiting.push_back(ticket);
            while !(st.running < self.slots && st.waiting.front() == Some(&ticket)) {
                st = self.turn.wait(st).unwrap_or_else(|e| e.into_inner());
            }
            st.waiting.pop_front();
            st.running += 1;
            // The next in line may fit as well.
            self.turn.notify_all();
        }
        // Released even if `f` panics.
        struct Slot<'a>(&'a Admission);
        impl Drop for Slot<'_> {
            fn drop(&mut self) {
                lock(&self.0.state).running -= 1;
                self.0.turn.notify_all();
            }
        }
        let _slot = Slot(self);
        f()
    }

    /// Calls waiting for a slot.
    pub fn waiting(&self) -> usize {
        lock(&self.state).waiting.len()
    }
}

/// What the daemon keeps between calls.
#[derive(Debug)]
pub struct Shared {
    /// Drives the OVSDB connections (one worker thread; callers block on it).
    rt: tokio::runtime::Runtime,
    ovs: Mutex<HashMap<String, plexus_ovsdb::client::Client>>,
    http: Mutex<HashMap<String, Arc<Pool>>>,
    subnets: Mutex<SubnetCache>,
    /// One read in flight per subnet key: concurrent calls that miss the
    /// cache wait for it instead of each asking the controller.
    subnet_reads: Mutex<HashMap<SubnetKey, Arc<Mutex<()>>>>,
    attachments: AttachmentLocks,
    /// Bounds the ADD/DEL/CHECK calls at work ([`Admission`]).
    admission: Admission,
}

/// How long a subnet read is reused.
const SUBNET_TTL: Duration = Duration::from_secs(5);

impl Shared {
    /// `max_calls`: ADD/DEL/CHECK calls at work at once (0: no bound).
    pub fn new(max_calls: usize) -> io::Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("plexus-cni-ovsdb")
            .enable_all()
            .build()?;
        Ok(Self {
            rt,
            ovs: Mutex::default(),
            http: Mutex::default(),
            subnets: Mutex::default(),
            subnet_reads: Mutex::default(),
            attachments: Mutex::default(),
            admission: Admission::new(max_calls),
        })
    }

    /// The keep-alive pool for the controller at `authority`.
    pub(crate) fn http_pool(&self, authority: &str) -> Arc<Pool> {
        lock(&self.http)
            .entry(authority.to_owned())
            .or_default()
            .clone()
    }

    /// `GET /v1/subnets/{id}`, reused for [`SUBNET_TTL`] by calls with the
    /// same controller and token (a token that may not read it never gets it).
    /// Calls that miss the cache together share one read (a burst of ADDs
    /// after a quiet spell would otherwise each ask the controller).
    pub(crate) fn subnet(
        &self,
        ctl: &crate::controller::Controller,
        id: &str,
    ) -> CniResult<plexus_api::Subnet> {
        let key = (
            ctl.authority().to_owned(),
            ctl.token().unwrap_or_default().to_owned(),
            id.to_owned(),
        );
        let cached = || {
            lock(&self.subnets)
                .get(&key)
                .filter(|(at, _)| at.elapsed() < SUBNET_TTL)
                .map(|(_, s)| s.clone())
        };
        if let Some(s) = cached() {
            return Ok(s);
        }
        let slot = lock(&self.subnet_reads)
            .entry(key.clone())
            .or_default()
            .clone();
        let read = {
            let _one = lock(&slot);
            // Read by the call this one waited for?
            match cached() {
                Some(s) => Ok(s),
                None => ctl.subnet(id).inspect(|s| {
                    let mut all = lock(&self.subnets);
                    all.retain(|_, (at, _)| at.elapsed() < SUBNET_TTL);
                    all.insert(key.clone(), (Instant::now(), s.clone()));
                }),
            }
        };
        let mut reads = lock(&self.subnet_reads);
        // Ours and the map's: nobody else waits, forget the slot.
        if Arc::strong_count(&slot) == 2 {
            reads.remove(&key);
        }
        read
    }

    /// The shared connection to `db` (default: ovs-vsctl's), reconnected
    /// when the server has closed it.
    pub(crate) fn ovs(&self, db: Option<&str>, wait: bool) -> CniResult<Ovs> {
        let db = db.unwrap_or(ovs::DEFAULT_DB);
        // Held across a connect, so concurrent first calls make one connection.
        let mut conns = lock(&self.ovs);
        let client = match conns.get(db) {
            Some(c) if !c.is_closed() => c.clone(),
            _ => {
                let c = self.rt.block_on(ovs::connect_db(db))?;
                conns.insert(db.to_owned(), c.clone());
                c
            }
        };
        Ok(Ovs::shared(self.rt.handle().clone(), client, wait))
    }

    /// Runs `f` while holding the attachment's lock.
    fn serialised<T>(&self, key: (String, String), f: impl FnOnce() -> T) -> T {
        let m = lock(&self.attachments)
            .entry(key.clone())
            .or_default()
            .clone();
        let out = {
            let _held = lock(&m);
            f()
        };
        let mut all = lock(&self.attachments);
        // Ours and the map's: nobody else waits, forget the entry.
        if Arc::strong_count(&m) == 2 {
            all.remove(&key);
        }
        out
    }

    /// One call, as `plugin::run` would answer it.
    fn call(
        &self,
        vars: &BTreeMap<String, String>,
        stdin: &[u8],
    ) -> CniResult<Option<serde_json::Value>> {
        let env = Env::from_env(|k| vars.get(k).cloned())?;
        crate::trace::label(|| format!("{:?} {}", env.command, env.container_id));
        crate::trace::step("daemon:call");
        let run = || {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                plugin::run_with(Ctx::daemon(self), &env, stdin)
            }))
            .unwrap_or_else(|_| {
                Err(CniError::new(
                    IO_FAILURE,
                    "internal error",
                    "the daemon's call panicked",
                ))
            })
        };
        match env.command {
            Command::Add | Command::Del | Command::Check => self.admission.run(|| {
                crate::trace::step("daemon:admitted");
                self.serialised((env.container_id.clone(), env.ifname.clone()), run)
            }),
            _ => run(),
        }
    }
}

/// Serves calls on `path` until the process ends. A socket file left by a
/// dead daemon is replaced; a live one is an error.
pub fn serve(path: &Path, max_calls: usize) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if UnixStream::connect(path).is_ok() {
        return Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("{}: another daemon is listening", path.display()),
        ));
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    let shared = Arc::new(Shared::new(max_calls)?);
    let idle: Arc<Mutex<Vec<mpsc::Sender<UnixStream>>>> = Arc::default();
    eprintln!("plexus-cni daemon: listening on {}", path.display());
    for conn in listener.incoming() {
        match conn {
            Ok(s) => {
                // An idle call thread, or a new one when all are busy.
                let s = match lock(&idle).pop() {
                    Some(worker) => match worker.send(s) {
                        Ok(()) => continue,
                        Err(mpsc::SendError(s)) => s,
                    },
                    None => s,
                };
                let (tx, rx) = mpsc::channel();
                let _ = tx.send(s);
                let (shared, idle) = (shared.clone(), idle.clone());
                let spawned = std::thread::Builder::new()
                    .name("plexus-cni-call".into())
                    .spawn(move || call_thread(&shared, &idle, tx, rx));
                if let Err(e) = spawned {
                    // The connection is dropped: the plugin answers 11.
                    eprintln!("plexus-cni daemon: cannot start a call thread: {e}");
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                eprintln!("plexus-cni daemon: accept: {e}");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
    Ok(())
}

/// Serves calls handed to it, parking itself in `idle` between them; exits
/// when enough threads are parked already. A call thread is always back in
/// the daemon's network namespace after a call ([`crate::netns::visit`]).
fn call_thread(
    shared: &Shared,
    idle: &Mutex<Vec<mpsc::Sender<UnixStream>>>,
    tx: mpsc::Sender<UnixStream>,
    rx: mpsc::Receiver<UnixStream>,
) {
    let mut tx = Some(tx);
    while let Ok(s) = rx.recv() {
        handle(shared, s);
        let mut parked = lock(idle);
        if parked.len() >= MAX_IDLE_THREADS {
            return;
        }
        match tx.take() {
            Some(t) => {
                parked.push(t.clone());
                tx = Some(t);
            }
            None => return,
        }
    }
}

fn read_request(s: &mut UnixStream) -> io::Result<(BTreeMap<String, String>, Vec<u8>)> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len)?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_ENV {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("environment of {len} bytes (at most {MAX_ENV})"),
        ));
    }
    let mut env = vec![0u8; len];
    s.read_exact(&mut env)?;
    let vars = serde_json::from_slice(&env)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("environment: {e}")))?;
    let mut stdin = Vec::new();
    s.take(MAX_STDIN + 1).read_to_end(&mut stdin)?;
    if stdin.len() as u64 > MAX_STDIN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("stdin larger than {MAX_STDIN} bytes"),
        ));
    }
    Ok((vars, stdin))
}

fn handle(shared: &Shared, mut s: UnixStream) {
    let (code, out) = match read_request(&mut s) {
        Ok((vars, stdin)) => crate::render(shared.call(&vars, &stdin), &stdin),
        Err(e) => crate::render(
            Err(CniError::new(
                DECODE_FAILURE,
                "bad request from the plugin",
                e.to_string(),
            )),
            b"",
        ),
    };
    let mut reply = Vec::with_capacity(1 + out.len());
    reply.push(u8::try_from(code).unwrap_or(1));
    reply.extend_from_slice(out.as_bytes());
    // The plugin may have been killed meanwhile; nothing to do then.
    let _ = s.write_all(&reply);
    crate::trace::step("daemon:replied");
}

/// The plugin's side: sends this process' CNI_* variables and `stdin` to
/// the daemon at `sock`; returns the exit code and the stdout to print.
pub fn forward(sock: &Path, command: Command, stdin: &[u8]) -> CniResult<(i32, Vec<u8>)> {
    let unreachable = |e: String| {
        if command == Command::Status {
            CniError::new(NOT_AVAILABLE, "plugin not available", e)
        } else {
            CniError::new(TRY_AGAIN, "plexus-cni daemon unreachable", e)
        }
    };
    let at = |e: io::Error| format!("{}: {e}", sock.display());
    let vars: BTreeMap<String, String> = std::env::vars()
        .filter(|(k, _)| k.starts_with("CNI_"))
        .collect();
    let vars = serde_json::to_vec(&vars).expect("strings serialize");
    let mut s = connect_retrying(sock).map_err(|e| unreachable(at(e)))?;
    let mut req = Vec::with_capacity(4 + vars.len() + stdin.len());
    req.extend_from_slice(&(vars.len() as u32).to_be_bytes());
    req.extend_from_slice(&vars);
    req.extend_from_slice(stdin);
    s.write_all(&req)
        .and_then(|()| s.shutdown(std::net::Shutdown::Write))
        .map_err(|e| unreachable(at(e)))?;
    let mut reply = Vec::new();
    s.read_to_end(&mut reply).map_err(|e| unreachable(at(e)))?;
    match reply.split_first() {
        Some((&code, out)) => Ok((i32::from(code), out.to_vec())),
        None => Err(unreachable(format!(
            "{}: the daemon closed the connection during the call",
            sock.display()
        ))),
    }
}

/// Connects; while the daemon's listen backlog is full (EAGAIN on a unix
/// socket), retries with a backoff of 1 ms doubling up to 32 ms.
fn connect_retrying(sock: &Path) -> io::Result<UnixStream> {
    let start = Instant::now();
    let mut backoff = Duration::from_millis(1);
    loop {
        match UnixStream::connect(sock) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && start.elapsed() < CONNECT_WINDOW => {
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_millis(32));
            }
            r => return r,
        }
    }
}

/// `plexus-cni daemon [--socket PATH]`: the process' exit code.
pub fn main(args: &[String]) -> i32 {
    let mut socket = DEFAULT_SOCKET.to_owned();
    let mut max_calls = DEFAULT_MAX_CALLS;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--socket" => match it.next() {
                Some(p) => socket = p.clone(),
                None => {
                    eprintln!("plexus-cni daemon: --socket needs a path");
                    return 2;
                }
            },
            "--max-calls" => match it.next().map(|n| n.parse()) {
                Some(Ok(n)) => max_calls = n,
                _ => {
                    eprintln!("plexus-cni daemon: --max-calls needs a number (0: no bound)");
                    return 2;
                }
            },
            "-h" | "--help" => {
                println!(
                    "usage: plexus-cni daemon [--socket PATH] [--max-calls N]\n\
                     Serves the calls of plugins whose network configuration has\n\
                     \"daemon_socket\": PATH (default {DEFAULT_SOCKET}). Run it in the\n\
                     node's host network namespace. At most N ADD/DEL/CHECK calls are\n\
                     at work at once; the others wait their turn in arrival order\n\
                     (default {DEFAULT_MAX_CALLS}, 0: no bound)."
                );
                return 0;
            }
            other => {
                eprintln!("plexus-cni daemon: unknown argument {other:?}");
                return 2;
            }
        }
    }
    match serve(Path::new(&socket), max_calls) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("plexus-cni daemon: {e}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admission_bounds_the_calls_at_work_and_admits_in_arrival_order() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let adm = Admission::new(2);
        let (at_work, most) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let order = Mutex::new(Vec::new());
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let go_rx = Mutex::new(go_rx);
        std::thread::scope(|s| {
            for i in 0..6 {
                let (adm, at_work, most, order, go_rx) = (&adm, &at_work, &most, &order, &go_rx);
                s.spawn(move || {
                    adm.run(|| {
                        let n = at_work.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(n, Ordering::SeqCst);
                        lock(order).push(i);
                        // Held until the test lets one call finish.
                        let _ = lock(go_rx).recv();
                        at_work.fetch_sub(1, Ordering::SeqCst);
                    })
                });
                // Call i is at work (the first two) or queued before i + 1 comes.
                while lock(order).len() + adm.waiting() < i + 1 {
                    std::thread::yield_now();
                }
            }
            assert_eq!(adm.waiting(), 4);
            for _ in 0..6 {
                go_tx.send(()).unwrap();
            }
        });
        assert_eq!(most.load(Ordering::SeqCst), 2);
        assert_eq!(*lock(&order), vec![0, 1, 2, 3, 4, 5]);
        assert_eq!(adm.waiting(), 0);
        // No bound: nothing waits.
        assert_eq!(Admission::new(0).run(|| 7), 7);
    }

    #[test]
    fn a_request_round_trips_and_bad_ones_are_refused() {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        let vars = serde_json::to_vec(&BTreeMap::from([("CNI_COMMAND", "ADD")])).unwrap();
        a.write_all(&(vars.len() as u32).to_be_bytes()).unwrap();
        a.write_all(&vars).unwrap();
        a.write_all(b"{\"cniVersion\":\"1.1.0\"}").unwrap();
        a.shutdown(std::net::Shutdown::Write).unwrap();
        let (v, stdin) = read_request(&mut b).unwrap();
        assert_eq!(v["CNI_COMMAND"], "ADD");
        assert_eq!(stdin, b"{\"cniVersion\":\"1.1.0\"}");

        let (mut a, mut b) = UnixStream::pair().unwrap();
        a.write_all(&u32::MAX.to_be_bytes()).unwrap();
        assert!(read_request(&mut b).is_err());
        let (mut a, mut b) = UnixStream::pair().unwrap();
        a.write_all(&3u32.to_be_bytes()).unwrap();
        a.write_all(b"[1]").unwrap();
        drop(a);
        assert!(read_request(&mut b).is_err());
    }

    #[test]
    fn an_unreachable_daemon_is_try_again_and_status_not_available() {
        let dir = tempfile_dir();
        let sock = dir.join("none.sock");
        let e = forward(&sock, Command::Add, b"{}").unwrap_err();
        assert_eq!(e.code, TRY_AGAIN);
        let e = forward(&sock, Command::Status, b"{}").unwrap_err();
        assert_eq!(e.code, NOT_AVAILABLE);
        let _ = std::fs::remove_dir_all(dir);
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("plexus-cni-daemon-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
