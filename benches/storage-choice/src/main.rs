//! Embedded DB benchmark for a Web Push message store.
//! Engines: redb (Durability::Immediate), fjall (WriteBatch + PersistMode::SyncAll),
//! sqlite (rusqlite bundled, WAL, synchronous=FULL) and sqlite-normal (WAL, synchronous=NORMAL).
//!
//! Key layout (40 bytes): uaid(16) | channel_id(16) | sortkey(u64 big endian)
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

type Kv = (Vec<u8>, Vec<u8>);

// ---------------------------------------------------------------- helpers
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545F4914F6CDD1D)
    }
    fn fill(&mut self, buf: &mut [u8]) {
        for c in buf.chunks_mut(8) {
            let x = self.next().to_le_bytes();
            c.copy_from_slice(&x[..c.len()]);
        }
    }
}

fn uaid(user: u64) -> [u8; 16] {
    // deterministic pseudo-random 16-byte uaid per user index
    let mut r = Rng(user.wrapping_mul(0x9E3779B97F4A7C15) | 1);
    let mut u = [0u8; 16];
    r.next();
    r.fill(&mut u);
    u
}

fn key(user: u64, chan: u8, sort: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(40);
    k.extend_from_slice(&uaid(user));
    k.extend_from_slice(&[chan; 16]);
    k.extend_from_slice(&sort.to_be_bytes());
    k
}

fn prefix_bounds(user: u64) -> (Vec<u8>, Vec<u8>) {
    let u = uaid(user);
    let mut lo = u.to_vec();
    lo.extend_from_slice(&[0u8; 24]);
    let mut hi = u.to_vec();
    hi.extend_from_slice(&[0xffu8; 24]);
    (lo, hi)
}

fn pct(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    if v.is_empty() {
        return 0.0;
    }
    let idx = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[idx].as_secs_f64() * 1000.0
}

fn vm_hwm_kb() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    for l in s.lines() {
        if let Some(r) = l.strip_prefix("VmHWM:") {
            return r.trim().trim_end_matches("kB").trim().parse().unwrap();
        }
    }
    0
}

fn dir_size(p: &Path) -> u64 {
    let mut n = 0;
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            let m = e.metadata().unwrap();
            if m.is_dir() {
                n += dir_size(&e.path());
            } else {
                n += m.len();
            }
        }
    }
    n
}

// ---------------------------------------------------------------- engine abstraction
trait Store {
    /// one durable transaction: all inserts + deletes, fsynced before return
    fn commit(&mut self, ins: &[Kv], del: &[Vec<u8>]);
    /// all entries with lo <= key <= hi; returns (count, value bytes)
    fn range(&self, lo: &[u8], hi: &[u8]) -> (usize, usize);
    fn scan_all(&self) -> (usize, usize);
    /// iterate whole DB calling f(key,value_len)
    fn for_each(&self, f: &mut dyn FnMut(&[u8], usize));
}

// redb ---------------------------------------------------------------
const T: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("m");
struct Redb(redb::Database);
impl Redb {
    fn open(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let db = redb::Database::create(dir.join("db.redb")).unwrap();
        let tx = db.begin_write().unwrap();
        tx.open_table(T).unwrap();
        tx.commit().unwrap();
        Redb(db)
    }
}
impl Store for Redb {
    fn commit(&mut self, ins: &[Kv], del: &[Vec<u8>]) {
        let mut tx = self.0.begin_write().unwrap();
        tx.set_durability(redb::Durability::Immediate).unwrap();
        {
            let mut t = tx.open_table(T).unwrap();
            for (k, v) in ins {
                t.insert(k.as_slice(), v.as_slice()).unwrap();
            }
            for k in del {
                t.remove(k.as_slice()).unwrap();
            }
        }
        tx.commit().unwrap();
    }
    fn range(&self, lo: &[u8], hi: &[u8]) -> (usize, usize) {
        use redb::{ReadableDatabase, ReadableTable};
        let rt = self.0.begin_read().unwrap();
        let t = rt.open_table(T).unwrap();
        let (mut n, mut b) = (0, 0);
        for r in t.range::<&[u8]>(lo..=hi).unwrap() {
            let (_k, v) = r.unwrap();
            n += 1;
            b += v.value().len();
        }
        (n, b)
    }
    fn scan_all(&self) -> (usize, usize) {
        let (mut n, mut b) = (0, 0);
        self.for_each(&mut |_, l| {
            n += 1;
            b += l
        });
        (n, b)
    }
    fn for_each(&self, f: &mut dyn FnMut(&[u8], usize)) {
        use redb::{ReadableDatabase, ReadableTable};
        let rt = self.0.begin_read().unwrap();
        let t = rt.open_table(T).unwrap();
        for r in t.iter().unwrap() {
            let (k, v) = r.unwrap();
            f(k.value(), v.value().len());
        }
    }
}

