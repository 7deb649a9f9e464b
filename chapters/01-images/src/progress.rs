//! Showing long work: a progress bar per layer on a terminal, plain lines
//! in a pipe or a log (bars would fill a log file with control codes).

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

/// The progress display of one pull.
pub struct Progress {
    bars: Option<MultiProgress>,
}

/// The progress of one layer.
pub struct Task {
    label: String,
    bar: Option<ProgressBar>,
}

impl Progress {
    /// Bars when stdout is a terminal, lines otherwise.
    pub fn new() -> Progress {
        let bars = std::io::stdout()
            .is_terminal()
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stdout()));
        Progress { bars }
    }

    /// Starts a line (or bar) for `label`, e.g. a layer's short digest.
    pub fn task(&self, label: &str, total: u64) -> Task {
        let bar = self.bars.as_ref().map(|bars| {
            let bar = bars.add(ProgressBar::new(total));
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix}: {msg:<12} [{bar:30}] {bytes}/{total_bytes}",
                )
                .expect("a valid template")
                .progress_chars("=> "),
            );
            bar.set_prefix(label.to_string());
            bar.set_message("Downloading");
            bar
        });
        Task {
            label: label.to_string(),
            bar,
        }
    }

    /// A line that is not about one task.
    pub fn println(&self, line: &str) {
        match &self.bars {
            Some(bars) => {
                let _ = bars.println(line);
            }
            None => println!("{line}"),
        }
    }
}

impl Default for Progress {
    fn default() -> Self {
        Progress::new()
    }
}

impl Task {
    pub fn advance(&self, bytes: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(bytes);
        }
    }

    /// Restarts the count (a retried download starts from zero).
    pub fn reset(&self) {
        if let Some(bar) = &self.bar {
            bar.set_position(0);
        }
    }

    /// Ends the task with a final status, e.g. "Pull complete".
    pub fn finish(&self, status: &str) {
        match &self.bar {
            Some(bar) => {
                bar.set_style(
                    ProgressStyle::with_template("{prefix}: {msg}").expect("a valid template"),
                );
                bar.finish_with_message(status.to_string());
            }
            None => println!("{}: {status}", self.label),
        }
    }
}
