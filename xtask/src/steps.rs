//! Named, timed steps with a closing summary, so a long `cargo xtask test`
//! says clearly what ran, what failed and where the time went.

use std::time::{Duration, Instant};

use anyhow::Result;

/// How a step ended.
pub enum Outcome {
    Ok,
    Failed(String),
    Skipped(String),
}

/// The steps run so far.
#[derive(Default)]
pub struct Steps {
    done: Vec<(String, Duration, Outcome)>,
}

impl Steps {
    /// Run one step, announcing it and recording its time and outcome.
    /// Returns whether it succeeded.
    pub fn run(&mut self, name: &str, f: impl FnOnce() -> Result<()>) -> bool {
        println!("\n==> {name}");
        let start = Instant::now();
        let result = f();
        let took = start.elapsed();
        let ok = result.is_ok();
        let outcome = match result {
            Ok(()) => {
                println!("==> {name}: ok ({})", fmt(took));
                Outcome::Ok
            }
            Err(e) => {
                println!("==> {name}: FAILED ({}): {e:#}", fmt(took));
                Outcome::Failed(format!("{e:#}"))
            }
        };
        self.done.push((name.to_string(), took, outcome));
        ok
    }

    /// Record a step that did not run, and why.
    pub fn skip(&mut self, name: &str, why: &str) {
        println!("\n==> {name}: skipped: {why}");
        self.done.push((
            name.to_string(),
            Duration::ZERO,
            Outcome::Skipped(why.to_string()),
        ));
    }

    /// Whether any step failed.
    pub fn failed(&self) -> bool {
        self.done
            .iter()
            .any(|(_, _, o)| matches!(o, Outcome::Failed(_)))
    }

    /// Print the table of steps and the total time.
    pub fn summary(&self, total: Duration) {
        println!("\n==> summary");
        for (name, took, outcome) in &self.done {
            let (word, detail) = match outcome {
                Outcome::Ok => ("ok", String::new()),
                Outcome::Failed(e) => ("FAILED", format!("  {}", first_line(e))),
                Outcome::Skipped(why) => ("skipped", format!("  {why}")),
            };
            println!("  {word:<8} {:>9}  {name}{detail}", fmt(*took));
        }
        println!("  total    {:>9}", fmt(total));
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

/// `1.23s` or `2m05s`.
pub fn fmt(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 60.0 {
        format!("{s:.2}s")
    } else {
        format!("{}m{:02}s", d.as_secs() / 60, d.as_secs() % 60)
    }
}
