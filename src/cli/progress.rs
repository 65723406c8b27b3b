//! Progress bars, all in this one place: drawn on stderr only when stderr is a terminal and
//! `--quiet` is off, so pipes, logs and CI output stay clean.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use minitls::transfer::Progress;

/// The label (name, and a tree's file counter) is made by [`label`], never cut by the
/// template; rate and ETA are ours too ([`network_rate`]): indicatif's own would count the
/// bytes a resumed file already had as if they had just arrived.
const TEMPLATE: &str = "{msg} [{bar:30.cyan/blue}] {bytes}/{total_bytes} {net_rate} ETA {net_eta}";

/// The `network_name` of bars for several files at once (see [`Bars::new`]).
pub const ANY_NAME: &str = "*";

/// At most this many characters of a name are shown beside a bar.
const NAME_WIDTH: usize = 24;

/// Shows transfer progress (bytes, rate, ETA) for one file at a time, and holds a fetch to
/// `--limit-rate`.
pub struct Bars {
    enabled: bool,
    bar: Option<ProgressBar>,
    name: String,
    /// The name the library gives the phase that receives (the local name of the file or
    /// tree); other phases (hashing a partial file before resuming) read the local disk and
    /// are neither limited nor counted as network bytes.
    network_name: String,
    /// For a single file, the first `advance` of the receiving phase is what a resumed file
    /// already had on disk (the library reports it before any byte is received): it moves the
    /// bar but is not counted in the rate, nor limited. Trees are never resumed.
    single_file: bool,
    in_network: bool,
    awaiting_offset: bool,
    /// Bytes of the current bar that did not cross the network.
    offset: Arc<AtomicU64>,
    limit: Option<RateLimit>,
}

impl Bars {
    /// Bars that draw only if `!quiet` and stderr is a terminal, for the fetch of a file or
    /// tree whose local name is `network_name` (`single_file` without `-r`), at most
    /// `limit` bytes per second if given.
    pub fn new(quiet: bool, network_name: &str, single_file: bool, limit: Option<u64>) -> Self {
        Self {
            enabled: !quiet && std::io::stderr().is_terminal(),
            bar: None,
            name: String::new(),
            network_name: network_name.to_string(),
            single_file,
            in_network: false,
            awaiting_offset: false,
            offset: Arc::new(AtomicU64::new(0)),
            limit: limit.map(RateLimit::new),
        }
    }

    fn style(&self) -> Option<ProgressStyle> {
        let rate_offset = self.offset.clone();
        let eta_offset = self.offset.clone();
        // The template is a constant; if indicatif ever rejects it, a plain bar still works.
        let style = ProgressStyle::with_template(TEMPLATE).ok()?;
        Some(
            style
                .with_key(
                    "net_rate",
                    move |s: &ProgressState, w: &mut dyn std::fmt::Write| {
                        let net = s.pos().saturating_sub(rate_offset.load(Ordering::Relaxed));
                        if let Some(rate) = network_rate(net, s.elapsed()) {
                            let _ = write!(w, "{}/s", human_bytes(rate as u64));
                        }
                    },
                )
                .with_key(
                    "net_eta",
                    move |s: &ProgressState, w: &mut dyn std::fmt::Write| {
                        let net = s.pos().saturating_sub(eta_offset.load(Ordering::Relaxed));
                        let left = s.len().unwrap_or(0).saturating_sub(s.pos());
                        match network_rate(net, s.elapsed()) {
                            Some(rate) if rate > 0.0 => {
                                let _ = write!(w, "{}", short_duration(left as f64 / rate));
                            }
                            _ => {
                                let _ = write!(w, "-");
                            }
                        }
                    },
                )
                .progress_chars("=> "),
        )
    }
}

impl Progress for Bars {
    fn begin(&mut self, name: &str, total: u64) {
        self.end();
        // "*": every phase that is not the check of a partial file (several paths at once).
        self.in_network = name == self.network_name
            || (self.network_name == ANY_NAME && !name.starts_with("checking "));
        self.awaiting_offset = self.in_network && self.single_file;
        if let Some(limit) = &mut self.limit {
            limit.restart();
        }
        if !self.enabled {
            return;
        }
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        self.offset.store(0, Ordering::Relaxed);
        if let Some(style) = self.style() {
            bar.set_style(style);
        }
        self.name = super::error::printable(name);
        bar.set_message(label(&self.name, None));
        self.bar = Some(bar);
    }

