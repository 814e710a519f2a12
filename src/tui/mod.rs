//! The terminal explorer: panels for perturbations, accuracy, DS, PGD, k* and
//! a sample viewer, for one model or 2-4 side by side. The UI thread only
//! draws and handles keys; every number comes from the engine's background
//! worker ([`crate::engine`]) and is drawn when it arrives.
//!
//! * [`app`]: the state and its update logic (pure),
//! * [`keys`]: key -> action,
//! * [`ui`]: rendering (pure functions of the state),
//! * [`image`]: half-block images, [`kview`]: the k* report as shown,
//! * [`export`]: `e` (JSON + PNG), [`terminal`]: setup/restore/signals,
//! * [`setup`]: which checkpoints and data to open.
//!
//! `SEMCON_TUI_TRACE=FILE` appends timing lines (frame render and draw times,
//! key-to-redraw latencies, time from start to the models being loaded, to
//! the first frame and to the first frame showing an accuracy) for
//! `scripts/tui_bench.sh`.

pub mod app;
pub mod export;
pub mod image;
pub mod keys;
pub mod kview;
pub mod setup;
pub mod terminal;
pub mod ui;

use crate::cli::ExploreArgs;
use crate::engine::Engine;
use anyhow::{anyhow, Result};
use app::{App, Command};
use crossterm::event::{self, Event as TermEvent, KeyEventKind};
use ratatui::buffer::Buffer;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::mpsc::TryRecvError;
use std::time::{Duration, Instant};

/// How long the loop waits for a key before looking at the engine again.
const POLL: Duration = Duration::from_millis(20);
/// How long quitting waits for the worker to stop between batches.
const STOP_WAIT: Duration = Duration::from_secs(3);

/// `semcon explore` (and `semcon` without arguments).
pub fn explore(a: &ExploreArgs) -> Result<()> {
    let t0 = Instant::now();
    let session = setup::load(a)?;
    run(session, t0)
}

/// Why the loop ended.
enum Exit {
    Quit,
    Signal(i32),
}

/// Runs the explorer on a loaded session until quit, error or signal.
pub fn run(session: setup::Session, t0: Instant) -> Result<()> {
    if !std::io::stdout().is_terminal() {
        return Err(anyhow!(
            "the explorer needs a terminal (stdout is not a tty); see `semcon --help` for the headless commands"
        ));
    }
    let signals = terminal::Signals::register()?;
    terminal::install_panic_hook();
    let mut trace = Trace::from_env(t0);
    let setup::Session {
        models,
        set,
        settings,
        meta,
        export_dir,
        note,
    } = session;
    let mut app = App::new(meta);
    // Start computing before the terminal is even set up.
    let engine = Engine::start(models, set, settings);
    if let Some(r) = app.take_request() {
        engine.want(r);
    }
    if let Some(n) = note {
        app.set_message(n, Instant::now());
    }
    let result = match terminal::setup() {
        Ok(mut term) => {
            let _guard = terminal::Guard;
            event_loop(
                &mut term,
                &mut app,
                &engine,
                &signals,
                &export_dir,
                &mut trace,
            )
        }
        Err(e) => Err(anyhow!("cannot open the terminal: {e}")),
    };
    terminal::restore();
    stop_engine(engine);
    match result? {
        Exit::Quit => Ok(()),
        Exit::Signal(sig) => std::process::exit(128 + sig),
    }
}

/// Stops the worker (it stops between batches), waiting at most [`STOP_WAIT`].
fn stop_engine(mut engine: Engine) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        engine.shutdown();
        let _ = tx.send(());
    });
    let _ = rx.recv_timeout(STOP_WAIT);
}

fn event_loop(
    term: &mut terminal::Term,
    app: &mut App,
    engine: &Engine,
    signals: &terminal::Signals,
    export_dir: &std::path::Path,
    trace: &mut Trace,
) -> Result<Exit> {
    let mut dirty = true;
    let mut key_at: Option<Instant> = None;
    loop {
        if let Some(sig) = signals.pending() {
            return Ok(Exit::Signal(sig));
        }
        // Engine events, without waiting.
        loop {
            match engine.events.try_recv() {
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
            let frame = term.draw(|f| {
                let r = Instant::now();
                ui::render(f, app);
                render = r.elapsed();
            })?;
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
        if !event::poll(POLL)? {
            continue;
        }
        // Handle every pending terminal event before the next draw.
        loop {
            match event::read()? {
                TermEvent::Key(k) if k.kind != KeyEventKind::Release => {
                    key_at.get_or_insert_with(Instant::now);
                    if let Some(a) = keys::action(k) {
                        match app.update(a) {
                            Some(Command::Quit) => app.quit = true,
                            Some(Command::Export) => {
                                let msg = match export::export(app, export_dir) {
                                    Ok(e) => e.summary(),
                                    Err(e) => {
                                        format!("export failed: {}", crate::cli::format_error(&e))
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
            if app.quit || !event::poll(Duration::ZERO)? {
                break;
            }
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
/// `scripts/tui_bench.sh` waits for; progress reads "…40%").
pub fn shows_accuracy(screen: &Buffer) -> bool {
    let w = screen.area.width as usize;
    screen.content.chunks(w.max(1)).any(|row| {
        let line: String = row.iter().map(|c| c.symbol()).collect();
        let b = line.as_bytes();
        b.windows(4)
            .any(|x| x[0].is_ascii_digit() && x[1] == b'.' && x[2].is_ascii_digit() && x[3] == b'%')
    })
}
