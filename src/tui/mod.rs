//! The terminal explorer: panels for perturbations, accuracy, DS, PGD, k* and
//! a sample viewer, for one model or 2-4 side by side. The UI thread only
//! draws and handles keys; every number comes from the engine's background
//! worker ([`crate::engine`]) and is drawn when it arrives.
//!
//! * [`app`]: the state and its update logic (pure), [`jobs`]: the results
//!   as shown, the engine's events applied, the jobs the view needs,
//! * [`keys`]: key -> action,
//! * [`ui`]: rendering (pure functions of the state),
//! * [`panels`]: the panels [`ui`] lays out, one file each,
//! * [`image`]: half-block images, [`kview`]: the k* report as shown,
//! * [`export`]: `e` (JSON + PNG), [`terminal`]: setup/restore/signals,
//! * [`setup`]: which checkpoints and data to open.
//!
//! The event loop sleeps until a key, an engine event, a signal or a tick
//! ([`TICK`]) wakes it, and draws at once. It ends on `q`, on a signal, and
//! when the terminal disappears (see [`terminal`]).
//!
//! `SEMCON_TUI_TRACE=FILE` appends timing lines (frame render and draw times,
//! key-to-redraw latencies, time from start to the models being loaded, to
//! the first frame and to the first frame showing an accuracy) for
//! `scripts/tui_bench.sh`.

pub mod app;
pub mod export;
pub mod graphics;
pub mod image;
pub mod jobs;
pub mod keys;
pub mod kview;
pub mod panels;
pub mod setup;
pub mod terminal;
pub mod ui;

use crate::engine::Engine;
use anyhow::{anyhow, Result};
use app::{App, Command};
use crossterm::event::{self, Event as TermEvent, KeyEventKind};
use ratatui::buffer::Buffer;
use setup::ExploreOptions;
use std::io::{IsTerminal, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::time::{Duration, Instant};

/// The longest the loop sleeps when nothing wakes it (messages expire and
/// the demo advances on this clock).
const TICK: Duration = Duration::from_millis(100);
/// How often crossterm is asked again while it holds back input.
const STALL_RETRY: Duration = Duration::from_millis(25);
/// How long quitting waits for the worker to stop between batches.
const STOP_WAIT: Duration = Duration::from_secs(3);
/// The same after a signal or with the terminal gone: nobody is waiting.
const STOP_WAIT_SIGNAL: Duration = Duration::from_millis(500);
/// How long after a hang-up the watchdog ends a process that is still there.
const HANGUP_GRACE: Duration = Duration::from_secs(2);

/// `semcon explore` (and `semcon` without arguments).
pub fn explore(a: &ExploreOptions) -> Result<()> {
    let t0 = Instant::now();
    let session = setup::load(a)?;
    run(session, t0)
}

/// Why the loop ended.
enum Exit {
    Quit,
    Signal(i32),
    /// The terminal hung up.
    Gone,
}

/// Runs the explorer on a loaded session until quit, error or signal.
pub fn run(opened: setup::Opened, t0: Instant) -> Result<()> {
    if !std::io::stdout().is_terminal() {
        return Err(anyhow!(
            "the explorer needs a terminal (stdout is not a tty); see `semcon --help` for the headless commands"
        ));
    }
    let wake = terminal::Wake::new()?;
    let signals = terminal::Signals::register(&wake)?;
    let tty = terminal::Tty::open().map_err(|e| anyhow!("cannot open the terminal: {e}"))?;
    terminal::install_panic_hook();
    let mut trace = Trace::from_env(t0);
    let setup::Opened {
        models,
        set,
        settings,
        meta,
        export_dir,
        note,
    } = opened;
    let mut app = App::new(meta);
    // Start computing before the terminal is even set up.
    let mut engine = Engine::start(models, set, settings);
    let events = forward(&mut engine, wake.sender()?);
    if let Some(r) = app.take_request() {
        engine.want(r);
    }
    if let Some(n) = note {
        app.set_message(n, Instant::now());
    }
    terminal::watchdog(&tty, HANGUP_GRACE);
    let result = match terminal::setup() {
        Ok(mut term) => {
            let _guard = terminal::Guard;
            // Asked before any key is read, so the replies never reach the keys.
            match graphics::detect(tty.fd(), &mut std::io::stdout()) {
                Ok(g) => {
                    app.pictures = g.name().to_string();
                    app.graphics = Some(g);
                }
                Err(why) => app.pictures = format!("half blocks ({why})"),
            }
            // A terminal that printed part of the query must not keep it.
            let _ = term.clear();
            let io = Io {
                events: &events,
                signals: &signals,
                tty: &tty,
                wake: &wake,
            };
            event_loop(&mut term, &mut app, &engine, io, &export_dir, &mut trace)
        }
        Err(e) => Err(anyhow!("cannot open the terminal: {e}")),
    };
    terminal::restore();
    let wait = match result {
        Ok(Exit::Quit) | Err(_) => STOP_WAIT,
        Ok(Exit::Signal(_) | Exit::Gone) => STOP_WAIT_SIGNAL,
    };
    stop_engine(engine, wait);
    match result? {
        Exit::Quit => Ok(()),
        Exit::Signal(sig) => std::process::exit(128 + sig),
        Exit::Gone => std::process::exit(128 + signal_hook::consts::SIGHUP),
    }
}

/// Stops the worker (it stops between batches), waiting at most `wait`.
fn stop_engine(mut engine: Engine, wait: Duration) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        engine.shutdown();
        let _ = tx.send(());
    });
    let _ = rx.recv_timeout(wait);
}