// fjall --------------------------------------------------------------
struct Fjall {
    db: fjall::Database,
    ks: fjall::Keyspace,
}
impl Fjall {
    fn open(dir: &Path) -> Self {
        let db = fjall::Database::builder(dir).open().unwrap();
        let ks = db.keyspace("m", fjall::KeyspaceCreateOptions::default).unwrap();
        Fjall { db, ks }
    }
}
impl Store for Fjall {
    fn commit(&mut self, ins: &[Kv], del: &[Vec<u8>]) {
        let mut b = self.db.batch().durability(Some(fjall::PersistMode::SyncAll));
        for (k, v) in ins {
            b.insert(&self.ks, k.as_slice(), v.as_slice());
        }
        for k in del {
            b.remove(&self.ks, k.as_slice());
        }
        b.commit().unwrap();
    }
    fn range(&self, lo: &[u8], hi: &[u8]) -> (usize, usize) {
        let (mut n, mut b) = (0, 0);
        for g in self.ks.range(lo..=hi) {
            let (_k, v) = g.into_inner().unwrap();
            n += 1;
            b += v.len();
        }
        (n, b)
    }
    fn scan_all(&self) -> (usize, usize) {
        let (mut n, mut b) = (0, 0);
        self.for_each(&mut |_, l| {
            n += 1;
            b += l
        });
        (n, b)
    }
    fn for_each(&self, f: &mut dyn FnMut(&[u8], usize)) {
        for g in self.ks.iter() {
            let (k, v) = g.into_inner().unwrap();
            f(&k, v.len());
        }
    }
}

// sqlite -------------------------------------------------------------
struct Sqlite(rusqlite::Connection);
impl Sqlite {
    fn open(dir: &Path, sync: &str) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let c = rusqlite::Connection::open(dir.join("db.sqlite")).unwrap();
        c.query_row("PRAGMA journal_mode=WAL", [], |_r| Ok(())).unwrap();
        c.execute_batch(&format!(
            "PRAGMA synchronous={sync};
             CREATE TABLE IF NOT EXISTS m(k BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID;"
        ))
        .unwrap();
        Sqlite(c)
    }
}
impl Store for Sqlite {
    fn commit(&mut self, ins: &[Kv], del: &[Vec<u8>]) {
        let tx = self.0.transaction().unwrap();
        {
            let mut st = tx.prepare_cached("INSERT OR REPLACE INTO m(k,v) VALUES(?1,?2)").unwrap();
            for (k, v) in ins {
                st.execute((k, v)).unwrap();
            }
            let mut sd = tx.prepare_cached("DELETE FROM m WHERE k=?1").unwrap();
            for k in del {
                sd.execute([k]).unwrap();
            }
        }
        tx.commit().unwrap();
    }
    fn range(&self, lo: &[u8], hi: &[u8]) -> (usize, usize) {
        let mut st = self.0.prepare_cached("SELECT k, v FROM m WHERE k BETWEEN ?1 AND ?2 ORDER BY k").unwrap();
        let mut rows = st.query((lo, hi)).unwrap();
        let (mut n, mut b) = (0, 0);
        while let Some(r) = rows.next().unwrap() {
            let v = r.get_ref(1).unwrap().as_blob().unwrap();
            n += 1;
            b += v.len();
        }
        (n, b)
    }
    fn scan_all(&self) -> (usize, usize) {
        let (mut n, mut b) = (0, 0);
        self.for_each(&mut |_, l| {
            n += 1;
            b += l
        });
        (n, b)
    }
    fn for_each(&self, f: &mut dyn FnMut(&[u8], usize)) {
        let mut st = self.0.prepare_cached("SELECT k, v FROM m ORDER BY k").unwrap();
        let mut rows = st.query([]).unwrap();
        while let Some(r) = rows.next().unwrap() {
            let k = r.get_ref(0).unwrap().as_blob().unwrap();
            let v = r.get_ref(1).unwrap().as_blob().unwrap();
            f(k, v.len());
        }
    }
}

