//! Hostile input: hand-made files that announce more than they hold, inflate
//! without end, nest without end or call what a state dict never calls, each
//! refused with one line, quickly and within the memory bound README states
//! (twice the file plus 64 MB); and the fuzzers' regression corpus
//! (`tests/fixtures/fuzz/TARGET/*`) replayed through the same entry points
//! the fuzzers use (`semcon::fuzz`).

mod common;

use common::{bin, fixture, model_fixture, tmp_dir, Run};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A semcon run with its peak resident memory.
struct Measured {
    run: Run,
    max_rss_mb: f64,
    seconds: f64,
}

/// Runs semcon and reads its peak resident set size. Linux counts the memory
/// of the process that spawns a child in the child's peak (the child shares
/// or copies it until it executes semcon), so semcon is started from a small
/// fresh process (python3's `os.fork` + `execv`, as `/usr/bin/time` does)
/// whose `wait4` reports semcon's own peak; a run past 60 s is killed.
fn measured(args: &[&str]) -> Measured {
    const SHIM: &str = r#"
import json, os, sys, time
out, argv = sys.argv[1], sys.argv[2:]
pid = os.fork()
if pid == 0:
    os.execv(argv[0], argv)
start = time.monotonic()
while True:
    p, status, usage = os.wait4(pid, os.WNOHANG)
    if p == pid:
        break
    if time.monotonic() - start > 60:
        os.kill(pid, 9)
    time.sleep(0.002)
code = os.waitstatus_to_exitcode(status)
json.dump({"code": code, "max_rss_kb": usage.ru_maxrss}, open(out, "w"))
"#;
    let start = Instant::now();
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let report = std::env::temp_dir().join(format!("semcon-rss-{}-{n}.json", std::process::id()));
    let _ = std::fs::remove_file(&report);
    let bin = bin();
    let out = Command::new("python3")
        .arg("-c")
        .arg(SHIM)
        .arg(&report)
        .arg(&bin)
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::null())
        .output()
        .expect("cannot run python3");
    let seconds = start.elapsed().as_secs_f64();
    let r: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&report).expect("the measuring shim wrote no report"),
    )
    .unwrap();
    let _ = std::fs::remove_file(&report);
    let code = r["code"].as_i64().map(|c| c as i32).filter(|&c| c >= 0);
    assert!(
        seconds < 60.0,
        "semcon {args:?} ran past 60 s and was killed"
    );
    Measured {
        run: Run {
            ok: code == Some(0),
            code,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        },
        // Linux reports kilobytes.
        max_rss_mb: r["max_rss_kb"].as_f64().unwrap() / 1024.0,
        seconds,
    }
}

/// Runs semcon on a hostile `file`: one error line naming `needle`, within
/// 10 s and twice the file's size plus 64 MB of memory.
#[track_caller]
fn refused(args: &[&str], file: &Path, needle: &str) -> String {
    let m = measured(args);
    let line = common::expect_error(&m.run);
    assert!(
        line.to_lowercase().contains(&needle.to_lowercase()),
        "error line lacks {needle:?}: {line}"
    );
    eprintln!(
        "{}: peak {:.1} MB, {:.2} s: {line}",
        file.display(),
        m.max_rss_mb,
        m.seconds
    );
    let size_mb = std::fs::metadata(file).map_or(0.0, |m| m.len() as f64 / (1 << 20) as f64);
    let bound = 2.0 * size_mb + 64.0;
    assert!(
        m.max_rss_mb <= bound,
        "{args:?}: peak memory {:.1} MB above the bound {bound:.1} MB (file {size_mb:.2} MB)",
        m.max_rss_mb
    );
    assert!(m.seconds < 10.0, "{args:?} took {:.1} s", m.seconds);
    line
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A member of [`write_zip`]: its name, its bytes as stored, the size it
/// declares, and its method (0 stored, 8 deflated).
struct Member<'a> {
    name: &'a str,
    body: Vec<u8>,
    size: u64,
    method: u16,
}

fn stored(name: &str, data: Vec<u8>) -> Member<'_> {
    Member {
        name,
        size: data.len() as u64,
        body: data,
        method: 0,
    }
}

