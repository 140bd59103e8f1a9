//! The progress of a sweep on stderr, counted in slots. On a terminal it is a bar
//! (indicatif), and logging does not tear it. Otherwise (a log file, CI) the bar
//! would draw nothing, so plain lines are printed instead, like
//! `compare: 2100/10500 slots (20 %), 1.5 min, about 6.0 min left`: one at each
//! 10 % mark and whenever [`EVERY`] has passed without one, never two within
//! [`MIN_GAP`], and a last one when the sweep has finished every slot
//! ([`Progress::finish`]). Times under a minute are in seconds (`12 s`), longer
//! ones in minutes. A sweep that stops short (an error, Ctrl-C) ends with a line
//! that says so instead ([`Progress::stop`]), on a terminal too. Log lines are
//! printed plainly.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The longest a plain run goes without a progress line (while slots finish).
pub const EVERY: Duration = Duration::from_secs(30);

/// The shortest time between two plain progress lines: a fast sweep does not
/// print one per 10 % mark.
pub const MIN_GAP: Duration = Duration::from_secs(5);

/// Progress of a sweep, counted in slots.
#[derive(Clone, Debug)]
pub struct Progress {
    /// What each line starts with.
    command: Arc<str>,
    bar: ProgressBar,
    /// The plain lines' state when stderr is not a terminal, shared by the clones.
    plain: Option<Arc<Plain>>,
}

impl Progress {
    /// Progress over `total_slots` slots on stderr: a bar on a terminal, otherwise
    /// plain lines that start with `command`.
    pub fn new(command: &str, total_slots: u64) -> Self {
        let command = Arc::from(command);
        if !std::io::stderr().is_terminal() {
            return Progress {
                command,
                bar: ProgressBar::hidden(),
                plain: Some(Arc::new(Plain::new(total_slots))),
            };
        }
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
        Progress {
            command,
            bar,
            plain: None,
        }
    }

    /// One more slot done (from any thread).
    pub fn slot_done(&self) {
        match &self.plain {
            Some(plain) => {
                let now = plain.started.elapsed();
                if let Some(done) = plain.slot_done(now) {
                    eprintln!("{}", progress_line(&self.command, done, plain.total, now));
                }
            }
            None => self.bar.inc(1),
        }
    }

    /// Prints `line` on stderr (above the bar on a terminal).
    pub fn log(&self, line: &str) {
        self.bar.suspend(|| eprintln!("{line}"));
    }

    /// Ends a sweep that finished every slot: removes the bar, or prints the last
    /// plain line.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
        if let Some(plain) = &self.plain {
            let line = finished_line(
                &self.command,
                plain.done(),
                plain.total,
                plain.started.elapsed(),
            );
            eprintln!("{line}");
        }
    }

    /// Ends a sweep that stopped short (an error, an interrupt): removes the bar
    /// and prints how far it got, in words that do not read as the end of the run.
    pub fn stop(&self) {
        let (done, total, elapsed) = match &self.plain {
            Some(plain) => (plain.done(), plain.total, plain.started.elapsed()),
            None => (
                self.bar.position(),
                self.bar.length().unwrap_or(0),
                self.bar.elapsed(),
            ),
        };
        self.bar.finish_and_clear();
        eprintln!("{}", stopped_line(&self.command, done, total, elapsed));
    }
}

/// The state of the plain progress lines.
#[derive(Debug)]
struct Plain {
    total: u64,
    started: Instant,
    /// Slots done.
    done: AtomicU64,
    /// The last line printed; locked only to decide whether to print another.
    last: Mutex<Printed>,
}

/// When a plain line was printed (time since the start) and how many slots were
/// done then.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Printed {
    at: Duration,
    done: u64,
}

impl Plain {
    fn new(total: u64) -> Self {
        Plain {
            total,
            started: Instant::now(),
            done: AtomicU64::new(0),
            last: Mutex::new(Printed {
                at: Duration::ZERO,
                done: 0,
            }),
        }
    }

    /// Counts one more slot, done `now` after the start; returns the slots done if
    /// a line is due.
    fn slot_done(&self, now: Duration) -> Option<u64> {
        let done = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        // A thread that finds the lock taken skips the check: the holder is
        // deciding (or printing) already, and the next slot checks again.
        let mut last = self.last.try_lock().ok()?;
        if !due(*last, done, self.total, now) {
            return None;
        }
        *last = Printed { at: now, done };
        Some(done)
    }

    /// Slots done so far.
    fn done(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }
}

/// Whether a plain line is due with `done` of `total` slots at `now`, the last one
/// printed as `last`: at a new 10 % mark or [`EVERY`] after the last, but never
/// within [`MIN_GAP`] of it.
fn due(last: Printed, done: u64, total: u64, now: Duration) -> bool {
    let since = now.saturating_sub(last.at);
    let tenth = |d: u64| d.saturating_mul(10) / total.max(1);
    since >= MIN_GAP && (since >= EVERY || tenth(done) > tenth(last.done))
}

/// Whole per cent of `done` in `total`, rounded down.
fn percent(done: u64, total: u64) -> u64 {
    done.saturating_mul(100) / total.max(1)
}

/// `seconds` for a progress line: whole seconds under a minute (`12 s`), minutes
/// with one decimal from there (`1.5 min`), so that a short run does not read
/// `0.0 min`. The switch is where the seconds would round to 60.
fn duration(seconds: f64) -> String {
    if seconds < 59.5 {
        format!("{seconds:.0} s")
    } else {
        format!("{:.1} min", seconds / 60.0)
    }
}