fn open(engine: &str, dir: &Path) -> Box<dyn Store> {
    match engine {
        "redb" => Box::new(Redb::open(dir)),
        "fjall" => Box::new(Fjall::open(dir)),
        "sqlite" => Box::new(Sqlite::open(dir, "FULL")),
        "sqlite-normal" => Box::new(Sqlite::open(dir, "NORMAL")),
        _ => panic!("unknown engine {engine}"),
    }
}

fn fresh(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
}

// ---------------------------------------------------------------- benchmarks
/// raw disk floor: 4 KiB pwrite + fdatasync, overwrite in place and append
fn bench_fsync(dir: &Path) {
    use std::os::unix::fs::FileExt;
    fresh(dir);
    let buf = vec![0xABu8; 4096];
    for mode in ["overwrite", "append"] {
        let p = dir.join(format!("f_{mode}"));
        let f = std::fs::OpenOptions::new().create(true).read(true).write(true).open(&p).unwrap();
        if mode == "overwrite" {
            for i in 0..1024u64 {
                f.write_at(&buf, i * 4096).unwrap();
            }
            f.sync_all().unwrap();
        }
        let mut lat = vec![];
        let t0 = Instant::now();
        let mut i = 0u64;
        while t0.elapsed() < Duration::from_secs(3) && i < 5000 {
            let off = if mode == "overwrite" { (i % 1024) * 4096 } else { i * 4096 };
            let s = Instant::now();
            f.write_at(&buf, off).unwrap();
            f.sync_data().unwrap(); // fdatasync(2)
            lat.push(s.elapsed());
            i += 1;
        }
        let el = t0.elapsed().as_secs_f64();
        println!(
            "RESULT fsync mode={mode} n={} ops/s={:.0} p50_ms={:.3} p99_ms={:.3}",
            lat.len(),
            lat.len() as f64 / el,
            pct(&mut lat, 0.5),
            pct(&mut lat, 0.99)
        );
    }
}

/// single writer, batches of B messages per durable commit, random users
fn bench_write(engine: &str, dir: &Path, vsize: usize, b: usize, secs: f64) {
    fresh(dir);
    let mut db = open(engine, dir);
    let mut rng = Rng(0xDEADBEEF);
    let mut val = vec![0u8; vsize];
    let mut lat = vec![];
    let mut seq = 0u64;
    let t0 = Instant::now();
    let mut n = 0usize;
    while t0.elapsed().as_secs_f64() < secs || lat.len() < 20 {
        let mut batch = Vec::with_capacity(b);
        for _ in 0..b {
            rng.fill(&mut val); // encrypted payloads are incompressible
            let u = rng.next() % 10_000;
            seq += 1;
            batch.push((key(u, 1, seq), val.clone()));
        }
        let s = Instant::now();
        db.commit(&batch, &[]);
        lat.push(s.elapsed());
        n += b;
        if lat.len() > 200_000 {
            break;
        }
    }
    let el = t0.elapsed().as_secs_f64();
    drop(db);
    println!(
        "RESULT write engine={engine} vsize={vsize} B={b} msgs={n} commits={} inserts/s={:.0} p50_ms={:.3} p99_ms={:.3} disk_MB={:.1}",
        lat.len(),
        n as f64 / el,
        pct(&mut lat, 0.5),
        pct(&mut lat, 0.99),
        dir_size(dir) as f64 / 1e6
    );
}