/// `chunks` written one at a time through deflate (the whole never in
/// memory: the test process's own peak counts in its children's, see
/// [`measured`]).
fn deflated(chunks: impl Iterator<Item = Vec<u8>>) -> (Vec<u8>, u64) {
    let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut n = 0;
    for c in chunks {
        n += c.len() as u64;
        e.write_all(&c).unwrap();
    }
    (e.finish().unwrap(), n)
}

/// A zip archive of `members`. CRCs are zero (the readers under test refuse
/// before they would check them, or do not check them).
fn write_zip(p: &Path, members: &[Member]) {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for m in members {
        let (name, body, size, method) = (m.name, &m.body, m.size as u32, m.method);
        let offset = out.len() as u32;
        let mut local = Vec::new();
        local.extend(b"PK\x03\x04");
        local.extend(20u16.to_le_bytes());
        local.extend(0u16.to_le_bytes());
        local.extend(method.to_le_bytes());
        local.extend([0u8; 4]); // time, date
        local.extend(0u32.to_le_bytes()); // crc
        local.extend((body.len() as u32).to_le_bytes());
        local.extend(size.to_le_bytes());
        local.extend((name.len() as u16).to_le_bytes());
        local.extend(0u16.to_le_bytes());
        local.extend(name.as_bytes());
        out.extend(&local);
        out.extend(body);
        central.extend(b"PK\x01\x02");
        central.extend(20u16.to_le_bytes());
        central.extend(20u16.to_le_bytes());
        central.extend(0u16.to_le_bytes());
        central.extend(method.to_le_bytes());
        central.extend([0u8; 4]);
        central.extend(0u32.to_le_bytes());
        central.extend((body.len() as u32).to_le_bytes());
        central.extend(size.to_le_bytes());
        central.extend((name.len() as u16).to_le_bytes());
        central.extend([0u8; 12]); // extra, comment, disk, attributes
        central.extend(offset.to_le_bytes());
        central.extend(name.as_bytes());
    }
    let cd_offset = out.len() as u32;
    out.extend(&central);
    out.extend(b"PK\x05\x06");
    out.extend([0u8; 4]);
    out.extend((members.len() as u16).to_le_bytes());
    out.extend((members.len() as u16).to_le_bytes());
    out.extend((central.len() as u32).to_le_bytes());
    out.extend(cd_offset.to_le_bytes());
    out.extend(0u16.to_le_bytes());
    std::fs::write(p, out).unwrap();
}

fn npy_header(descr: &str, shape: &str) -> Vec<u8> {
    let mut h = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + h.len() + 1) % 64 != 0 {
        h.push(' ');
    }
    h.push('\n');
    let mut b = b"\x93NUMPY\x01\x00".to_vec();
    b.extend((h.len() as u16).to_le_bytes());
    b.extend(h.as_bytes());
    b
}

fn write_labels(p: &Path) {
    let mut b = vec![0, 0, 8, 1];
    b.extend(10u32.to_be_bytes());
    b.extend([0u8; 10]);
    std::fs::write(p, b).unwrap();
}

#[test]
fn idx_announcing_two_billion_images() {
    let dir = tmp_dir("hostile_idx");
    let p = dir.join("t10k-images-idx3-ubyte");
    let mut b = vec![0, 0, 8, 3];
    for d in [1u32 << 31, 28, 28] {
        b.extend(d.to_be_bytes());
    }
    b.extend(vec![0u8; 4096]);
    std::fs::write(&p, &b).unwrap();
    write_labels(&dir.join("t10k-labels-idx1-ubyte"));
    let out = dir.join("x.npy");
    refused(
        &[
            "perturb",
            "-d",
            s(&p),
            "--perturb",
            "noise",
            "--level",
            "1",
            "--out",
            s(&out),
        ],
        &p,
        "header announces",
    );
    assert!(!out.exists());
}