    /// Trees: "NAME 123/10000" files done of the total, beside the byte bar.
    fn file_done(&mut self, done: u64, total: u64) {
        if let Some(bar) = &self.bar {
            bar.set_message(label(&self.name, Some((done, total))));
        }
    }

    fn advance(&mut self, bytes: u64) {
        let offset = std::mem::take(&mut self.awaiting_offset);
        if let Some(bar) = &self.bar {
            if offset {
                self.offset.store(bytes, Ordering::Relaxed);
            }
            bar.inc(bytes);
        }
        if self.in_network
            && !offset
            && let Some(limit) = &mut self.limit
        {
            limit.wait(bytes);
        }
    }

    fn end(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Bars {
    fn drop(&mut self) {
        // A transfer that failed halfway must not leave a half-drawn bar above the error line.
        self.end();
    }
}

/// `--limit-rate`: after each record, sleeps until the bytes received so far could not
/// have come faster than the limit. Not reading holds the server back through TCP's flow
/// control, as curl does; nothing changes on the wire.
struct RateLimit {
    bytes_per_sec: u64,
    start: Instant,
    counted: u64,
}

impl RateLimit {
    fn new(bytes_per_sec: u64) -> Self {
        Self {
            bytes_per_sec: bytes_per_sec.max(1),
            start: Instant::now(),
            counted: 0,
        }
    }

    fn restart(&mut self) {
        self.start = Instant::now();
        self.counted = 0;
    }

    fn wait(&mut self, bytes: u64) {
        self.counted += bytes;
        let due = Duration::from_secs_f64(self.counted as f64 / self.bytes_per_sec as f64);
        if let Some(early) = due.checked_sub(self.start.elapsed()) {
            std::thread::sleep(early);
        }
    }
}

/// The smallest `--limit-rate`: a record (up to 256 KiB) must arrive well within the server's
/// default 60 s idle timeout, or it would hang up on a client that reads this slowly.
pub const MIN_RATE: u64 = 8 * 1024;

/// Parses a rate as curl's `--limit-rate` takes it: bytes per second, or with a suffix
/// K, M, G (powers of 1,024; either case), optionally a fraction: `100K`, `1.5M`.
pub fn parse_rate(text: &str) -> Result<u64, String> {
    let rate = parse_size(text)
        .map_err(|_| format!("'{text}': give bytes per second, e.g. 500K, 2M or 1G"))?;
    if rate < MIN_RATE {
        return Err(format!(
            "'{text}' is below the smallest rate, 8K (the server hangs up on a client that \
             takes over 60 s for one 256 KiB record)"
        ));
    }
    Ok(rate)
}

/// Parses a size: bytes, or with a suffix K, M, G, T (powers of 1,024; either case; `KiB`,
/// `MB` read the same), optionally a fraction: `4G`, `1.5M` (`serve --max-upload-size`, and
/// the rate of `--limit-rate`).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let (number, unit) = match t.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => t.split_at(i),
        None => (t, ""),
    };
    let unit = unit.to_ascii_uppercase();
    let unit = unit.trim_end_matches("IB").trim_end_matches('B');
    let scale: f64 = match unit {
        "" => 1.0,
        "K" => 1024.0,
        "M" => 1024.0 * 1024.0,
        "G" => 1024.0 * 1024.0 * 1024.0,
        "T" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return Err(format!("'{text}': give a size, e.g. 500K, 2M or 4G")),
    };
    let value: f64 = number
        .trim()
        .parse()
        .ok()
        .filter(|v: &f64| v.is_finite() && *v >= 0.0)
        .ok_or_else(|| format!("'{text}': give a size, e.g. 500K, 2M or 4G"))?;
    let bytes = value * scale;
    if bytes >= u64::MAX as f64 {
        return Err(format!("'{text}' is too large"));
    }
    Ok(bytes as u64)
}

/// The text beside a bar: the name, shortened from the front to [`NAME_WIDTH`] characters
/// ("…" then its end, which tells files apart), then a tree's counter, which is never cut.
pub fn label(name: &str, counter: Option<(u64, u64)>) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = if chars.len() > NAME_WIDTH {
        let tail: String = chars[chars.len() - (NAME_WIDTH - 1)..].iter().collect();
        format!("…{tail}")
    } else {
        name.to_string()
    };
    if let Some((done, total)) = counter {
        out.push_str(&format!(" {done}/{total}"));
    }
    out
}

