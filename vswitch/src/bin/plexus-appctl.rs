//! `plexus-appctl`: talks to a running `plexus-vswitchd` over its control
//! socket, like `ovs-appctl`.
//!
//! ```text
//! plexus-appctl [-t TARGET] [--format json] COMMAND [ARG...]
//! plexus-appctl -t /var/run/plexus/plexus-vswitchd.ctl trace br0 'in_port=1,tcp,tp_dst=80'
//! ```
//! TARGET is a socket path, a daemon pid or a daemon name (default
//! `plexus-vswitchd`, i.e. `$PLEXUS_RUNDIR/plexus-vswitchd.ctl`, rundir
//! `/var/run/plexus`). Exit status: 0 on success, 2 when the daemon rejected
//! the command, 1 when it could not be reached.

use std::process::ExitCode;

use plexus_vswitch::appctl::server::{call, resolve_target};

const USAGE: &str = "\
usage: plexus-appctl [-t TARGET] [--format text|json] COMMAND [ARG...]
  -t, --target TARGET   socket path, daemon pid or name (default plexus-vswitchd,
                        i.e. $PLEXUS_RUNDIR/plexus-vswitchd.ctl, rundir /var/run/plexus)
  --format json         JSON output (show, dump-cache, fdb/show, trace); may
                        also follow the command
  -h, --help            this text; `plexus-appctl help` lists the daemon's commands
";

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut target = None;
    let mut words = Vec::new();
    let mut started = false;
    while let Some(a) = args.next() {
        if started {
            words.push(a);
            continue;
        }
        match a.as_str() {
            "-t" | "--target" => match args.next() {
                Some(t) => target = Some(t),
                None => {
                    eprintln!("plexus-appctl: {a} needs an argument\n{USAGE}");
                    return ExitCode::from(1);
                }
            },
            "-h" | "--help" => {
                print!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            // Output options go to the daemon with the command.
            "--format" => {
                words.push(a);
                words.extend(args.next());
            }
            _ if a.starts_with("--format=") || a == "--json" => words.push(a),
            _ => {
                if let Some(t) = a.strip_prefix("--target=") {
                    target = Some(t.to_string());
                } else {
                    words.push(a);
                    started = true;
                }
            }
        }
    }
    if !started {
        eprint!("plexus-appctl: no command given\n{USAGE}");
        return ExitCode::from(1);
    }
    let path = resolve_target(target.as_deref());
    match call(&path, &words) {
        Ok(r) if r.ok => {
            // Not print!: a reader that goes away early (`| head`) is not a panic.
            use std::io::Write as _;
            let mut out = std::io::stdout().lock();
            match out.write_all(r.text.as_bytes()).and_then(|()| out.flush()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("plexus-appctl: writing the reply: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Ok(r) => {
            let t = r.text.trim_end();
            eprintln!("{t}");
            eprintln!("plexus-appctl: {} server returned an error", path.display());
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("plexus-appctl: cannot talk to {}: {e}", path.display());
            ExitCode::from(1)
        }
    }
}