/// A gzip idx that inflates to 400 MB of zeros behind a header announcing
/// ten 28x28 images: inflated no further than the header says, so the ten
/// images load (trailing data is ignored, as for a plain idx file) within
/// the memory bound.
#[test]
fn gzip_idx_that_inflates_without_end() {
    let dir = tmp_dir("hostile_gz");
    let mut head = vec![0, 0, 8, 3];
    for d in [10u32, 28, 28] {
        head.extend(d.to_be_bytes());
    }
    let p = dir.join("t10k-images-idx3-ubyte.gz");
    let f = std::fs::File::create(&p).unwrap();
    let mut e = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
    e.write_all(&head).unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..400 {
        e.write_all(&zeros).unwrap();
    }
    e.finish().unwrap();
    write_labels(&dir.join("t10k-labels-idx1-ubyte"));
    let out = dir.join("x.npy");
    let m = measured(&[
        "perturb",
        "-d",
        s(&p),
        "--perturb",
        "noise",
        "--level",
        "1",
        "--out",
        s(&out),
    ]);
    assert!(m.run.ok, "{}", m.run.stderr);
    let bound = 2.0 * std::fs::metadata(&p).unwrap().len() as f64 / (1 << 20) as f64 + 64.0;
    assert!(
        m.max_rss_mb <= bound,
        "peak {:.1} MB above {bound:.1} MB",
        m.max_rss_mb
    );
    assert_eq!(common::read_npy(&out).shape, vec![10, 1, 28, 28]);
}

#[test]
fn npy_announcing_60_gb() {
    let dir = tmp_dir("hostile_npy");
    let p = dir.join("x.npy");
    let mut b = npy_header("<f4", "(15000000000, 1, 1, 1)");
    b.extend(vec![0u8; 4096]);
    std::fs::write(&p, &b).unwrap();
    let out = dir.join("y.npy");
    refused(
        &[
            "perturb",
            "--input",
            s(&p),
            "--perturb",
            "noise",
            "--level",
            "1",
            "--out",
            s(&out),
        ],
        &p,
        "60000000000 bytes",
    );
}

/// An .npz member declared as 3 KB that inflates to 400 MB.
#[test]
fn npz_member_that_inflates_beyond_its_declared_size() {
    let dir = tmp_dir("hostile_npz");
    let p = dir.join("d.npz");
    let head = npy_header("|u1", "(3, 28, 28)");
    let declared = head.len() as u64 + 3 * 784;
    let (body, _) = deflated(std::iter::once(head).chain((0..400).map(|_| vec![0u8; 1 << 20])));
    let mut y = npy_header("<i8", "(3,)");
    y.extend([0u8; 24]);
    let x = Member {
        name: "x.npy",
        body,
        size: declared,
        method: 8,
    };
    write_zip(&p, &[x, stored("y.npy", y)]);
    let out = dir.join("o.npy");
    refused(
        &[
            "perturb",
            "-d",
            s(&p),
            "--perturb",
            "noise",
            "--level",
            "1",
            "--out",
            s(&out),
        ],
        &p,
        "inflates beyond",
    );
}

#[test]
fn safetensors_header_length_of_2_pow_60() {
    let dir = tmp_dir("hostile_st");
    let p = dir.join("m.safetensors");
    let mut b = (1u64 << 60).to_le_bytes().to_vec();
    b.extend(b"{}");
    std::fs::write(&p, &b).unwrap();
    refused(&["info", s(&p)], &p, "header too large");
}

#[test]
fn safetensors_offsets_past_the_end() {
    let dir = tmp_dir("hostile_st_off");
    let p = dir.join("m.safetensors");
    let header =
        br#"{"fc.weight":{"dtype":"F32","shape":[100000,1000],"data_offsets":[0,400000000]}}"#;
    let mut b = (header.len() as u64).to_le_bytes().to_vec();
    b.extend(header);
    b.extend([0u8; 64]);
    std::fs::write(&p, &b).unwrap();
    refused(&["info", s(&p)], &p, "incomplete metadata");
}

#[test]
fn pth_calling_os_system() {
    let p = model_fixture("tiny_os_system.pth");
    refused(
        &["info", s(&p)],
        &p,
        "system, which a state dict never needs",
    );
}

/// A pickle of a tuple nested 200,000 deep (`(`*n `t`*n): refused before
/// anything unpickles it (a recursive walk or drop would overflow the stack).
#[test]
fn pth_with_a_pickle_nested_200000_deep() {
    let dir = tmp_dir("hostile_deep");
    let p = dir.join("deep.pth");
    let n = 200_000;
    let mut pkl = vec![0x80, 2];
    pkl.extend(std::iter::repeat_n(b'(', n));
    pkl.extend(std::iter::repeat_n(b't', n));
    pkl.push(b'.');
    write_zip(&p, &[stored("archive/data.pkl", pkl)]);
    refused(&["info", s(&p)], &p, "nested more than");
}

