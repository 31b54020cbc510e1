//! Test prerequisites: a missing tool or privilege skips a test on a
//! developer's machine and fails it in CI (`CI=true`).

use std::path::{Path, PathBuf};

/// True when running under CI (`CI` is set to `true` or `1`).
pub fn in_ci() -> bool {
    matches!(
        std::env::var("CI")
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Ok("true") | Ok("1")
    )
}

/// Finds an executable on `PATH` (plus the sbin directories, which a non-login
/// root shell may lack).
pub fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let extra = ["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from);
    std::env::split_paths(&path)
        .chain(extra)
        .map(|d| d.join(tool))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Reports a missing prerequisite: panics under CI, otherwise prints
/// `SKIP: <why>` and returns false.
pub fn unmet(why: &str) -> bool {
    if in_ci() {
        panic!("missing test prerequisite under CI=true: {why}");
    }
    eprintln!("SKIP: {why}");
    println!("SKIP: {why}");
    false
}

/// Returns true when `tool` is on `PATH`. When it is not: under `CI=true`
/// panics with a clear message; otherwise prints `SKIP: <why>` and returns false,
/// so the calling test can `return` early.
pub fn require_tool(tool: &str) -> bool {
    if which(tool).is_some() {
        true
    } else {
        unmet(&format!(
            "`{tool}` not found on PATH (run scripts/install-deps.sh)"
        ))
    }
}

/// Returns true when every tool in `tools` is present (see [`require_tool`]).
pub fn require_tools(tools: &[&str]) -> bool {
    tools.iter().all(|t| require_tool(t))
}

/// Effective uid of this process, read from `/proc/self/status`.
pub fn euid() -> Option<u32> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// Returns true when running as root (network namespaces, veth, OVS need it);
/// otherwise behaves like [`require_tool`] (panic in CI, SKIP elsewhere).
pub fn require_root() -> bool {
    if euid() == Some(0) {
        true
    } else {
        unmet("needs root (CAP_NET_ADMIN for netns/veth/OVS)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_finds_sh_and_not_nonsense() {
        assert!(which("sh").is_some());
        assert!(which("plexus-no-such-tool-xyz").is_none());
    }

    #[test]
    fn euid_is_readable() {
        assert!(euid().is_some());
    }
}
