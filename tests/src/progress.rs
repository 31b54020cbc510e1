//! The live progress view of `plexus-topo up`/`run`: on a terminal an
//! indicatif spinner shows the current step and the elapsed time, and each
//! finished step stays above it with its duration; elsewhere (CI logs, tests)
//! one timestamped line per step.

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// Steps of a bring-up, shown as they happen.
#[derive(Debug)]
pub struct Progress {
    t0: Instant,
    bar: Option<ProgressBar>,
    step: Option<(String, Instant)>,
}

impl Progress {
    /// A spinner when stderr is a terminal (and `PLEXUS_TOPO_PLAIN` is unset),
    /// plain lines otherwise.
    pub fn new() -> Self {
        let live =
            std::io::stderr().is_terminal() && std::env::var_os("PLEXUS_TOPO_PLAIN").is_none();
        let bar = live.then(|| {
            let b = ProgressBar::new_spinner();
            b.set_style(
                ProgressStyle::with_template("{spinner:.cyan} [{elapsed:>3}] {wide_msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            b.enable_steady_tick(Duration::from_millis(100));
            b
        });
        Self {
            t0: Instant::now(),
            bar,
            step: None,
        }
    }

    /// Starts step `msg` (the previous one is done).
    pub fn step(&mut self, msg: &str) {
        self.finish_step();
        match &self.bar {
            Some(b) => b.set_message(msg.to_owned()),
            None => eprintln!("[{:>5.1}s] {msg}", self.t0.elapsed().as_secs_f64()),
        }
        self.step = Some((msg.to_owned(), Instant::now()));
    }

    fn finish_step(&mut self) {
        if let (Some(b), Some((msg, t))) = (&self.bar, self.step.take()) {
            b.println(format!("  ✓ {msg} ({:.1?})", t.elapsed()));
        }
    }

    /// Ends the view (the last step is done).
    pub fn finish(&mut self) {
        self.finish_step();
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}