/// The same deep tuple built without marks (TUPLE1 repeated), which a count of
/// marks would not see.
#[test]
fn pth_with_a_pickle_nested_without_marks() {
    let dir = tmp_dir("hostile_deep1");
    let p = dir.join("deep1.pth");
    let mut pkl = vec![0x80, 2, b'N'];
    pkl.extend(std::iter::repeat_n(0x85u8, 200_000));
    pkl.push(b'.');
    write_zip(&p, &[stored("archive/data.pkl", pkl)]);
    refused(&["info", s(&p)], &p, "nested more than");
}

/// A 300-byte pickle whose memo fetches double a list 40 times (2^40
/// objects once unpickled, as the unpickler copies each fetch): refused by
/// counting before anything is built.
#[test]
fn pth_whose_memo_fetches_double_a_tree() {
    let dir = tmp_dir("hostile_memo");
    let p = dir.join("memo.pth");
    let mut pkl = vec![0x80, 2, b']', b'q', 0];
    for _ in 0..40 {
        pkl.extend([b'(', b'h', 0, b'h', 0, b'l', b'q', 0]);
    }
    pkl.push(b'.');
    write_zip(&p, &[stored("archive/data.pkl", pkl)]);
    refused(&["info", s(&p)], &p, "more than 16777216 objects");
}

/// A global named by strings that a POP left behind the ones on top
/// (`"os" "system" "collections" "OrderedDict" POP POP STACK_GLOBAL`): the
/// scanner does not take the stale names for the call's; refused.
#[test]
fn pth_whose_global_hides_behind_pops() {
    let dir = tmp_dir("hostile_pop");
    let p = dir.join("pop.pth");
    let mut pkl = vec![0x80, 4];
    for s in ["os", "system", "collections", "OrderedDict"] {
        pkl.extend([0x8c, s.len() as u8]);
        pkl.extend(s.as_bytes());
    }
    pkl.extend([b'0', b'0', 0x93, b')', b'R', b'.']);
    write_zip(&p, &[stored("archive/data.pkl", pkl)]);
    refused(&["info", s(&p)], &p, "a global whose name is computed");
}

/// A state dict whose one tensor announces 2^40 floats from a 16-byte
/// storage: refused before anything is allocated.
#[test]
fn pth_tensor_announcing_more_than_its_storage() {
    let dir = tmp_dir("hostile_pth_shape");
    let p = dir.join("big.pth");
    let uni = |s: &str| {
        let mut b = vec![b'X'];
        b.extend((s.len() as u32).to_le_bytes());
        b.extend(s.as_bytes());
        b
    };
    let long = |v: u64| {
        let mut b = vec![0x8a, 8];
        b.extend(v.to_le_bytes());
        b
    };
    let mut pkl = vec![0x80, 2, b'}', b'('];
    pkl.extend(uni("fc.weight"));
    pkl.extend(b"ctorch._utils\n_rebuild_tensor_v2\n(");
    pkl.push(b'(');
    pkl.extend(uni("storage"));
    pkl.extend(b"ctorch\nFloatStorage\n");
    pkl.extend(uni("0"));
    pkl.extend(uni("cpu"));
    pkl.extend([b'K', 4, b't', b'Q', b'K', 0]);
    pkl.push(b'(');
    pkl.extend(long(1 << 40));
    pkl.push(b't');
    pkl.extend([b'(', b'K', 1, b't', 0x89, b'}', b't', b'R', b'u', b'.']);
    write_zip(
        &p,
        &[
            stored("archive/data.pkl", pkl),
            stored("archive/data/0", vec![0u8; 16]),
        ],
    );
    refused(&["info", s(&p)], &p, "fc.weight");
}

