//! Golden OpenFlow bytes from Open vSwitch: a fake OpenFlow 1.3 switch on a
//! unix socket that records every frame `ovs-ofctl` sends it.
//!
//! [`capture_ofctl`] runs `ovs-ofctl -O OpenFlow13 ARGS` with the switch target
//! `unix:SOCK` inserted after the command name (see
//! [`crate::ovs::insert_target`]), e.g.
//!
//! ```no_run
//! use plexus_tests::capture::{capture_ofctl, payload_frames};
//! let frames = capture_ofctl(&["add-flow", "in_port=1,actions=output:2"]);
//! let flow_mod = &payload_frames(&frames)[0];
//! assert_eq!(flow_mod[1], 14); // OFPT_FLOW_MOD
//! ```
//!
//! The fake switch speaks just enough OpenFlow 1.3 for `ovs-ofctl`'s
//! modification commands to complete: it sends HELLO (version bitmap: 1.3
//! only), and answers ECHO_REQUEST, FEATURES_REQUEST (dpid 1), GET_CONFIG,
//! ROLE_REQUEST, BARRIER_REQUEST, MULTIPART_REQUEST (DESC; TABLE_FEATURES with
//! table 0 only; PORT_DESC with ports 1–4 named `p1`–`p4` and LOCAL `br0`;
//! every other type with an empty reply)
//! and ONF bundle control (experimenter `0x4f4e4600`, exp_type 2300:
//! OPEN/CLOSE/COMMIT/DISCARD → the matching reply with the same bundle id and
//! flags). Everything else (FLOW_MOD, GROUP_MOD, METER_MOD, PORT_MOD, bundle
//! ADD_MESSAGE, ...) is recorded without a reply, as a switch that accepted
//! it would. The whole run is bounded by [`TIMEOUT`] (5 s): a command that
//! waits for something the fake switch never sends is killed, and
//! [`try_capture_ofctl`] reports `timed_out` with the frames seen so far.

use crate::proc::run_with_timeout;
use anyhow::{Context, Result};
use plexus_openflow::wire::{Frame, ONF_VENDOR_ID, frame, put_fixed_str};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::{Command, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Upper bound for one `ovs-ofctl` run against the fake switch.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// OpenFlow 1.3 message types used here.
pub mod ofpt {
    pub const HELLO: u8 = 0;
    pub const ERROR: u8 = 1;
    pub const ECHO_REQUEST: u8 = 2;
    pub const ECHO_REPLY: u8 = 3;
    pub const EXPERIMENTER: u8 = 4;
    pub const FEATURES_REQUEST: u8 = 5;
    pub const FEATURES_REPLY: u8 = 6;
    pub const GET_CONFIG_REQUEST: u8 = 7;
    pub const GET_CONFIG_REPLY: u8 = 8;
    pub const FLOW_MOD: u8 = 14;
    pub const GROUP_MOD: u8 = 15;
    pub const PORT_MOD: u8 = 16;
    pub const MULTIPART_REQUEST: u8 = 18;
    pub const MULTIPART_REPLY: u8 = 19;
    pub const BARRIER_REQUEST: u8 = 20;
    pub const BARRIER_REPLY: u8 = 21;
    pub const ROLE_REQUEST: u8 = 24;
    pub const ROLE_REPLY: u8 = 25;
    pub const METER_MOD: u8 = 29;
}

/// `ONFT_BUNDLE_CONTROL` / `ONFT_BUNDLE_ADD_MESSAGE` experimenter types.
pub const ONFT_BUNDLE_CONTROL: u32 = 2300;
pub const ONFT_BUNDLE_ADD_MESSAGE: u32 = 2301;

/// The result of one `ovs-ofctl` run against the fake switch.
#[derive(Debug, Clone)]
pub struct Capture {
    /// Every frame ovs-ofctl sent, in order (HELLO and session traffic included).
    pub frames: Vec<Vec<u8>>,
    /// Exit status (None when it was killed at [`TIMEOUT`]).
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
}

impl Capture {
    /// True when ovs-ofctl was killed at the deadline.
    pub fn timed_out(&self) -> bool {
        self.status.is_none()
    }
    /// True when ovs-ofctl exited with status 0.
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }
}

