//! `wcp-bench`: execs each case the way the kubelet does (fresh process,
//! request on stdin, stdout read after exit), interleaving the cases round
//! by round so that machine noise hits them alike, and prints median and
//! p95 wall time and peak RSS with the ratio to the first case (the native
//! baseline). Not a test: nothing here asserts a time.

use anyhow::{Context, Result, bail};
use clap::Parser;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    /// Execs per case.
    #[arg(long, default_value_t = 50)]
    runs: usize,
    /// Request JSON written to each exec's stdin.
    #[arg(long)]
    request: String,
    /// Cases as NAME=COMMAND (COMMAND split on spaces); the first is the baseline.
    #[arg(long = "case", required = true)]
    cases: Vec<String>,
    /// A second baseline (a case name, e.g. the Go provider): the table gets
    /// a column with each median's ratio to that case's median too.
    #[arg(long = "ratio-to")]
    ratio_to: Option<String>,
    /// Also run N copies of each case at once and report the total wall time.
    #[arg(long, default_value_t = 50)]
    concurrent: usize,
    /// Also measure with the page cache cold: before every exec, evict each
    /// case's binary and these files (posix_fadvise DONTNEED), as after a
    /// long idle on a node.
    #[arg(long = "evict")]
    evict: Vec<String>,
}

struct Case {
    name: String,
    argv: Vec<String>,
    wall: Vec<Duration>,
    rss_kib: Vec<i64>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let mut cases: Vec<Case> = parse_cases(&args)?;
    run_rounds(&mut cases, &args, false)?;
    print_table(&cases, &args, "warm page cache", true)?;
    if !args.evict.is_empty() {
        let mut cold = parse_cases(&args)?;
        run_rounds(&mut cold, &args, true)?;
        print_table(
            &cold,
            &args,
            "cold page cache (binary and listed files evicted before every exec)",
            false,
        )?;
    }
    Ok(())
}

fn parse_cases(args: &Args) -> Result<Vec<Case>> {
    args.cases
        .iter()
        .map(|spec| {
            let (name, command) = spec.split_once('=').context("case must be NAME=COMMAND")?;
            Ok(Case {
                name: name.to_string(),
                argv: command.split(' ').map(str::to_string).collect(),
                wall: Vec::new(),
                rss_kib: Vec::new(),
            })
        })
        .collect()
}

fn run_rounds(cases: &mut [Case], args: &Args, cold: bool) -> Result<()> {
    // One warm-up round, not counted.
    for case in cases.iter() {
        exec(&case.argv, args.request.as_bytes())?;
    }
    for _ in 0..args.runs {
        for case in cases.iter_mut() {
            if cold {
                evict(&case.argv[0])?;
                for file in &args.evict {
                    evict(file)?;
                }
            }
            let (wall, rss) = exec(&case.argv, args.request.as_bytes())?;
            case.wall.push(wall);
            case.rss_kib.push(rss);
        }
    }
    Ok(())
}

/// Drops a file's pages from the page cache.
fn evict(path: &str) -> Result<()> {
    use std::os::fd::AsRawFd;
    let file = std::fs::File::open(path).with_context(|| format!("open {path}"))?;
    // SAFETY: a plain advisory call on a file descriptor we own.
    let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    if rc != 0 {
        bail!("posix_fadvise({path}) failed: {rc}");
    }
    Ok(())
}

fn print_table(cases: &[Case], args: &Args, title: &str, with_concurrent: bool) -> Result<()> {
    let base = median(&cases[0].wall);
    let second = match &args.ratio_to {
        Some(name) => Some(
            cases
                .iter()
                .find(|c| &c.name == name)
                .with_context(|| format!("--ratio-to {name}: no case of that name"))?,
        ),
        None => None,
    };
    println!("\n{title}");
    println!(
        "{:<44} {:>10} {:>10} {:>8} {:>8} {:>12} {:>16}",
        "case",
        "median",
        "p95",
        "ratio",
        if second.is_some() { "vs ref" } else { "" },
        "peak RSS",
        format!("{}x concurrent", args.concurrent)
    );
    for case in cases {
        let concurrent = if with_concurrent {
            format!(
                "{:.1}ms",
                ms(concurrent_wall(
                    &case.argv,
                    args.request.as_bytes(),
                    args.concurrent
                )?)
            )
        } else {
            "-".to_string()
        };
        let med = median(&case.wall);
        let vs_second = match second {
            Some(s) => format!("{:.2}x", med.as_secs_f64() / median(&s.wall).as_secs_f64()),
            None => String::new(),
        };
        println!(
            "{:<44} {:>8.2}ms {:>8.2}ms {:>7.2}x {:>8} {:>8} KiB {:>16}",
            case.name,
            ms(med),
            ms(percentile(&case.wall, 95)),
            med.as_secs_f64() / base.as_secs_f64(),
            vs_second,
            median_i64(&case.rss_kib),
            concurrent,
        );
    }
    println!(
        "({} interleaved execs per case after one warm-up round; ratio = median / median of '{}'{})",
        args.runs,
        cases[0].name,
        match second {
            Some(s) => format!("; vs ref = median / median of '{}'", s.name),
            None => String::new(),
        }
    );
    Ok(())
}

/// Runs one exec; returns wall time and the child's peak RSS (KiB).
fn exec(argv: &[String], input: &[u8]) -> Result<(Duration, i64)> {
    let start = Instant::now();
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("spawn {}", argv[0]))?;
    child.stdin.take().unwrap().write_all(input)?;
    let pid = child.id() as libc::pid_t;
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let mut err = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stdout, &mut out);
        let _ = std::io::Read::read_to_end(&mut stderr, &mut err);
        (out, err)
    });
    let mut status = 0;
    // SAFETY: `usage` is a plain C struct that wait4 fills in; `pid` is our child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = start.elapsed();
    let (out, err) = reader.join().unwrap();
    if rc != pid {
        bail!("wait4 failed for {}", argv[0]);
    }
    let status = std::process::ExitStatus::from_raw(status);
    if !status.success() || out.is_empty() {
        bail!(
            "{} failed: {status}: {}",
            argv.join(" "),
            String::from_utf8_lossy(&err)
        );
    }
    Ok((wall, usage.ru_maxrss))
}

fn concurrent_wall(argv: &[String], input: &[u8], n: usize) -> Result<Duration> {
    if n == 0 {
        return Ok(Duration::ZERO);
    }
    let start = Instant::now();
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let argv = argv.to_vec();
            let input = input.to_vec();
            std::thread::spawn(move || exec(&argv, &input).map(|_| ()))
        })
        .collect();
    for h in handles {
        h.join().unwrap()?;
    }
    Ok(start.elapsed())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(v: &[Duration]) -> Duration {
    percentile(v, 50)
}

fn percentile(v: &[Duration], p: usize) -> Duration {
    let mut s = v.to_vec();
    s.sort();
    s[((s.len() - 1) * p) / 100]
}

fn median_i64(v: &[i64]) -> i64 {
    let mut s = v.to_vec();
    s.sort();
    s[s.len() / 2]
}