/// A PNG announcing 20000x20000 pixels (1.2 GB decoded) in an image folder.
#[test]
fn image_announcing_20000_by_20000_pixels() {
    let dir = tmp_dir("hostile_png");
    let class = dir.join("folder").join("a");
    std::fs::create_dir_all(&class).unwrap();
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let chunk = |kind: &[u8], data: &[u8]| {
        let mut c = (data.len() as u32).to_be_bytes().to_vec();
        c.extend(kind);
        c.extend(data);
        let mut crc = flate2::Crc::new();
        crc.update(kind);
        crc.update(data);
        c.extend(crc.sum().to_be_bytes());
        c
    };
    let mut ihdr = 20000u32.to_be_bytes().to_vec();
    ihdr.extend(20000u32.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    png.extend(chunk(b"IHDR", &ihdr));
    png.extend(chunk(b"IDAT", &[0x78, 0x9c, 0x03, 0x00]));
    png.extend(chunk(b"IEND", &[]));
    let p = class.join("big.png");
    std::fs::write(&p, &png).unwrap();
    let out = dir.join("o.npy");
    let folder = dir.join("folder");
    refused(
        &[
            "perturb",
            "-d",
            s(&folder),
            "--perturb",
            "noise",
            "--level",
            "1",
            "--out",
            s(&out),
        ],
        &p,
        "20000x20000 pixels is more than the 178956970",
    );
}

/// A 497-byte JPEG announcing 21825x17481 pixels (found by fuzzing: it
/// took 39 s and 1.5 GB to decode): refused from its header, as PIL
/// refuses it (DecompressionBombError).
#[test]
fn jpeg_announcing_381_million_pixels() {
    let dir = tmp_dir("hostile_jpeg");
    let class = dir.join("folder").join("a");
    std::fs::create_dir_all(&class).unwrap();
    let p = class.join("bomb.jpg");
    std::fs::copy(
        fixture("fuzz/image/timeout-eaac6efe35e1d06084321961b3b96dbba778411e"),
        &p,
    )
    .unwrap();
    let out = dir.join("o.npy");
    let folder = dir.join("folder");
    refused(
        &[
            "perturb",
            "-d",
            s(&folder),
            "--perturb",
            "noise",
            "--level",
            "1",
            "--out",
            s(&out),
        ],
        &p,
        "17481x21825 pixels is more than the 178956970",
    );
}

/// Every input the fuzzers kept (the seeds made from the fixtures, and any
/// input that once crashed, hung or ran out of memory) runs through its
/// reader without a panic, each in well under a second.
#[test]
fn fuzz_regression_corpus_replays() {
    let root = fixture("fuzz");
    let mut replayed = 0;
    for target in semcon::fuzz::TARGETS {
        let dir = root.join(target);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "no corpus for {target}");
        for f in files {
            let bytes = std::fs::read(&f).unwrap();
            let t = Instant::now();
            let r = std::panic::catch_unwind(|| semcon::fuzz::run(target, &bytes));
            assert!(r.is_ok(), "{target}: {} panics", f.display());
            assert!(r.unwrap().is_ok());
            assert!(
                t.elapsed() < Duration::from_secs(5),
                "{target}: {} took {:?}",
                f.display(),
                t.elapsed()
            );
            replayed += 1;
        }
    }
    assert!(replayed >= semcon::fuzz::TARGETS.len());
    semcon::fuzz::remove_scratch();
}