/// A plain progress line: `done` of `total` slots after `elapsed`, and the time
/// left at the pace so far (the wording of the training loop's lines).
fn progress_line(command: &str, done: u64, total: u64, elapsed: Duration) -> String {
    let elapsed_s = elapsed.as_secs_f64();
    let left_s = elapsed_s / done.max(1) as f64 * total.saturating_sub(done) as f64;
    format!(
        "{command}: {done}/{total} slots ({} %), {}, about {} left",
        percent(done, total),
        duration(elapsed_s),
        duration(left_s)
    )
}

/// The last plain line of a sweep that finished: `done` of `total` slots in
/// `elapsed`.
fn finished_line(command: &str, done: u64, total: u64, elapsed: Duration) -> String {
    format!(
        "{command}: {done}/{total} slots ({} %) in {}",
        percent(done, total),
        duration(elapsed.as_secs_f64())
    )
}

/// The last line of a sweep that stopped short with `done` of `total` slots after
/// `elapsed`.
fn stopped_line(command: &str, done: u64, total: u64, elapsed: Duration) -> String {
    format!(
        "{command}: stopped at {done}/{total} slots ({} %) after {}",
        percent(done, total),
        duration(elapsed.as_secs_f64())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The slots (counted from 1) after which `plain` prints a line when slot k
    /// finishes at `at(k)`.
    fn printed_after(total: u64, at: impl Fn(u64) -> Duration) -> Vec<u64> {
        let plain = Plain::new(total);
        (1..=total)
            .filter(|&k| plain.slot_done(at(k)).is_some())
            .collect()
    }

    #[test]
    fn progress_lines_say_how_far_and_how_long() {
        // 2100 of 10500 slots in 90 s: 20 %, 1.5 min; 8400 left at 90/2100 s each
        // = 360 s = 6.0 min.
        assert_eq!(
            progress_line("compare", 2100, 10500, Duration::from_secs(90)),
            "compare: 2100/10500 slots (20 %), 1.5 min, about 6.0 min left"
        );
        // 1 of 3 is 33 %, rounded down; 2 left at 40 s each = 80 s = 1.33 min.
        assert_eq!(
            progress_line("frontier", 1, 3, Duration::from_secs(40)),
            "frontier: 1/3 slots (33 %), 40 s, about 1.3 min left"
        );
        // 300 of 400 in 12 s: 100 left at 0.04 s each = 4 s.
        assert_eq!(
            progress_line("evaluate", 300, 400, Duration::from_secs(12)),
            "evaluate: 300/400 slots (75 %), 12 s, about 4 s left"
        );
    }

    #[test]
    fn times_under_a_minute_are_in_seconds() {
        #[track_caller]
        fn check(ms: u64, expected: &str) {
            assert_eq!(duration(Duration::from_millis(ms).as_secs_f64()), expected);
        }
        check(0, "0 s");
        check(400, "0 s");
        check(12_000, "12 s");
        check(59_400, "59 s");
        // 59.5 s would round to "60 s": a minute already.
        check(59_500, "1.0 min");
        check(60_000, "1.0 min");
        check(90_000, "1.5 min");
        check(3_600_000, "60.0 min");
    }

    #[test]
    fn the_last_line_says_whether_the_sweep_finished_or_stopped() {
        // The slots counted by the plain state, timed by the injected clock.
        let plain = Plain::new(40);
        for k in 1..=40 {
            plain.slot_done(Duration::from_secs(k));
        }
        assert_eq!(plain.done(), 40);
        assert_eq!(
            finished_line("ship", plain.done(), plain.total, Duration::from_secs(48)),
            "ship: 40/40 slots (100 %) in 48 s"
        );
        assert_eq!(
            stopped_line("compare", 60, 400, Duration::from_secs(12)),
            "compare: stopped at 60/400 slots (15 %) after 12 s"
        );
        assert_eq!(
            stopped_line("frontier", 0, 400, Duration::from_secs(150)),
            "frontier: stopped at 0/400 slots (0 %) after 2.5 min"
        );
    }

    #[test]
    fn progress_lines_come_at_each_tenth_when_the_run_is_short() {
        // 1000 slots, one per 100 ms (100 s in all): a 10 % mark every 10 s, which
        // is more than MIN_GAP and less than EVERY.
        let printed = printed_after(1000, |k| Duration::from_millis(100 * k));
        assert_eq!(printed, [100, 200, 300, 400, 500, 600, 700, 800, 900, 1000]);
    }

    #[test]
    fn progress_lines_come_every_30_s_when_the_run_is_long() {
        // 1000 slots, one per second: the 10 % marks are 100 s apart, so a line
        // comes 30 s after the last one too.
        let printed = printed_after(1000, Duration::from_secs);
        let expected: Vec<u64> = (0..10)
            .flat_map(|tenth| [30, 60, 90, 100].map(|k| 100 * tenth + k))
            .collect();
        assert_eq!(printed, expected);
    }

    #[test]
    fn no_progress_line_within_5_s_of_the_last() {
        // 1000 slots in 1 s: no line at all before the last one of `finish`.
        assert_eq!(
            printed_after(1000, Duration::from_millis),
            Vec::<u64>::new()
        );
        // 1000 slots in 12 s (12 ms each): the 10 % mark at slot 417 (5.004 s)
        // is the first past MIN_GAP (slot 400 came at 4.8 s), the next at 834.
        assert_eq!(
            printed_after(1000, |k| Duration::from_millis(12 * k)),
            [417, 834]
        );
    }
}
