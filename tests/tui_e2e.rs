//! End to end: the real binary in tmux (send-keys, capture-pane). The panels
//! appear with numbers, a key changes the level and the numbers follow, `e`
//! exports, `q` exits 0 with the terminal restored; SIGTERM and SIGHUP also
//! restore it; the process ends when its terminal (the tmux server) goes
//! away. Runs on the shipped default (checkpoints/*.safetensors) when
//! present, else on the fixture model. Skips (passes with a note) only when
//! tmux is not installed — CI needs `apt-get install -y tmux`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Few samples: fast on 2 cores in a debug build.
const SAMPLES: &str = "64";
const TIMEOUT: Duration = Duration::from_secs(180);

/// Whether tmux runs here. Without it the end-to-end tests are skipped with a
/// note, unless `SEMCON_REQUIRE_TMUX` is set (`.ci/run` sets it), where a
/// missing tmux fails them instead of letting them pass unseen.
fn tmux_available() -> bool {
    let ok = Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok || std::env::var_os("SEMCON_REQUIRE_TMUX").is_none(),
        "tmux is not installed, and SEMCON_REQUIRE_TMUX says the end-to-end tests must run"
    );
    ok
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The explorer's arguments: the shipped default when there is one.
fn explore_args() -> (Vec<String>, bool) {
    let shipped = semcon::session::checkpoints_in(&repo().join("checkpoints"));
    let mut args: Vec<String> = vec!["explore".into(), "--samples".into(), SAMPLES.into()];
    if shipped.is_empty() {
        let fixture = repo().join("tests/fixtures/models/resnet18_cifar.safetensors");
        args.extend([
            "--checkpoint".into(),
            fixture.display().to_string(),
            "--dataset".into(),
            "builtin:fashion-mnist".into(),
        ]);
    }
    (args, !shipped.is_empty())
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// A tmux server of our own (private socket) running one session.
struct Tmux {
    socket: String,
    dir: PathBuf,
}

impl Tmux {
    /// Runs the explorer in a fresh pane; the pane's shell records the exit
    /// status and whether the tty settings are as before.
    fn start(name: &str, extra: &[&str]) -> Tmux {
        Self::start_with(name, extra, &[])
    }

    fn start_with(name: &str, extra: &[&str], env: &[(&str, &str)]) -> Tmux {
        Self::start_args(name, explore_args().0, extra, env)
    }

    /// The explorer with `args` instead of the default's.
    fn start_args(name: &str, mut args: Vec<String>, extra: &[&str], env: &[(&str, &str)]) -> Tmux {
        let socket = format!("semcon-e2e-{name}-{}", std::process::id());
        let dir = std::env::temp_dir().join(&socket);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        args.push("--export-dir".into());
        args.push(dir.join("exports").display().to_string());
        args.extend(extra.iter().map(|s| s.to_string()));
        let bin = env!("CARGO_BIN_EXE_semcon");
        let cmdline: Vec<String> = std::iter::once(bin.to_string())
            .chain(args)
            .map(|a| shell_quote(&a))
            .collect();
        let pidfile = dir.join("pid");
        // The inner sh records the explorer's pid, then becomes the explorer.
        let script = format!(
            "cd {repo}\ns0=$(stty -g)\nsh -c 'echo $$ > \"$0\"; exec \"$@\"' {pid} {cmd}\nrc=$?\n\
             s1=$(stty -g)\necho EXIT=$rc\nif [ \"$s0\" = \"$s1\" ]; then echo TTY=RESTORED; \
             else echo TTY=CHANGED; fi\nsleep 600\n",
            repo = shell_quote(&repo().display().to_string()),
            pid = shell_quote(&pidfile.display().to_string()),
            cmd = cmdline.join(" "),
        );
        let run = dir.join("run.sh");
        std::fs::write(&run, script).unwrap();
        let ok = Command::new("tmux")
            .args([
                "-L",
                &socket,
                "-f",
                "/dev/null",
                "new-session",
                "-d",
                "-s",
                "e2e",
            ])
            .args(["-x", "160", "-y", "45", "sh"])
            .arg(&run)
            .env("COLORTERM", "truecolor")
            .envs(env.iter().copied())
            .status()
            .unwrap();
        assert!(ok.success(), "tmux new-session failed");
        Tmux { socket, dir }
    }

    fn tmux(&self, args: &[&str]) -> String {
        let o = Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    fn capture(&self) -> String {
        self.tmux(&["capture-pane", "-p", "-t", "e2e"])
    }

    fn send(&self, key: &str) {
        self.tmux(&["send-keys", "-t", "e2e", key]);
    }

    fn wait_for(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let s = self.capture();
            if pred(&s) {
                return s;
            }
            if start.elapsed() > TIMEOUT {
                panic!("timed out waiting for {what}; screen:\n{s}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn pid(&self) -> String {
        std::fs::read_to_string(self.dir.join("pid"))
            .unwrap()
            .trim()
            .to_string()
    }

    /// After the explorer exited: its status, and the terminal checks.
    fn finished(&self) -> (i32, String) {
        let s = self.wait_for("exit", |s| s.contains("EXIT=") && s.contains("TTY="));
        let rc: i32 = s
            .split("EXIT=")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .expect("exit status");
        assert!(
            s.contains("TTY=RESTORED"),
            "tty settings not restored:\n{s}"
        );
        let modes = self.tmux(&[
            "display",
            "-p",
            "-t",
            "e2e",
            "#{alternate_on} #{cursor_flag}",
        ]);
        assert_eq!(
            modes.trim(),
            "0 1",
            "alternate screen left and cursor shown"
        );
        assert!(
            !s.contains("Perturbations"),
            "the explorer's screen is gone:\n{s}"
        );
        // ... and none of it was left in the scrollback either (tmux moves a
        // widened alternate screen there unless it is cleared first)
        let history = self.tmux(&["capture-pane", "-p", "-t", "e2e", "-S", "-", "-E", "-1"]);
        assert!(
            !history.contains(['│', '┃', '▀', '█']),
            "the explorer's screen was left in the scrollback:\n{history}"
        );
        (rc, s)
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// "mean 1.234" of the DS histogram line, and the whole line.
fn ds_line(screen: &str) -> Option<(String, String)> {
    let line = screen.lines().find(|l| l.contains("DS histogram ·"))?;
    let mean = line.split("mean ").nth(1)?.split_whitespace().next()?;
    Some((line.to_string(), mean.to_string()))
}

#[test]
fn explorer_shows_numbers_reacts_exports_and_quits() {
    if !tmux_available() {
        eprintln!(
            "note: tmux is not installed; skipping the end-to-end test (apt-get install -y tmux)"
        );
        return;
    }
    let t = Tmux::start("keys", &[]);
    // Panels with numbers.
    let s = t.wait_for("the first numbers", |s| {
        ds_line(s).is_some() && s.contains("Accuracy") && s.contains('%')
    });
    for panel in [
        "Perturbations",
        "Accuracy",
        "Distance score",
        "PGD",
        "k*",
        "Sample",
    ] {
        assert!(s.contains(panel), "{panel} missing:\n{s}");
    }
    let (line1, mean1) = ds_line(&s).unwrap();
    // A key changes the level; the numbers follow.
    t.send("l");
    let s = t.wait_for("the next level's numbers", |s| {
        ds_line(s).is_some_and(|(l, _)| l != line1)
    });
    let (_, mean2) = ds_line(&s).unwrap();
    assert_ne!(mean1, mean2, "mean DS changes with the level:\n{s}");
    // Help overlay opens and closes.
    t.send("?");
    t.wait_for("help", |s| s.contains("Help — keys"));
    t.send("Escape");
    t.wait_for("help closed", |s| !s.contains("Help — keys"));
    // Export says where it wrote.
    t.send("e");
    let s = t.wait_for("export message", |s| {
        s.contains("exported to") || s.contains("export failed")
    });
    assert!(s.contains("exported to"), "{s}");
    let exports = t.dir.join("exports");
    let written: Vec<PathBuf> = std::fs::read_dir(&exports)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(written.len(), 1);
    assert!(written[0].join("view.json").is_file());
    // q quits with status 0 and the terminal is back.
    t.send("q");
    let (rc, _) = t.finished();
    assert_eq!(rc, 0);
}

#[test]
fn compare_mode_two_checkpoints() {
    if !tmux_available() {
        eprintln!("note: tmux is not installed; skipping the end-to-end test");
        return;
    }
    let (_, shipped) = explore_args();
    let fixture = repo().join("tests/fixtures/models/resnet18_cifar.safetensors");
    let f = fixture.display().to_string();
    // With the shipped default this already compares; else pass the fixture twice more.
    let extra: Vec<&str> = if shipped {
        vec![]
    } else {
        vec!["--checkpoint", &f]
    };
    let n = if shipped {
        semcon::session::checkpoints_in(&repo().join("checkpoints"))
            .len()
            .min(semcon::tui::app::MAX_MODELS)
    } else {
        2
    };
    let t = Tmux::start("compare", &extra);
    // The sample panel has one line per model ending in its DS once its numbers are in.
    let s = t.wait_for("every model's numbers", |s| {
        s.contains("comparing") && s.lines().filter(|l| l.contains("   DS ")).count() == n
    });
    assert!(s.contains("comparing"), "{s}");
    t.send("m");
    t.send("C-c");
    let (rc, _) = t.finished();
    assert_eq!(rc, 0, "Ctrl-C quits with status 0");
}

/// Families side by side: a ViT beside a ResNet on CIFAR-10; both get
/// numbers, and `t` cycles through the layers both have.
#[test]
fn vit_beside_resnet() {
    if !tmux_available() {
        eprintln!("note: tmux is not installed; skipping the end-to-end test");
        return;
    }
    let m = |n: &str| {
        repo()
            .join(format!("tests/fixtures/models/{n}.safetensors"))
            .display()
            .to_string()
    };
    let args: Vec<String> = [
        "explore",
        "-c",
        &m("vit_tiny"),
        "-c",
        &m("resnet18_cifar"),
        "-d",
        &repo()
            .join("tests/fixtures/datasets/cifar10")
            .display()
            .to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let t = Tmux::start_args("families", args, &[], &[]);
    let s = t.wait_for("both models' numbers", |s| {
        s.contains("comparing vit_tiny | resnet18_cifar")
            && s.lines().filter(|l| l.contains("   DS ")).count() == 2
    });
    assert!(s.contains("layer logits"), "{s}");
    t.send("t");
    t.wait_for("the penultimate layer", |s| s.contains("layer penultimate"));
    t.send("t");
    t.wait_for("back to the logits (the layers both have)", |s| {
        s.contains("layer logits")
    });
    t.send("q");
    let (rc, _) = t.finished();
    assert_eq!(rc, 0);
}

/// `x` in the real explorer: every model's saliency map of the shown
/// sample arrives from the engine; at GradCAM the ViT says why it has none
/// while the ResNet's map is shown.
#[test]
fn explanations_in_the_sample_panel() {
    if !tmux_available() {
        eprintln!("note: tmux is not installed; skipping the end-to-end test");
        return;
    }
    let m = |n: &str| {
        repo()
            .join(format!("tests/fixtures/models/{n}.safetensors"))
            .display()
            .to_string()
    };
    let args: Vec<String> = [
        "explore",
        "-c",
        &m("resnet18_cifar"),
        "-c",
        &m("vit_tiny"),
        "-d",
        &repo()
            .join("tests/fixtures/datasets/cifar10")
            .display()
            .to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let t = Tmux::start_args("explain", args, &[], &[]);
    t.wait_for("both models' numbers", |s| {
        s.lines().filter(|l| l.contains("   DS ")).count() == 2
    });
    t.send("x");
    t.wait_for("both saliency maps", |s| {
        s.contains("saliency (x)") && !s.contains("explaining") && !s.contains("cannot explain")
    });
    t.send("x");
    t.send("x");
    let s = t.wait_for("GradCAM: the ResNet's map, the ViT's reason", |s| {
        s.contains("GradCAM (x)") && s.contains("cannot explain")
    });
    assert!(!s.contains("explaining"), "{s}");
    t.send("q");
    let (rc, _) = t.finished();
    assert_eq!(rc, 0);
}

#[test]
fn signals_restore_the_terminal() {
    if !tmux_available() {
        eprintln!("note: tmux is not installed; skipping the end-to-end test");
        return;
    }
    for (sig, code) in [("TERM", 143), ("HUP", 129)] {
        let t = Tmux::start(&format!("sig{sig}"), &[]);
        t.wait_for("the panels", |s| s.contains("Perturbations"));
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &t.pid()])
            .status()
            .unwrap();
        assert!(ok.success());
        let (rc, _) = t.finished();
        assert_eq!(rc, code, "SIG{sig}");
    }
}

/// Whether process `pid` is gone (or a zombie nobody reaped yet).
fn process_gone(pid: &str) -> bool {
    let o = Command::new("ps")
        .args(["-o", "stat=", "-p", pid])
        .output()
        .unwrap();
    let stat = String::from_utf8_lossy(&o.stdout);
    stat.trim().is_empty() || stat.trim_start().starts_with('Z')
}

#[test]
fn the_explorer_exits_when_its_terminal_disappears() {
    if !tmux_available() {
        eprintln!("note: tmux is not installed; skipping the end-to-end test");
        return;
    }
    // The tmux server goes away while the worker computes: the tty hangs up
    // (reads return EOF/EIO, writes EIO) and SIGHUP may or may not come.
    // A process stuck on the dead tty once kept a core busy for an hour.
    let t = Tmux::start("hangup", &[]);
    t.wait_for("a running job", |s| s.contains("computing"));
    let pid = t.pid();
    assert!(!process_gone(&pid), "the explorer is running");
    t.tmux(&["kill-server"]);
    let start = Instant::now();
    while !process_gone(&pid) {
        if start.elapsed() > Duration::from_secs(5) {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
            panic!("the explorer (pid {pid}) still runs 5 s after its terminal disappeared");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("explorer gone {:?} after its terminal", start.elapsed());
}

#[test]
fn a_panic_restores_the_terminal() {
    if !tmux_available() {
        eprintln!("note: tmux is not installed; skipping the end-to-end test");
        return;
    }
    // Debug builds panic after the first frame when this is set.
    let t = Tmux::start_with("panic", &[], &[("SEMCON_TUI_TEST_PANIC", "1")]);
    let (rc, s) = t.finished();
    assert_eq!(rc, 101, "{s}");
    assert!(
        s.contains("SEMCON_TUI_TEST_PANIC is set"),
        "the panic message is readable:\n{s}"
    );
}

/// The row of the perturbation list's cursor (the first "▶" at the left edge).
fn cursor_row(screen: &str) -> Option<usize> {
    screen.lines().position(|l| {
        let mut c = l.chars();
        c.next();
        c.next() == Some('▶')
    })
}

/// A key right after a resize is handled at once (crossterm 0.28 used to
/// keep it until the next key while the UI thread spun), and q still quits.
#[test]
fn keys_after_a_resize_are_not_lost() {
    if !tmux_available() {
        eprintln!("note: tmux is not installed; skipping the end-to-end test");
        return;
    }
    let t = Tmux::start("resize", &[]);
    let s = t.wait_for("the perturbation list", |s| cursor_row(s).is_some());
    let mut row = cursor_row(&s).unwrap();
    for w in [150, 149, 148, 147] {
        t.tmux(&[
            "resize-window",
            "-t",
            "e2e",
            "-x",
            &w.to_string(),
            "-y",
            "45",
        ]);
        // Let the resize signal land before the key, as a person would.
        std::thread::sleep(Duration::from_millis(300));
        t.send("j");
        let s = t.wait_for(
            &format!("the cursor below row {row} after a resize to {w}"),
            |s| cursor_row(s).is_some_and(|r| r == row + 1),
        );
        row = cursor_row(&s).unwrap();
    }
    // wider than at the start, then quit: nothing of the explorer may stay
    // behind in the scrollback (checked by `finished`)
    t.tmux(&["resize-window", "-t", "e2e", "-x", "200", "-y", "50"]);
    std::thread::sleep(Duration::from_millis(300));
    t.wait_for("a redraw at 200 columns", |s| {
        s.lines().nth(1).is_some_and(|l| l.chars().count() > 160)
    });
    t.send("q");
    let (rc, _) = t.finished();
    assert_eq!(rc, 0);
}
