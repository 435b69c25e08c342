//! A writer killed with SIGKILL at a random moment loses no change it had acknowledged. The test runs
//! itself again as the writer: the child is this test binary, filtered to this test, with
//! [`CHILD_DIR`] set.

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    os::unix::process::ExitStatusExt as _,
    path::Path,
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use rand::{RngExt as _, SeedableRng as _, rngs::StdRng};

use super::{
    Overrides, Store,
    tests::{TempDir, an_override},
};

/// Set in the child: the store's directory.
const CHILD_DIR: &str = "OPENGSLB_STORE_CRASH_DIR";
/// Set in the child: which round it is, so each round writes keys of its own.
const CHILD_ROUND: &str = "OPENGSLB_STORE_CRASH_ROUND";
/// The child's bounds: it stops after this many writes or this long, killed or not.
const CHILD_WRITES: u16 = 20_000;
const CHILD_TIME: Duration = Duration::from_secs(20);
const ROUNDS: u16 = 3;

/// The record of write `i` in `round`: its port says which write it is, its address which round.
fn record(round: u16, i: u16) -> super::OverrideRecord {
    let mut r = an_override(&format!("10.0.{round}.1"), i.is_multiple_of(2));
    r.backend.port = i;
    r.at_ms = u64::from(i);
    r
}

#[test]
fn acknowledged_changes_survive_sigkill() {
    if let Some(dir) = std::env::var_os(CHILD_DIR) {
        let round = std::env::var(CHILD_ROUND).unwrap().parse().unwrap();
        write_until_killed(Path::new(&dir), round);
        return;
    }
    let dir = TempDir::new("crash");
    let seed: u64 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    // Printed so a failure can be replayed with this seed.
    println!("crash test seed {seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut last_seq = 0;
    for round in 0..ROUNDS {
        let delay = Duration::from_millis(rng.random_range(5..400));
        let (acks, status, stderr) = run_child(dir.path(), round, delay);
        assert_eq!(
            status.signal(),
            Some(libc::SIGKILL),
            "round {round}: the writer ended by itself ({status}): {stderr}"
        );
        assert!(!acks.is_empty(), "round {round}: nothing acknowledged");
        let store = Store::open(dir.path()).unwrap();
        for &(i, seq) in &acks {
            let key = record(round, i).backend;
            assert_eq!(
                store.get::<Overrides>(&key).unwrap(),
                Some(record(round, i)),
                "seed {seed} round {round}: acknowledged write {i} (change {seq}) lost"
            );
            assert!(seq > last_seq, "change numbers go up across restarts");
            last_seq = seq;
        }
        // At most the one write in flight when it was killed may be there unacknowledged.
        let written = store.list::<Overrides>().unwrap();
        let this_round = written
            .iter()
            .filter(|r| r.backend.address == record(round, 0).backend.address)
            .count();
        assert!(
            (acks.len()..=acks.len() + 1).contains(&this_round),
            "seed {seed} round {round}: {this_round} records for {} acknowledged",
            acks.len()
        );
        assert!(store.seq().unwrap() >= last_seq);
        println!(
            "round {round}: killed after {delay:?}, {} writes acknowledged",
            acks.len()
        );
    }
}

/// Runs the writer, kills it `delay` after its first acknowledgement, and returns what it acknowledged
/// (write, change number), how it ended, and its stderr.
fn run_child(
    dir: &Path,
    round: u16,
    delay: Duration,
) -> (Vec<(u16, u64)>, std::process::ExitStatus, String) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "store::crash_tests::acknowledged_changes_survive_sigkill",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, dir)
        .env(CHILD_ROUND, round.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut acks = Vec::new();
    let first = Instant::now() + CHILD_TIME;
    let mut kill_at = None;
    loop {
        let until = kill_at.unwrap_or(first);
        let Some(wait) = until.checked_duration_since(Instant::now()) else {
            break;
        };
        match rx.recv_timeout(wait) {
            Ok(line) => {
                if let Some(ack) = parse_ack(&line) {
                    acks.push(ack);
                    kill_at.get_or_insert_with(|| Instant::now() + delay);
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => break,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    // `Child::kill` sends SIGKILL: no destructor, no flush, no clean close of the store.
    let _ = child.kill();
    let status = child.wait().unwrap();
    reader.join().unwrap();
    // What the child printed before it died was acknowledged too.
    acks.extend(rx.try_iter().filter_map(|l| parse_ack(&l)));
    let mut stderr = String::new();
    let _ = child.stderr.take().unwrap().read_to_string(&mut stderr);
    (acks, status, stderr)
}

fn parse_ack(line: &str) -> Option<(u16, u64)> {
    // The first one follows libtest's `test ... ` on the same line.
    let rest = &line[line.find("ack ")? + 4..];
    let (i, seq) = rest.split_once(' ')?;
    Some((i.parse().ok()?, seq.parse().ok()?))
}

/// The child: writes records one by one, printing each only once `put` has returned.
fn write_until_killed(dir: &Path, round: u16) {
    let store = Store::open(dir).unwrap();
    let end = Instant::now() + CHILD_TIME;
    let mut out = std::io::stdout().lock();
    for i in 0..CHILD_WRITES {
        if Instant::now() > end {
            break;
        }
        let seq = store.put::<Overrides>(&record(round, i)).unwrap();
        writeln!(out, "ack {i} {seq}").unwrap();
        out.flush().unwrap();
    }
}