/// mixed: each txn inserts B new messages and deletes (acks) the B messages of the previous txn
fn bench_mixed(engine: &str, dir: &Path, vsize: usize, b: usize, secs: f64) {
    fresh(dir);
    let mut db = open(engine, dir);
    let mut rng = Rng(42);
    let mut val = vec![0u8; vsize];
    let mut prev: Vec<Vec<u8>> = vec![];
    let mut lat = vec![];
    let mut seq = 0u64;
    let mut ops = 0usize;
    // optional backlog of stored (unacked) messages, e.g. PREPOP=100000
    let prepop: u64 = std::env::var("PREPOP").ok().and_then(|x| x.parse().ok()).unwrap_or(0);
    while seq < prepop {
        let batch: Vec<Kv> = (0..1024).map(|_| { rng.fill(&mut val); seq += 1; (key(rng.next() % 10_000, 2, seq), val.clone()) }).collect();
        db.commit(&batch, &[]);
    }
    let t0 = Instant::now();
    while t0.elapsed().as_secs_f64() < secs || lat.len() < 20 {
        let mut batch = Vec::with_capacity(b);
        for _ in 0..b {
            rng.fill(&mut val);
            let u = rng.next() % 10_000;
            seq += 1;
            batch.push((key(u, 1, seq), val.clone()));
        }
        let s = Instant::now();
        db.commit(&batch, &prev);
        lat.push(s.elapsed());
        ops += batch.len() + prev.len();
        prev = batch.into_iter().map(|(k, _)| k).collect();
    }
    let el = t0.elapsed().as_secs_f64();
    let live = db.scan_all().0;
    drop(db);
    println!(
        "RESULT mixed engine={engine} prepop={prepop} vsize={vsize} B={b} commits={} ops/s={:.0} msg_pairs/s={:.0} p50_ms={:.3} p99_ms={:.3} live_after={live} disk_MB={:.1}",
        lat.len(),
        ops as f64 / el,
        ops as f64 / el / 2.0,
        pct(&mut lat, 0.5),
        pct(&mut lat, 0.99),
        dir_size(dir) as f64 / 1e6
    );
}

/// 10,000 users x 10 messages; per-user prefix fetch, full scan of 100k entries
fn bench_scan(engine: &str, dir: &Path, vsize: usize) {
    fresh(dir);
    let mut db = open(engine, dir);
    let mut rng = Rng(7);
    let mut val = vec![0u8; vsize];
    // insert in random user order (as messages arrive), 1024 per commit
    let mut all = Vec::with_capacity(100_000);
    for m in 0..10u64 {
        for u in 0..10_000u64 {
            all.push((u, m));
        }
    }
    for i in (1..all.len()).rev() {
        let j = (rng.next() % (i as u64 + 1)) as usize;
        all.swap(i, j);
    }
    let tl = Instant::now();
    for chunk in all.chunks(1024) {
        let batch: Vec<Kv> = chunk
            .iter()
            .map(|&(u, m)| {
                rng.fill(&mut val);
                (key(u, (m % 3) as u8, 1_700_000_000_000 + m), val.clone())
            })
            .collect();
        db.commit(&batch, &[]);
    }
    let load_s = tl.elapsed().as_secs_f64();
    // reopen so we measure from a freshly opened (cold-ish cache, warm OS page cache) DB
    drop(db);
    let db = open(engine, dir);
    let mut lat = vec![];
    for _ in 0..5000 {
        let u = rng.next() % 10_000;
        let (lo, hi) = prefix_bounds(u);
        let s = Instant::now();
        let (n, _b) = db.range(&lo, &hi);
        lat.push(s.elapsed());
        assert_eq!(n, 10, "user {u} expected 10 messages");
    }
    let mut full = vec![];
    for _ in 0..5 {
        let s = Instant::now();
        let (n, _) = db.scan_all();
        full.push(s.elapsed());
        assert_eq!(n, 100_000);
    }
    println!(
        "RESULT scan engine={engine} vsize={vsize} load_100k_s={load_s:.2} prefix_p50_us={:.1} prefix_p99_us={:.1} fullscan100k_median_ms={:.1} fullscan_min_ms={:.1}",
        pct(&mut lat, 0.5) * 1000.0,
        pct(&mut lat, 0.99) * 1000.0,
        pct(&mut full, 0.5),
        pct(&mut full, 0.0)
    );
}