/// Takes the engine's events over: a thread passes each on and wakes the
/// event loop, which can thus sleep until something happens.
fn forward(engine: &mut Engine, wake: UnixStream) -> Receiver<crate::engine::Event> {
    let from = std::mem::replace(&mut engine.events, mpsc::channel().1);
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("semcon-events".into())
        .spawn(move || {
            for ev in from {
                if tx.send(ev).is_err() {
                    return;
                }
                terminal::wake(&wake);
            }
            // The worker is gone: the loop sees the channel closed.
            drop(tx);
            terminal::wake(&wake);
        })
        .expect("spawning the event thread");
    rx
}

/// What the event loop listens to.
struct Io<'a> {
    events: &'a Receiver<crate::engine::Event>,
    signals: &'a terminal::Signals,
    tty: &'a terminal::Tty,
    wake: &'a terminal::Wake,
}

fn event_loop(
    term: &mut terminal::Term,
    app: &mut App,
    engine: &Engine,
    io: Io,
    export_dir: &std::path::Path,
    trace: &mut Trace,
) -> Result<Exit> {
    let mut dirty = true;
    let mut key_at: Option<Instant> = None;
    let mut stalled = false;
    loop {
        if let Some(sig) = io.signals.pending() {
            return Ok(Exit::Signal(sig));
        }
        // Engine events, without waiting.
        loop {
            match io.events.try_recv() {
                Ok(ev) => dirty |= app.on_event(ev),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    let why = terminal::other_panic()
                        .map(|p| format!(": {p}"))
                        .unwrap_or_default();
                    return Err(anyhow!("the background worker stopped unexpectedly{why}"));
                }
            }
        }
        dirty |= app.tick(Instant::now());
        if let Some(r) = app.take_request() {
            engine.want(r);
        }
        if dirty {
            let t = Instant::now();
            let mut render = Duration::ZERO;
            let drawn = term.draw(|f| {
                let r = Instant::now();
                ui::render(f, app);
                render = r.elapsed();
            });
            let frame = match drawn {
                Ok(frame) => frame,
                // A write to a terminal that hung up fails with EIO.
                Err(_) if io.tty.gone() => return Ok(Exit::Gone),
                Err(e) => return Err(anyhow!("cannot draw on the terminal: {e}")),
            };
            let done = Instant::now();
            trace.frame(render, done - t, frame.buffer);
            if let Some(k) = key_at.take() {
                trace.key(done - k);
            }
            dirty = false;
        }
        if app.quit {
            return Ok(Exit::Quit);
        }
        // Debug builds only: lets the end-to-end test check the panic path.
        if cfg!(debug_assertions) && std::env::var_os("SEMCON_TUI_TEST_PANIC").is_some() {
            panic!("SEMCON_TUI_TEST_PANIC is set");
        }
        // Sleep until a key, an engine event or a signal (or the tick). While
        // crossterm holds back input the tty still reports (see `stalled`),
        // wait for the other wake-ups only and ask crossterm again soon.
        let (timeout, for_input) = if stalled {
            (STALL_RETRY, false)
        } else {
            (TICK, true)
        };
        let input = match terminal::wait(io.tty, io.wake, timeout, for_input)? {
            terminal::Ready::Gone => return Ok(Exit::Gone),
            terminal::Ready::Ready { input, woken } => {
                if woken {
                    io.wake.drain();
                }
                input || stalled
            }
        };
        // On SIGWINCH let crossterm take its resize event now, before a key
        // arrives: crossterm 0.28 (mio, edge-triggered) that finds a resize
        // and a key pending at once returns the resize and loses the key's
        // readiness, keeping the key until the next one comes.
        let resized = io.signals.resized();
        if resized {
            dirty = true; // drawing adopts the new size
        }
        // crossterm only reads a terminal that has input (see `terminal`).
        if !input && !resized {
            continue;
        }
        // Handle every pending terminal event before the next draw (never
        // blocking: the input may be half an escape sequence).
        let mut got = 0usize;
        loop {
            let ev = match event::poll(Duration::ZERO).and_then(|ready| {
                if ready {
                    event::read().map(Some)
                } else {
                    Ok(None)
                }
            }) {
                Ok(Some(ev)) => {
                    got += 1;
                    ev
                }
                Ok(None) => break,
                Err(_) if io.tty.gone() => return Ok(Exit::Gone),
                Err(e) => return Err(anyhow!("cannot read the terminal: {e}")),
            };
            match ev {
                TermEvent::Key(k) if k.kind != KeyEventKind::Release => {
                    key_at.get_or_insert_with(Instant::now);
                    if let Some(a) = keys::action(k) {
                        match app.update(a) {
                            Some(Command::Quit) => app.quit = true,
                            Some(Command::Export) => {
                                let msg = match export::export(app, export_dir) {
                                    Ok(e) => e.summary(),
                                    Err(e) => {
                                        format!("export failed: {}", crate::error::format_error(&e))
                                    }
                                };
                                app.set_message(msg, Instant::now());
                            }
                            None => {}
                        }
                    }
                    dirty = true;
                }
                TermEvent::Resize(..) => dirty = true,
                _ => {}
            }
            if app.quit {
                break;
            }
        }
        // The tty said input and crossterm had none: it lost the readiness
        // (above) and reads those bytes when the next ones arrive. Until then
        // the tty stays readable, so waiting on it would spin.
        if input && !resized {
            stalled = got == 0;
        } else if got > 0 {
            stalled = false;
        }
    }
}

