//! The progress bar on stderr (indicatif) over all slots of a sweep, and logging
//! that does not tear it. When stderr is not a terminal the bar draws nothing and
//! log lines are printed plainly.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Progress of a sweep, counted in slots.
#[derive(Clone, Debug)]
pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    /// A bar over `total_slots` slots on stderr.
    pub fn new(total_slots: u64) -> Self {
        let bar =
            ProgressBar::with_draw_target(Some(total_slots), ProgressDrawTarget::stderr_with_hz(5));
        let style = ProgressStyle::with_template(
            "{elapsed_precise} [{wide_bar}] {human_pos}/{human_len} slots {percent}%, ETA {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        // Redraw now and then even when no slot finishes (slow decision makers).
        bar.enable_steady_tick(Duration::from_millis(500));
        Progress { bar }
    }

    /// One more slot done.
    pub fn slot_done(&self) {
        self.bar.inc(1);
    }

    /// Prints `line` on stderr above the bar.
    pub fn log(&self, line: &str) {
        self.bar.suspend(|| eprintln!("{line}"));
    }

    /// Removes the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
