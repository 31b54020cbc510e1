//! A minimal bpf(2) loader for the AF_XDP redirect program.
//!
//! No clang/libbpf here: the program is the classic `xdp_sock_prog` written as
//! raw instructions:
//!
//! ```text
//! r2 = *(u32 *)(r1 + 16)        ; ctx->rx_queue_index
//! r1 = map_fd xsks_map          ; ld_imm64, BPF_PSEUDO_MAP_FD
//! r3 = XDP_PASS                 ; default action if no socket in the slot
//! call bpf_redirect_map
//! exit
//! ```
//!
//! It is attached with a BPF link (`BPF_LINK_CREATE`, attach type `BPF_XDP`),
//! native mode first, generic (skb) mode as a fallback. Dropping the
//! [`XdpProgram`] closes the link, which detaches the program.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// One eBPF instruction, `struct bpf_insn`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BpfInsn {
    /// Opcode.
    pub code: u8,
    /// `dst_reg` in the low nibble, `src_reg` in the high nibble.
    pub regs: u8,
    /// Signed offset.
    pub off: i16,
    /// Signed immediate.
    pub imm: i32,
}

impl BpfInsn {
    const fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Self {
        Self {
            code,
            regs: (src << 4) | (dst & 0x0f),
            off,
            imm,
        }
    }

    /// The instruction as the 8 bytes the kernel reads (little-endian host).
    pub fn to_bytes(self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[0] = self.code;
        b[1] = self.regs;
        b[2..4].copy_from_slice(&self.off.to_le_bytes());
        b[4..8].copy_from_slice(&self.imm.to_le_bytes());
        b
    }
}

// Opcode pieces (linux/bpf_common.h, linux/bpf.h).
const BPF_LD: u8 = 0x00;
const BPF_LDX: u8 = 0x01;
const BPF_JMP: u8 = 0x05;
const BPF_ALU64: u8 = 0x07;
const BPF_W: u8 = 0x00;
const BPF_DW: u8 = 0x18;
const BPF_IMM: u8 = 0x00;
const BPF_MEM: u8 = 0x60;
const BPF_MOV: u8 = 0xb0;
const BPF_K: u8 = 0x00;
const BPF_CALL: u8 = 0x80;
const BPF_EXIT: u8 = 0x90;
const BPF_PSEUDO_MAP_FD: u8 = 1;

/// `BPF_FUNC_redirect_map`.
pub const BPF_FUNC_REDIRECT_MAP: i32 = 51;
/// `XDP_PASS` verdict.
pub const XDP_PASS: i32 = 2;
/// `offsetof(struct xdp_md, rx_queue_index)`.
pub const XDP_MD_RX_QUEUE_INDEX: i16 = 16;

/// The `xdp_sock_prog` instructions for an XSKMAP with file descriptor `map_fd`.
pub fn xsk_redirect_program(map_fd: RawFd) -> [BpfInsn; 6] {
    [
        // r2 = *(u32 *)(r1 + rx_queue_index)
        BpfInsn::new(BPF_LDX | BPF_MEM | BPF_W, 2, 1, XDP_MD_RX_QUEUE_INDEX, 0),
        // r1 = map (two-slot ld_imm64; upper half of the immediate is 0)
        BpfInsn::new(BPF_LD | BPF_DW | BPF_IMM, 1, BPF_PSEUDO_MAP_FD, 0, map_fd),
        BpfInsn::new(0, 0, 0, 0, 0),
        // r3 = XDP_PASS
        BpfInsn::new(BPF_ALU64 | BPF_MOV | BPF_K, 3, 0, 0, XDP_PASS),
        // r0 = bpf_redirect_map(r1, r2, r3)
        BpfInsn::new(BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_REDIRECT_MAP),
        // return r0
        BpfInsn::new(BPF_JMP | BPF_EXIT, 0, 0, 0, 0),
    ]
}

// bpf(2) commands, map/program/attach types, XDP flags.
const BPF_MAP_CREATE: libc::c_int = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_int = 2;
const BPF_MAP_DELETE_ELEM: libc::c_int = 3;
const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_LINK_CREATE: libc::c_int = 28;
const BPF_MAP_TYPE_XSKMAP: u32 = 17;
const BPF_PROG_TYPE_XDP: u32 = 6;
/// `BPF_XDP` attach type.
pub const BPF_XDP: u32 = 37;
/// `XDP_FLAGS_SKB_MODE` (generic XDP).
pub const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
/// `XDP_FLAGS_DRV_MODE` (native XDP).
pub const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;

#[repr(C)]
#[derive(Default)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
}

#[repr(C)]
#[derive(Default)]
struct MapElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