/// 1M x 200 B messages, report VmHWM and disk usage
fn bench_rss(engine: &str, dir: &Path) {
    fresh(dir);
    let mut db = open(engine, dir);
    let mut rng = Rng(99);
    let mut val = vec![0u8; 200];
    let t0 = Instant::now();
    let mut seq = 0u64;
    for _ in 0..(1_000_000 / 1000) {
        let batch: Vec<Kv> = (0..1000)
            .map(|_| {
                rng.fill(&mut val);
                seq += 1;
                (key(rng.next() % 100_000, 1, seq), val.clone())
            })
            .collect();
        db.commit(&batch, &[]);
    }
    let load = t0.elapsed().as_secs_f64();
    let hwm_load = vm_hwm_kb();
    let s = Instant::now();
    let (n, _) = db.scan_all();
    let scan_ms = s.elapsed().as_secs_f64() * 1000.0;
    assert_eq!(n, 1_000_000);
    let hwm_scan = vm_hwm_kb();
    drop(db);
    let disk = dir_size(dir);
    // reopen in this process: open cost
    let s = Instant::now();
    let db = open(engine, dir);
    let reopen_ms = s.elapsed().as_secs_f64() * 1000.0;
    drop(db);
    println!(
        "RESULT rss engine={engine} load_1M_s={load:.1} VmHWM_after_load_MB={:.0} VmHWM_after_fullscan_MB={:.0} fullscan_1M_ms={scan_ms:.0} disk_MB={:.0} reopen_ms={reopen_ms:.1}",
        hwm_load as f64 / 1024.0,
        hwm_scan as f64 / 1024.0,
        disk as f64 / 1e6
    );
}