/// Bytes per second that crossed the network, once there is enough time to say.
pub fn network_rate(network_bytes: u64, elapsed: Duration) -> Option<f64> {
    let secs = elapsed.as_secs_f64();
    (secs >= 0.05).then(|| network_bytes as f64 / secs)
}

/// `62 B`, `1.5 KiB`, `96.0 MiB`, `1.0 GiB` (powers of 1,024, one decimal).
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// `0.42 s`, `12.3 s`, `4m05s`, `1h02m`.
pub fn short_duration(secs: f64) -> String {
    if !secs.is_finite() || secs < 0.0 {
        return "-".to_string();
    }
    if secs < 10.0 {
        format!("{secs:.2} s")
    } else if secs < 60.0 {
        format!("{secs:.1} s")
    } else if secs < 3600.0 {
        let s = secs as u64;
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        let s = secs as u64;
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    }
}

/// A spinner for slow work without a byte count (RSA key generation); cleared on drop.
pub struct Spinner(Option<ProgressBar>);

impl Spinner {
    /// Shows `msg` with a spinner if `!quiet` and stderr is a terminal.
    pub fn new(quiet: bool, msg: &str) -> Self {
        if quiet || !std::io::stderr().is_terminal() {
            return Self(None);
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(ProgressStyle::default_spinner());
        bar.set_message(msg.to_string());
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        Self(Some(bar))
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        if let Some(bar) = self.0.take() {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_name_is_shortened_from_the_front_and_the_counter_is_always_shown() {
        let long = "a-very-long-directory-name-of-a-tree";
        let l = label(long, Some((123, 10_000)));
        assert!(l.ends_with(" 123/10000"), "{l}");
        assert!(l.starts_with('…'), "{l}");
        assert!(l.contains("name-of-a-tree"), "{l}");
        assert_eq!(l.chars().count(), NAME_WIDTH + " 123/10000".len());
        assert_eq!(label("docs", Some((1, 2))), "docs 1/2");
        assert_eq!(label("hello.txt", None), "hello.txt");
    }

    #[test]
    fn rates_are_read_as_curl_reads_them() {
        assert_eq!(parse_rate("100K"), Ok(100 * 1024));
        assert_eq!(parse_rate("1m"), Ok(1 << 20));
        assert_eq!(parse_rate("1.5M"), Ok(3 << 19));
        assert_eq!(parse_rate("2G"), Ok(2 << 30));
        assert_eq!(parse_rate("65536"), Ok(65536));
        assert!(parse_rate("10X").is_err());
        assert_eq!(parse_size("4G"), Ok(4 << 30));
        assert_eq!(parse_size("1T"), Ok(1 << 40));
        assert_eq!(parse_size("10 MiB"), Ok(10 << 20));
        assert_eq!(parse_size("512kb"), Ok(512 << 10));
        assert_eq!(parse_size("0"), Ok(0));
        assert!(parse_size("-1").is_err() && parse_size("1X").is_err() && parse_size("").is_err());
        assert!(parse_rate("K").is_err());
        assert!(parse_rate("-1M").is_err());
        assert!(parse_rate("1K").unwrap_err().contains("smallest"));
    }

    #[test]
    fn a_rate_limit_holds_the_average_to_the_limit() {
        let mut l = RateLimit::new(1 << 20);
        let start = Instant::now();
        l.wait(256 << 10);
        l.wait(256 << 10);
        assert!(start.elapsed() >= Duration::from_millis(500));
    }

    #[test]
    fn the_rate_counts_only_network_bytes_and_waits_for_enough_time() {
        assert_eq!(network_rate(1_000, Duration::from_millis(10)), None);
        assert_eq!(network_rate(1_000, Duration::from_secs(2)), Some(500.0));
    }

    #[test]
    fn sizes_and_durations_read_like_a_person_writes_them() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(96 << 20), "96.0 MiB");
        assert_eq!(human_bytes(u64::MAX), "16.0 EiB");
        assert_eq!(short_duration(0.421), "0.42 s");
        assert_eq!(short_duration(12.34), "12.3 s");
        assert_eq!(short_duration(245.0), "4m05s");
        assert_eq!(short_duration(3720.0), "1h02m");
        assert_eq!(short_duration(f64::NAN), "-");
    }
}
