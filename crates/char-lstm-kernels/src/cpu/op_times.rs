//! The wall time of each fused CPU op in some work: `trainer bench`'s breakdown of a training
//! step on flex, which shows where a step's time goes without a profiler.

use std::cell::RefCell;
use std::time::{Duration, Instant};

/// One op's share of some work.
#[derive(Debug, Clone, PartialEq)]
pub struct OpTime {
    /// The op: `recurrence`, `projection`, `cross-entropy`, `dropout`, `adam` or `grad-norm`.
    pub op: &'static str,
    /// Its pass: `forward`, `backward` or (for the optimizer's ops) `step`.
    pub pass: &'static str,
    /// How often it ran.
    pub calls: usize,
    /// Its wall time in all.
    pub total: Duration,
}

thread_local! {
    /// The ops timed so far on this thread while [`time_cpu_ops`] runs; `None` otherwise.
    static RECORDED: RefCell<Option<Vec<OpTime>>> = const { RefCell::new(None) };
}

/// Runs `work` and returns, beside its result, the wall time of each fused CPU op it ran on
/// this thread, the longest first. An op's time includes its parallel work on the other cores;
/// ops that other threads call (the workers of a data-parallel step) are not counted, nor are
/// those of a `time_cpu_ops` nested inside `work`.
pub fn time_cpu_ops<R>(work: impl FnOnce() -> R) -> (R, Vec<OpTime>) {
    let outer = RECORDED.replace(Some(Vec::new()));
    let result = work();
    let mut times = RECORDED.replace(outer).unwrap_or_default();
    times.sort_by_key(|t| std::cmp::Reverse(t.total));
    (result, times)
}

/// Runs `body`, adding its wall time to op `op`'s pass `pass` while [`time_cpu_ops`] records on
/// this thread.
pub(crate) fn timed<R>(op: &'static str, pass: &'static str, body: impl FnOnce() -> R) -> R {
    if RECORDED.with_borrow(Option::is_none) {
        return body();
    }
    let start = Instant::now();
    let result = body();
    let elapsed = start.elapsed();
    RECORDED.with_borrow_mut(|recorded| {
        let Some(times) = recorded else { return };
        match times.iter_mut().find(|t| t.op == op && t.pass == pass) {
            Some(time) => {
                time.calls += 1;
                time.total += elapsed;
            }
            None => times.push(OpTime {
                op,
                pass,
                calls: 1,
                total: elapsed,
            }),
        }
    });
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread::sleep;

    /// Each op and pass gets its own entry with its calls and at least the time it slept, the
    /// longest first; nothing is recorded outside `time_cpu_ops`, on other threads, or for the
    /// outer call while a nested one runs.
    #[test]
    fn ops_are_timed_only_inside_time_cpu_ops_on_its_thread() {
        let nap = Duration::from_millis(2);
        timed("recurrence", "forward", || sleep(nap));
        let (value, times) = time_cpu_ops(|| {
            for _ in 0..3 {
                timed("recurrence", "forward", || sleep(nap));
            }
            timed("recurrence", "backward", || sleep(nap));
            std::thread::spawn(move || timed("adam", "step", || sleep(nap)))
                .join()
                .unwrap();
            let (_, inner) = time_cpu_ops(|| timed("projection", "forward", || sleep(nap)));
            assert_eq!(inner.len(), 1);
            42
        });
        assert_eq!(value, 42);
        let summary: Vec<_> = times.iter().map(|t| (t.op, t.pass, t.calls)).collect();
        assert_eq!(
            summary,
            [("recurrence", "forward", 3), ("recurrence", "backward", 1)]
        );
        assert!(times[0].total >= 3 * nap && times[1].total >= nap);
        let (_, after) = time_cpu_ops(|| ());
        assert!(after.is_empty());
    }
}