/// Runs `ovs-ofctl -O OpenFlow13 ARGS` against a fresh fake switch (target
/// inserted after the command name) and returns every frame it sent.
/// Panics (with ovs-ofctl's stderr) when it fails or times out: a test helper.
pub fn capture_ofctl(args: &[&str]) -> Vec<Vec<u8>> {
    let c = try_capture_ofctl(args).expect("running ovs-ofctl against the fake switch");
    assert!(
        c.success(),
        "ovs-ofctl {args:?} {}: {}\nframes: {}",
        if c.timed_out() {
            "timed out".to_owned()
        } else {
            format!("failed ({:?})", c.status)
        },
        c.stderr,
        c.frames.len()
    );
    c.frames
}

/// Like [`capture_ofctl`] but reports failure and timeout in the [`Capture`]
/// instead of panicking. Errors only when the fake switch or ovs-ofctl cannot
/// be started.
pub fn try_capture_ofctl(args: &[&str]) -> Result<Capture> {
    let dir = crate::ovs::short_tempdir("plx-cap-")?;
    let sock = dir.path().join("sw.sock");
    let listener =
        UnixListener::bind(&sock).with_context(|| format!("binding {}", sock.display()))?;
    listener.set_nonblocking(true)?;
    let frames = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let server = {
        let frames = frames.clone();
        let stop = stop.clone();
        std::thread::spawn(move || serve(listener, frames, stop))
    };

    let target = format!("unix:{}", sock.display());
    let full = crate::ovs::insert_target(args, &target);
    let result = run_with_timeout(
        Command::new("ovs-ofctl")
            .env("OVS_RUNDIR", dir.path()) // for its unixctl socket (`monitor`)
            .args(["-O", "OpenFlow13"])
            .args(&full),
        TIMEOUT,
    )
    .context("running ovs-ofctl (apt-get install openvswitch-common)");
    stop.store(true, Ordering::SeqCst);
    let _ = server.join();
    let out = result?;
    let frames = std::mem::take(&mut *frames.lock().unwrap_or_else(|e| e.into_inner()));
    Ok(Capture {
        frames,
        status: out.status,
        stdout: out.stdout,
        stderr: out.stderr,
    })
}

/// The frames that carry the command itself: drops HELLO, ECHO, FEATURES and
/// GET_CONFIG requests, BARRIER_REQUEST, ROLE_REQUEST, multipart DESC,
/// PORT_DESC and TABLE_FEATURES queries and ONF bundle *control* messages (bundle ADD_MESSAGE stays).
pub fn payload_frames(frames: &[Vec<u8>]) -> Vec<Vec<u8>> {
    frames
        .iter()
        .filter(|f| !is_session_frame(f))
        .cloned()
        .collect()
}

fn is_session_frame(f: &[u8]) -> bool {
    let Some(&t) = f.get(1) else { return true };
    match t {
        ofpt::HELLO
        | ofpt::ECHO_REQUEST
        | ofpt::FEATURES_REQUEST
        | ofpt::GET_CONFIG_REQUEST
        | ofpt::BARRIER_REQUEST
        | ofpt::ROLE_REQUEST => true,
        // DESC, PORT_DESC, and TABLE_FEATURES without a body (a query).
        ofpt::MULTIPART_REQUEST => match be16(f, 8) {
            Some(0) | Some(13) => true,
            Some(12) => f.len() == 16,
            _ => false,
        },
        ofpt::EXPERIMENTER => {
            be32(f, 8) == Some(ONF_VENDOR_ID) && be32(f, 12) == Some(ONFT_BUNDLE_CONTROL)
        }
        _ => false,
    }
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

type Frames = Arc<Mutex<Vec<Vec<u8>>>>;

fn serve(listener: UnixListener, frames: Frames, stop: Arc<AtomicBool>) {
    let mut conns = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((s, _)) => {
                let frames = frames.clone();
                let stop = stop.clone();
                conns.push(std::thread::spawn(move || {
                    if let Err(e) = session(s, &frames, &stop) {
                        eprintln!("fake switch: {e}");
                    }
                }));
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => {
                eprintln!("fake switch: accept: {e}");
                break;
            }
        }
    }
    for c in conns {
        let _ = c.join();
    }
}