#[repr(C)]
#[derive(Default)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
}

/// Calls bpf(2) with `attr`; returns the (non-negative) result.
fn sys_bpf<T>(cmd: libc::c_int, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a valid, initialised `#[repr(C)]` prefix of `union
    // bpf_attr` for `cmd` and lives across the call; its size is passed so the
    // kernel reads no further. Pointers inside it are set by our callers to
    // buffers that outlive the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T as *mut libc::c_void,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn owned_fd(r: libc::c_long) -> OwnedFd {
    // SAFETY: bpf(2) returned a fresh file descriptor that nothing else owns.
    unsafe { OwnedFd::from_raw_fd(r as RawFd) }
}

fn name16(s: &str) -> [u8; 16] {
    let mut n = [0u8; 16];
    for (d, c) in n.iter_mut().zip(s.bytes().take(15)) {
        *d = c;
    }
    n
}

/// Creates an `XSKMAP` with `entries` slots (one per queue).
pub fn create_xskmap(entries: u32) -> io::Result<OwnedFd> {
    let mut attr = MapCreateAttr {
        map_type: BPF_MAP_TYPE_XSKMAP,
        key_size: 4,
        value_size: 4,
        max_entries: entries,
        map_name: name16("plx_xsks"),
        ..Default::default()
    };
    sys_bpf(BPF_MAP_CREATE, &mut attr).map(owned_fd)
}

/// Sets `map[key] = value` (both u32), e.g. queue id → AF_XDP socket fd.
pub fn map_update_u32(map: &OwnedFd, key: u32, value: u32) -> io::Result<()> {
    let mut attr = MapElemAttr {
        map_fd: map.as_raw_fd() as u32,
        key: &key as *const u32 as u64,
        value: &value as *const u32 as u64,
        flags: 0, // BPF_ANY
        ..Default::default()
    };
    sys_bpf(BPF_MAP_UPDATE_ELEM, &mut attr).map(drop)
}

/// Deletes `map[key]`.
pub fn map_delete_u32(map: &OwnedFd, key: u32) -> io::Result<()> {
    let mut attr = MapElemAttr {
        map_fd: map.as_raw_fd() as u32,
        key: &key as *const u32 as u64,
        ..Default::default()
    };
    sys_bpf(BPF_MAP_DELETE_ELEM, &mut attr).map(drop)
}

/// Loads an XDP program; on failure the verifier log is part of the error.
pub fn load_xdp_program(insns: &[BpfInsn], name: &str) -> io::Result<OwnedFd> {
    let license = CString::new("GPL").expect("static");
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_XDP,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        prog_name: name16(name),
        expected_attach_type: BPF_XDP,
        ..Default::default()
    };
    match sys_bpf(BPF_PROG_LOAD, &mut attr) {
        Ok(fd) => Ok(owned_fd(fd)),
        Err(first) => {
            // Retry with a verifier log to say why.
            let mut log = vec![0u8; 64 * 1024];
            attr.log_level = 1;
            attr.log_size = log.len() as u32;
            attr.log_buf = log.as_mut_ptr() as u64;
            match sys_bpf(BPF_PROG_LOAD, &mut attr) {
                Ok(fd) => Ok(owned_fd(fd)),
                Err(_) => {
                    let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
                    Err(io::Error::new(
                        first.kind(),
                        format!(
                            "BPF_PROG_LOAD: {first}; verifier log: {}",
                            String::from_utf8_lossy(&log[..end]).trim()
                        ),
                    ))
                }
            }
        }
    }
}

/// Attaches `prog` to `ifindex` with a BPF link (`flags`: an `XDP_FLAGS_*` mode).
pub fn link_create_xdp(prog: &OwnedFd, ifindex: u32, flags: u32) -> io::Result<OwnedFd> {
    let mut attr = LinkCreateAttr {
        prog_fd: prog.as_raw_fd() as u32,
        target_ifindex: ifindex,
        attach_type: BPF_XDP,
        flags,
    };
    sys_bpf(BPF_LINK_CREATE, &mut attr).map(owned_fd)
}

/// XDP attach mode actually in use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpMode {
    /// Driver (native) XDP.
    Native,
    /// Generic (skb) XDP.
    Generic,
}

/// Which modes to try when attaching.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum XdpModeRequest {
    /// Native first, generic if native fails.
    #[default]
    Auto,
    /// Native only.
    Native,
    /// Generic only.
    Generic,
}

/// The XSKMAP + redirect program, attached to one interface through a BPF link.
/// Dropping it detaches the program (the link is never pinned).
#[derive(Debug)]
pub struct XdpProgram {
    map: OwnedFd,
    _prog: OwnedFd,
    _link: OwnedFd,
    mode: XdpMode,
}