/// The command line that reads a fuzzer's input for `target` the way a user
/// would hand it to semcon (written into `dir`), and the file it reads.
fn cli_case(target: &str, bytes: &[u8], dir: &Path) -> (Vec<String>, PathBuf) {
    let perturb = |d: &str, p: &Path| -> Vec<String> {
        let out = dir.join("out.npy");
        [
            "perturb",
            d,
            s(p),
            "--perturb",
            "noise",
            "--level",
            "1",
            "--out",
            s(&out),
        ]
        .map(String::from)
        .into()
    };
    let write = |name: &str| {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    match target {
        "idx" => {
            let p = write("t10k-images-idx3-ubyte");
            std::fs::write(dir.join("t10k-labels-idx1-ubyte"), bytes).unwrap();
            (perturb("-d", &p), p)
        }
        "cifar" => {
            let p = write("data_batch_1.bin");
            (perturb("-d", &p), p)
        }
        "npy" => {
            let p = write("x.npy");
            (perturb("--input", &p), p)
        }
        "npz" => {
            let p = write("x.npz");
            (perturb("-d", &p), p)
        }
        "image" => {
            let class = dir.join("folder").join("a");
            std::fs::create_dir_all(&class).unwrap();
            let p = class.join("x.png");
            std::fs::write(&p, bytes).unwrap();
            (perturb("-d", &dir.join("folder")), p)
        }
        "safetensors" | "pth" => {
            let p = write(&format!("m.{target}"));
            (vec!["info".into(), s(&p).into()], p)
        }
        "pickle" => {
            let p = dir.join("m.pth");
            write_zip(&p, &[stored("archive/data.pkl", bytes.to_vec())]);
            (vec!["info".into(), s(&p).into()], p)
        }
        "sidecar" => {
            let p = dir.join("m.safetensors");
            std::fs::copy(fixture("fuzz/safetensors/seed-resnet18_w2.safetensors"), &p).unwrap();
            std::fs::write(dir.join("m.json"), bytes).unwrap();
            (vec!["info".into(), s(&p).into()], p)
        }
        other => panic!("no command line for target {other}"),
    }
}

/// What fuzzing found (every input of the corpus that is not a seed) also
/// goes through the command line: exit 0, or one error line; never a panic;
/// within the memory bound.
#[test]
fn fuzz_findings_through_the_command_line() {
    let mut checked = 0;
    for target in semcon::fuzz::TARGETS {
        let Ok(entries) = std::fs::read_dir(fixture("fuzz").join(target)) else {
            continue;
        };
        for e in entries {
            let f = e.unwrap().path();
            let name = f.file_name().unwrap().to_string_lossy().into_owned();
            if name.starts_with("seed-") {
                continue;
            }
            let dir = tmp_dir(&format!(
                "hostile_found_{target}_{}",
                &name[..name.len().min(20)]
            ));
            let (args, file) = cli_case(target, &std::fs::read(&f).unwrap(), &dir);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let m = measured(&args);
            if !m.run.ok {
                common::expect_error(&m.run);
            }
            assert!(
                !m.run.stderr.contains("panicked"),
                "{name}: {}",
                m.run.stderr
            );
            let size_mb = std::fs::metadata(&file).unwrap().len() as f64 / (1 << 20) as f64;
            let bound = 2.0 * size_mb + 64.0;
            assert!(
                m.max_rss_mb <= bound,
                "{target}/{name}: peak {:.1} MB above {bound:.1} MB",
                m.max_rss_mb
            );
            assert!(m.seconds < 10.0, "{target}/{name}: {:.1} s", m.seconds);
            checked += 1;
        }
    }
    assert!(checked > 0, "no fuzzing findings in tests/fixtures/fuzz");
}

/// The entry points do tell good files from bad: each target accepts a
/// fixture of its kind and refuses its first bytes alone.
#[test]
fn fuzz_entry_points_accept_real_files() {
    let cases: &[(&str, PathBuf)] = &[
        ("npz", fixture("datasets/npz/u8_nhwc.npz")),
        (
            "safetensors",
            fixture("fuzz/safetensors/seed-resnet18_w2.safetensors"),
        ),
        ("pth", model_fixture("tiny.pth")),
    ];
    for (target, p) in cases {
        let bytes = std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert_eq!(
            semcon::fuzz::run(target, &bytes),
            Ok(true),
            "{target} {}",
            p.display()
        );
        assert_eq!(
            semcon::fuzz::run(target, &bytes[..64]),
            Ok(false),
            "{target} cut"
        );
    }
    assert!(semcon::fuzz::run("nope", b"").is_err());
    semcon::fuzz::remove_scratch();
}

/// A 30-byte sidecar asking for 60000x60000 inputs (every image would be
/// resized to 3.6 G pixels): refused when the model loads.
#[test]
fn sidecar_asking_for_huge_inputs() {
    let dir = tmp_dir("hostile_sidecar");
    let p = dir.join("m.safetensors");
    std::fs::copy(fixture("fuzz/safetensors/seed-resnet18_w2.safetensors"), &p).unwrap();
    let side = dir.join("m.json");
    std::fs::write(&side, br#"{"input_size":[60000,60000]}"#).unwrap();
    refused(&["info", s(&p)], &side, "more than the 178956970 pixels");
}