/// One connection: send HELLO, then record and answer frames until EOF or stop.
fn session(mut s: UnixStream, frames: &Frames, stop: &AtomicBool) -> std::io::Result<()> {
    s.set_nonblocking(false)?;
    s.set_read_timeout(Some(Duration::from_millis(50)))?;
    s.write_all(&hello())?;
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 65536];
    loop {
        // Handle every complete frame in the buffer.
        loop {
            match frame(&buf) {
                Ok(Frame::Complete(n)) => {
                    let f: Vec<u8> = buf.drain(..n).collect();
                    if let Some(reply) = reply_to(&f) {
                        s.write_all(&reply)?;
                    }
                    frames.lock().unwrap_or_else(|e| e.into_inner()).push(f);
                }
                Ok(Frame::Incomplete(_)) => break,
                Err(e) => {
                    return Err(std::io::Error::new(ErrorKind::InvalidData, e.to_string()));
                }
            }
        }
        match s.read(&mut chunk) {
            Ok(0) => return Ok(()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if stop.load(Ordering::SeqCst) {
                    return Ok(());
                }
            }
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}

/// Builds a frame: OF1.3 header with `t`, `xid`, then `body`.
fn msg(t: u8, xid: u32, body: &[u8]) -> Vec<u8> {
    let len = u16::try_from(8 + body.len()).unwrap_or(u16::MAX);
    let mut v = vec![0x04, t];
    v.extend_from_slice(&len.to_be_bytes());
    v.extend_from_slice(&xid.to_be_bytes());
    v.extend_from_slice(body);
    v
}

/// HELLO with a version-bitmap element announcing OpenFlow 1.3 only.
fn hello() -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&1u16.to_be_bytes()); // OFPHET_VERSIONBITMAP
    body.extend_from_slice(&8u16.to_be_bytes());
    body.extend_from_slice(&(1u32 << 4).to_be_bytes());
    msg(ofpt::HELLO, 1, &body)
}