impl XdpProgram {
    /// Creates the map (`queues` slots), loads the program and attaches it to `ifindex`.
    pub fn attach(ifindex: u32, queues: u32, req: XdpModeRequest) -> io::Result<Self> {
        let map = create_xskmap(queues.max(1))
            .map_err(|e| io::Error::new(e.kind(), format!("BPF_MAP_CREATE(XSKMAP): {e}")))?;
        let insns = xsk_redirect_program(map.as_raw_fd());
        let prog = load_xdp_program(&insns, "plx_xsk_redir")?;
        let (link, mode) = match req {
            XdpModeRequest::Native => (
                link_create_xdp(&prog, ifindex, XDP_FLAGS_DRV_MODE)?,
                XdpMode::Native,
            ),
            XdpModeRequest::Generic => (
                link_create_xdp(&prog, ifindex, XDP_FLAGS_SKB_MODE)?,
                XdpMode::Generic,
            ),
            XdpModeRequest::Auto => match link_create_xdp(&prog, ifindex, XDP_FLAGS_DRV_MODE) {
                Ok(l) => (l, XdpMode::Native),
                Err(native) => {
                    let l = link_create_xdp(&prog, ifindex, XDP_FLAGS_SKB_MODE).map_err(|e| {
                        io::Error::new(
                            e.kind(),
                            format!("BPF_LINK_CREATE: native: {native}; generic: {e}"),
                        )
                    })?;
                    (l, XdpMode::Generic)
                }
            },
        };
        Ok(Self {
            map,
            _prog: prog,
            _link: link,
            mode,
        })
    }

    /// The attach mode in use.
    pub fn mode(&self) -> XdpMode {
        self.mode
    }

    /// Puts an AF_XDP socket into the map slot of `queue`.
    pub fn insert_socket(&self, queue: u32, xsk_fd: RawFd) -> io::Result<()> {
        map_update_u32(&self.map, queue, xsk_fd as u32)
    }

    /// Removes the socket of `queue` from the map.
    pub fn remove_socket(&self, queue: u32) -> io::Result<()> {
        map_delete_u32(&self.map, queue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_encoding_matches_libbpf_xdp_sock_prog() {
        let p = xsk_redirect_program(7);
        let bytes: Vec<[u8; 8]> = p.iter().map(|i| i.to_bytes()).collect();
        // Reference encodings (BPF_LDX_MEM, BPF_LD_MAP_FD, BPF_MOV64_IMM,
        // BPF_EMIT_CALL, BPF_EXIT_INSN) as libbpf's xsk.c emits them.
        assert_eq!(bytes[0], [0x61, 0x12, 16, 0, 0, 0, 0, 0]);
        assert_eq!(bytes[1], [0x18, 0x11, 0, 0, 7, 0, 0, 0]);
        assert_eq!(bytes[2], [0; 8]);
        assert_eq!(bytes[3], [0xb7, 0x03, 0, 0, 2, 0, 0, 0]);
        assert_eq!(bytes[4], [0x85, 0x00, 0, 0, 51, 0, 0, 0]);
        assert_eq!(bytes[5], [0x95, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(std::mem::size_of::<BpfInsn>(), 8);
    }

    #[test]
    fn insn_fields() {
        let i = BpfInsn::new(0x61, 2, 1, -4, -1);
        assert_eq!(
            i.to_bytes(),
            [0x61, 0x12, 0xfc, 0xff, 0xff, 0xff, 0xff, 0xff]
        );
        // a map fd above 2^31 is not possible; negative imm survives as two's complement
        assert_eq!(xsk_redirect_program(0x1234)[1].imm, 0x1234);
    }

    #[test]
    fn attr_layouts() {
        // Offsets fixed by the kernel ABI (union bpf_attr).
        assert_eq!(std::mem::size_of::<MapCreateAttr>(), 44);
        assert_eq!(std::mem::size_of::<MapElemAttr>(), 32);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, prog_name), 48);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, expected_attach_type), 68);
        assert_eq!(std::mem::size_of::<LinkCreateAttr>(), 16);
    }

    /// Loads the map and program into the kernel (no attach): the verifier
    /// accepts our raw instructions. Needs CAP_BPF/root.
    #[test]
    fn verifier_accepts_program() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("verifier_accepts_program needs root in CI");
            }
            eprintln!("SKIP: verifier_accepts_program: not root");
            return;
        }
        let map = create_xskmap(4).expect("create XSKMAP");
        let prog = load_xdp_program(&xsk_redirect_program(map.as_raw_fd()), "plx_test");
        prog.expect("verifier rejected the redirect program");
    }
}