// ---------------------------------------------------------------- crash test
// batch b inserts 32 durable msgs D|b|i and 32 transient msgs T|b|i and deletes T|b-1|*.
// Invariant after any crash, with M = last committed batch:
//   D present (32 each) for every b in 0..=M, T present only for b = M (all 32).
const PER: u64 = 32;
fn ckey(kind: u8, b: u64, i: u64) -> Vec<u8> {
    let mut k = vec![kind; 1];
    k.extend_from_slice(&uaid(b % 1000)[..15]);
    k.extend_from_slice(&[0u8; 16]);
    k.extend_from_slice(&((b << 8) | i).to_be_bytes());
    k
}
fn crash_child(engine: &str, dir: &Path, start: u64) {
    let mut db = open(engine, dir);
    let mut rng = Rng(start + 1);
    let mut val = vec![0u8; 2000];
    let out = std::io::stdout();
    let mut out = out.lock();
    writeln!(out, "ready").unwrap();
    out.flush().unwrap();
    let mut b = start;
    loop {
        let mut ins = vec![];
        for i in 0..PER {
            rng.fill(&mut val);
            ins.push((ckey(b'D', b, i), val.clone()));
            ins.push((ckey(b'T', b, i), val.clone()));
        }
        let del: Vec<Vec<u8>> = if b > 0 { (0..PER).map(|i| ckey(b'T', b - 1, i)).collect() } else { vec![] };
        db.commit(&ins, &del);
        writeln!(out, "{b}").unwrap();
        out.flush().unwrap();
        b += 1;
    }
}
/// returns Ok(M) or Err(description)
fn crash_verify(engine: &str, dir: &Path) -> Result<(u64, usize), String> {
    let db = std::panic::catch_unwind(|| open(engine, dir)).map_err(|_| "open panicked".to_string())?;
    let mut d = std::collections::BTreeMap::<u64, u64>::new();
    let mut t = std::collections::BTreeMap::<u64, u64>::new();
    let mut n = 0;
    db.for_each(&mut |k, _| {
        let b = u64::from_be_bytes(k[32..40].try_into().unwrap()) >> 8;
        n += 1;
        *(if k[0] == b'D' { &mut d } else { &mut t }).entry(b).or_default() += 1;
    });
    let m = *d.keys().last().ok_or("empty db")?;
    for b in 0..=m {
        let c = d.get(&b).copied().unwrap_or(0);
        if c != PER {
            return Err(format!("batch {b} has {c} D keys (torn/missing), M={m}"));
        }
    }
    if t.len() != 1 || t.get(&m) != Some(&PER) {
        return Err(format!("T keys wrong: {:?} M={m}", t));
    }
    Ok((m, n))
}
fn crash_test(engine: &str, dir: &Path, iters: usize) {
    fresh(dir);
    let exe = std::env::current_exe().unwrap();
    let mut rng = Rng(0x1234 ^ engine.len() as u64);
    let mut next = 0u64;
    let mut max_printed: Option<u64> = None;
    let mut fails = 0;
    for it in 0..iters {
        let mut ch = Command::new(&exe)
            .args(["crashchild", engine, dir.to_str().unwrap(), &next.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut rd = BufReader::new(ch.stdout.take().unwrap());
        let mut line = String::new();
        rd.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready");
        let delay = 50 + rng.next() % 750;
        // reader thread collects printed batch numbers
        let h = std::thread::spawn(move || {
            let mut last = None;
            for l in rd.lines() {
                match l {
                    Ok(l) => last = l.trim().parse::<u64>().ok().or(last),
                    Err(_) => break,
                }
            }
            last
        });
        std::thread::sleep(Duration::from_millis(delay));
        ch.kill().unwrap(); // SIGKILL
        ch.wait().unwrap();
        let last = h.join().unwrap();
        if let Some(l) = last {
            max_printed = Some(max_printed.map_or(l, |m: u64| m.max(l)));
        }
        match crash_verify(engine, dir) {
            Ok((m, n)) => {
                let ok = max_printed.map_or(true, |p| m >= p);
                if !ok {
                    fails += 1;
                }
                println!(
                    "crash {engine} iter={it} kill_after_ms={delay} last_printed={last:?} max_printed={max_printed:?} recovered_M={m} entries={n} {}",
                    if ok { "OK" } else { "LOST ACKED BATCH" }
                );
                next = m + 1;
            }
            Err(e) => {
                fails += 1;
                println!("crash {engine} iter={it} FAIL {e}");
                break;
            }
        }
    }
    println!("RESULT crash engine={engine} iters={iters} failures={fails}");
}

/// does a second process get refused while we hold the DB open?
fn lock_test(engine: &str, dir: &Path) {
    fresh(dir);
    let _db = open(engine, dir);
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe).args(["tryopen", engine, dir.to_str().unwrap()]).output().unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    let e = String::from_utf8_lossy(&out.stderr);
    let msg = e.lines().find(|l| l.contains("panicked") || l.contains("Error") || l.contains("rror")).unwrap_or("").to_string();
    let msg2 = e.lines().skip_while(|l| !l.contains("panicked")).nth(1).unwrap_or("").to_string();
    println!("RESULT lock engine={engine} second_process: {} {} {}", s.trim(), msg, msg2);
}
fn try_open(engine: &str, dir: &Path) {
    let mut db = open(engine, dir);
    // for sqlite also try a write
    db.commit(&[(key(1, 1, 1), vec![1; 10])], &[]);
    println!("second open+write SUCCEEDED");
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let base = PathBuf::from(std::env::var("BENCH_DIR").unwrap_or("/tmp/dbbench/data".into()));
    match a[1].as_str() {
        "fsync" => bench_fsync(&base.join("fsync")),
        "write" => {
            let vs: usize = a[3].parse().unwrap();
            let b: usize = a[4].parse().unwrap();
            bench_write(&a[2], &base.join(format!("w_{}", a[2])), vs, b, 3.0)
        }
        "mixed" => bench_mixed(&a[2], &base.join(format!("m_{}", a[2])), a[3].parse().unwrap(), a[4].parse().unwrap(), 4.0),
        "scan" => bench_scan(&a[2], &base.join(format!("s_{}", a[2])), a[3].parse().unwrap()),
        "rss" => bench_rss(&a[2], &base.join(format!("r_{}", a[2]))),
        "crash" => crash_test(&a[2], &base.join(format!("c_{}", a[2])), a[3].parse().unwrap()),
        "crashchild" => crash_child(&a[2], Path::new(&a[3]), a[4].parse().unwrap()),
        "lock" => lock_test(&a[2], &base.join(format!("l_{}", a[2]))),
        "tryopen" => try_open(&a[2], Path::new(&a[3])),
        x => panic!("unknown cmd {x}"),
    }
}