/// The fake switch's answer to one frame, if it sends one.
fn reply_to(f: &[u8]) -> Option<Vec<u8>> {
    let t = *f.get(1)?;
    let xid = be32(f, 4)?;
    let body = f.get(8..)?;
    match t {
        ofpt::ECHO_REQUEST => Some(msg(ofpt::ECHO_REPLY, xid, body)),
        ofpt::BARRIER_REQUEST => Some(msg(ofpt::BARRIER_REPLY, xid, &[])),
        ofpt::FEATURES_REQUEST => {
            let mut b = Vec::new();
            b.extend_from_slice(&1u64.to_be_bytes()); // datapath_id
            b.extend_from_slice(&0u32.to_be_bytes()); // n_buffers
            b.push(254); // n_tables
            b.push(0); // auxiliary_id
            b.extend_from_slice(&[0, 0]);
            b.extend_from_slice(&0x4fu32.to_be_bytes()); // capabilities: FLOW|TABLE|PORT|GROUP|QUEUE stats
            b.extend_from_slice(&0u32.to_be_bytes());
            Some(msg(ofpt::FEATURES_REPLY, xid, &b))
        }
        ofpt::GET_CONFIG_REQUEST => Some(msg(ofpt::GET_CONFIG_REPLY, xid, &[0, 0, 0xff, 0xff])),
        ofpt::ROLE_REQUEST => Some(msg(ofpt::ROLE_REPLY, xid, body)),
        ofpt::MULTIPART_REQUEST => {
            let mp_type = be16(f, 8)?;
            let mut b = Vec::new();
            b.extend_from_slice(&mp_type.to_be_bytes());
            b.extend_from_slice(&[0; 6]); // flags (no "more"), pad
            match mp_type {
                0 => desc_body(&mut b),
                12 if f.len() == 16 => table_features_body(&mut b),
                13 => port_desc_body(&mut b),
                _ => {}
            }
            Some(msg(ofpt::MULTIPART_REPLY, xid, &b))
        }
        ofpt::EXPERIMENTER
            if be32(f, 8) == Some(ONF_VENDOR_ID) && be32(f, 12) == Some(ONFT_BUNDLE_CONTROL) =>
        {
            let bundle_id = be32(f, 16)?;
            let ctrl_type = be16(f, 20)?;
            let flags = be16(f, 22)?;
            // OPEN/CLOSE/COMMIT/DISCARD requests are even; the reply is +1.
            if ctrl_type % 2 != 0 || ctrl_type > 6 {
                return None;
            }
            let mut b = Vec::new();
            b.extend_from_slice(&ONF_VENDOR_ID.to_be_bytes());
            b.extend_from_slice(&ONFT_BUNDLE_CONTROL.to_be_bytes());
            b.extend_from_slice(&bundle_id.to_be_bytes());
            b.extend_from_slice(&(ctrl_type + 1).to_be_bytes());
            b.extend_from_slice(&flags.to_be_bytes());
            Some(msg(ofpt::EXPERIMENTER, xid, &b))
        }
        _ => None,
    }
}

/// One `ofp_table_features` for table 0 with the eight properties OVS
/// requires, all empty: `ovs-ofctl` queries this (on a connection of its own)
/// to resolve table names before most commands.
fn table_features_body(b: &mut Vec<u8>) {
    b.extend_from_slice(&128u16.to_be_bytes()); // length: 64 + 8 properties of 8
    b.push(0); // table_id
    b.extend_from_slice(&[0; 5]);
    put_fixed_str(b, "table0", 32);
    b.extend_from_slice(&0u64.to_be_bytes()); // metadata_match
    b.extend_from_slice(&0u64.to_be_bytes()); // metadata_write
    b.extend_from_slice(&0u32.to_be_bytes()); // config
    b.extend_from_slice(&1_000_000u32.to_be_bytes()); // max_entries
    // INSTRUCTIONS, NEXT_TABLES, WRITE_ACTIONS, APPLY_ACTIONS, MATCH,
    // WILDCARDS, WRITE_SETFIELD, APPLY_SETFIELD: header only, padded to 8.
    for prop in [0u16, 2, 4, 6, 8, 10, 12, 14] {
        b.extend_from_slice(&prop.to_be_bytes());
        b.extend_from_slice(&4u16.to_be_bytes());
        b.extend_from_slice(&[0; 4]);
    }
}

fn desc_body(b: &mut Vec<u8>) {
    put_fixed_str(b, "Plexus", 256);
    put_fixed_str(b, "plexus-tests fake switch", 256);
    put_fixed_str(b, env!("CARGO_PKG_VERSION"), 256);
    put_fixed_str(b, "None", 32);
    put_fixed_str(b, "capture", 256);
}