/// Optional timing log (`SEMCON_TUI_TRACE=FILE`).
struct Trace {
    out: Option<std::fs::File>,
    t0: Instant,
    first_frame: bool,
    first_numbers: bool,
}

impl Trace {
    fn from_env(t0: Instant) -> Trace {
        let out = std::env::var_os("SEMCON_TUI_TRACE").and_then(|p| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(PathBuf::from(p))
                .ok()
        });
        let mut t = Trace {
            out,
            t0,
            first_frame: false,
            first_numbers: false,
        };
        t.line(&format!("start {}", std::process::id()));
        // Checkpoints and data read, the worker about to start.
        t.mark("loaded_ms");
        t
    }
    fn mark(&mut self, what: &str) {
        let ms = self.t0.elapsed().as_secs_f64() * 1e3;
        self.line(&format!("{what} {ms:.1}"));
    }
    fn line(&mut self, s: &str) {
        if let Some(f) = &mut self.out {
            let _ = writeln!(f, "{s}");
        }
    }
    /// `render`: building the frame; `draw`: render, diff and write to the
    /// terminal; `screen`: what was drawn.
    fn frame(&mut self, render: Duration, draw: Duration, screen: &Buffer) {
        if self.out.is_none() {
            return;
        }
        if !self.first_frame {
            self.first_frame = true;
            self.mark("first_frame_ms");
        }
        self.line(&format!("render_us {}", render.as_micros()));
        self.line(&format!("draw_us {}", draw.as_micros()));
        if !self.first_numbers && shows_accuracy(screen) {
            self.first_numbers = true;
            self.mark("first_numbers_ms");
        }
    }
    fn key(&mut self, d: Duration) {
        self.line(&format!("key_us {}", d.as_micros()));
    }
}

/// Whether a screen shows an accuracy such as "91.2%" (the pattern
/// `scripts/tui_bench.sh` waits for; progress reads "██░░░").
pub fn shows_accuracy(screen: &Buffer) -> bool {
    let w = screen.area.width as usize;
    screen.content.chunks(w.max(1)).any(|row| {
        let line: String = row.iter().map(|c| c.symbol()).collect();
        let b = line.as_bytes();
        b.windows(4)
            .any(|x| x[0].is_ascii_digit() && x[1] == b'.' && x[2].is_ascii_digit() && x[3] == b'%')
    })
}