/// `ofp_port` entries: ports 1..=4 (`p1`..`p4`) and LOCAL (`br0`).
fn port_desc_body(b: &mut Vec<u8>) {
    let ports = (1u32..=4)
        .map(|n| (n, format!("p{n}")))
        .chain([(0xffff_fffe, "br0".to_owned())]);
    for (no, name) in ports {
        b.extend_from_slice(&no.to_be_bytes());
        b.extend_from_slice(&[0; 4]);
        b.extend_from_slice(&[0x02, 0, 0, 0, 0, (no & 0xff) as u8]);
        b.extend_from_slice(&[0; 2]);
        put_fixed_str(b, &name, 16);
        b.extend_from_slice(&0u32.to_be_bytes()); // config
        b.extend_from_slice(&4u32.to_be_bytes()); // state: LIVE
        b.extend_from_slice(&0x2820u32.to_be_bytes()); // curr: 10GB_FD|COPPER|AUTONEG
        b.extend_from_slice(&0u32.to_be_bytes()); // advertised
        b.extend_from_slice(&0u32.to_be_bytes()); // supported
        b.extend_from_slice(&0u32.to_be_bytes()); // peer
        b.extend_from_slice(&10_000_000u32.to_be_bytes()); // curr_speed kbps
        b.extend_from_slice(&10_000_000u32.to_be_bytes()); // max_speed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_frames_are_recognised() {
        assert!(is_session_frame(&hello()));
        assert!(is_session_frame(&msg(ofpt::BARRIER_REQUEST, 7, &[])));
        assert!(!is_session_frame(&msg(ofpt::FLOW_MOD, 7, &[0; 48])));
        let mut mp = 13u16.to_be_bytes().to_vec();
        mp.extend_from_slice(&[0; 6]);
        assert!(is_session_frame(&msg(ofpt::MULTIPART_REQUEST, 1, &mp)));
        let mut mp = 1u16.to_be_bytes().to_vec(); // FLOW stats: payload
        mp.extend_from_slice(&[0; 6]);
        assert!(!is_session_frame(&msg(ofpt::MULTIPART_REQUEST, 1, &mp)));
    }

    #[test]
    fn bundle_control_reply_keeps_id_and_flags() {
        let mut b = ONF_VENDOR_ID.to_be_bytes().to_vec();
        b.extend_from_slice(&ONFT_BUNDLE_CONTROL.to_be_bytes());
        b.extend_from_slice(&0xabcd_0001u32.to_be_bytes());
        b.extend_from_slice(&4u16.to_be_bytes()); // COMMIT_REQUEST
        b.extend_from_slice(&3u16.to_be_bytes()); // ATOMIC|ORDERED
        let r = reply_to(&msg(ofpt::EXPERIMENTER, 9, &b)).unwrap();
        assert_eq!(be32(&r, 4), Some(9));
        assert_eq!(be32(&r, 16), Some(0xabcd_0001));
        assert_eq!(be16(&r, 20), Some(5)); // COMMIT_REPLY
        assert_eq!(be16(&r, 22), Some(3));
        assert_eq!(be16(&r, 2), Some(24));
    }

    #[test]
    fn replies_are_valid_for_ovs() {
        if !crate::require_tool("ovs-ofctl") {
            return;
        }
        let feat = reply_to(&msg(ofpt::FEATURES_REQUEST, 2, &[])).unwrap();
        let out = crate::ofctl::ofp_print_bytes(&feat).unwrap();
        assert!(out.contains("OFPT_FEATURES_REPLY (OF1.3)"), "{out}");
        assert!(out.contains("dpid:0000000000000001"), "{out}");
        let mut rq = 13u16.to_be_bytes().to_vec();
        rq.extend_from_slice(&[0; 6]);
        let pd = reply_to(&msg(ofpt::MULTIPART_REQUEST, 3, &rq)).unwrap();
        let out = crate::ofctl::ofp_print_bytes(&pd).unwrap();
        assert!(out.contains("OFPST_PORT_DESC reply (OF1.3)"), "{out}");
        assert!(out.contains("1(p1): addr:02:00:00:00:00:01"), "{out}");
        assert!(out.contains("LOCAL(br0)"), "{out}");
        assert!(!out.contains("decode error"), "{out}");
        let hello_txt = crate::ofctl::ofp_print_bytes(&hello()).unwrap();
        assert!(hello_txt.contains("version bitmap: 0x04"), "{hello_txt}");
    }
}
